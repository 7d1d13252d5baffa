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

        // The commands that walk the archive check the index first; quick ones (stats) say so only if they meet a torn page.
        foreach (var command in new[] { new[] { "scrub" }, ["audit", "verify"] })
        {
            var result = await node.VigieAsync(command);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains($"the index {index} is damaged (SQLite: ", result.StandardError, StringComparison.Ordinal);
            Assert.Contains("Restore it from a consistent backup", result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("SqliteException", result.StandardError, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// Regression: the docs gave no way to back up a running node's data folder, and a file copy of it tore the index.
    /// `vigie backup` copies the index as one snapshot, then the files, while images arrive; the copy opens and scrubs.
    /// </summary>
    [Fact]
    public async Task Regression_a_copy_of_a_running_data_folder_gave_a_malformed_index()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(20).ToArray();
        await node.StoreAsync(files[..10], ct);
        var copy = node.Root.Combine("backup");

        var storing = node.StoreAsync(files[10..], ct);
        var backup = await node.VigieAsync("backup", "--to", copy);
        await storing;
        Assert.True(backup.ExitCode == 0, backup.ToString());
        Assert.Contains("is not in the copy: back it up apart", backup.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(copy, "index.db-wal")));
        await node.StopAsync();

        CopyFolder(node.Keys, copy + ".keys");
        var stats = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "stats", "--json", "--data", copy], TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(stats.ExitCode == 0, stats.ToString());
        var instances = System.Text.Json.JsonDocument.Parse(stats.StandardOutput).RootElement.GetProperty("instances").GetInt32();
        Assert.InRange(instances, 10, 20);
        var scrub = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "scrub", "--json", "--data", copy], TimeSpan.FromMinutes(2), cancellationToken: ct);
        var report = System.Text.Json.JsonDocument.Parse(scrub.StandardOutput).RootElement;
        Assert.True(report.GetProperty("missing").GetInt32() == 0 && report.GetProperty("corrupted").GetInt32() == 0, scrub.ToString());
        Assert.Equal(instances, report.GetProperty("healthy").GetInt32());
    }

    private static void CopyFolder(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.EnumerateFiles(source))
        {
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
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
