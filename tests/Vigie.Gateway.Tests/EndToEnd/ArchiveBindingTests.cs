using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// A data folder and an index of two different archives (review of 2026-12-07): maintenance deleted, as orphans, every
/// object the index did not know. The start is refused now, and nothing is touched.
/// </summary>
public sealed class ArchiveBindingTests
{
    private static int ObjectFiles(VigieNode node) =>
        Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).Count();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Regression_archive_started_on_an_empty_postgresql_index_was_wiped_by_maintenance(bool fromEarlierVersion)
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(5).ToList();
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Sqlite, cancellationToken: ct);
        await node.StoreAsync(files, ct);
        await node.StopAsync();
        var stored = ObjectFiles(node);
        Assert.Equal(5, stored);
        if (fromEarlierVersion)
        {
            // An archive made before folders and indexes were bound: no identity on either side.
            File.Delete(Path.Combine(node.Data, "keys", "archive.id"));
        }

        await using var empty = await TestDatabases.CreateAsync(DatabaseProvider.Postgres, ct);
        node.SetEnvironment("VIGIE__DATABASE__PROVIDER", "Postgres");
        node.SetEnvironment("VIGIE__DATABASE__CONNECTIONSTRING", empty.ConnectionString!);
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__INTERVAL", "00:00:01");
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
        Assert.Contains(fromEarlierVersion ? "holds stored objects, but the PostgreSQL index" : "but the PostgreSQL index (Database:ConnectionString) holds no record of it",
            refused.Message, StringComparison.Ordinal);
        Assert.Equal(stored, ObjectFiles(node));
    }

    [Fact]
    public async Task Regression_second_node_left_on_the_default_sqlite_index_deleted_the_postgresql_nodes_objects()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Postgres, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(5), ct);
        await node.StopAsync();
        node.SetEnvironment("VIGIE__DATABASE__PROVIDER", "Sqlite");
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
        Assert.Contains("which does not exist: give this archive's Database settings", refused.Message, StringComparison.Ordinal);
        Assert.Equal(5, ObjectFiles(node));
    }

    /// <summary>Regression: a crash between binding the index and writing the folder's identity refused every later start.</summary>
    [Fact]
    public async Task Regression_a_crash_between_binding_the_index_and_the_folder_blocked_the_archive_for_good()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Sqlite, cancellationToken: ct);
        await node.StopAsync();
        var file = Path.Combine(node.Data, "keys", "archive.id");
        var id = (await File.ReadAllTextAsync(file, ct)).Trim();
        // As a crash leaves it: the folder given its identity, the index bound, the folder not yet marked bound.
        await File.WriteAllTextAsync(file, id + " pending\n", ct);
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        Assert.Equal(id, (await File.ReadAllTextAsync(file, ct)).Trim());
    }

    /// <summary>Regression: at an upgrade, a new empty folder started on the archive's index was bound to it, and the real folder refused.</summary>
    [Fact]
    public async Task Regression_an_empty_folder_started_on_an_earlier_versions_index_took_it_over()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Sqlite, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(3), ct);
        await node.StopAsync();
        var index = Path.Combine(node.Data, "index.db");
        // An archive of an earlier version: no identity on either side.
        File.Delete(Path.Combine(node.Data, "keys", "archive.id"));
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={index};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM archive_identity";
            await command.ExecuteNonQueryAsync(ct);
        }

        using var empty = new TempDirectory("vigie-empty-folder");
        var serve = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "serve", "--data", empty.Combine("data"),
            "--dicom-port", VigieNode.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture), "--http-port", VigieNode.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture)],
            TimeSpan.FromMinutes(1), environment: new Dictionary<string, string> { ["VIGIE__DATABASE__SQLITEPATH"] = index }, cancellationToken: ct);
        Assert.True(serve.ExitCode == 2, serve.ToString());
        Assert.Contains("holds stored objects, but the data folder", serve.StandardError, StringComparison.Ordinal);
        // The archive's own folder still starts, and is bound now.
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        Assert.True(File.Exists(Path.Combine(node.Data, "keys", "archive.id")));
    }

    /// <summary>Regression: maintenance commands on a folder with another archive's index reported it (scrub: "0 healthy", exit 0).</summary>
    [Fact]
    public async Task Regression_maintenance_commands_ran_against_another_archives_index()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Sqlite, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(3), ct);
        await node.StopAsync();
        await using var empty = await TestDatabases.CreateAsync(DatabaseProvider.Postgres, ct);
        node.SetEnvironment("VIGIE__DATABASE__PROVIDER", "Postgres");
        node.SetEnvironment("VIGIE__DATABASE__CONNECTIONSTRING", empty.ConnectionString!);
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 2, scrub.ToString());
        Assert.Contains("holds no record of it", scrub.StandardError, StringComparison.Ordinal);
    }

    /// <summary>Regression: a start refused for a folder whose index is PostgreSQL left an empty SQLite index.db behind.</summary>
    [Fact]
    public async Task Regression_a_refused_start_left_an_empty_sqlite_index_in_a_postgresql_archives_folder()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Postgres, cancellationToken: ct);
        await node.StopAsync();
        node.SetEnvironment("VIGIE__DATABASE__PROVIDER", "Sqlite");
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
        Assert.Contains("which does not exist: give this archive's Database settings", refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(node.Data, "index.db")));
    }
}
