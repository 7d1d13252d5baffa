using Vigie.Archive.Storage;

namespace Vigie.Archive.Tests;

/// <summary>The free-space floor of the data folder (Archive:MinFreeSpace).</summary>
public sealed class ArchiveSpaceTests
{
    private const long MiB = 1024 * 1024;

    /// <summary>A clock whose timestamps move only when told to.</summary>
    private sealed class SteppedTime : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    [Fact]
    public void Under_the_floor_new_objects_are_refused_with_the_figures()
    {
        var free = 100 * MiB;
        var space = new ArchiveSpace("/", 512 * MiB, TimeProvider.System, _ => free);

        Assert.True(space.IsFull);
        var refused = Assert.Throws<ArchiveFullException>(space.EnsureRoomForObject);
        Assert.Equal(100 * MiB, refused.FreeBytes);
        Assert.Contains("100 MiB free, under the 512 MiB", refused.Message, StringComparison.Ordinal);

        free = 600 * MiB;
        // Near the floor every object reads again, so room made by an administrator counts at once.
        Assert.False(space.IsFull);
        space.EnsureRoomForObject();
    }

    [Fact]
    public void Far_from_the_floor_a_reading_serves_for_a_second()
    {
        var time = new SteppedTime();
        var reads = 0;
        var space = new ArchiveSpace("/", 512 * MiB, time, _ =>
        {
            reads++;
            return 100L * 1024 * MiB;
        });

        for (var i = 0; i < 100; i++)
        {
            space.EnsureRoomForObject();
        }

        Assert.Equal(1, reads);
        time.Advance(TimeSpan.FromSeconds(2));
        space.EnsureRoomForObject();
        Assert.Equal(2, reads);
    }

    [Fact]
    public void No_floor_and_an_unreadable_folder_refuse_nothing()
    {
        Assert.False(new ArchiveSpace("/", 0, TimeProvider.System, _ => 0).IsFull);
        Assert.False(new ArchiveSpace("/", 512 * MiB, TimeProvider.System, _ => throw new IOException("gone")).IsFull);
    }

    [Fact]
    public async Task A_store_under_the_floor_writes_nothing()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.MinFreeSpace = long.MaxValue);

        await Assert.ThrowsAsync<ArchiveFullException>(async () => await archive.Store.CreateSpoolAsync(TestContext.Current.CancellationToken));

        var spool = archive.Store.Layout.Spool;
        Assert.True(!Directory.Exists(spool) || Directory.GetFiles(spool, "*", SearchOption.AllDirectories).Length == 0);
    }

    [Fact]
    public void The_full_disk_reserve_is_given_back_on_a_full_file_system_and_set_aside_again_only_with_room_to_spare()
    {
        using var folder = new Vigie.Testing.TempDirectory("vigie-reserve");
        long free = 100 * MiB;
        var reserve = new FullDiskReserve(folder.Path, 8 * MiB, 32 * MiB, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance,
            _ => free);
        Assert.True(reserve.Restore());
        Assert.True(File.Exists(reserve.Path));

        // Some room left: kept. The last bytes gone: given back, once.
        free = 9 * MiB;
        Assert.False(reserve.ReleaseIfFull());
        free = 4096;
        Assert.True(reserve.ReleaseIfFull());
        Assert.False(File.Exists(reserve.Path));
        Assert.False(reserve.ReleaseIfFull());

        // Set aside again only when what stays free is at least the reserve and the floor.
        free = 39 * MiB;
        Assert.False(reserve.Restore());
        free = 40 * MiB;
        Assert.True(reserve.Restore());
        Assert.True(File.Exists(reserve.Path));
        Assert.Empty(Directory.GetFiles(folder.Path, "*.partial"));
    }
}
