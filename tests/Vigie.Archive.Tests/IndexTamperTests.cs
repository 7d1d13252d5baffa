using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive.Index;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>
/// An attacker with write access to the index (not the keys): rows moved under another parent, instance rows deleted
/// beside their object row, version rows pointed elsewhere or rolled back. Run on SQLite and on PostgreSQL.
/// </summary>
public sealed class IndexTamperTests
{
    /// <summary>
    /// Regression: one UPDATE of archive_studies.patient_id (or archive_instances.series_id) filed a study or an image under
    /// another patient; queries and retrieves for that patient then served it, and scrub was clean. Rows are now sealed
    /// bound to their parent's key hash: a moved row is left out of every answer and named by scrub.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_row_relinked_under_another_patient_was_served_and_scrub_was_clean(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var dupont = (await archive.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1))).Index;
        var martin = (await archive.IngestAsync(Dicom(Samples.SopUid(2, 1, 1, 1), 2), Samples.Entry(2, 1, 1, 1))).Index;
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        // The study moved under the other patient.
        await ExecuteAsync(archive, $"UPDATE archive_studies SET patient_id = {martin.PatientRowId} WHERE id = {dupont.StudyRowId}");
        var served = await InstancesOfAsync(archive, Samples.PatientId(2));
        Assert.Equal([martin.InstanceRowId], served.Matches.Select(m => m.InstanceRowId!.Value));
        Assert.Contains(new IndexRowRef(QueryLevel.Study, dupont.StudyRowId), served.Tampered);
        Assert.Empty((await InstancesOfAsync(archive, Samples.PatientId(1))).Matches);
        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        var finding = Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.IndexTampered);
        Assert.Equal($"index archive_studies #{dupont.StudyRowId}", finding.Location);
        Assert.Equal(1, report.IndexTampered);

        // Put back, then the instance moved into the other patient's series.
        await ExecuteAsync(archive, $"UPDATE archive_studies SET patient_id = {dupont.PatientRowId} WHERE id = {dupont.StudyRowId}");
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
        await ExecuteAsync(archive, $"UPDATE archive_instances SET series_id = {martin.SeriesRowId} WHERE id = {dupont.InstanceRowId}");
        served = await InstancesOfAsync(archive, Samples.PatientId(2));
        Assert.Equal([martin.InstanceRowId], served.Matches.Select(m => m.InstanceRowId!.Value));
        Assert.Contains(new IndexRowRef(QueryLevel.Instance, dupont.InstanceRowId), served.Tampered);
        Assert.Empty(await archive.Index.FindStoredInstancesAsync([Samples.SopUid(1, 1, 1, 1)], ct));
        report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal($"index archive_instances #{dupont.InstanceRowId}", Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.IndexTampered).Location);
    }

    /// <summary>
    /// Rows written before the parent binding (an archive of an earlier version) must keep working: they open in their
    /// old form until the node's first start re-seals them (ArchiveInitializer), after which only the bound form opens.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_rows_sealed_before_the_parent_binding_keep_working_and_are_resealed(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var dupont = (await archive.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1))).Index;
        var martin = (await archive.IngestAsync(Dicom(Samples.SopUid(2, 1, 1, 1), 2), Samples.Entry(2, 1, 1, 1))).Index;

        // What an earlier version wrote: attributes sealed with the row's key hash only, and no binding done.
        await ExecuteAsync(archive, "DELETE FROM archive_seal_binding");
        foreach (var (level, table, key) in new[] { (1, "archive_studies", "study_uid"), (2, "archive_series", "series_uid"), (3, "archive_instances", "sop_uid") })
        {
            await RewriteAsync(archive, table, key, (rowKey, sealedAttributes, parentKey, version) =>
                archive.Keys.Seal(archive.Keys.Open(sealedAttributes, SqlArchiveIndex.BoundContext(level, rowKey, parentKey, version)),
                    SqlArchiveIndex.AttributesContext(level, rowKey)), level);
        }

        // Before the node's first start on the new version (a process that has not bound them: the CLI), they open as they are.
        var index = new SqlArchiveIndex(archive.Database, archive.Keys, Microsoft.Extensions.Options.Options.Create(archive.Options), TimeProvider.System);
        Assert.Equal(2, (await index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, []), ct)).Matches.Count);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        // The start re-seals them bound to their parent, once (ArchiveInitializer), and records it.
        await using var started = await archive.ReopenAsync();
        Assert.Equal((0, 0), await started.Index.BindLegacySealsAsync(ct));
        Assert.Equal(2, (await index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, []), ct)).Matches.Count);
        Assert.True((await started.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        // From then on a moved row fails, and so does the old form: a legacy blob put back (from a backup) no longer opens.
        await ExecuteAsync(started, $"UPDATE archive_studies SET patient_id = {martin.PatientRowId} WHERE id = {dupont.StudyRowId}");
        var served = await index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, [new QueryKey(DicomTags.PatientId, Samples.PatientId(2))]), ct);
        Assert.Equal([martin.InstanceRowId], served.Matches.Select(m => m.InstanceRowId!.Value));
        Assert.Equal(1, (await started.Scrub.RunAsync(new ScrubRequest(), ct)).IndexTampered);
        await ExecuteAsync(started, $"UPDATE archive_studies SET patient_id = {dupont.PatientRowId} WHERE id = {dupont.StudyRowId}");
        await RewriteAsync(started, "archive_series", "series_uid", (rowKey, sealedAttributes, parentKey, version) =>
            started.Keys.Seal(started.Keys.Open(sealedAttributes, SqlArchiveIndex.BoundContext(2, rowKey, parentKey, version)),
                SqlArchiveIndex.AttributesContext(2, rowKey)), 2);
        Assert.Equal(2, (await started.Scrub.RunAsync(new ScrubRequest(), ct)).IndexTampered);
    }

    /// <summary>
    /// Regression: deleting an instance's version and instance rows but keeping its archive_objects row removed an
    /// acknowledged image from every answer, while scrub called its object healthy and neither recovery nor maintenance
    /// filed it again. An object that only its object row names is now unreferenced, like one with no row at all.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_an_object_row_without_its_instance_rows_was_healthy_and_never_filed_again(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var (lost, stored) = await archive.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1));
        await archive.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 2), 2), Samples.Entry(1, 1, 1, 2));
        await ExecuteAsync(archive, $"DELETE FROM archive_versions WHERE instance_id = {stored.InstanceRowId}");
        await ExecuteAsync(archive, $"DELETE FROM archive_instances WHERE id = {stored.InstanceRowId}");

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        Assert.Equal(lost.Id, Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.Orphan).ObjectId);
        Assert.Equal([lost.Id], await archive.Index.FindUnreferencedAsync([lost.Id], ct));

        // Maintenance offers it to recovery's filing (ArchiveRecovery.FileOrphanAsync in the gateway), never to deletion.
        var offered = new List<ObjectId>();
        var scrub = new ScrubService(archive.Database, archive.Store, archive.Keys, Microsoft.Extensions.Options.Options.Create(archive.Options),
            NullLogger<ScrubService>.Instance);
        var maintenance = await scrub.RunAsync(new ScrubRequest
        {
            ScheduleOrphanDeletion = true,
            FileOrphan = async (orphan, token) =>
            {
                offered.Add(orphan.Id);
                await using var connection = await archive.Database.OpenConnectionAsync(token);
                await using var transaction = await archive.Database.BeginWriteAsync(connection, token);
                await archive.Index.StoreInstanceAsync(connection, transaction, Samples.Entry(1, 1, 1, 1) with { ObjectId = orphan.Id, ObjectLength = lost.Length }, token);
                await transaction.CommitAsync(token);
                return true;
            },
        }, ct);
        Assert.Equal([lost.Id], offered);
        Assert.Equal(1, maintenance.OrphansFiled);
        Assert.Equal(0, maintenance.OrphansScheduled);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    /// <summary>
    /// Regression: a version row pointed at another instance's object, or an instance rolled back to a superseded
    /// version (its newer version row deleted), passed scrub; the rollback was also served. Scrub now compares each
    /// object's own SOP Instance UID with the instances whose versions name it, checks the version rows against the
    /// current version, and the instance row is sealed bound to its current version.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_version_row_pointed_elsewhere_or_rolled_back_passed_scrub(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var (first, firstRows) = await archive.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1));
        var (other, _) = await archive.IngestAsync(Dicom(Samples.SopUid(2, 1, 1, 1), 2), Samples.Entry(2, 1, 1, 1));
        await ExecuteAsync(archive, $"UPDATE archive_versions SET object_id = @o, length = {other.Length} WHERE instance_id = {firstRows.InstanceRowId}",
            ("@o", other.Id.ToArray()));

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        var pointed = Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.IndexTampered);
        Assert.Equal(other.Id, pointed.ObjectId);
        Assert.Contains($"instance #{firstRows.InstanceRowId} v1", pointed.Reason, StringComparison.Ordinal);
        // Its own object, now named by its object row only, is unreferenced.
        Assert.Equal(first.Id, Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.Orphan).ObjectId);

        // Rolled back: a corrected version 2, then current_version = 1, version 1 not superseded, version 2's row deleted.
        await using var rollback = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        var (_, v1) = await rollback.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1));
        var (v2Object, v2) = await rollback.IngestAsync(Dicom(Samples.SopUid(1, 1, 1, 1), 3), Samples.Entry(1, 1, 1, 1));
        Assert.Equal(2, v2.Version);
        await ExecuteAsync(rollback, $"UPDATE archive_instances SET current_version = 1 WHERE id = {v1.InstanceRowId}");
        await ExecuteAsync(rollback, $"UPDATE archive_versions SET superseded_at = NULL WHERE instance_id = {v1.InstanceRowId} AND version = 1");
        await ExecuteAsync(rollback, $"DELETE FROM archive_versions WHERE instance_id = {v1.InstanceRowId} AND version = 2");

        var served = await rollback.Index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, []), ct);
        Assert.Empty(served.Matches);
        Assert.Equal([new IndexRowRef(QueryLevel.Instance, v1.InstanceRowId)], served.Tampered);
        report = await rollback.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal($"index archive_instances #{v1.InstanceRowId}", Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.IndexTampered).Location);
        Assert.Equal(v2Object.Id, Assert.Single(report.Findings, f => f.Kind == ScrubFindingKind.Orphan).ObjectId);

        // Versions that disagree with the current one are named too (here: version 1 no longer superseded, none current).
        await ExecuteAsync(rollback, $"UPDATE archive_instances SET current_version = 2 WHERE id = {v1.InstanceRowId}");
        report = await rollback.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Contains(report.Findings, f => f.Kind == ScrubFindingKind.IndexTampered && f.Reason.Contains("version rows disagree", StringComparison.Ordinal));
    }

    private static Task<QueryResult> InstancesOfAsync(ArchiveHarness archive, string patientId) =>
        archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, [new QueryKey(DicomTags.PatientId, patientId)]), TestContext.Current.CancellationToken)
            .AsTask();

    private static async Task ExecuteAsync(ArchiveHarness archive, string sql, (string Name, object Value)? parameter = null)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        if (parameter is { } p)
        {
            command.With(p.Name, p.Value);
        }

        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Rewrites each row's sealed attributes of <paramref name="table"/> with <paramref name="rewrite"/> (key, sealed, parent key, version).</summary>
    private static async Task RewriteAsync(ArchiveHarness archive, string table, string keyColumn, Func<byte[], byte[], byte[], int, byte[]> rewrite, int level)
    {
        var ct = TestContext.Current.CancellationToken;
        string[] parents = ["", "archive_patients p ON p.id = c.patient_id", "archive_studies p ON p.id = c.study_id", "archive_series p ON p.id = c.series_id"];
        string[] parentKeys = ["", "patient_key", "study_uid", "series_uid"];
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        var rows = new List<(long Id, byte[] Sealed)>();
        await using (var select = connection.CreateCommand(null, $"""
                         SELECT c.id, c.{keyColumn}, c.attributes, p.{parentKeys[level]}, {(level == 3 ? "c.current_version" : "0")}
                         FROM {table} c JOIN {parents[level]}
                         """))
        await using (var reader = await select.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                rows.Add((SqlArchiveIndex.ToLong(reader.GetValue(0)),
                    rewrite((byte[])reader.GetValue(1), (byte[])reader.GetValue(2), (byte[])reader.GetValue(3), (int)SqlArchiveIndex.ToLong(reader.GetValue(4)))));
            }
        }

        foreach (var (id, sealedAttributes) in rows)
        {
            await using var update = connection.CreateCommand(null, $"UPDATE {table} SET attributes = @a WHERE id = @i").With("@a", sealedAttributes).With("@i", id);
            await update.ExecuteNonQueryAsync(ct);
        }
    }

    /// <summary>A minimal DICOM file (preamble, meta group naming <paramref name="sopInstanceUid"/>), its content varied by <paramref name="seed"/>.</summary>
    internal static byte[] Dicom(string sopInstanceUid, int seed)
    {
        var meta = new MemoryStream();
        void Element(ushort element, string vr, byte[] value)
        {
            Span<byte> head = stackalloc byte[12];
            BinaryPrimitives.WriteUInt16LittleEndian(head, 0x0002);
            BinaryPrimitives.WriteUInt16LittleEndian(head[2..], element);
            Encoding.ASCII.GetBytes(vr, head[4..]);
            if (vr is "OB")
            {
                BinaryPrimitives.WriteUInt32LittleEndian(head[8..], (uint)value.Length);
                meta.Write(head);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(head[6..], (ushort)value.Length);
                meta.Write(head[..8]);
            }

            meta.Write(value);
        }

        static byte[] Uid(string uid) => Encoding.ASCII.GetBytes(uid.Length % 2 == 0 ? uid : uid + "\0");
        Element(0x0001, "OB", [0, 1]);
        Element(0x0002, "UI", Uid(Samples.CtImageStorage));
        Element(0x0003, "UI", Uid(sopInstanceUid));
        Element(0x0010, "UI", Uid("1.2.840.10008.1.2.1"));
        var group = new byte[12];
        BinaryPrimitives.WriteUInt16LittleEndian(group, 0x0002);
        Encoding.ASCII.GetBytes("UL", group.AsSpan(4));
        BinaryPrimitives.WriteUInt16LittleEndian(group.AsSpan(6), 4);
        BinaryPrimitives.WriteUInt32LittleEndian(group.AsSpan(8), (uint)meta.Length);
        // A private-free dataset element whose value varies with the seed: (0020,4000) Image Comments.
        var comment = Encoding.ASCII.GetBytes($"SEED {seed:D5}");
        var dataset = new byte[8 + comment.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(dataset, 0x0020);
        BinaryPrimitives.WriteUInt16LittleEndian(dataset.AsSpan(2), 0x4000);
        Encoding.ASCII.GetBytes("LT", dataset.AsSpan(4));
        BinaryPrimitives.WriteUInt16LittleEndian(dataset.AsSpan(6), (ushort)comment.Length);
        comment.CopyTo(dataset, 8);
        return [.. new byte[128], .. "DICM"u8, .. group, .. meta.ToArray(), .. dataset];
    }
}
