using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

public sealed class HostingTests
{
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task AddAudit_runs_the_signer_and_an_export_sink_in_a_host(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabases.CreateAsync(provider, ct);
        using var dir = new TempDirectory();
        var ndjson = dir.Combine("export", "audit.ndjson");
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSingleton(db.Database);
        builder.Services.AddSingleton<IAuditSealer>(new TestSealer());
        builder.Services.Configure<AuditOptions>(o =>
        {
            o.SigningKeyPath = dir.Combine("keys", "audit.pem");
            o.SourceId = "VIGIE-HOST";
            o.TreeHeadEveryEntries = 3;
            o.TreeHeadPollInterval = TimeSpan.FromMilliseconds(100);
            o.Sinks.Add(new AuditSinkOptions { Name = "file", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = ndjson, PollInterval = TimeSpan.FromMilliseconds(100) });
        });
        builder.Services.AddAudit();
        using var host = builder.Build();
        await host.Services.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
        await host.StartAsync(ct);

        var log = host.Services.GetRequiredService<IAuditLog>();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(i, await log.AppendAsync(Samples.Record(i), ct));
        }

        // The export holds the four events and, as AuditEvents of their own, the heads signed meanwhile.
        async Task<(int Events, IReadOnlyList<SignedTreeHead> Heads)> ExportedAsync()
        {
            var text = File.Exists(ndjson) ? await File.ReadAllTextAsync(ndjson, ct) : "";
            // Complete lines only: the sink may be writing the next one (a half line failed to parse under load).
            text = text[..(text.LastIndexOf('\n') + 1)];
            var heads = TreeHeadJson.Parse(text);
            return (text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length - heads.Count, heads);
        }

        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline && ((await ExportedAsync()).Events < 4 || (await ExportedAsync()).Heads.Count == 0))
        {
            await Task.Delay(50, ct);
        }

        var exported = await ExportedAsync();
        Assert.Equal(4, exported.Events);
        Assert.True((await log.GetLatestTreeHeadAsync(ct))?.TreeSize >= 3);
        Assert.Contains(exported.Heads, h => h.TreeSize >= 3);
        await host.StopAsync(ct);
        Assert.Equal(4, (await log.GetLatestTreeHeadAsync(ct))?.TreeSize);
        var report = await log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
    }
}
