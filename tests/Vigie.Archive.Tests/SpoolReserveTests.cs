using Vigie.Archive.Scrub;

namespace Vigie.Archive.Tests;

/// <summary>Empty spool files made ahead of need (spool/reserve/).</summary>
public sealed class SpoolReserveTests
{
    private static async Task WaitForReserveAsync(ArchiveHarness archive, int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (archive.Store.SpoolReserveCount < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the reserve holds {archive.Store.SpoolReserveCount} of {count} files");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
    }

    private static string[] ReserveFiles(ArchiveHarness archive) =>
        Directory.Exists(archive.Store.Layout.SpoolReserve) ? Directory.GetFiles(archive.Store.Layout.SpoolReserve) : [];

    [Fact]
    public async Task The_reserve_fills_after_the_first_spool_and_the_next_one_takes_a_file_from_it()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.SpoolReserve = 3);
        // Nothing is made ahead for a process that never receives (the CLI's scrub, stats...).
        Assert.Empty(ReserveFiles(archive));
        await archive.PutAsync(Samples.Content(1_000, 0));
        await WaitForReserveAsync(archive, 3);
        var reserve = ReserveFiles(archive);
        Assert.Equal(3, reserve.Length);
        Assert.All(reserve, f => Assert.Equal(0, new FileInfo(f).Length));

        var content = Samples.Content(20_000, 1);
        var spool = await archive.SpoolAsync(content);
        // The spool is one of the reserve files, renamed into spool/.
        var name = Path.GetFileNameWithoutExtension(Assert.Single(Directory.GetFiles(archive.Store.Layout.Spool)));
        Assert.Contains(name, reserve.Select(Path.GetFileName));
        var committed = await archive.Store.CommitAsync(spool, TestContext.Current.CancellationToken);
        await spool.DisposeAsync();

        Assert.Equal(content, await archive.ReadAllAsync(committed.Id));
        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool));
        await WaitForReserveAsync(archive, 3);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public async Task A_reserve_file_removed_by_another_node_is_never_written_to()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.SpoolReserve = 4);
        await archive.PutAsync(Samples.Content(1_000, 0));
        await WaitForReserveAsync(archive, 4);
        // Another node's start sweeps spool files it believes stale, reserve files included.
        foreach (var file in ReserveFiles(archive))
        {
            File.Delete(file);
        }

        var contents = Enumerable.Range(0, 6).Select(i => Samples.Content(9_000 + i, i)).ToList();
        foreach (var content in contents)
        {
            var committed = await archive.PutAsync(content);
            Assert.Equal(content, await archive.ReadAllAsync(committed.Id));
        }

        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public async Task Reserve_files_are_removed_when_the_store_closes_and_stale_ones_at_start()
    {
        var archive = await ArchiveHarness.CreateAsync(configure: o => o.SpoolReserve = 2);
        await using (archive)
        {
            await archive.PutAsync(Samples.Content(1_000, 0));
            await WaitForReserveAsync(archive, 2);
            // A crashed node's reserve file, never taken.
            var crashed = Path.Combine(archive.Store.Layout.SpoolReserve, "0123456789abcdef0123456789abcdef");
            await File.WriteAllBytesAsync(crashed, [], TestContext.Current.CancellationToken);
            File.SetLastWriteTimeUtc(crashed, DateTime.UtcNow - TimeSpan.FromDays(1));

            await using (var other = await archive.ReopenAsync(o => o.SpoolReserve = 0))
            {
                Assert.DoesNotContain(crashed, ReserveFiles(archive));
                Assert.Equal(2, ReserveFiles(archive).Length); // the first node's, young
            }

            archive.Store.Dispose();
            Assert.Empty(ReserveFiles(archive));
        }
    }

    [Fact]
    public async Task No_reserve_when_it_is_off()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.SpoolReserve = 0);
        var committed = await archive.PutAsync(Samples.Content(5_000, 3));
        Assert.False(committed.AlreadyStored);
        Assert.Empty(ReserveFiles(archive));
        Assert.Equal(0, archive.Store.SpoolReserveCount);
    }

    [Fact]
    public void The_reserve_size_is_checked()
    {
        var options = ArchiveHarness.NewOptions(Path.GetTempPath());
        options.SpoolReserve = -1;
        Assert.Throws<InvalidOperationException>(options.Validate);
    }
}
