using Npgsql;
using Vigie.Core.Data;
using Vigie.Gateway.Ingest;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>What maintenance does with objects no index row references.</summary>
public sealed class OrphanMaintenanceTests
{
    /// <summary>
    /// Regression: on PostgreSQL, after an older backup of the index was restored (same data folder and keys), recovery
    /// did nothing at start and maintenance scheduled the objects acknowledged since the backup as orphans, then deleted
    /// them: no audit entry, no alert. Maintenance now files them again (on both providers) before deleting anything.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_maintenance_deleted_acknowledged_objects_an_older_restored_index_did_not_know(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(10).ToArray();
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        await node.StoreAsync(files[..4], ct);
        await node.StopAsync();
        var snapshot = await SaveIndexAsync(node, ct);

        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[4..], ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        await node.StopAsync();

        // The backup put back: the six acknowledged objects stored since have files but no index rows. The heads signed
        // since are gone with it: the node would refuse to sign until the operator accepts the restore (since 2026-12-07).
        await PutBackIndexAsync(node, snapshot, ct);
        var behind = await node.VigieAsync("audit", "verify");
        Assert.True(behind.ExitCode == 1, behind.ToString());
        Assert.Contains("Truncated", behind.StandardOutput, StringComparison.Ordinal);
        var accepted = await node.VigieAsync("audit", "accept-restore", "--reason", "index restored from the backup taken before the second run");
        Assert.True(accepted.ExitCode == 0, accepted.ToString());
        node.SetEnvironment("VIGIE__ARCHIVE__ORPHANGRACE", "00:00:01");
        node.SetEnvironment("VIGIE__ARCHIVE__DELETIONGRACE", "00:00:01");
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__INTERVAL", "00:00:02");
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY", "00:00:01");
        await Task.Delay(TimeSpan.FromSeconds(1.5), ct); // older than the orphan grace
        await node.StartProcessAsync(ct);

        // Three maintenance runs: enough for a scheduled deletion to be carried out after its grace.
        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Split("Scrub: ").Length - 1 >= 3, ct, TimeSpan.FromSeconds(60));
        await node.StopAsync();

        Assert.DoesNotContain("orphans scheduled for deletion", node.Output, StringComparison.Ordinal);
        Assert.Equal(10, Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).Count());
        var events = await node.VigieAsync("audit", "show", "--details", "--json", "--limit", "500");
        Assert.True(events.ExitCode == 0, events.ToString());
        Assert.Equal(6, events.StandardOutput.Split(ArchiveRecovery.AuditNote).Length - 1);
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());

        await node.StartProcessAsync(ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        using var retrieved = new TempDirectory("vigie-orphans-get");
        var studies = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            var read = await Vigie.Dicom.IO.DicomReader.ReadFileAsync(file, new Vigie.Dicom.DicomReadOptions { StopAtTag = Vigie.Dicom.DicomTags.PixelData }, ct);
            studies.Add(Vigie.Dicom.DicomText.TrimUid(read.Dataset.GetString(Vigie.Dicom.DicomTags.StudyInstanceUID)!));
        }

        foreach (var study in studies)
        {
            var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}",
                "-od", retrieved.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(get.ExitCode == 0, get.ToString());
        }

        Assert.Equal(10, Directory.GetFiles(retrieved.Path).Length);
    }

    /// <summary>A copy of a stopped node's index: index.db, or a PostgreSQL database made from the node's as a template.</summary>
    private static async Task<string> SaveIndexAsync(VigieNode node, CancellationToken ct)
    {
        if (!node.Environment.TryGetValue("VIGIE__DATABASE__CONNECTIONSTRING", out var connectionString))
        {
            var index = Path.Combine(node.Data, "index.db");
            File.Copy(index, index + ".before", overwrite: true);
            return index + ".before";
        }

        var name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        var copy = name + "_before";
        await AdminAsync(connectionString, $"CREATE DATABASE \"{copy}\" TEMPLATE \"{name}\"", ct);
        return copy;
    }

    private static async Task PutBackIndexAsync(VigieNode node, string snapshot, CancellationToken ct)
    {
        if (!node.Environment.TryGetValue("VIGIE__DATABASE__CONNECTIONSTRING", out var connectionString))
        {
            var index = Path.Combine(node.Data, "index.db");
            foreach (var path in new[] { index, index + "-wal", index + "-shm" })
            {
                File.Delete(path);
            }

            File.Move(snapshot, index);
            return;
        }

        var name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        await AdminAsync(connectionString, $"DROP DATABASE \"{name}\" WITH (FORCE)", ct);
        await AdminAsync(connectionString, $"CREATE DATABASE \"{name}\" TEMPLATE \"{snapshot}\"", ct);
        await AdminAsync(connectionString, $"DROP DATABASE \"{snapshot}\" WITH (FORCE)", ct);
    }

    private static async Task AdminAsync(string connectionString, string sql, CancellationToken ct)
    {
        var admin = new NpgsqlConnectionStringBuilder(connectionString) { Database = "postgres", Pooling = false };
        await using var connection = new NpgsqlConnection(admin.ConnectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}
