using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Archive.Index;

/// <summary>
/// The index on SQLite or PostgreSQL. The SQL is common to both (ON CONFLICT, RETURNING, LIMIT); PostgreSQL also locks the
/// instance row it versions, since several nodes may write at once. See docs/archive.md for what each column leaks.
/// </summary>
internal sealed class SqlArchiveIndex(IVigieDatabase database, ArchiveKeyService keys, IOptions<ArchiveOptions> options, TimeProvider time)
    : IArchiveIndex
{
    private const int MaxUidLength = 64;
    private const int MaxIdentifierLength = 256;
    private readonly ArchiveOptions _options = options.Value;
    private volatile bool _sealsBound;

    private static readonly NodeTable[] Tables =
    [
        new("archive_patients", "patient_key", null, "patient"),
        new("archive_studies", "study_uid", "patient_id", "study"),
        new("archive_series", "series_uid", "study_id", "series"),
        new("archive_instances", "sop_uid", "series_id", "instance"),
    ];

    public async ValueTask<IndexWriteResult> StoreInstanceAsync(DbConnection connection, DbTransaction transaction, InstanceIndexEntry entry,
        CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        using var activity = ArchiveTelemetry.Source.StartActivity("archive.index.store");
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();

        var (patientId, issuer, studyUid, seriesUid, sopUid) = Identifiers(entry);
        var sopClass = Checked(IndexNormalizer.Uid(entry.Instance.SopClassUid), MaxUidLength, "SOP Class UID");

        var patientAttributes = entry.Patient.Attributes.With(DicomTags.PatientId, patientId)
            .With(DicomTags.IssuerOfPatientId, issuer.Length == 0 ? null : issuer);
        var studyAttributes = entry.Study.Attributes.With(DicomTags.StudyInstanceUid, studyUid);
        var seriesAttributes = entry.Series.Attributes.With(DicomTags.SeriesInstanceUid, seriesUid);
        var instanceAttributes = entry.Instance.Attributes.With(DicomTags.SopInstanceUid, sopUid).With(DicomTags.SopClassUid, sopClass);

        var conflicts = HierarchyConflict.None;
        var patientKey = await PatientKeyAsync(connection, transaction, issuer, patientId, studyUid, cancellationToken).ConfigureAwait(false);
        var (patientRow, _) = await UpsertNodeAsync(connection, transaction, 0, patientKey, null, null, patientAttributes,
            PatientTerms, now, cancellationToken).ConfigureAwait(false);

        var studyKey = keys.HashIdentifier(IdentifierKinds.StudyInstanceUid, studyUid);
        var (studyRow, studyConflict) = await UpsertNodeAsync(connection, transaction, 1, studyKey,
            patientRow, patientKey, studyAttributes, StudyTerms, now, cancellationToken).ConfigureAwait(false);
        conflicts |= studyConflict ? HierarchyConflict.StudyUnderOtherPatient : HierarchyConflict.None;

        var seriesKey = keys.HashIdentifier(IdentifierKinds.SeriesInstanceUid, seriesUid);
        var (seriesRow, seriesConflict) = await UpsertNodeAsync(connection, transaction, 2, seriesKey,
            studyRow, studyKey, seriesAttributes, static _ => [], now, cancellationToken).ConfigureAwait(false);
        conflicts |= seriesConflict ? HierarchyConflict.SeriesUnderOtherStudy : HierarchyConflict.None;

        var sopKey = keys.HashIdentifier(IdentifierKinds.SopInstanceUid, sopUid);
        var (instanceRow, version, outcome, instanceConflict) = await StoreVersionAsync(connection, transaction, sopKey, seriesRow, seriesKey,
            instanceAttributes, entry, now, cancellationToken).ConfigureAwait(false);
        conflicts |= instanceConflict ? HierarchyConflict.InstanceUnderOtherSeries : HierarchyConflict.None;

        var objectId = entry.ObjectId.ToArray();
        await ExecuteAsync(connection, transaction,
            // DO UPDATE, not DO NOTHING: it locks an existing row, so that retention releasing this object (which locks the
            // row before it counts the versions using it) waits for this store to commit, then sees the new version.
            "INSERT INTO archive_objects (object_id, length, created_at) VALUES (@o, @l, @n) ON CONFLICT (object_id) DO UPDATE SET length = excluded.length",
            cancellationToken, ("@o", objectId), ("@l", entry.ObjectLength), ("@n", now)).ConfigureAwait(false);
        // Storing content again claims it back from a pending retention deletion.
        await ExecuteAsync(connection, transaction, "DELETE FROM archive_deletions WHERE kind = 'object' AND name = @name",
            cancellationToken, ("@name", entry.ObjectId.ToString())).ConfigureAwait(false);

        return new IndexWriteResult(outcome, patientRow, studyRow, seriesRow, instanceRow, version, conflicts);
    }

    public async ValueTask<HierarchyConflict> FindHierarchyConflictsAsync(InstanceIndexEntry entry, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var (patientId, issuer, studyUid, seriesUid, sopUid) = Identifiers(entry);
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        // Child first, then parent, each in its own statement: a level another node creates between two reads then
        // shows as new at both, or at the parent only. Parent first, a series found after its study had been missed
        // looked filed under another study, and a new study sent through several nodes at once was refused C000.
        var instance = await SelectNodeAsync(connection, null, Tables[3], keys.HashIdentifier(IdentifierKinds.SopInstanceUid, sopUid), false,
            cancellationToken).ConfigureAwait(false);
        var series = await SelectNodeAsync(connection, null, Tables[2], keys.HashIdentifier(IdentifierKinds.SeriesInstanceUid, seriesUid), false,
            cancellationToken).ConfigureAwait(false);
        var study = await SelectNodeAsync(connection, null, Tables[1], keys.HashIdentifier(IdentifierKinds.StudyInstanceUid, studyUid), false,
            cancellationToken).ConfigureAwait(false);
        var patient = await SelectNodeAsync(connection, null, Tables[0], await PatientKeyAsync(connection, null, issuer, patientId, studyUid, cancellationToken)
            .ConfigureAwait(false), false, cancellationToken).ConfigureAwait(false);
        // A level not indexed yet would be created under this entry's parent: no conflict there.
        var conflicts = HierarchyConflict.None;
        conflicts |= study is { } s && s.Parent != patient?.Id ? HierarchyConflict.StudyUnderOtherPatient : HierarchyConflict.None;
        conflicts |= series is { } r && r.Parent != study?.Id ? HierarchyConflict.SeriesUnderOtherStudy : HierarchyConflict.None;
        conflicts |= instance is { } i && i.Parent != series?.Id ? HierarchyConflict.InstanceUnderOtherSeries : HierarchyConflict.None;
        return conflicts;
    }

    /// <summary>The entry's identifiers as the index keys them: normalized, and within the index's limits.</summary>
    private static (string PatientId, string Issuer, string StudyUid, string SeriesUid, string SopUid) Identifiers(InstanceIndexEntry entry) => (
        Checked(IndexNormalizer.Identifier(entry.Patient.PatientId), MaxIdentifierLength, "Patient ID", allowEmpty: true),
        Checked(IndexNormalizer.Identifier(entry.Patient.IssuerOfPatientId ?? ""), MaxIdentifierLength, "Issuer of Patient ID", allowEmpty: true),
        Checked(IndexNormalizer.Uid(entry.Study.StudyInstanceUid), MaxUidLength, "Study Instance UID"),
        Checked(IndexNormalizer.Uid(entry.Series.SeriesInstanceUid), MaxUidLength, "Series Instance UID"),
        Checked(IndexNormalizer.Uid(entry.Instance.SopInstanceUid), MaxUidLength, "SOP Instance UID"));

    /// <summary>
    /// The patient row's key: the Patient ID under its issuer. An object without a Patient ID (Type 2: an unidentified or
    /// emergency patient) names nobody, so its study gets a patient of its own; keyed on the empty ID, every such
    /// object was filed under one patient, and a study answered under another person's name (until 2026-12-07). A
    /// study filed that way before stays with that patient, or its next objects would be refused as filed elsewhere.
    /// </summary>
    private async ValueTask<byte[]> PatientKeyAsync(DbConnection connection, DbTransaction? transaction, string issuer, string patientId, string studyUid,
        CancellationToken cancellationToken)
    {
        var byId = keys.HashIdentifier(IdentifierKinds.Patient, issuer + "\0" + patientId);
        if (patientId.Length > 0)
        {
            return byId;
        }

        var study = await SelectNodeAsync(connection, transaction, Tables[1], keys.HashIdentifier(IdentifierKinds.StudyInstanceUid, studyUid), false,
            cancellationToken).ConfigureAwait(false);
        if (study is { Parent: { } parent }
            && await SelectNodeAsync(connection, transaction, Tables[0], byId, false, cancellationToken).ConfigureAwait(false) is { } shared && shared.Id == parent)
        {
            return byId;
        }

        return keys.HashIdentifier(IdentifierKinds.Patient, issuer + "\0\0study\0" + studyUid);
    }

    public async ValueTask ScheduleUnreferencedObjectDeletionAsync(ObjectId id, CancellationToken cancellationToken)
    {
        var after = (time.GetUtcNow() + _options.DeletionGrace).ToUnixTimeMilliseconds();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await ExecuteAsync(connection, transaction, """
            INSERT INTO archive_deletions (kind, name, delete_after)
            SELECT 'object', @n, @a WHERE NOT EXISTS (SELECT 1 FROM archive_versions WHERE object_id = @o)
            ON CONFLICT (kind, name) DO NOTHING
            """, cancellationToken, ("@n", id.ToString()), ("@a", after), ("@o", id.ToArray())).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<long> AddQuarantineAsync(DbConnection connection, DbTransaction transaction, QuarantineEntry entry,
        CancellationToken cancellationToken)
    {
        FileObjectStore.ValidateQuarantineId(entry.QuarantineId);
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var context = QuarantineContext(entry.QuarantineId);
        var reason = keys.Seal(Encoding.UTF8.GetBytes(entry.Reason), context);
        var details = entry.Details is null
            ? null
            : keys.Seal(entry.Details.Serialize(_options.MaxIndexAttributesBytes, _options.MaxIndexAttributes), [.. context, .. "/details"u8]);
        await using var command = connection.CreateCommand(transaction, """
            INSERT INTO archive_quarantine (quarantine_id, object_id, length, reason, details, quarantined_at)
            VALUES (@q, @o, @l, @r, @d, @t) RETURNING id
            """)
            .With("@q", entry.QuarantineId).With("@o", entry.ObjectId.ToArray()).With("@l", entry.Length).With("@r", reason)
            .With("@t", entry.QuarantinedAt.ToUnixTimeMilliseconds());
        AddBlob(command, "@d", details);
        return ToLong(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false));
    }

    public async ValueTask<QueryResult> QueryAsync(ArchiveQuery query, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        using var activity = ArchiveTelemetry.Source.StartActivity("archive.index.query");
        var level = (int)query.Level;
        var queryKeys = query.Keys.Where(k => LevelOf(k.Tag, level) <= level).ToList();
        var wantsModalities = level == 1 && queryKeys.Any(k => k.Tag == DicomTags.ModalitiesInStudy);
        var matchKeys = queryKeys.Where(k => !(wantsModalities && k.Tag == DicomTags.ModalitiesInStudy)).ToList();
        var modalityKey = wantsModalities ? queryKeys.First(k => k.Tag == DicomTags.ModalitiesInStudy) : null;
        var (clauses, parameters) = Narrow(level, queryKeys);

        var alias = Alias(level);
        var sql = new StringBuilder("SELECT ").Append(SelectColumns(level)).Append(" FROM ").Append(FromClause(level))
            .Append(" WHERE ").Append(alias).Append(".id > @after");
        foreach (var clause in clauses)
        {
            sql.Append(" AND ").Append(clause);
        }

        sql.Append(" ORDER BY ").Append(alias).Append(".id LIMIT @batch");

        var matches = new List<QueryMatch>();
        var cache = new Dictionary<(int, long), AttributeSet?>();
        var tampered = new List<IndexRowRef>();
        var parentCounts = new Dictionary<(int, long), RelatedCounts>();
        var scanned = 0;
        var incomplete = false;
        long after = 0;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var acceptLegacy = await AcceptLegacyAsync(connection, cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var rows = new List<CandidateRow>();
            await using (var command = connection.CreateCommand(null, sql.ToString()).With("@after", after).With("@batch", _options.QueryBatchSize))
            {
                foreach (var (name, value) in parameters)
                {
                    command.With(name, value);
                }

                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add(ReadCandidate(reader, level));
                }
            }

            foreach (var row in rows)
            {
                after = row.Ids[level];
                scanned++;
                AttributeSet? attributes = AttributeSet.Empty;
                for (var l = 0; l <= level && attributes is not null; l++)
                {
                    var opened = Decrypt(cache, l, row, acceptLegacy, tampered);
                    attributes = opened is null ? null : attributes.Merge(opened);
                }

                // A row that does not open bound to its parent was moved or altered in the database: never served, under
                // any patient (it could be another patient's study filed here by one UPDATE). Reported to the caller.
                if (attributes is null)
                {
                    continue;
                }

                if (!matchKeys.All(k => AttributeMatcher.Matches(k, attributes)))
                {
                    continue;
                }

                if (modalityKey is not null)
                {
                    // Computed from the study's series, only for rows that match everything else.
                    var modalities = await ModalitiesAsync(connection, row.Ids[1], row.Keys[1], acceptLegacy, cancellationToken).ConfigureAwait(false);
                    attributes = attributes.Merge(new AttributeSet([new(DicomTags.ModalitiesInStudy, modalities)]));
                    if (!AttributeMatcher.Matches(modalityKey with { Kind = QueryValueKind.Text }, attributes))
                    {
                        continue;
                    }
                }

                if (matches.Count == query.Limit)
                {
                    incomplete = true;
                    break;
                }

                var counts = query.IncludeCounts ? await CountsAsync(connection, level, row.Ids[level], cancellationToken).ConfigureAwait(false) : null;
                var parents = new Dictionary<QueryLevel, RelatedCounts>();
                foreach (var parent in query.ParentCounts.Where(l => (int)l < level).Distinct())
                {
                    // Many matches share a parent: counted once per query.
                    var parentRow = ((int)parent, row.Ids[(int)parent]);
                    if (!parentCounts.TryGetValue(parentRow, out var related))
                    {
                        related = await CountsAsync(connection, (int)parent, parentRow.Item2, cancellationToken).ConfigureAwait(false);
                        parentCounts[parentRow] = related;
                    }

                    parents[parent] = related;
                }

                matches.Add(new QueryMatch(query.Level, attributes, row.Ids[0],
                    level >= 1 ? row.Ids[1] : null, level >= 2 ? row.Ids[2] : null, level >= 3 ? row.Ids[3] : null,
                    row.ObjectId, row.ObjectLength, row.Version, counts) { ParentCounts = parents });
            }

            if (incomplete || rows.Count < _options.QueryBatchSize)
            {
                break;
            }

            if (scanned >= _options.QueryMaxCandidates)
            {
                incomplete = true;
                break;
            }
        }

        return new QueryResult(matches, scanned, incomplete) { Tampered = tampered };
    }

    public async ValueTask<InstanceLocation?> FindInstanceAsync(string sopInstanceUid, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var key = keys.HashIdentifier(IdentifierKinds.SopInstanceUid, IndexNormalizer.Uid(sopInstanceUid));
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, """
            SELECT st.patient_id, se.study_id, i.series_id, i.id, i.current_version, v.object_id, v.length
            FROM archive_instances i
            JOIN archive_versions v ON v.instance_id = i.id AND v.version = i.current_version
            JOIN archive_series se ON se.id = i.series_id
            JOIN archive_studies st ON st.id = se.study_id
            WHERE i.sop_uid = @k
            """).With("@k", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return new InstanceLocation(ToLong(reader.GetValue(0)), ToLong(reader.GetValue(1)), ToLong(reader.GetValue(2)), ToLong(reader.GetValue(3)),
            (int)ToLong(reader.GetValue(4)), new ObjectId((byte[])reader.GetValue(5)), ToLong(reader.GetValue(6)));
    }

    public async ValueTask<IReadOnlyDictionary<string, StoredInstance>> FindStoredInstancesAsync(IReadOnlyCollection<string> sopInstanceUids,
        CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var instances = new Dictionary<string, StoredInstance>(StringComparer.Ordinal);
        // One connection for the whole list: a storage commitment request may name a study of thousands of instances.
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var acceptLegacy = await AcceptLegacyAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var sopInstanceUid in sopInstanceUids)
        {
            var key = keys.HashIdentifier(IdentifierKinds.SopInstanceUid, IndexNormalizer.Uid(sopInstanceUid));
            await using var command = connection.CreateCommand(null, """
                SELECT i.attributes, v.object_id, v.length, se.series_uid, i.current_version
                FROM archive_instances i JOIN archive_versions v ON v.instance_id = i.id AND v.version = i.current_version
                JOIN archive_series se ON se.id = i.series_id
                WHERE i.sop_uid = @k
                """).With("@k", key);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            // A row that fails its check is not held: the commitment reports it failed rather than vouch for it.
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
                && TryOpenAttributes(keys, 3, key, (byte[])reader.GetValue(3), (int)ToLong(reader.GetValue(4)), (byte[])reader.GetValue(0), acceptLegacy)
                    ?.First(DicomTags.SopClassUid) is { } sopClass)
            {
                instances[sopInstanceUid] = new StoredInstance(sopClass, new ObjectId((byte[])reader.GetValue(1)), ToLong(reader.GetValue(2)));
            }
        }

        return instances;
    }

    public async ValueTask<IReadOnlyList<InstanceVersion>> GetVersionsAsync(string sopInstanceUid, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var key = keys.HashIdentifier(IdentifierKinds.SopInstanceUid, IndexNormalizer.Uid(sopInstanceUid));
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, """
            SELECT v.version, v.object_id, v.length, v.stored_at, v.superseded_at
            FROM archive_versions v JOIN archive_instances i ON i.id = v.instance_id
            WHERE i.sop_uid = @k ORDER BY v.version
            """).With("@k", key);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var versions = new List<InstanceVersion>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            versions.Add(new InstanceVersion((int)ToLong(reader.GetValue(0)), new ObjectId((byte[])reader.GetValue(1)), ToLong(reader.GetValue(2)),
                DateTimeOffset.FromUnixTimeMilliseconds(ToLong(reader.GetValue(3))),
                reader.IsDBNull(4) ? null : DateTimeOffset.FromUnixTimeMilliseconds(ToLong(reader.GetValue(4)))));
        }

        return versions;
    }

    public ValueTask<IReadOnlyList<QuarantineRecord>> ListQuarantineAsync(long afterRowId, int limit, CancellationToken cancellationToken) =>
        ReadQuarantineAsync("WHERE id > @a ORDER BY id LIMIT @n", command => command.With("@a", afterRowId).With("@n", limit), cancellationToken);

    public async ValueTask<QuarantineRecord?> FindQuarantineAsync(string quarantineId, CancellationToken cancellationToken) =>
        (await ReadQuarantineAsync("WHERE quarantine_id = @q", command => command.With("@q", quarantineId), cancellationToken).ConfigureAwait(false))
            .SingleOrDefault();

    /// <summary>Quarantine records that <paramref name="where"/> selects, their reason and details opened.</summary>
    private async ValueTask<IReadOnlyList<QuarantineRecord>> ReadQuarantineAsync(string where, Func<DbCommand, DbCommand> bind,
        CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = bind(connection.CreateCommand(null, $"""
            SELECT id, quarantine_id, object_id, length, reason, details, quarantined_at
            FROM archive_quarantine {where}
            """));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var records = new List<QuarantineRecord>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var quarantineId = reader.GetString(1);
            var context = QuarantineContext(quarantineId);
            var reason = Encoding.UTF8.GetString(keys.Open((byte[])reader.GetValue(4), context));
            var details = reader.IsDBNull(5)
                ? AttributeSet.Empty
                : AttributeSet.Deserialize(keys.Open((byte[])reader.GetValue(5), [.. context, .. "/details"u8]));
            records.Add(new QuarantineRecord(ToLong(reader.GetValue(0)), quarantineId, new ObjectId((byte[])reader.GetValue(2)),
                ToLong(reader.GetValue(3)), reason, DateTimeOffset.FromUnixTimeMilliseconds(ToLong(reader.GetValue(6))), details));
        }

        return records;
    }

    public async ValueTask<ArchiveStats> GetStatsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, """
            SELECT (SELECT COUNT(*) FROM archive_patients), (SELECT COUNT(*) FROM archive_studies), (SELECT COUNT(*) FROM archive_series),
                   (SELECT COUNT(*) FROM archive_instances), (SELECT COUNT(*) FROM archive_versions), (SELECT COUNT(*) FROM archive_objects),
                   (SELECT COALESCE(SUM(length), 0) FROM archive_objects), (SELECT COUNT(*) FROM archive_quarantine)
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new ArchiveStats(ToLong(reader.GetValue(0)), ToLong(reader.GetValue(1)), ToLong(reader.GetValue(2)), ToLong(reader.GetValue(3)),
            ToLong(reader.GetValue(4)), ToLong(reader.GetValue(5)), ToLong(reader.GetValue(6)), ToLong(reader.GetValue(7)));
    }

    public ValueTask<DateTimeOffset?> LatestObjectTimeAsync(CancellationToken cancellationToken) =>
        ReadTimeAsync("SELECT MAX(created_at) FROM archive_objects", cancellationToken);

    public async ValueTask<string?> ReadArchiveIdAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT archive_id FROM archive_identity WHERE id = 1");
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
    }

    public async ValueTask<string> BindArchiveIdAsync(string candidate, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var transaction = await database.BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken).ConfigureAwait(false))
        {
            await using var command = connection.CreateCommand(transaction,
                "INSERT INTO archive_identity (id, archive_id) VALUES (1, @a) ON CONFLICT (id) DO NOTHING").With("@a", candidate);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var read = connection.CreateCommand(null, "SELECT archive_id FROM archive_identity WHERE id = 1");
        return (string)(await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    public async ValueTask<bool> HasObjectsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT 1 FROM archive_objects LIMIT 1");
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null and not DBNull;
    }

    public ValueTask<DateTimeOffset?> RecoveryFloorAsync(CancellationToken cancellationToken) =>
        ReadTimeAsync("SELECT scan_from FROM archive_recovery_floor WHERE id = 1", cancellationToken);

    /// <summary>One time (Unix milliseconds) read by <paramref name="sql"/>, or null when there is no row or no value.</summary>
    private async ValueTask<DateTimeOffset?> ReadTimeAsync(string sql, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, sql);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is { } value and not DBNull
            ? DateTimeOffset.FromUnixTimeMilliseconds(ToLong(value))
            : null;
    }

    public async ValueTask LowerRecoveryFloorAsync(DateTimeOffset scanFrom, CancellationToken cancellationToken)
    {
        var lower = database.Provider == DatabaseProvider.Postgres ? "LEAST" : "MIN";
        await WriteRecoveryFloorAsync($"""
            INSERT INTO archive_recovery_floor (id, scan_from) VALUES (1, @s)
            ON CONFLICT (id) DO UPDATE SET scan_from = {lower}(archive_recovery_floor.scan_from, excluded.scan_from)
            """, scanFrom.ToUnixTimeMilliseconds(), cancellationToken).ConfigureAwait(false);
    }

    public ValueTask ClearRecoveryFloorAsync(CancellationToken cancellationToken) =>
        WriteRecoveryFloorAsync("DELETE FROM archive_recovery_floor WHERE id = 1", null, cancellationToken);

    private async ValueTask WriteRecoveryFloorAsync(string sql, long? scanFrom, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, sql);
        if (scanFrom is { } value)
        {
            command.With("@s", value);
        }

        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<(int Resealed, int Failed)> BindLegacySealsAsync(CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        if (!await AcceptsLegacySealsAsync(connection, cancellationToken).ConfigureAwait(false))
        {
            _sealsBound = true;
            return (0, 0);
        }

        int resealed = 0, failed = 0;
        for (var level = 1; level <= 3; level++)
        {
            var table = Tables[level];
            var parent = Tables[level - 1];
            var version = level == 3 ? "c.current_version" : "0";
            long after = 0;
            while (true)
            {
                var page = new List<(long Id, byte[] Key, byte[] Attributes, byte[] ParentKey, int Version)>();
                await using (var command = connection.CreateCommand(null, $"""
                                 SELECT c.id, c.{table.KeyColumn}, c.attributes, p.{parent.KeyColumn}, {version}
                                 FROM {table.Name} c JOIN {parent.Name} p ON p.id = c.{table.ParentColumn}
                                 WHERE c.id > @after ORDER BY c.id LIMIT 1000
                                 """).With("@after", after))
                await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        page.Add((ToLong(reader.GetValue(0)), (byte[])reader.GetValue(1), (byte[])reader.GetValue(2), (byte[])reader.GetValue(3),
                            (int)ToLong(reader.GetValue(4))));
                    }
                }

                if (page.Count == 0)
                {
                    break;
                }

                after = page[^1].Id;
                await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
                foreach (var row in page)
                {
                    if (TryOpenAttributes(keys, level, row.Key, row.ParentKey, row.Version, row.Attributes, acceptLegacy: false) is not null)
                    {
                        continue;
                    }

                    byte[] plain;
                    try
                    {
                        plain = keys.Open(row.Attributes, AttributesContext(level, row.Key));
                    }
                    catch (System.Security.Cryptography.CryptographicException)
                    {
                        // Neither form: altered before this pass. Left as it is, for the scrub to name.
                        failed++;
                        continue;
                    }

                    // Only if unchanged since read: a store that rewrote the row meanwhile sealed it the new way already.
                    await ExecuteAsync(connection, transaction, $"UPDATE {table.Name} SET attributes = @a WHERE id = @i AND attributes = @o", cancellationToken,
                        ("@a", keys.Seal(plain, BoundContext(level, row.Key, row.ParentKey, row.Version))), ("@i", row.Id), ("@o", row.Attributes))
                        .ConfigureAwait(false);
                    resealed++;
                }

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        await using (var transaction = await database.BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken).ConfigureAwait(false))
        {
            await ExecuteAsync(connection, transaction, "INSERT INTO archive_seal_binding (id, bound_at) VALUES (1, @n) ON CONFLICT (id) DO NOTHING",
                cancellationToken, ("@n", time.GetUtcNow().ToUnixTimeMilliseconds())).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        _sealsBound = true;
        return (resealed, failed);
    }

    public async ValueTask<IReadOnlySet<ObjectId>?> FindLegacyQuarantinedAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var bound = connection.CreateCommand(null, "SELECT 1 FROM archive_quarantine_binding WHERE id = 1"))
        {
            if (await bound.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not (null or DBNull))
            {
                return null;
            }
        }

        var ids = new HashSet<ObjectId>();
        await using var command = connection.CreateCommand(null, "SELECT DISTINCT object_id FROM archive_quarantine");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            ids.Add(new ObjectId((byte[])reader.GetValue(0)));
        }

        return ids;
    }

    public async ValueTask RecordQuarantinePurposeBoundAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken).ConfigureAwait(false);
        await ExecuteAsync(connection, transaction, "INSERT INTO archive_quarantine_binding (id, bound_at) VALUES (1, @n) ON CONFLICT (id) DO NOTHING",
            cancellationToken, ("@n", time.GetUtcNow().ToUnixTimeMilliseconds())).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<IReadOnlyList<ObjectId>> FindUnreferencedAsync(IReadOnlyList<ObjectId> ids, CancellationToken cancellationToken)
    {
        var unreferenced = new List<ObjectId>();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var id in ids)
        {
            await using var command = connection.CreateCommand(null, """
                    SELECT CASE WHEN EXISTS (SELECT 1 FROM archive_versions WHERE object_id = @o)
                                  OR EXISTS (SELECT 1 FROM archive_quarantine WHERE object_id = @o)
                                  OR EXISTS (SELECT 1 FROM archive_deletions WHERE kind = 'object' AND name = @n) THEN 1 ELSE 0 END
                    """)
                .With("@o", id.ToArray()).With("@n", id.ToString());
            if (ToLong(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false)) == 0)
            {
                unreferenced.Add(id);
            }
        }

        return unreferenced;
    }

    // ---- writing ----

    private async ValueTask<(long Id, bool Conflict)> UpsertNodeAsync(DbConnection connection, DbTransaction transaction, int level, byte[] key,
        long? parent, byte[]? parentKey, AttributeSet attributes, Func<AttributeSet, List<byte[]>> termsOf, long now, CancellationToken cancellationToken)
    {
        // Name prefixes make dozens of keyed hashes: computed only when the row is written, not for every instance of a known patient.
        var table = Tables[level];
        var serialized = attributes.Serialize(_options.MaxIndexAttributesBytes, _options.MaxIndexAttributes);
        var mac = keys.AttributesMac(serialized);
        var existing = await SelectNodeAsync(connection, transaction, table, key, forUpdate: false, cancellationToken).ConfigureAwait(false);
        if (existing is null)
        {
            var sealedAttributes = keys.Seal(serialized, BoundContext(level, key, parentKey, 0));
            var parentColumns = table.ParentColumn is null ? "" : $", {table.ParentColumn}";
            var parentValues = table.ParentColumn is null ? "" : ", @p";
            await using var insert = connection.Statement(transaction, $"""
                INSERT INTO {table.Name} ({table.KeyColumn}{parentColumns}, attributes, attributes_mac, created_at, updated_at)
                VALUES (@k{parentValues}, @a, @m, @n, @n) ON CONFLICT ({table.KeyColumn}) DO NOTHING RETURNING id
                """).With("@k", key).With("@a", sealedAttributes).With("@m", mac).With("@n", now);
            if (parent is not null)
            {
                insert.With("@p", parent.Value);
            }

            var id = await insert.Command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (id is not null and not DBNull)
            {
                var rowId = ToLong(id);
                if (level <= 1)
                {
                    // Terms planted on the id this row was to get (max + 1 on SQLite, the next value of a sequence) are not its own.
                    await ExecuteAsync(connection, transaction, "DELETE FROM archive_terms WHERE level = @l AND row_id = @r",
                        cancellationToken, ("@l", (short)level), ("@r", rowId)).ConfigureAwait(false);
                }

                await InsertTermsAsync(connection, transaction, level, rowId, termsOf(attributes), cancellationToken).ConfigureAwait(false);
                return (rowId, false);
            }

            // Another transaction inserted it first (PostgreSQL waits for it to commit before DO NOTHING).
            existing = await SelectNodeAsync(connection, transaction, table, key, forUpdate: false, cancellationToken).ConfigureAwait(false)
                       ?? throw new InvalidOperationException($"An {table.Label} row vanished during an index write.");
        }

        if (parent is not null && existing.Value.Parent != parent)
        {
            return (existing.Value.Id, true);
        }

        if (!existing.Value.Mac.AsSpan().SequenceEqual(mac))
        {
            await ExecuteAsync(connection, transaction, $"UPDATE {table.Name} SET attributes = @a, attributes_mac = @m, updated_at = @n WHERE id = @i",
                cancellationToken, ("@a", keys.Seal(serialized, BoundContext(level, key, parentKey, 0))), ("@m", mac), ("@n", now), ("@i", existing.Value.Id))
                .ConfigureAwait(false);
            await ExecuteAsync(connection, transaction, "DELETE FROM archive_terms WHERE level = @l AND row_id = @r",
                cancellationToken, ("@l", (short)level), ("@r", existing.Value.Id)).ConfigureAwait(false);
            await InsertTermsAsync(connection, transaction, level, existing.Value.Id, termsOf(attributes), cancellationToken).ConfigureAwait(false);
        }

        return (existing.Value.Id, false);
    }

    private async ValueTask<(long Id, int Version, IndexOutcome Outcome, bool Conflict)> StoreVersionAsync(DbConnection connection,
        DbTransaction transaction, byte[] sopKey, long seriesRow, byte[] seriesKey, AttributeSet attributes, InstanceIndexEntry entry, long now,
        CancellationToken cancellationToken)
    {
        var table = Tables[3];
        var serialized = attributes.Serialize(_options.MaxIndexAttributesBytes, _options.MaxIndexAttributes);
        var mac = keys.AttributesMac(serialized);
        var objectId = entry.ObjectId.ToArray();
        var existing = await SelectNodeAsync(connection, transaction, table, sopKey, forUpdate: true, cancellationToken).ConfigureAwait(false);
        if (existing is null)
        {
            await using var insert = connection.Statement(transaction, """
                INSERT INTO archive_instances (sop_uid, series_id, current_version, attributes, attributes_mac, created_at, updated_at)
                VALUES (@k, @p, 1, @a, @m, @n, @n) ON CONFLICT (sop_uid) DO NOTHING RETURNING id
                """).With("@k", sopKey).With("@p", seriesRow).With("@a", keys.Seal(serialized, BoundContext(3, sopKey, seriesKey, 1)))
                .With("@m", mac).With("@n", now);
            var id = await insert.Command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            if (id is not null and not DBNull)
            {
                var rowId = ToLong(id);
                await InsertVersionAsync(connection, transaction, rowId, 1, sopKey, objectId, entry, now, cancellationToken).ConfigureAwait(false);
                return (rowId, 1, IndexOutcome.NewInstance, false);
            }

            existing = await SelectNodeAsync(connection, transaction, table, sopKey, forUpdate: true, cancellationToken).ConfigureAwait(false)
                       ?? throw new InvalidOperationException("An instance row vanished during an index write.");
        }

        var (instanceRow, parent, current, _) = existing.Value;
        var conflict = parent != seriesRow;
        await using (var select = connection.Statement(transaction,
                         "SELECT object_id FROM archive_versions WHERE instance_id = @i AND version = @v")
                         .With("@i", instanceRow).With("@v", current))
        {
            if (await select.Command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is byte[] currentObject
                && currentObject.AsSpan().SequenceEqual(objectId))
            {
                return (instanceRow, current, IndexOutcome.AlreadyStored, conflict);
            }
        }

        var next = current + 1;
        await ExecuteAsync(connection, transaction, "UPDATE archive_versions SET superseded_at = @n WHERE instance_id = @i AND version = @v",
            cancellationToken, ("@n", now), ("@i", instanceRow), ("@v", current)).ConfigureAwait(false);
        await InsertVersionAsync(connection, transaction, instanceRow, next, sopKey, objectId, entry, now, cancellationToken).ConfigureAwait(false);
        if (conflict)
        {
            // The row stays under the series it was filed under (the flag reports it): sealed bound to that one.
            await using var parentKey = connection.Statement(transaction, "SELECT series_uid FROM archive_series WHERE id = @s").With("@s", parent!.Value);
            seriesKey = (byte[])(await parentKey.Command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        // Re-sealed at every version, even with the same attributes: the current version is in the associated data.
        await ExecuteAsync(connection, transaction,
            "UPDATE archive_instances SET current_version = @v, attributes = @a, attributes_mac = @m, updated_at = @n WHERE id = @i",
            cancellationToken, ("@v", next), ("@a", keys.Seal(serialized, BoundContext(3, sopKey, seriesKey, next))), ("@m", mac), ("@n", now),
            ("@i", instanceRow)).ConfigureAwait(false);

        return (instanceRow, next, IndexOutcome.NewVersion, conflict);
    }

    private async ValueTask InsertVersionAsync(DbConnection connection, DbTransaction transaction, long instanceRow, int version, byte[] sopKey,
        byte[] objectId, InstanceIndexEntry entry, long now, CancellationToken cancellationToken)
    {
        byte[]? source = null;
        if (entry.Source is not null)
        {
            var context = new byte[AttributesContext(3, sopKey).Length + 4];
            AttributesContext(3, sopKey).CopyTo(context, 0);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(context.AsSpan(context.Length - 4), version);
            source = keys.Seal(entry.Source.Serialize(_options.MaxIndexAttributesBytes, _options.MaxIndexAttributes), context);
        }

        await using var command = connection.Statement(transaction, """
            INSERT INTO archive_versions (instance_id, version, object_id, length, stored_at, superseded_at, source)
            VALUES (@i, @v, @o, @l, @n, NULL, @s)
            """).With("@i", instanceRow).With("@v", version).With("@o", objectId).With("@l", entry.ObjectLength).With("@n", now);
        AddBlob(command.Command, "@s", source);
        await command.Command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<(long Id, long? Parent, int Version, byte[] Mac)?> SelectNodeAsync(DbConnection connection, DbTransaction? transaction,
        NodeTable table, byte[] key, bool forUpdate, CancellationToken cancellationToken)
    {
        var parent = table.ParentColumn ?? "NULL";
        var version = table.Name == "archive_instances" ? "current_version" : "0";
        var lockClause = forUpdate && database.Provider == DatabaseProvider.Postgres ? " FOR UPDATE" : "";
        await using var command = connection.Statement(transaction,
            $"SELECT id, {parent}, {version}, attributes_mac FROM {table.Name} WHERE {table.KeyColumn} = @k{lockClause}").With("@k", key);
        await using var reader = await command.Command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return (ToLong(reader.GetValue(0)), reader.IsDBNull(1) ? null : ToLong(reader.GetValue(1)), (int)ToLong(reader.GetValue(2)),
            (byte[])reader.GetValue(3));
    }

    private static async ValueTask InsertTermsAsync(DbConnection connection, DbTransaction transaction, int level, long rowId, List<byte[]> terms,
        CancellationToken cancellationToken)
    {
        var distinct = terms.DistinctBy(Convert.ToHexString).ToList();
        if (distinct.Count == 0)
        {
            return;
        }

        var sql = new StringBuilder("INSERT INTO archive_terms (term, level, row_id) VALUES ");
        for (var i = 0; i < distinct.Count; i++)
        {
            sql.Append(i == 0 ? "" : ", ").Append("(@t").Append(i.ToString(CultureInfo.InvariantCulture)).Append(", @l, @r)");
        }

        sql.Append(" ON CONFLICT DO NOTHING");
        await using var command = connection.CreateCommand(transaction, sql.ToString()).With("@l", (short)level).With("@r", rowId);
        for (var i = 0; i < distinct.Count; i++)
        {
            command.With("@t" + i.ToString(CultureInfo.InvariantCulture), distinct[i]);
        }

        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private List<byte[]> PatientTerms(AttributeSet attributes) => PatientTerms(keys, _options, attributes);

    private List<byte[]> StudyTerms(AttributeSet attributes) => StudyTerms(keys, _options, attributes);

    /// <summary>The search terms a patient (level 0) or study (level 1) row with these attributes is written with; none for the other levels.</summary>
    internal static List<byte[]> TermsOf(IArchiveKeyService keys, ArchiveOptions options, int level, AttributeSet attributes) => level switch
    {
        0 => PatientTerms(keys, options, attributes),
        1 => StudyTerms(keys, options, attributes),
        _ => [],
    };

    /// <summary>Replaces a row's search terms (scrub's repair).</summary>
    internal static async ValueTask RewriteTermsAsync(DbConnection connection, DbTransaction transaction, int level, long rowId, List<byte[]> terms,
        CancellationToken cancellationToken)
    {
        await ExecuteAsync(connection, transaction, "DELETE FROM archive_terms WHERE level = @l AND row_id = @r",
            cancellationToken, ("@l", (short)level), ("@r", rowId)).ConfigureAwait(false);
        await InsertTermsAsync(connection, transaction, level, rowId, terms, cancellationToken).ConfigureAwait(false);
    }

    private static List<byte[]> PatientTerms(IArchiveKeyService keys, ArchiveOptions options, AttributeSet attributes)
    {
        var terms = new List<byte[]>();
        foreach (var id in Values(attributes, DicomTags.PatientId).Select(IndexNormalizer.Identifier).Where(v => v.Length > 0))
        {
            terms.Add(keys.HashIdentifier(IdentifierKinds.PatientId, id));
        }

        AddNameTerms(keys, options, terms, attributes, DicomTags.PatientName, IdentifierKinds.PatientName, IdentifierKinds.PatientNamePrefix);
        foreach (var date in Values(attributes, DicomTags.PatientBirthDate).Select(IndexNormalizer.Date).Where(v => v.Length > 0))
        {
            terms.Add(keys.HashIdentifier(IdentifierKinds.PatientBirthDate, date));
        }

        return terms;
    }

    private static List<byte[]> StudyTerms(IArchiveKeyService keys, ArchiveOptions options, AttributeSet attributes)
    {
        var terms = new List<byte[]>();
        foreach (var accession in Values(attributes, DicomTags.AccessionNumber).Select(IndexNormalizer.Identifier).Where(v => v.Length > 0))
        {
            terms.Add(keys.HashIdentifier(IdentifierKinds.AccessionNumber, accession));
        }

        foreach (var date in Values(attributes, DicomTags.StudyDate).Select(IndexNormalizer.Date))
        {
            if (date.Length == 8 && date.All(char.IsAsciiDigit))
            {
                terms.Add(keys.HashIdentifier(IdentifierKinds.StudyMonth, date[..6]));
            }
        }

        AddNameTerms(keys, options, terms, attributes, DicomTags.ReferringPhysicianName, IdentifierKinds.ReferringPhysicianName,
            IdentifierKinds.ReferringPhysicianNamePrefix);
        return terms;
    }

    private static void AddNameTerms(IArchiveKeyService keys, ArchiveOptions options, List<byte[]> terms, AttributeSet attributes, uint tag,
        string exactKind, string prefixKind)
    {
        foreach (var name in Values(attributes, tag).Select(IndexNormalizer.PersonName).Where(v => v.Length > 0))
        {
            terms.Add(keys.HashIdentifier(exactKind, name));
            for (var length = options.NamePrefixMinLength; length <= Math.Min(options.NamePrefixMaxLength, name.Length); length++)
            {
                terms.Add(keys.HashIdentifier(prefixKind, name[..length]));
            }
        }
    }

    // ---- querying ----

    private (List<string> Clauses, List<(string Name, object Value)> Parameters) Narrow(int level, List<QueryKey> queryKeys)
    {
        var clauses = new List<string>();
        var parameters = new List<(string, object)>();

        string Parameter(object value)
        {
            var name = "@h" + parameters.Count.ToString(CultureInfo.InvariantCulture);
            parameters.Add((name, value));
            return name;
        }

        void Term(string alias, int termLevel, IReadOnlyList<byte[]> hashes)
        {
            if (hashes.Count == 0 || parameters.Count + hashes.Count > _options.QueryMaxHashParameters)
            {
                return;
            }

            var list = string.Join(", ", hashes.Select(h => Parameter(h)));
            clauses.Add($"{alias}.id IN (SELECT row_id FROM archive_terms WHERE level = {termLevel} AND term IN ({list}))");
        }

        void UidList(string alias, string column, string kind, string value)
        {
            var uids = value.Split('\\').Select(IndexNormalizer.Uid).Where(u => u.Length > 0).Distinct(StringComparer.Ordinal).ToList();
            if (uids.Count == 0 || uids.Any(u => u.Contains('*', StringComparison.Ordinal) || u.Contains('?', StringComparison.Ordinal))
                || parameters.Count + uids.Count > _options.QueryMaxHashParameters)
            {
                return;
            }

            var list = string.Join(", ", uids.Select(u => Parameter(keys.HashIdentifier(kind, u))));
            clauses.Add($"{alias}.{column} IN ({list})");
        }

        // A multi-valued key narrows to the union of its values' hashes, and not at all when one value cannot be hashed.
        List<byte[]> Each(string value, Func<string, List<byte[]>> hashes)
        {
            var union = new List<byte[]>();
            foreach (var part in AttributeMatcher.Patterns(value, QueryValueKind.Text))
            {
                var terms = hashes(part);
                if (terms.Count == 0)
                {
                    return [];
                }

                union.AddRange(terms);
            }

            return union;
        }

        foreach (var key in queryKeys.Where(k => !AttributeMatcher.IsUniversal(k)))
        {
            var value = key.Value;
            switch (key.Tag)
            {
                case DicomTags.PatientId:
                    Term("p", 0, Each(value, v => HasWildcard(v) ? [] : [keys.HashIdentifier(IdentifierKinds.PatientId, IndexNormalizer.Identifier(v))]));
                    break;
                case DicomTags.PatientName:
                    Term("p", 0, Each(value, v => NameTerm(v, IdentifierKinds.PatientName, IdentifierKinds.PatientNamePrefix)));
                    break;
                case DicomTags.PatientBirthDate:
                    Term("p", 0, Each(value, v => v.Contains('-', StringComparison.Ordinal) || HasWildcard(v) || IndexNormalizer.Date(v).Length == 0
                        ? []
                        : [keys.HashIdentifier(IdentifierKinds.PatientBirthDate, IndexNormalizer.Date(v))]));
                    break;
                case DicomTags.StudyInstanceUid when level >= 1:
                    UidList("st", "study_uid", IdentifierKinds.StudyInstanceUid, value);
                    break;
                case DicomTags.AccessionNumber when level >= 1:
                    Term("st", 1, Each(value, v => HasWildcard(v) ? [] : [keys.HashIdentifier(IdentifierKinds.AccessionNumber, IndexNormalizer.Identifier(v))]));
                    break;
                case DicomTags.StudyDate when level >= 1:
                    Term("st", 1, Each(value, MonthTerms));
                    break;
                case DicomTags.ReferringPhysicianName when level >= 1:
                    Term("st", 1, Each(value, v => NameTerm(v, IdentifierKinds.ReferringPhysicianName, IdentifierKinds.ReferringPhysicianNamePrefix)));
                    break;
                case DicomTags.SeriesInstanceUid when level >= 2:
                    UidList("se", "series_uid", IdentifierKinds.SeriesInstanceUid, value);
                    break;
                case DicomTags.SopInstanceUid when level >= 3:
                    UidList("i", "sop_uid", IdentifierKinds.SopInstanceUid, value);
                    break;
            }
        }

        return (clauses, parameters);
    }

    private List<byte[]> NameTerm(string pattern, string exactKind, string prefixKind)
    {
        var wildcard = pattern.IndexOfAny(['*', '?']);
        if (wildcard < 0)
        {
            var exact = IndexNormalizer.PersonName(pattern);
            return exact.Length == 0 ? [] : [keys.HashIdentifier(exactKind, exact)];
        }

        var prefix = IndexNormalizer.PersonName(pattern[..wildcard]);
        return prefix.Length < _options.NamePrefixMinLength
            ? []
            : [keys.HashIdentifier(prefixKind, prefix[..Math.Min(prefix.Length, _options.NamePrefixMaxLength)])];
    }

    private List<byte[]> MonthTerms(string value)
    {
        var dash = value.IndexOf('-', StringComparison.Ordinal);
        var low = IndexNormalizer.Date(dash < 0 ? value : value[..dash]);
        var high = IndexNormalizer.Date(dash < 0 ? value : value[(dash + 1)..]);

        // An open end ("A-", "-B") has no last or first month to list: those ranges are matched on every candidate.
        if (!TryMonth(low, out var from) || !TryMonth(high, out var to) || to < from || to - from >= _options.StudyDateMaxMonths)
        {
            return [];
        }

        var terms = new List<byte[]>();
        for (var month = from; month <= to; month++)
        {
            var text = (month / 12).ToString("D4", CultureInfo.InvariantCulture) + (month % 12 + 1).ToString("D2", CultureInfo.InvariantCulture);
            terms.Add(keys.HashIdentifier(IdentifierKinds.StudyMonth, text));
        }

        return terms;

        static bool TryMonth(string date, out int month)
        {
            month = 0;
            if (date.Length != 8 || !date.All(char.IsAsciiDigit))
            {
                return false;
            }

            var year = int.Parse(date.AsSpan(0, 4), CultureInfo.InvariantCulture);
            var m = int.Parse(date.AsSpan(4, 2), CultureInfo.InvariantCulture);
            if (m is < 1 or > 12)
            {
                return false;
            }

            month = year * 12 + m - 1;
            return true;
        }
    }

    private static int LevelOf(uint tag, int queryLevel) => tag switch
    {
        DicomTags.PatientName or DicomTags.PatientId or DicomTags.IssuerOfPatientId or DicomTags.PatientBirthDate or DicomTags.PatientSex => 0,
        DicomTags.StudyDate or DicomTags.StudyTime or DicomTags.AccessionNumber or DicomTags.StudyInstanceUid or DicomTags.StudyId
            or DicomTags.StudyDescription or DicomTags.ReferringPhysicianName or DicomTags.ModalitiesInStudy => 1,
        DicomTags.Modality or DicomTags.SeriesInstanceUid or DicomTags.SeriesNumber or DicomTags.SeriesDescription or DicomTags.SeriesDate => 2,
        DicomTags.SopInstanceUid or DicomTags.SopClassUid or DicomTags.InstanceNumber => 3,
        _ => queryLevel,
    };

    private static string Alias(int level) => level switch
    {
        0 => "p",
        1 => "st",
        2 => "se",
        _ => "i",
    };

    private static string FromClause(int level) => level switch
    {
        0 => "archive_patients p",
        1 => "archive_studies st JOIN archive_patients p ON p.id = st.patient_id",
        2 => "archive_series se JOIN archive_studies st ON st.id = se.study_id JOIN archive_patients p ON p.id = st.patient_id",
        _ => "archive_instances i JOIN archive_versions v ON v.instance_id = i.id AND v.version = i.current_version "
             + "JOIN archive_series se ON se.id = i.series_id JOIN archive_studies st ON st.id = se.study_id JOIN archive_patients p ON p.id = st.patient_id",
    };

    private static string SelectColumns(int level)
    {
        var columns = new StringBuilder("p.id, p.patient_key, p.attributes");
        if (level >= 1)
        {
            columns.Append(", st.id, st.study_uid, st.attributes");
        }

        if (level >= 2)
        {
            columns.Append(", se.id, se.series_uid, se.attributes");
        }

        if (level >= 3)
        {
            columns.Append(", i.id, i.sop_uid, i.attributes, v.object_id, v.length, v.version");
        }

        return columns.ToString();
    }

    private static CandidateRow ReadCandidate(DbDataReader reader, int level)
    {
        var row = new CandidateRow(new long[4], new byte[4][], new byte[4][]);
        for (var l = 0; l <= level; l++)
        {
            row.Ids[l] = ToLong(reader.GetValue(l * 3));
            row.Keys[l] = (byte[])reader.GetValue(l * 3 + 1);
            row.Attributes[l] = (byte[])reader.GetValue(l * 3 + 2);
        }

        if (level == 3)
        {
            row.ObjectId = new ObjectId((byte[])reader.GetValue(12));
            row.ObjectLength = ToLong(reader.GetValue(13));
            row.Version = (int)ToLong(reader.GetValue(14));
        }

        return row;
    }

    private AttributeSet? Decrypt(Dictionary<(int, long), AttributeSet?> cache, int level, CandidateRow row, bool acceptLegacy, List<IndexRowRef> tampered)
    {
        var id = row.Ids[level];
        if (cache.TryGetValue((level, id), out var attributes))
        {
            return attributes;
        }

        attributes = TryOpenAttributes(keys, level, row.Keys[level], level == 0 ? null : row.Keys[level - 1], row.Version ?? 0, row.Attributes[level],
            acceptLegacy);
        if (attributes is null)
        {
            tampered.Add(new IndexRowRef((QueryLevel)level, id));
        }

        if (level < 3)
        {
            cache[(level, id)] = attributes;
        }

        return attributes;
    }

    /// <summary>Whether rows sealed the pre-2026-12-07 way still open: until a re-sealing pass completed; once it has, for good.</summary>
    private async ValueTask<bool> AcceptLegacyAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        if (_sealsBound)
        {
            return false;
        }

        var legacy = await AcceptsLegacySealsAsync(connection, cancellationToken).ConfigureAwait(false);
        _sealsBound = !legacy;
        return legacy;
    }

    private async ValueTask<IReadOnlyList<string>> ModalitiesAsync(DbConnection connection, long studyRow, byte[] studyKey, bool acceptLegacy,
        CancellationToken cancellationToken)
    {
        var modalities = new SortedSet<string>(StringComparer.Ordinal);
        await using var command = connection.CreateCommand(null, "SELECT series_uid, attributes FROM archive_series WHERE study_id = @s")
            .With("@s", studyRow);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            // A series that does not open under this study (moved here in the database) lends it no modality.
            if (TryOpenAttributes(keys, 2, (byte[])reader.GetValue(0), studyKey, 0, (byte[])reader.GetValue(1), acceptLegacy) is not { } attributes)
            {
                continue;
            }

            foreach (var modality in Values(attributes, DicomTags.Modality))
            {
                modalities.Add(modality.Trim());
            }
        }

        return modalities.ToList();
    }

    private static async ValueTask<RelatedCounts> CountsAsync(DbConnection connection, int level, long rowId, CancellationToken cancellationToken)
    {
        var sql = level switch
        {
            0 => """
                 SELECT (SELECT COUNT(*) FROM archive_studies WHERE patient_id = @r),
                        (SELECT COUNT(*) FROM archive_series se JOIN archive_studies st ON st.id = se.study_id WHERE st.patient_id = @r),
                        (SELECT COUNT(*) FROM archive_instances i JOIN archive_series se ON se.id = i.series_id JOIN archive_studies st ON st.id = se.study_id WHERE st.patient_id = @r)
                 """,
            1 => """
                 SELECT 1, (SELECT COUNT(*) FROM archive_series WHERE study_id = @r),
                        (SELECT COUNT(*) FROM archive_instances i JOIN archive_series se ON se.id = i.series_id WHERE se.study_id = @r)
                 """,
            2 => "SELECT 1, 1, (SELECT COUNT(*) FROM archive_instances WHERE series_id = @r)",
            _ => "SELECT 1, 1, 1",
        };
        await using var command = connection.CreateCommand(null, sql).With("@r", rowId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return new RelatedCounts(ToLong(reader.GetValue(0)), ToLong(reader.GetValue(1)), ToLong(reader.GetValue(2)));
    }

    // ---- helpers ----

    /// <summary>The associated data rows were sealed with before 2026-12-07 (patients still are): the row's own key hash only.</summary>
    internal static byte[] AttributesContext(int level, byte[] key) => [.. Encoding.ASCII.GetBytes($"vigie/index/{Tables[level].Label}/v1/"), .. key];

    /// <summary>
    /// The associated data of a row's sealed attributes since 2026-12-07: its key hash, its parent's key hash (itself bound
    /// to its own sealed blob), and for an instance its current version. A row moved under another parent by one SQL
    /// UPDATE, or an instance rolled back to an older version, then fails to open instead of being served there.
    /// </summary>
    internal static byte[] BoundContext(int level, byte[] key, byte[]? parentKey, int currentVersion)
    {
        if (level == 0)
        {
            return AttributesContext(0, key);
        }

        ArgumentNullException.ThrowIfNull(parentKey);
        var prefix = Encoding.ASCII.GetBytes($"vigie/index/{Tables[level].Label}/v2/");
        var context = new byte[prefix.Length + key.Length + 1 + parentKey.Length + (level == 3 ? 4 : 0)];
        prefix.CopyTo(context, 0);
        key.CopyTo(context, prefix.Length);
        context[prefix.Length + key.Length] = (byte)key.Length;
        parentKey.CopyTo(context, prefix.Length + key.Length + 1);
        if (level == 3)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(context.AsSpan(context.Length - 4), currentVersion);
        }

        return context;
    }

    /// <summary>
    /// A row's attributes, or null when they do not open bound to this parent (and version): the row was moved or altered
    /// in the database. The older form is accepted only in an index whose rows were never re-sealed (see BindLegacySealsAsync).
    /// </summary>
    internal static AttributeSet? TryOpenAttributes(IArchiveKeyService keys, int level, byte[] key, byte[]? parentKey, int currentVersion,
        byte[] sealedAttributes, bool acceptLegacy)
    {
        try
        {
            return AttributeSet.Deserialize(keys.Open(sealedAttributes, BoundContext(level, key, parentKey, currentVersion)));
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or FormatException or InvalidDataException)
        {
            if (!acceptLegacy || level == 0)
            {
                return null;
            }
        }

        try
        {
            return AttributeSet.Deserialize(keys.Open(sealedAttributes, AttributesContext(level, key)));
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or FormatException or InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>True while the index may still hold rows sealed the pre-2026-12-07 way: no re-sealing pass has completed on it.</summary>
    internal static async ValueTask<bool> AcceptsLegacySealsAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand(null, "SELECT 1 FROM archive_seal_binding WHERE id = 1");
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null or DBNull;
    }

    internal static byte[] QuarantineContext(string quarantineId) => Encoding.ASCII.GetBytes("vigie/index/quarantine/v1/" + quarantineId);

    private static IEnumerable<string> Values(AttributeSet attributes, uint tag) =>
        attributes.TryGetValue(tag, out var values) ? values : [];

    private static bool HasWildcard(string value) => value.IndexOfAny(['*', '?']) >= 0;

    private static string Checked(string value, int maxLength, string what, bool allowEmpty = false)
    {
        if ((!allowEmpty && value.Length == 0) || value.Length > maxLength)
        {
            throw new IndexLimitException($"{what} is {(value.Length == 0 ? "empty" : $"longer than {maxLength} characters")}.");
        }

        return value;
    }

    internal static long ToLong(object? value) => Convert.ToInt64(value, CultureInfo.InvariantCulture);

    private static void AddBlob(DbCommand command, string name, byte[]? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = (object?)value ?? DBNull.Value;
        parameter.DbType = System.Data.DbType.Binary;
        command.Parameters.Add(parameter);
    }

    private static async ValueTask ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken,
        params (string Name, object Value)[] parameters)
    {
        await using var command = connection.Statement(transaction, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.Command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private sealed record NodeTable(string Name, string KeyColumn, string? ParentColumn, string Label);

    private sealed class CandidateRow(long[] ids, byte[][] keys, byte[][] attributes)
    {
        public long[] Ids { get; } = ids;

        public byte[][] Keys { get; } = keys;

        public byte[][] Attributes { get; } = attributes;

        public ObjectId? ObjectId { get; set; }

        public long? ObjectLength { get; set; }

        public int? Version { get; set; }
    }
}
