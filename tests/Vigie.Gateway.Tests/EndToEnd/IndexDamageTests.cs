using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: a copy of index.db taken while the node ran (torn pages) was taken by `vigie serve`, which started,
/// acknowledged stores into it and said "database: Healthy"; scrub and audit verify stopped with a raw "SQLite Error 11".
/// The start now checks the index and refuses a damaged one, naming the file and the remedy; so do the commands.
/// </summary>
public sealed class IndexDamageTests
{
    [Fact]
    public async Task Regression_serve_started_on_a_torn_index_and_scrub_said_only_sqlite_error_11()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(10), ct);
        await node.StopAsync();

        var index = Path.Combine(node.Data, "index.db");
        TearPages(index);

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
        Assert.Equal(2, node.ExitCode);
        Assert.Contains($"vigie serve: cannot start: the index {index} is damaged (SQLite: ", refused.Message, StringComparison.Ordinal);
        Assert.Contains("Restore it from a consistent backup as docs/deploy.md says", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("SqliteException", refused.Message, StringComparison.Ordinal);

        foreach (var command in new[] { new[] { "scrub" }, ["audit", "verify"], ["stats"] })
        {
            var result = await node.VigieAsync(command);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains($"the index {index} is damaged (SQLite: ", result.StandardError, StringComparison.Ordinal);
            Assert.Contains("Restore it from a consistent backup", result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("SqliteException", result.StandardError, StringComparison.Ordinal);
        }
    }

    /// <summary>Overwrites the page headers of three pages near the end, as a copy made while the node wrote leaves them.</summary>
    internal static void TearPages(string index)
    {
        using var file = new FileStream(index, FileMode.Open, FileAccess.ReadWrite);
        var pages = file.Length / 4096;
        var noise = new byte[64];
        foreach (var page in new[] { pages - 1, pages - 2, pages - 4 })
        {
            Random.Shared.NextBytes(noise);
            file.Position = page * 4096;
            file.Write(noise);
        }

        file.Flush(flushToDisk: true);
    }
}
