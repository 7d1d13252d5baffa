using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Tests;

public sealed class RotationTests
{
    private static async Task<List<(ObjectId Id, byte[] Content)>> FillAsync(ArchiveHarness archive, int count)
    {
        var stored = new List<(ObjectId, byte[])>();
        for (var i = 0; i < count; i++)
        {
            var content = Samples.Content(1000 + i * 700, i);
            var (committed, _) = await archive.IngestAsync(content, Samples.Entry(i % 3, 1, 1, i));
            stored.Add((committed.Id, content));
        }

        return stored;
    }

    private static async Task<HashSet<Guid>> KeysInUseAsync(ArchiveHarness archive)
    {
        var used = new HashSet<Guid>();
        foreach (var file in Directory.EnumerateFiles(archive.Store.Layout.Objects, "*", SearchOption.AllDirectories)
                     .Concat(Directory.EnumerateFiles(archive.Store.Layout.Quarantine, "*.vobj")))
        {
            var header = new byte[ObjectFormat.HeaderSize];
            await using var stream = File.OpenRead(file);
            await stream.ReadExactlyAsync(header, TestContext.Current.CancellationToken);
            foreach (var slot in ObjectFormat.ParseHeader(header, file).Slots.Where(s => s.Used))
            {
                used.Add(slot.KeyId);
            }
        }

        return used;
    }

    /// <summary>
    /// Regression: a 0-byte spool left by a process killed before it wrote its header counted as "still under a
    /// retiring key", so every rotation ended incomplete, the old key kept, until a start swept the spool hours later.
    /// One being written now (recently touched) still counts.
    /// </summary>
    [Fact]
    public async Task Regression_an_empty_spool_left_by_a_killed_process_kept_every_rotation_from_completing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        await FillAsync(archive, 2);
        var abandoned = Path.Combine(archive.Store.Layout.Spool, "293aaabcb8a4e883c5c052ef493f260f.spool");
        await File.WriteAllBytesAsync(abandoned, [], ct);
        var fresh = await archive.Rotation.RotateAsync(ct);
        Assert.False(fresh.Completed);
        Assert.Equal(1, fresh.Remaining);

        File.SetLastWriteTimeUtc(abandoned, DateTime.UtcNow - TimeSpan.FromHours(1));
        var report = await archive.Rotation.RotateAsync(ct);
        Assert.True(report.Completed, $"{report.Remaining} remaining");
    }

    [Fact]
    public async Task Rotation_rewraps_every_data_key_without_touching_the_data_and_retires_the_old_key()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var stored = await FillAsync(archive, 12);
        await using (var spool = await archive.SpoolAsync(Samples.Content(3000, 99)))
        {
            var quarantined = await archive.Store.QuarantineAsync(spool, "test", ct);
            await using var connection = await archive.Database.OpenConnectionAsync(ct);
            await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
            await archive.Index.AddQuarantineAsync(connection, transaction,
                new QuarantineEntry(quarantined.QuarantineId, quarantined.Id, quarantined.Length, "test", quarantined.QuarantinedAt), ct);
            await transaction.CommitAsync(ct);
        }

        var oldKey = Assert.Single(await archive.Keks.ListAsync(ct)).Id;
        var before = stored.ToDictionary(s => s.Id, s => File.ReadAllBytes(archive.Store.Layout.ObjectPath(s.Id))[ObjectFormat.HeaderSize..]);
        var hashBefore = archive.Keys.HashIdentifier(IdentifierKinds.StudyInstanceUid, Samples.StudyUid(0, 1));

        var report = await archive.Rotation.RotateAsync(ct);

        Assert.True(report.Completed, string.Join("; ", report.Failures));
        Assert.False(report.Resumed);
        Assert.Equal(13, report.Rewrapped);
        Assert.Equal([oldKey], report.RetiringKeyIds);
        var keys = await archive.Keks.ListAsync(ct);
        Assert.Equal(report.ActiveKeyId, Assert.Single(keys).Id);
        Assert.Equal([report.ActiveKeyId], await KeysInUseAsync(archive));

        await using var restarted = await archive.ReopenAsync();
        foreach (var (id, content) in stored)
        {
            Assert.Equal(content, await restarted.ReadAllAsync(id));
            // Only the header changed: every segment and the trailer are the same bytes.
            Assert.Equal(before[id], File.ReadAllBytes(archive.Store.Layout.ObjectPath(id))[ObjectFormat.HeaderSize..]);
        }

        // Derived keys hang off the root key, not the KEK: index hashes and object ids do not move.
        Assert.Equal(hashBefore, restarted.Keys.HashIdentifier(IdentifierKinds.StudyInstanceUid, Samples.StudyUid(0, 1)));
        Assert.Equal(stored[0].Id, (await restarted.PutAsync(stored[0].Content)).Id);
        Assert.Equal(report.ActiveKeyId, await restarted.Keys.RootKeyWrappedUnderAsync(ct));
        Assert.True((await restarted.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    [Fact]
    public async Task A_rotation_started_while_another_runs_stops_at_once_and_changes_nothing()
    {
        // Regression: two rotations at once (two hosts on one shared key file) each added a key and saved the file by
        // replacing it, so the key one of them had wrapped the root key under could be kept nowhere.
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        await FillAsync(archive, 2);
        var keyFile = archive.Keks.KeyFilePath;
        var before = await File.ReadAllBytesAsync(keyFile, ct);
        await using (new FileStream(keyFile + ".rotation.lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.Rotation.RotateAsync(ct));
            Assert.Contains("Another key rotation is running", error.Message, StringComparison.Ordinal);
        }

        Assert.Equal(before, await File.ReadAllBytesAsync(keyFile, ct));
        Assert.True((await archive.Rotation.RotateAsync(ct)).Completed);
    }

    /// <summary>
    /// Regression: any failure to make the rotation lock (a read-only or full keys folder) was reported as "another key
    /// rotation is running", sending the operator to look for a process that does not exist.
    /// </summary>
    [Fact]
    public async Task Regression_a_lock_that_cannot_be_made_was_reported_as_another_rotation()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        await FillAsync(archive, 1);
        // Root may write anywhere: a folder where the lock file goes fails the open the way a read-only folder does.
        Directory.CreateDirectory(archive.Keks.KeyFilePath + ".rotation.lock");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.Rotation.RotateAsync(ct));
        Assert.Contains("cannot be made", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Another key rotation", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_interrupted_rotation_loses_nothing_and_a_second_run_finishes_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.RotationBatchSize = 4);
        var stored = await FillAsync(archive, 10);
        var oldKey = Assert.Single(await archive.Keks.ListAsync(ct)).Id;

        var seen = 0;
        archive.Rotation.AfterNewSlotWritten = _ =>
        {
            if (++seen == 6)
            {
                throw new IOException("simulated crash in the middle of a rotation");
            }
        };
        await Assert.ThrowsAsync<IOException>(async () => await archive.Rotation.RotateAsync(ct));

        // "After the crash": a new process with the key file as it was left.
        await using var restarted = await archive.ReopenAsync();
        var keys = await restarted.Keks.ListAsync(ct);
        Assert.Equal(2, keys.Count);
        Assert.Equal(KeyEncryptionKeyState.DecryptOnly, keys.Single(k => k.Id == oldKey).State);
        var inUse = await KeysInUseAsync(restarted);
        Assert.Contains(oldKey, inUse);
        Assert.Equal(2, inUse.Count);
        foreach (var (id, content) in stored)
        {
            Assert.Equal(content, await restarted.ReadAllAsync(id));
        }

        // New objects go under the new key while the rotation is pending.
        var fresh = await restarted.PutAsync(Samples.Content(500, 1234));
        await using (var reader = await restarted.Store.OpenReadAsync(fresh.Id, ct))
        {
            Assert.NotEqual(oldKey, reader.KeyId);
        }

        var report = await restarted.Rotation.RotateAsync(ct);
        Assert.True(report.Resumed);
        Assert.True(report.Completed);
        Assert.Equal([oldKey], report.RetiringKeyIds);
        Assert.Equal(report.ActiveKeyId, Assert.Single(await restarted.Keks.ListAsync(ct)).Id);
        Assert.Equal([report.ActiveKeyId], await KeysInUseAsync(restarted));
        foreach (var (id, content) in stored)
        {
            Assert.Equal(content, await restarted.ReadAllAsync(id));
        }
    }

    [Fact]
    public async Task A_torn_slot_write_falls_back_to_the_other_slot()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(9000, 3);
        var id = (await archive.PutAsync(content)).Id;
        var path = archive.Store.Layout.ObjectPath(id);

        // A half-written newer slot (generation 2, garbage wrapped key) in the free slot.
        var bytes = await File.ReadAllBytesAsync(path, ct);
        var slot = new byte[ObjectFormat.SlotSize];
        ObjectFormat.WriteSlot(slot, 2, Guid.NewGuid(), Samples.Content(60, 4));
        slot.AsSpan(0, 100).CopyTo(bytes.AsSpan(ObjectFormat.SlotOffset(1)));
        await File.WriteAllBytesAsync(path, bytes, ct);
        Assert.Equal(content, await archive.ReadAllAsync(id));

        // With a known key id but a broken wrap, too.
        var known = (await archive.Keks.ListAsync(ct))[0].Id;
        ObjectFormat.WriteSlot(slot, 2, known, Samples.Content(60, 5));
        slot.CopyTo(bytes.AsSpan(ObjectFormat.SlotOffset(1)));
        await File.WriteAllBytesAsync(path, bytes, ct);
        Assert.Equal(content, await archive.ReadAllAsync(id));

        // A rotation repairs it: the torn slot is overwritten, the good one cleared after.
        var report = await archive.Rotation.RotateAsync(ct);
        Assert.True(report.Completed);
        Assert.Equal(content, await archive.ReadAllAsync(id));
    }

    [Fact]
    public async Task Rotating_twice_retires_each_generation_of_keys()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var stored = await FillAsync(archive, 3);
        var first = await archive.Rotation.RotateAsync(ct);
        var second = await archive.Rotation.RotateAsync(ct);
        Assert.True(first.Completed && second.Completed);
        Assert.NotEqual(first.ActiveKeyId, second.ActiveKeyId);
        Assert.Equal([first.ActiveKeyId], second.RetiringKeyIds);
        Assert.Equal([second.ActiveKeyId], await KeysInUseAsync(archive));
        foreach (var (id, content) in stored)
        {
            Assert.Equal(content, await archive.ReadAllAsync(id));
        }
    }
}
