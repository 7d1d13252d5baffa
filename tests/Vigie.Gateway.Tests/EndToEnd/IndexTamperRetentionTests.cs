using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Review 30: a local attacker who can write the index (not the key folder) made the node delete or serve what it must not.</summary>
public sealed class IndexTamperRetentionTests
{
    private static async Task ExecuteOnIndexAsync(VigieNode node, string sql, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<long> ScalarOnIndexAsync(VigieNode node, string sql, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Regression (review 30, 06): the maintenance scrub reported "index rows tampered with" (current versions marked
    /// superseded) and, in the same run, retention removed those versions. A run whose scrub finds the index tampered
    /// with now deletes nothing, and says why in the log, the integrity alert and /health.
    /// </summary>
    [Fact]
    public async Task Regression_maintenance_ran_retention_although_its_scrub_found_the_index_tampered_with()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:02",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:02",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "superseded-1s",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__SUPERSEDEDVERSIONS"] = "00:00:01",
            ["VIGIE__ARCHIVE__DELETIONGRACE"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(3), ct);
        await ExecuteOnIndexAsync(node, "UPDATE archive_versions SET superseded_at = 1", ct);

        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("retention and the purge of deleted files skipped", StringComparison.Ordinal),
            ct, TimeSpan.FromSeconds(60));
        await Task.Delay(TimeSpan.FromSeconds(5), ct);
        Assert.Equal(3, await ScalarOnIndexAsync(node, "SELECT COUNT(*) FROM archive_versions", ct));
        Assert.Equal(0, await ScalarOnIndexAsync(node, "SELECT COUNT(*) FROM archive_deletions", ct));
        Assert.DoesNotContain("Retention superseded-1s:", node.Output, StringComparison.Ordinal);
        var (status, description) = await node.HealthCheckAsync("archive-integrity", ct);
        Assert.NotEqual("Healthy", status);
        Assert.Contains("retention and the purge of deleted files skipped", description, StringComparison.Ordinal);
    }
}
