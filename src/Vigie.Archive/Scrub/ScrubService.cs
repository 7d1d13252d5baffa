using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Retention;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Archive.Scrub;

/// <summary>
/// Checks every object file against the index: each one must open under our keys, authenticate segment by segment,
/// hash to its trailer, be the object its name says, and have the index's length; every index reference must have its
/// file; every file must be referenced. Runs fan-out folder by fan-out folder, so memory stays bounded.
/// </summary>
public sealed class ScrubService
{
    private readonly IVigieDatabase _database;
    private readonly FileObjectStore _store;
    private readonly ArchiveKeyService _keys;
    private readonly ArchiveOptions _options;
    private readonly ILogger<ScrubService> _logger;
    private readonly TimeProvider _time;
    private readonly string? _indexFile;
    private readonly IRetentionAudit? _audit;

    internal ScrubService(IVigieDatabase database, FileObjectStore store, ArchiveKeyService keys, IOptions<ArchiveOptions> options,
        ILogger<ScrubService> logger, TimeProvider? time = null, string? indexFile = null, IRetentionAudit? audit = null)
    {
        _audit = audit;
        _indexFile = indexFile is null ? null : Path.GetFullPath(indexFile);
        _database = database;
        _store = store;
        _keys = keys;
        _options = options.Value;
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    public async Task<ScrubReport> RunAsync(ScrubRequest request, CancellationToken cancellationToken)
    {
        using var activity = ArchiveTelemetry.Source.StartActivity("archive.scrub");
        await _keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var started = Stopwatch.GetTimestamp();
        // Objects still in landing slots are checked where they are kept for good.
        await _store.MoveLandedAsync(cancellationToken).ConfigureAwait(false);
        var state = new State(_options.ScrubMaxFindings);
        var layout = _store.Layout;

        await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var pendingDeletions = await PendingDeletionsAsync(connection, cancellationToken).ConfigureAwait(false);

        // Ransomware leaves its note beside what it encrypted, and renames what it encrypted: at the top of the data
        // folder both were invisible to the scrub before 2026-12-06.
        foreach (var entry in Directory.EnumerateFileSystemEntries(layout.Root))
        {
            if (!ArchiveLayout.IsOwnEntry(Path.GetFileName(entry)) && !IsIndexFile(entry))
            {
                state.Add(new ScrubFinding(ScrubFindingKind.Foreign, Path.GetRelativePath(layout.Root, entry), null, ObjectProblem.NotOurFormat,
                    "an unexpected entry in the data folder: Vigie did not put it there", []));
            }
        }

        // Anything in objects/ that is not a fan-out folder is foreign.
        foreach (var entry in Directory.EnumerateFileSystemEntries(layout.Objects))
        {
            var name = Path.GetFileName(entry);
            if (!(Directory.Exists(entry) && name.Length == 3 && name.All(c => char.IsAsciiDigit(c) || char.IsAsciiHexDigitLower(c))))
            {
                state.Add(new ScrubFinding(ScrubFindingKind.Foreign, Path.GetRelativePath(layout.Root, entry), null, ObjectProblem.NotOurFormat,
                    "an unexpected entry in objects/", []));
            }
        }

        await Parallel.ForEachAsync(WorkAsync(connection, state, pendingDeletions, cancellationToken),
            new ParallelOptions { MaxDegreeOfParallelism = _options.ScrubParallelism, CancellationToken = cancellationToken },
            async (work, token) => await VerifyAsync(work, request, state, token).ConfigureAwait(false)).ConfigureAwait(false);

        if (request.ScheduleOrphanDeletion)
        {
            await HandleOldOrphansAsync(request, state, cancellationToken).ConfigureAwait(false);
        }

        if (request.IncludeQuarantine)
        {
            await ScrubQuarantineAsync(connection, request, state, pendingDeletions, cancellationToken).ConfigureAwait(false);
        }

        await CheckIndexRowsAsync(connection, request, state, cancellationToken).ConfigureAwait(false);
        await CheckDeletionsAsync(connection, pendingDeletions, state, cancellationToken).ConfigureAwait(false);
        if (request.CheckRecords is { } checkRecords)
        {
            foreach (var finding in await checkRecords(cancellationToken).ConfigureAwait(false))
            {
                state.Add(finding);
            }
        }

        var findings = state.Findings.ToList();
        var resolved = new List<ScrubFinding>(findings.Count);
        foreach (var finding in findings.OrderBy(f => f.Location, StringComparer.Ordinal))
        {
            resolved.Add(finding.ObjectId is { } id && finding.References.Count == 0
                ? finding with { References = await ReferencesAsync(connection, id, request.RevealIdentifiers, cancellationToken).ConfigureAwait(false) }
                : finding);
        }

        var report = new ScrubReport(state.ObjectsChecked, state.QuarantinedChecked, state.Bytes, state.Healthy, state.Missing, state.Corrupted,
            state.Foreign, state.Orphans, resolved, state.Truncated, Stopwatch.GetElapsedTime(started))
        {
            InFlight = state.InFlight,
            OrphansScheduled = state.OrphansScheduled,
            OrphansFiled = state.OrphansFiled,
            QuarantineRecordsRestored = state.QuarantineRecordsRestored,
            PendingDeletion = state.PendingDeletion,
            IndexTampered = state.IndexTampered,
            TermsRepaired = state.TermsRepaired,
        };
        ArchiveTelemetry.IntegrityFailures.Add(report.Corrupted + report.Foreign + report.Missing + report.IndexTampered);
        if (report.OrphansScheduled > 0 || report.OrphansFiled > 0 || report.QuarantineRecordsRestored > 0)
        {
            _logger.LogWarning("Scrub: {Summary}", report.Summary);
        }
        else
        {
            _logger.LogInformation("Scrub: {Summary}", report.Summary);
        }
        return report;
    }

    /// <summary>Walks the fan-out folders in id order with the index rows in the same order, yielding one item per file or missing row.</summary>
    private async IAsyncEnumerable<Work> WorkAsync(DbConnection connection, State state, HashSet<(string, string)> pendingDeletions,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var layout = _store.Layout;
        var cursor = new ObjectRowCursor(connection);
        foreach (var fanOut in ArchiveLayout.FanOutNames())
        {
            var rows = await cursor.TakeAsync(fanOut, cancellationToken).ConfigureAwait(false);
            var directory = Path.Combine(layout.Objects, fanOut);
            List<string> files;
            string? unreadable = null;
            try
            {
                files = Directory.Exists(directory) ? Directory.EnumerateFileSystemEntries(directory).ToList() : [];
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                // Named, and the walk goes on: one folder whose permissions changed must not blind the whole check. Its
                // indexed objects are named one by one below, as unreadable (they were counted missing too, "gone").
                unreadable = $"its folder {Path.GetRelativePath(layout.Root, directory)} cannot be read ({e.GetType().Name})";
                if (rows.Count == 0)
                {
                    state.Add(new ScrubFinding(ScrubFindingKind.Corrupted, Path.GetRelativePath(layout.Root, directory), null, ObjectProblem.Unreadable,
                        $"the folder cannot be read ({e.GetType().Name}): its objects cannot be checked", []));
                }

                files = [];
            }

            foreach (var file in files)
            {
                var relative = Path.GetRelativePath(layout.Root, file);
                if (!ObjectId.TryParse(Path.GetFileName(file), out var id) || id.FanOut != fanOut || Directory.Exists(file))
                {
                    state.Add(new ScrubFinding(ScrubFindingKind.Foreign, relative, null, ObjectProblem.NotOurFormat,
                        "a file whose name is not an object id (renamed by someone else)", []));
                    continue;
                }

                var indexed = rows.Remove(id, out var row);
                var pending = pendingDeletions.Contains(("object", id.ToString()));
                // An object row that no version row (nor quarantine record) names is unreferenced too: deleting an
                // instance's rows but not its object row hid an acknowledged image from every check (until 2026-12-07).
                var named = indexed && row!.Named;
                var orphan = !named && !pending;
                // A time in the future is no sign of youth (touch -d 2036 kept an orphan "in flight" for ever).
                var age = _time.GetUtcNow() - File.GetLastWriteTimeUtc(file);
                var young = orphan && age < _options.OrphanGrace && age > -TimeSpan.FromMinutes(5);
                yield return new Work(file, relative, id, indexed ? row!.Length : null, orphan, null)
                {
                    Young = young, Pending = !named && pending, Instances = indexed ? row!.Instances : [],
                };
            }

            if (rows.Count > 0)
            {
                // Objects that a node landed since the scrub began, and indexed, are still in their slots (or were just moved
                // out): checked where they are, not reported missing. One look through spool/landing/ a second at most.
                LookThroughLandingNow(state);
            }

            foreach (var (id, row) in rows)
            {
                if (unreadable is not null && !_store.Slots.TryGet(id, out _))
                {
                    state.Add(new ScrubFinding(ScrubFindingKind.Corrupted, Path.GetRelativePath(layout.Root, layout.ObjectPath(id)), id, ObjectProblem.Unreadable,
                        $"the object cannot be checked: {unreadable}", []));
                    continue;
                }

                var where = _store.Slots.TryGet(id, out var landed) ? landed.Path : layout.ObjectPath(id);
                if (!File.Exists(where) && File.Exists(layout.ObjectPath(id)))
                {
                    // Moved from its slot into objects/ by the node since the look: not missing.
                    where = layout.ObjectPath(id);
                }

                if (File.Exists(where))
                {
                    yield return new Work(where, Path.GetRelativePath(layout.Root, where), id, row.Length, !row.Named, null)
                    {
                        Instances = row.Instances, Pending = !row.Named && pendingDeletions.Contains(("object", id.ToString())),
                    };
                    continue;
                }

                state.AddMissing(new ScrubFinding(ScrubFindingKind.Missing, Path.GetRelativePath(layout.Root, layout.ObjectPath(id)), id,
                    ObjectProblem.NotFound, "the index references this object but its file is gone", []));
            }
        }
    }

    private void LookThroughLandingNow(State state)
    {
        if (state.LastLandingLook is { } last && Stopwatch.GetElapsedTime(last) < TimeSpan.FromSeconds(1))
        {
            return;
        }

        _store.Slots.LookThroughFolder();
        state.LastLandingLook = Stopwatch.GetTimestamp();
    }

    private async ValueTask VerifyAsync(Work work, ScrubRequest request, State state, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref work.QuarantineId is null ? ref state.ObjectsChecked : ref state.QuarantinedChecked);
        try
        {
            await using var reader = work.QuarantineId is null
                ? await _store.OpenReadAsync(work.Id, cancellationToken).ConfigureAwait(false)
                : await _store.OpenQuarantinedAsync(work.QuarantineId, cancellationToken).ConfigureAwait(false);
            reader.ReleasePagesWhenDone();
            if (work.QuarantineId is not null && reader.Id != work.Id && work.IndexedLength is not null)
            {
                throw new ObjectFormatException(ObjectProblem.IdMismatch, $"the quarantined content is object {reader.Id}, the index says {work.Id}",
                    work.Relative);
            }

            if (work.IndexedLength is { } indexed && indexed != reader.Length)
            {
                throw new ObjectFormatException(ObjectProblem.LengthMismatch, $"the object holds {reader.Length} bytes, the index says {indexed}",
                    work.Relative);
            }

            if (request.VerifyContent)
            {
                await reader.VerifyAsync(cancellationToken).ConfigureAwait(false);
                Interlocked.Add(ref state.Bytes, reader.Length);
            }

            // Not a DICOM file (held null): nothing ingest files, so no instance of its own to compare with.
            if (work.Instances.Count > 0 && await HeldInstanceAsync(reader, cancellationToken).ConfigureAwait(false) is { } held
                && work.Instances.Any(i => i.SopKey is null || !i.SopKey.AsSpan().SequenceEqual(held)))
            {
                // A version row pointed at another instance's object (the send-time check refuses it, but it was reported
                // nowhere until 2026-12-07): that instance can no longer be retrieved.
                var rows = string.Join(", ", work.Instances.Where(i => i.SopKey is null || !i.SopKey.AsSpan().SequenceEqual(held))
                    .Select(i => $"instance #{i.InstanceRow} v{i.Version}"));
                state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, work.Relative, work.Id, null,
                    $"version rows name this object but it holds another instance ({rows}): the index was altered", []));
                return;
            }

            if (work.Orphan && work.QuarantineId is not null
                && await _store.OpensAsArchiveObjectAsync(work.Path, work.Relative, cancellationToken).ConfigureAwait(false))
            {
                // Never quarantined: an archive object's file put into quarantine/ (review 25 F1). Not ours to delete or re-wrap.
                state.Add(new ScrubFinding(ScrubFindingKind.Foreign, work.Relative, reader.Id, null,
                    "an archive object's file in quarantine/ that no quarantine record names (a copy put there); left as it is", []));
                return;
            }

            if (work.Orphan && work.Young)
            {
                Interlocked.Increment(ref state.InFlight);
            }
            else if (work.Orphan && request.ScheduleOrphanDeletion && work.QuarantineId is null)
            {
                // Handled once the walk is done, oldest first (see HandleOldOrphansAsync).
                state.OldOrphans.Enqueue((work, new DateTimeOffset(File.GetLastWriteTimeUtc(work.Path), TimeSpan.Zero)));
            }
            else if (work.Orphan && request.ScheduleOrphanDeletion
                     && await RestoreQuarantineRecordAsync(work, reader, cancellationToken).ConfigureAwait(false))
            {
                // A quarantine file is evidence and is never deleted for want of a record: an index restored from a backup
                // lost the records of what was quarantined since, and maintenance deleted those files (before 2026-12-08).
                Interlocked.Increment(ref state.QuarantineRecordsRestored);
            }
            else if (work.Orphan)
            {
                // A quarantine file without its record (deleted, or an index restored from an older backup), whose sealed
                // reason does not open: kept and named, never scheduled for deletion.
                state.Add(new ScrubFinding(ScrubFindingKind.Orphan, work.Relative, reader.Id, null, work.QuarantineId is null
                    ? "a valid object that no index row references (its index transaction never committed)"
                    : "a quarantined file that no quarantine record names (the record was deleted from the index, or the index restored from an older "
                      + "backup): kept as evidence, never deleted by maintenance", []));
            }
            else if (work.Pending)
            {
                Interlocked.Increment(ref state.PendingDeletion);
            }
            else
            {
                Interlocked.Increment(ref state.Healthy);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && work.QuarantineId is null)
        {
            // A read error (a bad sector, a permission changed mid-walk): named, and the walk goes on.
            state.Add(new ScrubFinding(ScrubFindingKind.Corrupted, work.Relative, work.Id, ObjectProblem.Unreadable,
                $"the file cannot be read ({e.GetType().Name})" + (work.Orphan ? " (and no index row references it)" : ""), []));
        }
        catch (ObjectFormatException e)
        {
            var kind = e.IsForeign ? ScrubFindingKind.Foreign : ScrubFindingKind.Corrupted;
            var reason = e.Message + (work.Orphan ? " (and no index row references it)" : "");
            state.Add(new ScrubFinding(kind, work.Relative, work.QuarantineId is null ? work.Id : null, e.Problem, reason,
                work.QuarantineId is null ? [] : [new ScrubIndexReference(null, null, null, null, null, work.QuarantineId)]));
        }
    }

    /// <summary>The keyed hash of the SOP Instance UID the object's own meta group names, or null when it is not a DICOM file.</summary>
    private async ValueTask<byte[]?> HeldInstanceAsync(ArchiveObjectReader reader, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = reader.OpenStream();
            var file = await Vigie.Dicom.IO.DicomReader.ReadFileAsync(stream, new Vigie.Dicom.DicomReadOptions { StopAtTag = new Vigie.Dicom.DicomTag(0x0003, 0x0000) },
                cancellationToken).ConfigureAwait(false);
            var uid = IndexNormalizer.Uid(file.Meta.GetString(Vigie.Dicom.DicomTags.MediaStorageSOPInstanceUID) ?? "");
            return uid.Length == 0 ? null : _keys.HashIdentifier(IdentifierKinds.SopInstanceUid, uid);
        }
        catch (Exception e) when (e is not (OperationCanceledException or ObjectFormatException or IOException))
        {
            return null;
        }
    }

    /// <summary>
    /// The index rows themselves (since 2026-12-07): each study, series and instance must open bound to its parent (and an
    /// instance to its current version), and each instance's version rows must agree with it: the current one present and
    /// not superseded, none newer, every older one superseded. Paged by row id; the findings name row ids only.
    /// </summary>
    private async Task CheckIndexRowsAsync(DbConnection connection, ScrubRequest request, State state, CancellationToken cancellationToken)
    {
        var acceptLegacy = await SqlArchiveIndex.AcceptsLegacySealsAsync(connection, cancellationToken).ConfigureAwait(false);
        string[] tables = ["archive_patients", "archive_studies", "archive_series", "archive_instances"];
        string[] keyColumns = ["patient_key", "study_uid", "series_uid", "sop_uid"];
        string[] parentColumns = ["", "patient_id", "study_id", "series_id"];
        for (var level = 0; level <= 3; level++)
        {
            var sql = level == 0
                ? "SELECT c.id, c.patient_key, c.attributes, NULL, 0, NULL FROM archive_patients c WHERE c.id > @after ORDER BY c.id LIMIT @n"
                : $"""
                   SELECT c.id, c.{keyColumns[level]}, c.attributes, p.{keyColumns[level - 1]}, {(level == 3 ? "c.current_version" : "0")}, c.{parentColumns[level]}
                   FROM {tables[level]} c LEFT JOIN {tables[level - 1]} p ON p.id = c.{parentColumns[level]}
                   WHERE c.id > @after ORDER BY c.id LIMIT @n
                   """;
            long after = 0;
            while (true)
            {
                var count = 0;
                var from = after;
                var opened = new List<(long Id, byte[] Sealed, AttributeSet Attributes)>();
                await using (var command = connection.CreateCommand(null, sql).With("@after", after).With("@n", 2000))
                await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        count++;
                        after = SqlArchiveIndex.ToLong(reader.GetValue(0));
                        var parentKey = reader.IsDBNull(3) ? null : (byte[])reader.GetValue(3);
                        var attributes = level > 0 && parentKey is null ? null
                            : SqlArchiveIndex.TryOpenAttributes(_keys, level, (byte[])reader.GetValue(1), parentKey, (int)SqlArchiveIndex.ToLong(reader.GetValue(4)),
                                (byte[])reader.GetValue(2), acceptLegacy);
                        if (attributes is null)
                        {
                            var parent = level == 0 ? "" : $" under {tables[level - 1]} #{SqlArchiveIndex.ToLong(reader.GetValue(5))}";
                            state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, $"index {tables[level]} #{after}", null, null,
                                $"the row's sealed attributes do not open bound to its parent{(level == 3 ? " and current version" : "")}{parent}: it was moved "
                                + "or altered in the database, and is not served", []));
                        }
                        else if (level <= 1)
                        {
                            opened.Add((after, (byte[])reader.GetValue(2), attributes));
                        }
                    }
                }

                if (opened.Count > 0)
                {
                    await CheckTermsAsync(connection, level, tables[level], from, after, opened, request, state, cancellationToken).ConfigureAwait(false);
                }

                if (count < 2000)
                {
                    break;
                }
            }
        }

        await CheckStrayTermsAsync(connection, request, state, cancellationToken).ConfigureAwait(false);

        long afterInstance = 0;
        while (true)
        {
            var count = 0;
            await using var command = connection.CreateCommand(null, """
                    SELECT i.id, i.current_version FROM archive_instances i
                    WHERE i.id > @after AND (
                      NOT EXISTS (SELECT 1 FROM archive_versions v WHERE v.instance_id = i.id AND v.version = i.current_version AND v.superseded_at IS NULL)
                      OR EXISTS (SELECT 1 FROM archive_versions v WHERE v.instance_id = i.id
                                 AND (v.version > i.current_version OR (v.version < i.current_version AND v.superseded_at IS NULL))))
                    ORDER BY i.id LIMIT @n
                    """).With("@after", afterInstance).With("@n", 2000);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                count++;
                afterInstance = SqlArchiveIndex.ToLong(reader.GetValue(0));
                state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, $"index archive_instances #{afterInstance}", null, null,
                    $"its version rows disagree with its current version v{SqlArchiveIndex.ToLong(reader.GetValue(1))} (missing or superseded, a newer one, "
                    + "or an older one not superseded): the index was altered", []));
            }

            if (count < 2000)
            {
                break;
            }
        }
    }

    /// <summary>
    /// Search terms whose owner row does not exist, or at a level that has none (since 2026-12-07): planted on the id the
    /// next patient or study would get, they attached to it, and the page-by-page check above never read them. Paged by
    /// (level, row id), 2 000 owners a query; with <see cref="ScrubRequest.RepairTerms"/> they are deleted, if the owner
    /// is still absent (a store may have made it meanwhile, and its insert removes them itself).
    /// </summary>
    private async Task CheckStrayTermsAsync(DbConnection connection, ScrubRequest request, State state, CancellationToken cancellationToken)
    {
        const string stray = """
            (t.level NOT IN (0, 1)
             OR (t.level = 0 AND NOT EXISTS (SELECT 1 FROM archive_patients p WHERE p.id = t.row_id))
             OR (t.level = 1 AND NOT EXISTS (SELECT 1 FROM archive_studies s WHERE s.id = t.row_id)))
            """;
        var first = 1;
        long afterLevel = 0;
        long afterRow = 0;
        while (true)
        {
            var page = new List<(long Level, long Row, long Count)>();
            await using (var command = connection.CreateCommand(null, $"""
                                 SELECT t.level, t.row_id, COUNT(*) FROM archive_terms t
                                 WHERE (@first = 1 OR t.level > @l OR (t.level = @l AND t.row_id > @r)) AND {stray}
                                 GROUP BY t.level, t.row_id ORDER BY t.level, t.row_id LIMIT @n
                                 """).With("@first", first).With("@l", afterLevel).With("@r", afterRow).With("@n", 2000))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    page.Add((SqlArchiveIndex.ToLong(reader.GetValue(0)), SqlArchiveIndex.ToLong(reader.GetValue(1)), SqlArchiveIndex.ToLong(reader.GetValue(2))));
                }
            }

            foreach (var (level, row, count) in page)
            {
                var owner = level switch { 0 => "archive_patients", 1 => "archive_studies", _ => null };
                state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, $"index archive_terms level {level} row #{row}", null, null,
                    $"{count} search terms on {(owner is null ? "a level that has none" : $"{owner} #{row}, which does not exist")}: planted, they would "
                    + "attach to the row stored next under that id" + (request.RepairTerms ? "; they are deleted" : "; maintenance deletes them"), []));
            }

            if (request.RepairTerms && page.Count > 0)
            {
                await using var writer = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
                await using var transaction = await _database.BeginWriteAsync(writer, cancellationToken).ConfigureAwait(false);
                var repaired = 0;
                foreach (var (level, row, _) in page)
                {
                    await using var delete = writer.CreateCommand(transaction, $"DELETE FROM archive_terms AS t WHERE t.level = @l AND t.row_id = @r AND {stray}")
                        .With("@l", level).With("@r", row);
                    repaired += await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0 ? 1 : 0;
                }

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                Interlocked.Add(ref state.TermsRepaired, repaired);
                if (repaired > 0)
                {
                    _logger.LogWarning("Scrub: search terms on {Count} index rows that do not exist were deleted", repaired);
                }
            }

            if (page.Count < 2000)
            {
                break;
            }

            (first, afterLevel, afterRow) = (0, page[^1].Level, page[^1].Row);
        }
    }

    /// <summary>
    /// The search terms of a page of patient (level 0) or study (level 1) rows against those their sealed attributes give
    /// (since 2026-12-07): deleted terms hid a patient from C-FIND and C-GET by Patient ID, and scrub was clean. One range
    /// read of the terms per page. With <see cref="ScrubRequest.RepairTerms"/> the row's terms are rewritten, if the row is
    /// unchanged since it was read (a store may have rewritten it meanwhile).
    /// </summary>
    private async Task CheckTermsAsync(DbConnection connection, int level, string table, long from, long to,
        List<(long Id, byte[] Sealed, AttributeSet Attributes)> rows, ScrubRequest request, State state, CancellationToken cancellationToken)
    {
        var actual = new Dictionary<long, HashSet<string>>();
        await using (var command = connection.CreateCommand(null, "SELECT row_id, term FROM archive_terms WHERE level = @l AND row_id > @f AND row_id <= @t")
                         .With("@l", (short)level).With("@f", from).With("@t", to))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var row = SqlArchiveIndex.ToLong(reader.GetValue(0));
                if (!actual.TryGetValue(row, out var terms))
                {
                    actual[row] = terms = new HashSet<string>(StringComparer.Ordinal);
                }

                terms.Add(Convert.ToHexString((byte[])reader.GetValue(1)));
            }
        }

        var repairs = new List<(long Id, byte[] Sealed, List<byte[]> Terms)>();
        foreach (var (id, sealedAttributes, attributes) in rows)
        {
            var expected = SqlArchiveIndex.TermsOf(_keys, _options, level, attributes);
            var wanted = expected.Select(Convert.ToHexString).ToHashSet(StringComparer.Ordinal);
            var held = actual.GetValueOrDefault(id) ?? [];
            var missing = wanted.Count(t => !held.Contains(t));
            var extra = held.Count(t => !wanted.Contains(t));
            if (missing == 0 && extra == 0)
            {
                continue;
            }

            var what = level == 0 ? "Patient ID, name or birth date" : "accession number, study month or referring physician";
            state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, $"index {table} #{id}", null, null,
                $"{missing} of its {wanted.Count} search terms are missing and {extra} are not its own: queries by {what} miss it"
                + (request.RepairTerms ? "; its terms are rewritten from its sealed attributes" : "; maintenance rewrites them"), []));
            if (request.RepairTerms)
            {
                repairs.Add((id, sealedAttributes, expected));
            }
        }

        if (repairs.Count == 0)
        {
            return;
        }

        await using var writer = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await _database.BeginWriteAsync(writer, cancellationToken).ConfigureAwait(false);
        var repaired = 0;
        foreach (var (id, sealedAttributes, terms) in repairs)
        {
            await using (var check = writer.CreateCommand(transaction, $"SELECT attributes FROM {table} WHERE id = @i").With("@i", id))
            {
                if (await check.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not byte[] now || !now.AsSpan().SequenceEqual(sealedAttributes))
                {
                    continue;
                }
            }

            await SqlArchiveIndex.RewriteTermsAsync(writer, transaction, level, id, terms, cancellationToken).ConfigureAwait(false);
            repaired++;
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Add(ref state.TermsRepaired, repaired);
        if (repaired > 0)
        {
            _logger.LogWarning("Scrub: the search terms of {Count} {Table} rows were missing or not their own, and were rewritten", repaired, table);
        }
    }

    private async Task ScrubQuarantineAsync(DbConnection connection, ScrubRequest request, State state, HashSet<(string, string)> pendingDeletions,
        CancellationToken cancellationToken)
    {
        var layout = _store.Layout;
        var rows = new Dictionary<string, (ObjectId Id, long Length)>(StringComparer.Ordinal);
        await using (var command = connection.CreateCommand(null, "SELECT quarantine_id, object_id, length FROM archive_quarantine"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                rows[reader.GetString(0)] = (new ObjectId((byte[])reader.GetValue(1)), SqlArchiveIndex.ToLong(reader.GetValue(2)));
            }
        }

        var work = new List<Work>();
        foreach (var file in Directory.Exists(layout.Quarantine) ? Directory.EnumerateFiles(layout.Quarantine) : [])
        {
            var name = Path.GetFileName(file);
            var relative = Path.GetRelativePath(layout.Root, file);
            if (name.EndsWith(ArchiveLayout.QuarantineReasonExtension, StringComparison.Ordinal))
            {
                continue;
            }

            var quarantineId = name.EndsWith(ArchiveLayout.QuarantineExtension, StringComparison.Ordinal) ? name[..^ArchiveLayout.QuarantineExtension.Length] : "";
            if (quarantineId.Length != 32 || !quarantineId.All(c => char.IsAsciiDigit(c) || char.IsAsciiHexDigitLower(c)))
            {
                state.Add(new ScrubFinding(ScrubFindingKind.Foreign, relative, null, ObjectProblem.NotOurFormat, "an unexpected file in quarantine/", []));
                continue;
            }

            var indexed = rows.Remove(quarantineId, out var row);
            var pending = pendingDeletions.Contains(("quarantine", quarantineId));
            work.Add(new Work(file, relative, row.Id, indexed ? row.Length : null, !indexed && !pending, quarantineId));
        }

        foreach (var (quarantineId, row) in rows)
        {
            state.AddMissing(new ScrubFinding(ScrubFindingKind.Missing, Path.GetRelativePath(layout.Root, layout.QuarantinePath(quarantineId)), row.Id,
                ObjectProblem.NotFound, "the index records this quarantined object but its file is gone",
                [new ScrubIndexReference(null, null, null, null, null, quarantineId)]));
        }

        await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = _options.ScrubParallelism, CancellationToken = cancellationToken },
            async (item, token) => await VerifyAsync(item, request, state, token).ConfigureAwait(false)).ConfigureAwait(false);
    }

    /// <summary>
    /// Files the record of a quarantine file again, from its sealed reason (bound to its quarantine id, so it authenticates
    /// the file as quarantined by this archive) and the file itself. False when the reason does not open or cannot be read:
    /// the file is then kept and named.
    /// </summary>
    private async ValueTask<bool> RestoreQuarantineRecordAsync(Work work, ArchiveObjectReader reader, CancellationToken cancellationToken)
    {
        var quarantineId = work.QuarantineId!;
        try
        {
            var reason = await _store.ReadQuarantineReasonAsync(quarantineId, cancellationToken).ConfigureAwait(false);
            var index = new SqlArchiveIndex(_database, _keys, Options.Create(_options), _time);
            await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            await index.AddQuarantineAsync(connection, transaction, new QuarantineEntry(quarantineId, reader.Id, reader.Length, reason,
                new DateTimeOffset(File.GetLastWriteTimeUtc(work.Path), TimeSpan.Zero)), cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or DbException)
        {
            _logger.LogWarning("Scrub: quarantine/{QuarantineId} has no quarantine record and its record cannot be rebuilt ({Reason}): kept, never deleted",
                quarantineId, e.Message);
            return false;
        }

        _logger.LogWarning("Scrub: quarantine/{QuarantineId} had no quarantine record (the index restored from an older backup?): its record was rebuilt "
            + "from its sealed reason; `vigie quarantine list` shows it again", quarantineId);
        return true;
    }

    /// <summary>
    /// Old orphans that open under our keys (the walk checked them). Oldest first, each valid instance the index does not
    /// know is filed again (an index restored from an older backup lost it: it was acknowledged); the rest (not an
    /// instance, an older copy of an indexed one) is scheduled for deletion, each audited, unless there are too many.
    /// Maintenance runs under its lease, once across nodes; the grace kept other nodes' commits in flight out of this.
    /// </summary>
    private async Task HandleOldOrphansAsync(ScrubRequest request, State state, CancellationToken cancellationToken)
    {
        var orphans = state.OldOrphans.OrderBy(o => o.WrittenAt).ThenBy(o => o.Work.Relative, StringComparer.Ordinal).ToList();
        var deletable = new List<Work>();
        foreach (var (work, writtenAt) in orphans)
        {
            if (request.FileOrphan is { } file && await file(new WrittenObject(work.Id, writtenAt), cancellationToken).ConfigureAwait(false))
            {
                state.OrphansFiled++;
            }
            else
            {
                deletable.Add(work);
            }
        }

        if (state.OrphansFiled > 0)
        {
            _logger.LogWarning("Scrub: {Filed} objects in the archive that the index did not know (an index restored from an older backup, or a lost "
                + "commit) were filed again", state.OrphansFiled);
        }

        var total = Interlocked.Read(ref state.ObjectsChecked);
        if (deletable.Count > RetentionService.LimitFloor && deletable.Count > _options.OrphanMaxShare * total)
        {
            // Like retention's MaxShare: that many unreferenced objects is an index that does not match the folder, not
            // interrupted commits. Reported (an integrity alert), for a person to look at.
            _logger.LogWarning("Scrub: {Orphans} of {Total} objects are unreferenced orphans, over Archive:OrphanMaxShare ({Share}): none is deleted. "
                + "Check that the index is this data folder's and is current, then raise OrphanMaxShare for one run if they must go",
                deletable.Count, total, _options.OrphanMaxShare);
            foreach (var work in deletable)
            {
                state.Add(new ScrubFinding(ScrubFindingKind.Orphan, work.Relative, work.Id, null,
                    $"a valid object that no index row references, kept: {deletable.Count} orphans exceed Archive:OrphanMaxShare", []));
            }

            return;
        }

        foreach (var work in deletable)
        {
            await ScheduleOrphanDeletionAsync("object", work.Id.ToString(), work.Id, cancellationToken).ConfigureAwait(false);
            state.OrphansScheduled++;
        }
    }

    /// <summary>
    /// Hands an old orphan to the deletion schedule: storing the same content again before the grace cancels it. The
    /// audit entry is written in the same transaction (since 2026-12-07): if auditing fails, nothing is scheduled.
    /// </summary>
    private async ValueTask ScheduleOrphanDeletionAsync(string kind, string name, ObjectId id, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var after = (now + _options.DeletionGrace).ToUnixTimeMilliseconds();
        await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        int inserted;
        await using (var command = connection.CreateCommand(transaction,
                         "INSERT INTO archive_deletions (kind, name, delete_after) VALUES (@k, @n, @a) ON CONFLICT (kind, name) DO NOTHING")
                         .With("@k", kind).With("@n", name).With("@a", after))
        {
            inserted = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        if (inserted > 0 && _audit is not null)
        {
            await _audit.RecordAsync(connection, transaction, new RetentionEvent(RetentionAction.OrphanRemoved, "orphan", now, null, null, null, null, null,
                [id], null, 0), cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A scheduled deletion whose file a version row or quarantine record still names: no decision of ours leaves one, so
    /// the row was planted (since 2026-12-08; the purge drops it and keeps the file). Few rows: one look each.
    /// </summary>
    private static async Task CheckDeletionsAsync(DbConnection connection, HashSet<(string Kind, string Name)> pendingDeletions, State state,
        CancellationToken cancellationToken)
    {
        foreach (var (kind, name) in pendingDeletions.OrderBy(d => d.Kind, StringComparer.Ordinal).ThenBy(d => d.Name, StringComparer.Ordinal))
        {
            if (await RetentionService.NamedByIndexAsync(connection, null, kind, name, cancellationToken).ConfigureAwait(false) is not { } reference)
            {
                continue;
            }

            // A store of the same content files its version and cancels the deletion in one transaction: looked at after
            // the reference, a row still there was not cancelled by it.
            await using var still = connection.CreateCommand(null, "SELECT COUNT(*) FROM archive_deletions WHERE kind = @k AND name = @n")
                .With("@k", kind).With("@n", name);
            if (SqlArchiveIndex.ToLong(await still.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false)) == 0)
            {
                continue;
            }

            state.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, $"index archive_deletions {kind} {name}", null, null,
                $"a deletion is scheduled for a file the index still names ({reference}): the row was planted; the purge keeps the file and drops it",
                []));
        }
    }

    private static async Task<HashSet<(string, string)>> PendingDeletionsAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var pending = new HashSet<(string, string)>();
        await using var command = connection.CreateCommand(null, "SELECT kind, name FROM archive_deletions");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            pending.Add((reader.GetString(0), reader.GetString(1)));
        }

        return pending;
    }

    private async Task<IReadOnlyList<ScrubIndexReference>> ReferencesAsync(DbConnection connection, ObjectId id, bool reveal,
        CancellationToken cancellationToken)
    {
        var references = new List<ScrubIndexReference>();
        var acceptLegacy = reveal && await SqlArchiveIndex.AcceptsLegacySealsAsync(connection, cancellationToken).ConfigureAwait(false);
        await using (var command = connection.CreateCommand(null, """
                         SELECT st.patient_id, se.study_id, i.series_id, i.id, v.version, i.sop_uid, i.attributes, st.study_uid, st.attributes,
                                se.series_uid, p.patient_key, i.current_version
                         FROM archive_versions v
                         JOIN archive_instances i ON i.id = v.instance_id
                         JOIN archive_series se ON se.id = i.series_id
                         JOIN archive_studies st ON st.id = se.study_id
                         JOIN archive_patients p ON p.id = st.patient_id
                         WHERE v.object_id = @o ORDER BY i.id, v.version
                         """).With("@o", id.ToArray()))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                string? sop = null;
                string? study = null;
                if (reveal)
                {
                    // Rows that do not open bound to their parents reveal nothing: they may be another patient's.
                    sop = SqlArchiveIndex.TryOpenAttributes(_keys, 3, (byte[])reader.GetValue(5), (byte[])reader.GetValue(9),
                        (int)SqlArchiveIndex.ToLong(reader.GetValue(11)), (byte[])reader.GetValue(6), acceptLegacy)?.First(DicomTags.SopInstanceUid);
                    study = SqlArchiveIndex.TryOpenAttributes(_keys, 1, (byte[])reader.GetValue(7), (byte[])reader.GetValue(10), 0, (byte[])reader.GetValue(8),
                        acceptLegacy)?.First(DicomTags.StudyInstanceUid);
                }

                references.Add(new ScrubIndexReference(SqlArchiveIndex.ToLong(reader.GetValue(0)), SqlArchiveIndex.ToLong(reader.GetValue(1)),
                    SqlArchiveIndex.ToLong(reader.GetValue(2)), SqlArchiveIndex.ToLong(reader.GetValue(3)), (int)SqlArchiveIndex.ToLong(reader.GetValue(4)),
                    null, sop, study));
            }
        }

        await using (var command = connection.CreateCommand(null, "SELECT quarantine_id FROM archive_quarantine WHERE object_id = @o").With("@o", id.ToArray()))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                references.Add(new ScrubIndexReference(null, null, null, null, null, reader.GetString(0)));
            }
        }

        return references;
    }

    private sealed record Work(string Path, string Relative, ObjectId Id, long? IndexedLength, bool Orphan, string? QuarantineId)
    {
        /// <summary>An orphan younger than the grace: a commit still in flight, or interrupted moments ago.</summary>
        public bool Young { get; init; }

        /// <summary>Unreferenced and already scheduled for deletion.</summary>
        public bool Pending { get; init; }

        /// <summary>The instances whose version rows name this object, with their SOP Instance UID key hash (null: no instance row).</summary>
        public IReadOnlyList<VersionOf> Instances { get; init; } = [];
    }

    private sealed record VersionOf(long InstanceRow, int Version, byte[]? SopKey);

    /// <summary>A referenced object: its indexed length, whether a version or quarantine record names it, and which instances.</summary>
    private sealed record ObjectRow(long Length, bool Named, List<VersionOf> Instances);

    /// <summary>archive_objects in id order, a page at a time (keyset pagination), handed out fan-out folder by fan-out folder.</summary>
    private sealed class ObjectRowCursor(DbConnection connection)
    {
        private const int PageSize = 2000;
        private readonly Queue<(ObjectId Id, ObjectRow Row)> _page = new();
        private byte[] _after = [];
        private bool _exhausted;

        public async Task<Dictionary<ObjectId, ObjectRow>> TakeAsync(string fanOut, CancellationToken cancellationToken)
        {
            var rows = new Dictionary<ObjectId, ObjectRow>();
            while (true)
            {
                if (_page.Count == 0)
                {
                    if (_exhausted)
                    {
                        return rows;
                    }

                    await FetchAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var (id, row) = _page.Peek();
                if (string.CompareOrdinal(id.FanOut, fanOut) > 0)
                {
                    return rows;
                }

                _page.Dequeue();
                rows[id] = row;
            }
        }

        private async Task FetchAsync(CancellationToken cancellationToken)
        {
            // Version rows too: one whose object row was deleted with the file still names an object that must exist
            // (the retrieve of that instance fails), and was not reported.
            // Named: by a version row, or by a quarantine record; an object row alone is not a reference (since 2026-12-07).
            var from = _after;
            var page = new List<(byte[] Id, ObjectRow Row)>();
            await using (var command = connection.CreateCommand(null, """
                    SELECT object_id, MAX(length), MAX(named) FROM (
                      SELECT o.object_id, o.length,
                             CASE WHEN EXISTS (SELECT 1 FROM archive_quarantine q WHERE q.object_id = o.object_id) THEN 1 ELSE 0 END AS named
                      FROM archive_objects o WHERE o.object_id > @after
                      UNION ALL
                      SELECT object_id, length, 1 FROM archive_versions WHERE object_id > @after) AS referenced
                    GROUP BY object_id ORDER BY object_id LIMIT @n
                    """)
                .With("@after", _after).With("@n", PageSize))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    _after = (byte[])reader.GetValue(0);
                    page.Add((_after, new ObjectRow(SqlArchiveIndex.ToLong(reader.GetValue(1)), SqlArchiveIndex.ToLong(reader.GetValue(2)) != 0, [])));
                }
            }

            if (page.Count > 0)
            {
                // The instances naming the page's objects, in one range read of the version rows' object index.
                var byId = page.ToDictionary(p => Convert.ToHexString(p.Id), p => p.Row);
                await using var command = connection.CreateCommand(null, """
                        SELECT v.object_id, v.instance_id, v.version, i.sop_uid FROM archive_versions v LEFT JOIN archive_instances i ON i.id = v.instance_id
                        WHERE v.object_id > @from AND v.object_id <= @to
                        """).With("@from", from).With("@to", page[^1].Id);
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (byId.TryGetValue(Convert.ToHexString((byte[])reader.GetValue(0)), out var row))
                    {
                        row.Instances.Add(new VersionOf(SqlArchiveIndex.ToLong(reader.GetValue(1)), (int)SqlArchiveIndex.ToLong(reader.GetValue(2)),
                            reader.IsDBNull(3) ? null : (byte[])reader.GetValue(3)));
                    }
                }
            }

            foreach (var (id, row) in page)
            {
                _page.Enqueue((new ObjectId(id), row));
            }

            _exhausted = page.Count < PageSize;
        }
    }

    // An index given its own name inside the data folder (Database:SqlitePath), and SQLite's side files beside it.
    private bool IsIndexFile(string entry) =>
        _indexFile is not null && entry.StartsWith(_indexFile, StringComparison.Ordinal) && entry[_indexFile.Length..] is "" or "-wal" or "-shm" or "-journal";

    private sealed class State(int maxFindings)
    {
        public long ObjectsChecked;
        public long QuarantinedChecked;
        public long Bytes;
        public long Healthy;
        public long Missing;
        public long Corrupted;
        public long Foreign;
        public long Orphans;
        public long InFlight;
        public long OrphansScheduled;
        public long OrphansFiled;
        public long QuarantineRecordsRestored;
        public long PendingDeletion;
        public long IndexTampered;
        public long TermsRepaired;
        public long? LastLandingLook;

        public ConcurrentQueue<(Work Work, DateTimeOffset WrittenAt)> OldOrphans { get; } = new();
        private int _listed;

        public ConcurrentQueue<ScrubFinding> Findings { get; } = new();

        public bool Truncated => Volatile.Read(ref _listed) > maxFindings;

        public void AddMissing(ScrubFinding finding) => Add(finding);

        public void Add(ScrubFinding finding)
        {
            switch (finding.Kind)
            {
                case ScrubFindingKind.Missing:
                    Interlocked.Increment(ref Missing);
                    break;
                case ScrubFindingKind.Corrupted:
                    Interlocked.Increment(ref Corrupted);
                    break;
                case ScrubFindingKind.Foreign:
                    Interlocked.Increment(ref Foreign);
                    break;
                case ScrubFindingKind.Orphan:
                    Interlocked.Increment(ref Orphans);
                    break;
                case ScrubFindingKind.IndexTampered:
                    Interlocked.Increment(ref IndexTampered);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(finding), finding.Kind, null);
            }

            if (Interlocked.Increment(ref _listed) <= maxFindings)
            {
                Findings.Enqueue(finding);
            }
        }
    }
}
