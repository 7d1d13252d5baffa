using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>The upkeep one node runs on a schedule: scrub of orphans, due file removals, the retention policy.</summary>
public sealed class MaintenanceTests
{
    /// <summary>
    /// Regression: the maintenance lease, taken for a whole interval (6 h by default), was kept at a clean stop, so after
    /// a restart (new process, new holder) retention and the purge of due files waited up to an interval to run again.
    /// </summary>
    [Fact]
    public async Task Regression_a_clean_restart_held_maintenance_back_for_a_whole_interval()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await StartAfterFirstRunAsync(ct);
        await node.StopAsync();
        await node.StartProcessAsync(ct);
        var output = await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => RetentionRuns(o) == 2, ct, TimeSpan.FromSeconds(30));
        Assert.Equal(2, RetentionRuns(output));
    }

    /// <summary>
    /// Regression: a node killed (kill -9) while holding the maintenance lease kept it for the whole interval, so the
    /// orphans of the stores it was committing, among the rest, waited up to 6 h to be handed to the deletion schedule,
    /// and `vigie scrub` failed meanwhile. A node now takes the lease from an earlier process of its machine that is gone.
    /// </summary>
    [Fact]
    public async Task Regression_a_node_killed_while_holding_the_maintenance_lease_held_maintenance_back_for_a_whole_interval()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await StartAfterFirstRunAsync(ct);
        await node.KillAsync();
        await node.StartProcessAsync(ct);
        var output = await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => RetentionRuns(o) == 2, ct, TimeSpan.FromSeconds(30));
        Assert.Equal(2, RetentionRuns(output));
    }

    /// <summary>
    /// Regression: two nodes started at the same moment on one new data folder and SQLite index both read "nothing
    /// applied" and both created the schema: one stopped with "table ... already exists" (2 starts in 8). Each
    /// migration is now read again under SQLite's write lock.
    /// </summary>
    [Fact]
    public async Task Regression_two_nodes_starting_together_on_a_new_sqlite_index_failed_with_table_already_exists()
    {
        var ct = TestContext.Current.CancellationToken;
        for (var trial = 0; trial < 4; trial++)
        {
            var (first, second) = await VigieNode.StartPairAsync(Core.Data.DatabaseProvider.Sqlite, cancellationToken: ct);
            await using (first)
            await using (second)
            {
                Assert.Null(first.ExitCode);
                Assert.Null(second.ExitCode);
            }
        }
    }

    private static int RetentionRuns(string output) => output.Split('\n').Count(l => l.Contains("Retention imaging-20y:", StringComparison.Ordinal));

    /// <summary>A node whose maintenance (with a retention policy, so that each run logs a line) has run once.</summary>
    private static async Task<VigieNode> StartAfterFirstRunAsync(CancellationToken ct)
    {
        var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:10:00",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "imaging-20y",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "7305.00:00:00",
        }, cancellationToken: ct);
        try
        {
            await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => RetentionRuns(o) == 1, ct);
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }
}
