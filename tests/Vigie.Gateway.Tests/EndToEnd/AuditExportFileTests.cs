using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: `vigie serve` started with an NDJSON audit export file others could read, and appended patient
/// identities to it in clear; it refuses such a file at the start now, naming it, its mode and the fix.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class AuditExportFileTests
{
    [Fact]
    public async Task Regression_serve_started_with_an_ndjson_export_file_readable_by_others()
    {
        var ct = TestContext.Current.CancellationToken;
        using var outside = new TempDirectory("vigie-export");
        var export = outside.Combine("audit.ndjson");
        await File.WriteAllBytesAsync(export, [], ct);
        File.SetUnixFileMode(export, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "arr",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "FhirNdjson",
            ["VIGIE__AUDIT__SINKS__0__NDJSONPATH"] = export,
        }, ct);

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
        Assert.Contains($"vigie serve: cannot start: Audit sink arr: the NDJSON audit export {export} holds patient data in clear but is mode 644", refused.Message,
            StringComparison.Ordinal);
        Assert.Contains($"chmod 600 {export}", refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, new FileInfo(export).Length);

        File.SetUnixFileMode(export, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        await node.StartProcessAsync(ct);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("audit-export", ct)).Status);
    }
}
