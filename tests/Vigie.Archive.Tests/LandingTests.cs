using Vigie.Archive.Scrub;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>
/// Landing slots (docs/archive.md): an object that fits a pre-written slot is committed into it with one data flush,
/// read from it until an idle moment moves it to objects/, and found again by its landing record after a crash.
/// </summary>
public sealed class LandingTests
{
    private const int SlotBytes = 64 * 1024;

    private static Task<ArchiveHarness> CreateAsync() => ArchiveHarness.CreateAsync(configure: Landing);

    private static void Landing(ArchiveOptions options)
    {
        options.LandingSlots = 8;
        options.LandingSlotBytes = SlotBytes;
    }

    // Idle work off before the store starts: turned off afterwards, a loop already past its check could move a landed object.
    private static void LandingWithoutIdleWork(ArchiveOptions options)
    {
        Landing(options);
        options.LandingIdleWork = false;
    }

    /// <summary>A harness whose idle-time work waits, with <paramref name="ready"/> slots made now.</summary>
    private static async Task<ArchiveHarness> WithSlotsAsync(int ready)
    {
        var archive = await ArchiveHarness.CreateAsync(configure: LandingWithoutIdleWork);
        await archive.Store.Slots.MakeReadyAsync(ready, TestContext.Current.CancellationToken);
        return archive;
    }

    private static string[] Slots(ArchiveHarness archive, string pattern = "*.slot") =>
        Directory.Exists(archive.Store.Layout.Landing) ? Directory.GetFiles(archive.Store.Layout.Landing, pattern) : [];

    [Fact]
    public async Task An_object_that_fits_lands_in_its_slot_and_reads_back_from_there()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(2);
        var content = Samples.Content(30_000, 1);

        var stored = await archive.PutAsync(content);

        Assert.False(stored.AlreadyStored);
        Assert.False(File.Exists(archive.Store.Layout.ObjectPath(stored.Id)));
        Assert.Equal(1, archive.Store.Slots.LandedCount);
        Assert.Equal(1, archive.Store.Slots.ReadyCount);
        Assert.True(await archive.Store.ExistsAsync(stored.Id, ct));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        // The slot keeps its size: only data changed on disk.
        Assert.Contains(Slots(archive), s => new FileInfo(s).Length == SlotBytes);
    }

    /// <summary>
    /// Bug (two nodes sharing a folder lost acknowledged objects): a look through spool/landing/, run by a read of another
    /// node's object, found a slot by its record between the record's write and the object's registration. The object
    /// was then taken for a duplicate of itself, and its slot, the only copy, deleted as the spare.
    /// </summary>
    [Fact]
    public async Task An_object_whose_slot_a_look_finds_before_it_is_registered_is_not_taken_for_its_own_duplicate()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        archive.Store.RecordWritten = archive.Store.Slots.LookThroughFolder;
        var content = Samples.Content(30_000, 9);

        var stored = await archive.PutAsync(content);

        Assert.False(stored.AlreadyStored);
        Assert.Single(Slots(archive));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        archive.Store.RecordWritten = null;
        Assert.Equal(1, await archive.Store.MoveLandedAsync(ct));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
    }

    [Fact]
    public async Task A_landed_object_moves_to_objects_at_the_next_idle_moment_and_its_slot_goes()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        var content = Samples.Content(30_000, 2);
        var stored = await archive.PutAsync(content);
        var slot = Assert.Single(Slots(archive));

        archive.Store.Slots.IdleWork = true;
        await Eventually.WaitForAsync(() => Task.FromResult((archive.Store.Slots.LandedCount, archive.Store.Slots.ReadyCount)),
            counts => counts is (0, 8), ct);

        Assert.Equal(0, archive.Store.Slots.LandedCount);
        Assert.False(File.Exists(slot));
        var path = archive.Store.Layout.ObjectPath(stored.Id);
        Assert.True(File.Exists(path));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        // The moved file is an ordinary object file: exactly the object, no padding, no record.
        await using (var reader = await archive.Store.OpenReadAsync(stored.Id, ct))
        {
            Assert.Equal(content.Length, reader.Length);
        }

        // The idle moment also made the slots the node keeps ready (at least 16, but this one allows 8).
        Assert.Equal(8, archive.Store.Slots.ReadyCount);
    }

    [Fact]
    public async Task The_reserve_grows_at_idle_to_what_the_last_burst_asked_for()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o =>
        {
            o.LandingSlots = 64;
            o.LandingSlotBytes = SlotBytes;
            o.LandingIdleWork = false;
        });
        // A burst of 40 objects with no slot ready: each took an ordinary spool.
        for (var i = 0; i < 40; i++)
        {
            await archive.PutAsync(Samples.Content(2000, 100 + i));
        }

        Assert.Equal(0, archive.Store.Slots.LandedCount);
        archive.Store.Slots.IdleWork = true;
        await Eventually.WaitForAsync(() => Task.FromResult(archive.Store.Slots.ReadyCount), ready => ready >= 48, ct);

        // The burst, and half the minimum on top; never more than the configured most.
        Assert.Equal(48, archive.Store.Slots.ReadyCount);
    }

    [Fact]
    public async Task A_crash_leaves_landed_objects_that_the_next_start_finds_by_their_records_and_moves()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(3);
        var first = Samples.Content(30_000, 3);
        var second = Samples.Content(20_000, 4);
        var a = await archive.PutAsync(first);
        var b = await archive.PutAsync(second);
        Assert.Equal(2, archive.Store.Slots.LandedCount);

        // A second process on the same folders, as a restart after kill -9 is: nothing was moved, nothing told it.
        await using var restarted = await archive.ReopenAsync(LandingWithoutIdleWork);

        Assert.Equal(0, restarted.Store.Slots.LandedCount);
        Assert.True(File.Exists(restarted.Store.Layout.ObjectPath(a.Id)));
        Assert.True(File.Exists(restarted.Store.Layout.ObjectPath(b.Id)));
        Assert.Equal(first, await restarted.ReadAllAsync(a.Id));
        Assert.Equal(second, await restarted.ReadAllAsync(b.Id));
        // Their slots are gone; the untaken one is young, so it may be another node's and is left alone.
        Assert.Single(Slots(restarted));
        // The first process, unaware, still reads them: the slot it remembers is gone, objects/ has them.
        Assert.Equal(first, await archive.ReadAllAsync(a.Id));
    }

    /// <summary>
    /// Regression: untaken slots (and one an object was being written into) left by a crash stayed for the stale-spool
    /// age, 6 hours, through restarts: up to the largest burst's worth of disk (hundreds of MiB) counted against the
    /// free-space floor. Slots are named after their owner, and those of a gone process of this machine are removed at once.
    /// </summary>
    [Fact]
    public async Task Regression_slots_a_crashed_process_left_stayed_for_hours()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(2);
        var ours = Slots(archive);
        Assert.All(ours, slot => Assert.StartsWith(Vigie.Core.IO.LocalProcess.Incarnation + "~", Path.GetFileName(slot), StringComparison.Ordinal));
        var landing = archive.Store.Layout.Landing;
        var gone = Path.Combine(landing, $"{Environment.MachineName}-{int.MaxValue}-dead~0a0b.slot");
        var otherHost = Path.Combine(landing, $"other-host-{int.MaxValue}-dead~0c0d.slot");
        var unnamed = Path.Combine(landing, "0e0f.slot");
        foreach (var copy in new[] { gone, otherHost, unnamed })
        {
            File.Copy(ours[0], copy);
        }

        await archive.Store.Slots.MoveAllAsync(ct);

        Assert.False(File.Exists(gone));
        // Another machine's node, or a name without its owner, may still write there: left for the stale age.
        Assert.True(File.Exists(otherHost));
        Assert.True(File.Exists(unnamed));
        Assert.All(ours, slot => Assert.True(File.Exists(slot)));
    }

    [Fact]
    public async Task An_object_another_node_landed_is_read_here_before_it_moves()
    {
        await using var archive = await WithSlotsAsync(1);
        await using var other = await archive.ReopenAsync(LandingWithoutIdleWork);
        var content = Samples.Content(30_000, 14);

        var stored = await archive.PutAsync(content);

        Assert.False(File.Exists(other.Store.Layout.ObjectPath(stored.Id)));
        Assert.True(await other.Store.ExistsAsync(stored.Id, TestContext.Current.CancellationToken));
        Assert.Equal(content, await other.ReadAllAsync(stored.Id));
    }

    [Fact]
    public async Task Lost_keys_with_only_landed_objects_made_new_keys_over_them()
    {
        await using var archive = await WithSlotsAsync(2);
        await archive.PutAsync(Samples.Content(30_000, 17));
        // A crash left the object in its slot (objects/ is empty), then the key files went missing.
        Assert.Empty(Directory.GetFiles(archive.Store.Layout.Objects, "*", SearchOption.AllDirectories));
        File.Move(archive.Options.KeyFile!, archive.Options.KeyFile + ".moved");
        File.Move(archive.Store.Layout.RootKeyFile, archive.Store.Layout.RootKeyFile + ".moved");

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.ReopenAsync(LandingWithoutIdleWork));

        Assert.Contains("refusing to create new keys", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(archive.Options.KeyFile));
    }

    [Fact]
    public async Task A_landing_record_whose_object_does_not_read_back_is_set_aside_not_moved()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        var stored = await archive.PutAsync(Samples.Content(30_000, 5));
        var slot = Assert.Single(Slots(archive));
        // The record survived a cut that the object's data did not (they are flushed together).
        await using (var file = new FileStream(slot, FileMode.Open, FileAccess.Write))
        {
            file.Position = 10_000;
            file.WriteByte(0x5A);
        }

        await using var restarted = await archive.ReopenAsync(LandingWithoutIdleWork);

        Assert.False(File.Exists(restarted.Store.Layout.ObjectPath(stored.Id)));
        Assert.Single(Slots(restarted, "*.damaged"));
        Assert.Empty(Slots(restarted));
    }

    [Fact]
    public async Task A_landed_object_that_cannot_be_moved_at_start_stays_readable_in_its_slot()
    {
        await using var archive = await WithSlotsAsync(1);
        var content = Samples.Content(30_000, 15);
        var stored = await archive.PutAsync(content);
        // Something in the way of its fan-out folder, as a fault or a permission would be.
        var blocker = archive.Store.Layout.FanOutDirectory(stored.Id);
        await File.WriteAllBytesAsync(blocker, [1], TestContext.Current.CancellationToken);

        await using var restarted = await archive.ReopenAsync(LandingWithoutIdleWork);

        Assert.Equal(0, restarted.Initialization.LandedObjectsMoved);
        Assert.Equal(content, await restarted.ReadAllAsync(stored.Id));
        // /health says so until a move succeeds.
        var blocked = restarted.Store.Landing;
        Assert.Equal((1, "IOException"), (blocked.Landed, blocked.LastMoveFailure));
        Assert.NotNull(blocked.OldestLandedAt);
        File.Delete(blocker);
        await restarted.Store.MoveLandedAsync(TestContext.Current.CancellationToken);
        Assert.True(File.Exists(restarted.Store.Layout.ObjectPath(stored.Id)));
        Assert.Equal((0, null, null), (restarted.Store.Landing.Landed, restarted.Store.Landing.LastMoveFailure, restarted.Store.Landing.OldestLandedAt));
    }

    [Fact]
    public async Task An_object_too_large_for_its_slot_is_stored_the_ordinary_way()
    {
        await using var archive = await WithSlotsAsync(1);
        var content = Samples.Content(100_000, 6);

        var stored = await archive.PutAsync(content);

        Assert.Equal(0, archive.Store.Slots.LandedCount);
        Assert.True(File.Exists(archive.Store.Layout.ObjectPath(stored.Id)));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
    }

    [Fact]
    public async Task An_object_that_fills_its_slot_up_to_the_record_is_cut_to_size_and_stored_the_ordinary_way()
    {
        await using var archive = await WithSlotsAsync(1);
        // Past the record's page but within the slot: the zeros after it must not stay in the object file.
        var content = Samples.Content(SlotBytes - 3000, 7);

        var stored = await archive.PutAsync(content);

        Assert.Equal(0, archive.Store.Slots.LandedCount);
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
    }

    [Fact]
    public async Task Equal_content_landed_twice_is_a_duplicate_and_the_second_slot_is_dropped()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(2);
        var content = Samples.Content(30_000, 8);
        var first = await archive.PutAsync(content);

        await using (var spool = await archive.SpoolAsync(content))
        {
            var again = await archive.Store.CommitAsync(spool, ct);
            Assert.True(again.AlreadyStored);
            await archive.Store.ConfirmStoredAsync(spool, ct);
        }

        Assert.Equal(first.Id, (await archive.PutAsync(content)).Id);
        Assert.Single(Slots(archive));
        Assert.Equal(content, await archive.ReadAllAsync(first.Id));
    }

    [Fact]
    public async Task A_slot_spool_sent_to_quarantine_is_cut_to_the_object_and_reads_back()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        var content = Samples.Content(30_000, 9);
        await using var spool = await archive.SpoolAsync(content);
        // Inspection reads the spool before the verdict: the slot's zeros are not part of it.
        await using (var reader = await spool.OpenReaderAsync(ct))
        {
            Assert.Equal(content.Length, reader.Length);
        }

        var quarantined = await archive.Store.QuarantineAsync(spool, "test: inert marker", ct);

        await using var opened = await archive.Store.OpenQuarantinedAsync(quarantined.QuarantineId, ct);
        Assert.Equal(content.Length, opened.Length);
        Assert.Equal(0, archive.Store.Slots.LandedCount);
    }

    [Fact]
    public async Task Retention_removes_a_landed_object_where_it_is()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        var stored = await archive.PutAsync(Samples.Content(30_000, 10));

        Assert.True(await archive.Store.DeleteObjectAsync(stored.Id, ct));

        Assert.False(await archive.Store.ExistsAsync(stored.Id, ct));
        Assert.Empty(Slots(archive));
    }

    [Fact]
    public async Task A_scrub_moves_landed_objects_first_and_finds_them_healthy()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(2);
        await archive.IngestAsync(Samples.Content(30_000, 11), Samples.Entry(1, 1, 1, 1));
        await archive.IngestAsync(Samples.Content(30_000, 12), Samples.Entry(1, 1, 1, 2));
        Assert.Equal(2, archive.Store.Slots.LandedCount);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);

        Assert.True(report.IsClean, report.ToString());
        Assert.Equal(2, report.Healthy);
        Assert.Equal(0, archive.Store.Slots.LandedCount);
    }

    [Fact]
    public async Task Scrub_reported_missing_an_indexed_object_still_in_its_slot()
    {
        // The slot keeps it when its move fails (here a file in the way of its fan-out folder), as it does for an object a
        // running node lands while a scrub walks objects/: checked where it is, never "missing".
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(1);
        var (stored, _) = await archive.IngestAsync(Samples.Content(30_000, 16), Samples.Entry(1, 1, 1, 1));
        var blocker = archive.Store.Layout.FanOutDirectory(stored.Id);
        await File.WriteAllBytesAsync(blocker, [1], ct);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);

        Assert.Equal((0, 1L), (report.Missing, report.Healthy));
        Assert.Equal(1, archive.Store.Slots.LandedCount);
        // The blocker itself is what the scrub names.
        Assert.Equal(ScrubFindingKind.Foreign, Assert.Single(report.Findings).Kind);
    }

    [Fact]
    public async Task Key_rotation_covers_landed_objects_and_leaves_untaken_slots_alone()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await WithSlotsAsync(3);
        var content = Samples.Content(30_000, 13);
        var stored = await archive.PutAsync(content);

        var report = await archive.Rotation.RotateAsync(ct);

        Assert.True(report.Completed, string.Join("; ", report.Failures));
        Assert.Equal(0, report.Remaining);
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
    }
}
