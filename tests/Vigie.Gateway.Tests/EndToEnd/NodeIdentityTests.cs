using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// A node runs under the AE title the hospital gives it (`--ae`): what it does on its own (maintenance alerts,
/// retention) is audited under that title, so that a trail shared by several nodes says which one acted.
/// </summary>
public sealed class NodeIdentityTests
{
    /// <summary>Regression: maintenance alerts, retention deletions and recovered objects were audited as "VIGIE" whatever the node's title.</summary>
    [Fact]
    public async Task Regression_maintenance_alerts_were_audited_as_VIGIE_whatever_the_nodes_AE_title()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(arguments: ["--ae", "GATEWAY1"], cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct, calledAE: "GATEWAY1");
        await node.StopAsync();

        // An object gone from the archive (a disk fault, an intruder): the next maintenance run raises an alert.
        File.Delete(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).First());
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__INTERVAL", "01:00:00");
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY", "00:00:01");
        await node.StartProcessAsync(ct);

        var alert = await Eventually.WaitForAsync(async () => await AlertsAsync(node), a => a.Count > 0, ct);
        var entry = Assert.Single(alert);
        Assert.Equal("GATEWAY1", entry.GetProperty("user").GetString());
        Assert.StartsWith("archive integrity:", entry.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
    }

    private static async Task<List<JsonElement>> AlertsAsync(VigieNode node)
    {
        var audit = await node.VigieAsync("audit", "show", "--json", "--details");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        return [.. JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Where(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var o)
                && o.GetString()!.StartsWith("archive integrity:", StringComparison.Ordinal))];
    }
    /// <summary>
    /// Regression: every clean stop logged "fail: The DICOM listener cannot accept connections (OperationAborted) ...
    /// Out of file descriptors, raise LimitNOFILE": stopping the listener under a pending accept read as a failure,
    /// and sent whoever read the journal after `systemctl stop` the wrong way.
    /// </summary>
    [Fact]
    public async Task Regression_every_clean_stop_logged_the_listener_out_of_file_descriptors()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await node.StopAsync();
        Assert.DoesNotContain("cannot accept connections", node.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("LimitNOFILE", node.Output, StringComparison.Ordinal);

        // Regression: the log's times were local, without a zone, so they could not be matched with the audit trail's
        // UTC times at the SIEM. Now UTC to the millisecond, as the trail.
        var logged = node.Output.Split('\n').Where(l => l.Contains(": Vigie.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(logged);
        Assert.All(logged, l => Assert.Matches(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (info|warn|fail|crit|dbug|trce): ", l));
    }
}
