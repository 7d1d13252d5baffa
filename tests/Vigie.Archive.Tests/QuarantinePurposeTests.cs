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
        await archive.IngestAsync(IndexTamperTests.Dicom(sop, 1), Samples.Entry(1, 1, 1, 1));
        var quarantined = await QuarantineAsync(archive, IndexTamperTests.Dicom(sop, 66));

        // What an earlier version wrote: the quarantine file's key wrapped as an archive object's, and no binding recorded.
        await WrapAsArchiveObjectAsync(archive, archive.Store.Layout.QuarantinePath(quarantined.QuarantineId));
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine_binding");
        File.Delete(archive.Options.ResolveKeyFile() + ".quarantine-bound");
        // A copy put into objects/ that no version row names (one that a version row names is left as it is, since it cannot be told from a clean object copied into quarantine/: review 25 F1).
        Directory.CreateDirectory(archive.Store.Layout.FanOutDirectory(quarantined.Id));
        File.Copy(archive.Store.Layout.QuarantinePath(quarantined.QuarantineId), archive.Store.Layout.ObjectPath(quarantined.Id));

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
    /// Regression (review 25 F1): with the archive_quarantine_binding row deleted and a clean object's file copied into
    /// quarantine/, the start re-ran the re-wrap of earlier quarantine files over every file there, and over the original
    /// in objects/ (same nonce prefix): an acknowledged image was no longer served and scrub called it quarantined. The
    /// re-wrap is now recorded done beside the key file, touches only the files quarantine records name (holding their
    /// record's object), and never an object a version row names, even on the first start after an upgrade.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_reset_binding_row_and_a_copied_file_made_the_start_quarantine_a_clean_object(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var (good, _) = await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1));
        var (other, _) = await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 2), 2), Samples.Entry(1, 1, 1, 2));
        var layout = archive.Store.Layout;
        var original = await File.ReadAllBytesAsync(layout.ObjectPath(good.Id), ct);

        // The attack as reported: the binding row deleted, the file copied into quarantine/ with no record.
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine_binding");
        var planted = layout.QuarantinePath("0123456789abcdef0123456789abcdef");
        File.Copy(layout.ObjectPath(good.Id), planted);
        await using (var started = await archive.ReopenAsync(o => o.OrphanGrace = TimeSpan.Zero))
        {
            var report = await AssertServedAsync(started, good.Id, original);
            // The copy no record names is named for what it is, and left as it is, even by maintenance.
            Assert.Contains(report.Findings, f => f.Kind == ScrubFindingKind.Foreign && f.Location == "quarantine/0123456789abcdef0123456789abcdef.vobj");
            await started.Scrub.RunAsync(new ScrubRequest { ScheduleOrphanDeletion = true, RepairTerms = true }, ct);
            Assert.Equal(original, await File.ReadAllBytesAsync(planted, ct));
        }

        // The same, prepared before the first start after an upgrade (no record beside the key file yet), with forged
        // quarantine records naming the copy and another clean object's file under a record of its own.
        File.Delete(archive.Options.ResolveKeyFile() + ".quarantine-bound");
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine_binding");
        var forged = layout.QuarantinePath("fedcba9876543210fedcba9876543210");
        File.Copy(layout.ObjectPath(other.Id), forged);
        await ExecuteAsync(archive, "INSERT INTO archive_quarantine (quarantine_id, object_id, length, reason, quarantined_at) VALUES "
                                    + "('0123456789abcdef0123456789abcdef', @g, 1, @r, 1), ('fedcba9876543210fedcba9876543210', @o, 1, @r, 1)",
            ("@g", good.Id.ToArray()), ("@o", other.Id.ToArray()), ("@r", new byte[40]));
        await using (var upgraded = await archive.ReopenAsync(o => o.OrphanGrace = TimeSpan.Zero))
        {
            await AssertServedAsync(upgraded, good.Id, original);
            await using (var reader = await upgraded.Store.OpenReadAsync(other.Id, ct))
            {
                await reader.VerifyAsync(ct);
            }

            var report = await upgraded.Scrub.RunAsync(new ScrubRequest(), ct);
            Assert.DoesNotContain(report.Findings, f => f.Location.StartsWith("objects", StringComparison.Ordinal));
            Assert.True(File.Exists(upgraded.Options.ResolveKeyFile() + ".quarantine-bound"));
        }
    }

    /// <summary>The clean object still opens as an archive object, is byte for byte what was stored, and scrub names nothing in objects/.</summary>
    private static async Task<ScrubReport> AssertServedAsync(ArchiveHarness archive, ObjectId id, byte[] original)
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var reader = await archive.Store.OpenReadAsync(id, ct))
        {
            await reader.VerifyAsync(ct);
        }

        Assert.Equal(original, await File.ReadAllBytesAsync(archive.Store.Layout.ObjectPath(id), ct));
        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.DoesNotContain(report.Findings, f => f.ObjectId == id && f.Location.StartsWith("objects", StringComparison.Ordinal));
        Assert.DoesNotContain(report.Findings, f => f.Problem == ObjectProblem.Quarantined);
        return report;
    }

    /// <summary>
    /// Bug (review 33, 05): after the index was restored from a backup as deploy.md says, a file quarantined since had no
    /// record, and maintenance scheduled it and its .reason for deletion: the evidence of an attack was purged. (Before
    /// 2026-12-07 the same deletion was scheduled under an empty object id.) Maintenance now rebuilds the record from the
    /// sealed reason; a file whose reason does not open is kept and named. Neither is ever scheduled for deletion.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_an_index_restored_from_a_backup_made_maintenance_delete_quarantine_evidence(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var quarantined = await QuarantineAsync(archive, IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 1), 66));
        var unreadable = await QuarantineAsync(archive, IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 2), 67));
        var layout = archive.Store.Layout;
        await File.WriteAllBytesAsync(layout.QuarantineReasonPath(unreadable.QuarantineId), new byte[64], ct);
        // What the restored index lacks: the records of what was quarantined after the backup.
        await ExecuteAsync(archive, "DELETE FROM archive_quarantine");

        var report = await archive.Scrub.RunAsync(new ScrubRequest { ScheduleOrphanDeletion = true }, ct);
        await archive.Scrub.RunAsync(new ScrubRequest { ScheduleOrphanDeletion = true }, ct);

        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        await using (var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM archive_deletions"))
        {
            Assert.Equal(0L, Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
        }

        foreach (var id in new[] { quarantined.QuarantineId, unreadable.QuarantineId })
        {
            Assert.True(File.Exists(layout.QuarantinePath(id)));
            Assert.True(File.Exists(layout.QuarantineReasonPath(id)));
        }

        Assert.Equal(1, report.QuarantineRecordsRestored);
        var record = await archive.Index.FindQuarantineAsync(quarantined.QuarantineId, ct);
        Assert.NotNull(record);
        Assert.Equal((quarantined.Id, quarantined.Length, "Malicious (test)"), (record.ObjectId, record.Length, record.Reason));
        Assert.Null(await archive.Index.FindQuarantineAsync(unreadable.QuarantineId, ct));
        Assert.Contains(report.Findings, f => f.Kind == ScrubFindingKind.Orphan && f.Location == $"quarantine/{unreadable.QuarantineId}.vobj"
                                              && f.Reason.Contains("kept as evidence", StringComparison.Ordinal));
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
