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
        Assert.Contains("but the SQLite index (Database:SqlitePath) holds no record of it", refused.Message, StringComparison.Ordinal);
        Assert.Equal(5, ObjectFiles(node));
    }
}
