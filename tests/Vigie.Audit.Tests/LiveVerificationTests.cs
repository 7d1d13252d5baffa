using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

public sealed class LiveVerificationTests
{
    /// <summary>
    /// Regression: `vigie audit verify` beside a serving node failed almost every run (5 of 6 on PostgreSQL) with
    /// tampering-style problems: the entries, the subtree nodes and the append state were read at different moments,
    /// so entries appended meanwhile showed as "the append state records 676 entries but the log holds 674" or a
    /// missing subtree node. Verification now covers the log as of its start and leaves the rest for the next run.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_verify_beside_a_serving_node_reported_the_entries_it_appended_as_tampering(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync(Samples.Records(0, 20_000));
        await h.Log.SignTreeHeadAsync(ct);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var appended = 20_000;
        var appender = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await h.AppendAsync(Samples.Records(appended, 37));
                appended += 37;
                if (appended % 10 == 0)
                {
                    await h.Log.SignTreeHeadAsync(CancellationToken.None);
                }
            }
        }, CancellationToken.None);

        try
        {
            var meanwhile = 0L;
            for (var run = 0; run < 6; run++)
            {
                var report = await h.Log.VerifyAsync(null, ct);
                Assert.True(report.IsValid, $"run {run}: " + string.Join("\n", report.Problems));
                meanwhile += report.AppendedMeanwhile;
            }

            Assert.True(meanwhile > 0, "the appender never overlapped a verification");
        }
        finally
        {
            await stop.CancelAsync();
            await appender;
        }

        var quiet = await h.Log.VerifyAsync(null, ct);
        Assert.True(quiet.IsValid, string.Join("\n", quiet.Problems));
        Assert.Equal(appended, quiet.EntriesChecked);
        Assert.Equal(0, quiet.AppendedMeanwhile);
    }
}
