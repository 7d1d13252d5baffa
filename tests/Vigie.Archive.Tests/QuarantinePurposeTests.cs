using System.Security.Cryptography;
using Vigie.Archive.Index;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>
/// An attacker with the data folder and the index (not the keys) copies a quarantined object into objects/ and points an
/// instance's rows at it: the quarantined object must never open as an archive object. Run on SQLite and on PostgreSQL.
/// </summary>
public sealed class QuarantinePurposeTests
{
    /// <summary>
    /// Regression (review 22 N1): quarantine/&lt;qid&gt;.vobj copied to objects/ under its object id (readable in
    /// archive_quarantine), with the version and object rows pointed at it, opened as the instance's object: scrub was
    /// clean and C-GET served the malicious content. A quarantined object's data key is now wrapped for quarantine.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_quarantined_object_swapped_into_objects_opened_as_an_archive_object(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var sop = Samples.SopUid(1, 1, 1, 1);
        var (good, rows) = await archive.IngestAsync(IndexTamperTests.Dicom(sop, 1), Samples.Entry(1, 1, 1, 1));
        var quarantined = await QuarantineAsync(archive, IndexTamperTests.Dicom(sop, 66));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        await SwapInAsync(archive, quarantined, good, rows.InstanceRowId);

        var refused = await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.Store.OpenReadAsync(quarantined.Id, ct));
        Assert.Equal(ObjectProblem.Quarantined, refused.Problem);
        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        var finding = Assert.Single(report.Findings, f => f.ObjectId == quarantined.Id && f.Location.StartsWith("objects", StringComparison.Ordinal));
        Assert.Equal(ObjectProblem.Quarantined, finding.Problem);
        Assert.Contains(finding.References, r => r.InstanceRowId == rows.InstanceRowId);
        // Still what it is in quarantine, for the analyst.
        await using (var reader = await archive.Store.OpenQuarantinedAsync(quarantined.QuarantineId, ct))
        {
            Assert.Equal(quarantined.Id, reader.Id);
        }

        // Key rotation keeps the purpose: after it, the copy is still refused and the quarantine file still opens.
        for (var pass = 0; pass < 4 && !(await archive.Rotation.RotateAsync(ct)).Completed; pass++)
        {
        }

        Assert.Equal(ObjectProblem.Quarantined,
            (await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.Store.OpenReadAsync(quarantined.Id, ct))).Problem);
        await using (var reader = await archive.Store.OpenQuarantinedAsync(quarantined.QuarantineId, ct))
        {
            await reader.VerifyAsync(ct);
        }

        // Deleting the quarantine record first changes nothing: the purpose is in the file.
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine");
        Assert.Equal(ObjectProblem.Quarantined,
            (await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.Store.OpenReadAsync(quarantined.Id, ct))).Problem);
        var afterDeletion = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Contains(afterDeletion.Findings, f => f.ObjectId == quarantined.Id && f.Problem == ObjectProblem.Quarantined);
        // The quarantine file itself is named for what it is, not as a commit cut short.
        Assert.Contains(afterDeletion.Findings, f => f.Kind == ScrubFindingKind.Orphan && f.Location.StartsWith("quarantine", StringComparison.Ordinal)
                                                     && f.Reason.Contains("no quarantine record names", StringComparison.Ordinal));
    }

    /// <summary>
    /// Quarantine files written before 2026-12-07 hold a key wrapped as an archive object's. Until the first start re-wraps
    /// them, the archive refuses every object id a quarantine record names; the start re-wraps them (and a copy of one
    /// already put in objects/), records it, and from then on the purpose is in the file.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_quarantine_files_of_an_earlier_version_are_refused_then_rewrapped_at_start(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var sop = Samples.SopUid(1, 1, 1, 1);
        var (good, rows) = await archive.IngestAsync(IndexTamperTests.Dicom(sop, 1), Samples.Entry(1, 1, 1, 1));
        var quarantined = await QuarantineAsync(archive, IndexTamperTests.Dicom(sop, 66));

        // What an earlier version wrote: the quarantine file's key wrapped as an archive object's, and no binding recorded.
        await WrapAsArchiveObjectAsync(archive, archive.Store.Layout.QuarantinePath(quarantined.QuarantineId));
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine_binding");
        await SwapInAsync(archive, quarantined, good, rows.InstanceRowId);

        // A command before the first start (CheckIndexAsync, as the CLI does): the quarantined id is refused.
        await archive.Initializer.CheckIndexAsync(ct);
        Assert.Equal(ObjectProblem.Quarantined,
            (await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.Store.OpenReadAsync(quarantined.Id, ct))).Problem);
        Assert.Contains((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).Findings, f => f.ObjectId == quarantined.Id && f.Problem == ObjectProblem.Quarantined);

        // The start re-wraps the quarantine file and the copy, and records it.
        await using var started = await archive.ReopenAsync(o => o.OrphanGrace = TimeSpan.Zero);
        Assert.Null(await started.Index.FindLegacyQuarantinedAsync(ct));
        Assert.Equal(ObjectProblem.Quarantined,
            (await Assert.ThrowsAsync<ObjectFormatException>(async () => await started.Store.OpenReadAsync(quarantined.Id, ct))).Problem);
        await using (var reader = await started.Store.OpenQuarantinedAsync(quarantined.QuarantineId, ct))
        {
            await reader.VerifyAsync(ct);
        }

        // A fresh copy of the re-wrapped file is refused by its key, with the record gone too.
        File.Copy(started.Store.Layout.QuarantinePath(quarantined.QuarantineId), started.Store.Layout.ObjectPath(quarantined.Id), overwrite: true);
        await ExecuteAsync(started, "DELETE FROM archive_quarantine");
        await using var again = await started.ReopenAsync(o => o.OrphanGrace = TimeSpan.Zero);
        Assert.Equal(ObjectProblem.Quarantined,
            (await Assert.ThrowsAsync<ObjectFormatException>(async () => await again.Store.OpenReadAsync(quarantined.Id, ct))).Problem);
    }

    /// <summary>
    /// Bug: maintenance scheduled the deletion of a quarantine file whose record was deleted under an empty object id, so
    /// the file stayed and came back at every run.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_quarantine_file_without_its_record_was_scheduled_for_deletion_under_an_empty_object_id(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var quarantined = await QuarantineAsync(archive, IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 1), 66));
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine");

        await archive.Scrub.RunAsync(new ScrubRequest { ScheduleOrphanDeletion = true }, ct);

        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, "SELECT kind, name FROM archive_deletions");
        await using var rows = await command.ExecuteReaderAsync(ct);
        Assert.True(await rows.ReadAsync(ct));
        Assert.Equal(("quarantine", quarantined.QuarantineId), (rows.GetString(0), rows.GetString(1)));
        Assert.False(await rows.ReadAsync(ct));
    }

    private static async Task<QuarantinedObject> QuarantineAsync(ArchiveHarness archive, byte[] content)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var spool = await archive.SpoolAsync(content);
        var quarantined = await archive.Store.QuarantineAsync(spool, "Malicious (test)", ct);
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
        await archive.Index.AddQuarantineAsync(connection, transaction,
            new QuarantineEntry(quarantined.QuarantineId, quarantined.Id, quarantined.Length, "Malicious (test)", quarantined.QuarantinedAt), ct);
        await transaction.CommitAsync(ct);
        return quarantined;
    }

    /// <summary>The attack: the quarantine file copied into objects/ under its object id, the rows pointed at it, the old file removed.</summary>
    private static async Task SwapInAsync(ArchiveHarness archive, QuarantinedObject quarantined, CommittedObject good, long instanceRow)
    {
        var layout = archive.Store.Layout;
        Directory.CreateDirectory(layout.FanOutDirectory(quarantined.Id));
        File.Copy(layout.QuarantinePath(quarantined.QuarantineId), layout.ObjectPath(quarantined.Id));
        await ExecuteAsync(archive, $"UPDATE archive_versions SET object_id = @o, length = {quarantined.Length} WHERE instance_id = {instanceRow}",
            ("@o", quarantined.Id.ToArray()));
        await ExecuteAsync(archive, $"UPDATE archive_objects SET object_id = @o, length = {quarantined.Length} WHERE object_id = @g",
            ("@o", quarantined.Id.ToArray()), ("@g", good.Id.ToArray()));
        File.Delete(layout.ObjectPath(good.Id));
    }

    /// <summary>Re-wraps a file's data key the way versions before 2026-12-07 wrapped quarantined objects: as an archive object's.</summary>
    private static async Task WrapAsArchiveObjectAsync(ArchiveHarness archive, string path)
    {
        var ct = TestContext.Current.CancellationToken;
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        var bytes = new byte[ObjectFormat.HeaderSize];
        await RandomAccess.ReadAsync(handle, bytes, 0, ct);
        var header = ObjectFormat.ParseHeader(bytes, path);
        var (key, slot, purpose) = await DataKeys.OpenAsync(header, archive.Keks, path, KeyPurpose.Quarantine, ct);
        Assert.Equal(KeyPurpose.Quarantine, purpose);
        var generation = header.Slots[slot].Generation + 1;
        var wrapped = await archive.Keks.WrapAsync(key, ObjectFormat.DataKeyContext(header.Prefix, generation), ct);
        CryptographicOperations.ZeroMemory(key);
        var slotBytes = new byte[ObjectFormat.SlotSize];
        ObjectFormat.WriteSlot(slotBytes, generation, wrapped.KeyId, wrapped.Wrapped);
        await RandomAccess.WriteAsync(handle, slotBytes, ObjectFormat.SlotOffset(1 - slot), ct);
        await RandomAccess.WriteAsync(handle, new byte[ObjectFormat.SlotSize], ObjectFormat.SlotOffset(slot), ct);
    }

    private static async Task ExecuteAsync(ArchiveHarness archive, string sql, params (string Name, object Value)[] parameters)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
        await using var command = connection.CreateCommand(transaction, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }
}
