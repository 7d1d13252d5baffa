using System.Data.Common;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Archive.Retention;

/// <summary>What retention removed.</summary>
public enum RetentionAction
{
    /// <summary>A superseded version of an instance (a correction replaced it) reached its retention period.</summary>
    SupersededVersionRemoved,

    /// <summary>A whole study (with its series, instances and versions) reached its retention period.</summary>
    StudyRemoved,

    /// <summary>A quarantined object reached its retention period.</summary>
    QuarantineRemoved,

    /// <summary>
    /// Maintenance scheduled the deletion of an object no index row references and that could not be filed again (not
    /// an instance, or an older copy of an indexed one). Not audited before 2026-12-07.
    /// </summary>
    OrphanRemoved,
}

/// <summary>
/// One retention decision, handed to <see cref="IRetentionAudit"/> inside the index transaction that carries it out.
/// Identifiers are keyed hashes (matchable with <see cref="Keys.IArchiveKeyService.HashIdentifier"/>), never plaintext.
/// </summary>
public sealed record RetentionEvent(
    RetentionAction Action,
    string Policy,
    DateTimeOffset DecidedAt,
    long? StudyRowId,
    byte[]? StudyKey,
    byte[]? PatientKey,
    long? InstanceRowId,
    int? Version,
    IReadOnlyList<ObjectId> Objects,
    string? QuarantineId,
    int Instances,
    AttributeSet? StudyAttributes = null,
    AttributeSet? PatientAttributes = null);

/// <summary>
/// The audit trail's side of retention. The record is written in the same transaction as the deletion: if auditing
/// fails, nothing is deleted.
/// </summary>
public interface IRetentionAudit
{
    ValueTask RecordAsync(DbConnection connection, DbTransaction transaction, RetentionEvent retentionEvent, CancellationToken cancellationToken);
}

/// <summary>
/// Objects that must stay whatever the policy says: not yet delivered to a destination (the PACS that was down, a
/// forward given up on and waiting for someone). Retention keeps a due study or version that uses one, until it is
/// delivered (or dismissed), and says how many it kept.
/// </summary>
public interface IRetentionHold
{
    ValueTask<IReadOnlySet<ObjectId>> HeldObjectsAsync(CancellationToken cancellationToken);
}

/// <summary>Retention periods; null keeps forever. Periods count from the last change (studies), supersession (versions) or quarantine.</summary>
/// <param name="MaxShare">
/// A run that would remove more than this share of the studies (or of the versions), and more than
/// <see cref="RetentionService.LimitFloor"/> of them, removes and purges nothing and says so (<see cref="RetentionReport.Halted"/>):
/// a clock set years ahead, by mistake or by an attacker, or a period typed in days instead of years, must not empty the
/// archive. Raise it for the first run of a policy on an old archive.
/// </param>
public sealed record RetentionPolicy(string Name, TimeSpan? Studies = null, TimeSpan? SupersededVersions = null, TimeSpan? Quarantine = null,
    double MaxShare = 0.1);

/// <param name="FilesDeleted">Files removed by this run (decisions older than the deletion grace).</param>
/// <param name="FilesReclaimed">Pending deletions cancelled because the same content was stored again.</param>
/// <param name="Halted">Why the run removed nothing although some data was due (see <see cref="RetentionPolicy.MaxShare"/>), or null.</param>
/// <param name="Held">Due studies and versions kept because an object of theirs is not delivered yet (<see cref="IRetentionHold"/>).</param>
public sealed record RetentionReport(int StudiesRemoved, int InstancesRemoved, int VersionsRemoved, int QuarantineRemoved, int FilesDeleted,
    int FilesReclaimed, int FilesPending, string? Halted = null, int Held = 0)
{
    /// <summary>Scheduled deletions dropped, their files kept: the index still names the file (see <see cref="PurgeReport.Refused"/>).</summary>
    public int Refused { get; init; }
}

/// <param name="Deleted">Files removed (decisions older than the deletion grace).</param>
/// <param name="Reclaimed">Pending deletions cancelled because the same content was stored again.</param>
/// <param name="Pending">Deletions still waiting for their grace.</param>
/// <param name="Refused">
/// Deletion rows naming a file that a version row or quarantine record still names, dropped without touching the file
/// (index tampering, since 2026-12-08): each as "object &lt;id&gt; (why)" or "quarantine &lt;id&gt; (why)".
/// </param>
public sealed record PurgeReport(int Deleted, int Reclaimed, int Pending, IReadOnlyList<string> Refused);

/// <summary>
/// The only way data leaves the archive. Each decision is audited and applied in one index transaction that also
/// records the files to delete; the files go after <see cref="ArchiveOptions.DeletionGrace"/>, file first, then its record,
/// so a crash leaves at worst a record to redo. Storing the same content again during the grace claims the file back.
/// </summary>
public sealed class RetentionService
{
    private const int BatchSize = 100;

    /// <summary>Up to this many studies (or versions) a run may remove whatever their share: small archives and steady upkeep.</summary>
    public const int LimitFloor = 10;

    // A study is as old as its newest change at any level below it.
    private const string StudyDue = """
        st.updated_at < @c
        AND NOT EXISTS (SELECT 1 FROM archive_series se WHERE se.study_id = st.id AND se.updated_at >= @c)
        AND NOT EXISTS (SELECT 1 FROM archive_instances i JOIN archive_series se ON se.id = i.series_id
                        WHERE se.study_id = st.id AND i.updated_at >= @c)
        """;

    // Never an instance's current version, whatever its superseded_at says: a row altered in the index must not take the
    // image still served (until 2026-12-08 it did; the scrub reports such rows as tampered).
    private const string VersionDue = """
        v.superseded_at IS NOT NULL AND v.superseded_at < @c
        AND NOT EXISTS (SELECT 1 FROM archive_instances ci WHERE ci.id = v.instance_id AND ci.current_version = v.version)
        """;
    private readonly IVigieDatabase _database;
    private readonly FileObjectStore _store;
    private readonly IRetentionAudit _audit;
    private readonly TimeProvider _time;
    private readonly ArchiveOptions _options;
    private readonly ILogger<RetentionService> _logger;
    private readonly IRetentionHold? _hold;
    private readonly Keys.IArchiveKeyService? _keys;

    internal RetentionService(IVigieDatabase database, FileObjectStore store, IRetentionAudit audit, TimeProvider time,
        IOptions<ArchiveOptions> options, ILogger<RetentionService> logger, IRetentionHold? hold = null, Keys.IArchiveKeyService? keys = null)
    {
        _hold = hold;
        _keys = keys;
        _database = database;
        _store = store;
        _audit = audit;
        _time = time;
        _options = options.Value;
        _logger = logger;
    }

    public async Task<RetentionReport> ApplyAsync(RetentionPolicy policy, CancellationToken cancellationToken)
    {
        using var activity = ArchiveTelemetry.Source.StartActivity("archive.retention");
        int studies = 0, instances = 0, versions = 0, quarantined = 0;
        var now = _time.GetUtcNow();
        long? Cutoff(TimeSpan? age) => age is { } period ? (now - period).ToUnixTimeMilliseconds() : null;
        var (studyCutoff, versionCutoff, quarantineCutoff) = (Cutoff(policy.Studies), Cutoff(policy.SupersededVersions), Cutoff(policy.Quarantine));
        if (await CheckShareAsync(policy, now, studyCutoff, versionCutoff, quarantineCutoff, cancellationToken).ConfigureAwait(false) is { } halted)
        {
            _logger.LogError("Retention {Policy} halted, nothing removed: {Reason}", policy.Name, halted);
            return new RetentionReport(0, 0, 0, 0, 0, 0, 0, halted);
        }

        var held = _hold is null ? new HashSet<ObjectId>() : await _hold.HeldObjectsAsync(cancellationToken).ConfigureAwait(false);
        int keptVersions = 0, keptStudies = 0;
        if (versionCutoff is { } versionsBefore)
        {
            (versions, keptVersions) = await RemoveSupersededAsync(policy, versionsBefore, held, cancellationToken).ConfigureAwait(false);
        }

        if (studyCutoff is { } studiesBefore)
        {
            (studies, instances, keptStudies) = await RemoveStudiesAsync(policy, studiesBefore, held, cancellationToken).ConfigureAwait(false);
        }

        if (keptVersions + keptStudies > 0)
        {
            _logger.LogWarning("Retention {Policy} kept {Studies} due studies and {Versions} due versions: objects of theirs are not delivered yet " +
                "(vigie forward status)", policy.Name, keptStudies, keptVersions);
        }

        if (quarantineCutoff is { } quarantineBefore)
        {
            quarantined = await RemoveQuarantineAsync(policy, quarantineBefore, cancellationToken).ConfigureAwait(false);
        }

        var purge = await PurgeDueFilesAsync(cancellationToken).ConfigureAwait(false);
        var report = new RetentionReport(studies, instances, versions, quarantined, purge.Deleted, purge.Reclaimed, purge.Pending,
            Held: keptStudies + keptVersions) { Refused = purge.Refused.Count };
        _logger.LogInformation("Retention {Policy}: {Report}", policy.Name, report);
        return report;
    }

    /// <summary>Why this run must not go ahead (it would remove too large a share of the data), or null.</summary>
    private async Task<string?> CheckShareAsync(RetentionPolicy policy, DateTimeOffset now, long? studyCutoff, long? versionCutoff, long? quarantineCutoff,
        CancellationToken cancellationToken)
    {
        await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        async Task<long> CountAsync(string sql, long? cutoff = null)
        {
            await using var command = connection.CreateCommand(null, sql);
            if (cutoff is { } value)
            {
                command.With("@c", value);
            }

            return SqlArchiveIndex.ToLong(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false));
        }

        string? Check(string what, long due, long total) =>
            due > LimitFloor && due > policy.MaxShare * total
                ? $"{due} of {total} {what} are due, more than the policy's limit of {policy.MaxShare:P0}: check the clock ({now:O}) and the " +
                  "policy's periods, then raise MaxShare for this run if it is meant"
                : null;

        if (studyCutoff is { } studiesBefore)
        {
            var problem = Check("studies", await CountAsync($"SELECT COUNT(*) FROM archive_studies st WHERE {StudyDue}", studiesBefore).ConfigureAwait(false),
                await CountAsync("SELECT COUNT(*) FROM archive_studies").ConfigureAwait(false));
            if (problem is not null)
            {
                return problem;
            }
        }

        if (versionCutoff is { } versionsBefore)
        {
            var problem = Check("instance versions",
                await CountAsync($"SELECT COUNT(*) FROM archive_versions v WHERE {VersionDue}", versionsBefore).ConfigureAwait(false),
                await CountAsync("SELECT COUNT(*) FROM archive_versions").ConfigureAwait(false));
            if (problem is not null)
            {
                return problem;
            }
        }

        // Quarantined objects are the evidence of attacks: the same clock mistake must not take them all at once either.
        if (quarantineCutoff is { } quarantineBefore)
        {
            return Check("quarantined objects",
                await CountAsync("SELECT COUNT(*) FROM archive_quarantine WHERE quarantined_at < @c", quarantineBefore).ConfigureAwait(false),
                await CountAsync("SELECT COUNT(*) FROM archive_quarantine").ConfigureAwait(false));
        }

        return null;
    }

    /// <summary>Deletes the files whose grace has passed (also run by <see cref="ApplyAsync"/>).</summary>
    public async Task<PurgeReport> PurgeDueFilesAsync(CancellationToken cancellationToken)
    {
        int deleted = 0, reclaimed = 0;
        var refused = new List<string>();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        // An object still in a landing slot (this node's or another's) is deleted where it is kept for good.
        await _store.MoveLandedAsync(cancellationToken).ConfigureAwait(false);
        await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var due = new List<(string Kind, string Name)>();
        await using (var command = connection.CreateCommand(null, "SELECT kind, name FROM archive_deletions WHERE delete_after <= @n ORDER BY kind, name")
                         .With("@n", now))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                due.Add((reader.GetString(0), reader.GetString(1)));
            }
        }

        foreach (var (kind, name) in due)
        {
            // One write transaction per file, queued with the node's other writers (not asleep in SQLite's busy handler).
            // On SQLite it holds the write lock from the check to the unlink, so no row for the object lands in between.
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            if (_database.Provider == DatabaseProvider.Postgres)
            {
                // PostgreSQL has no such lock: the deletion row is locked instead. A store of the same content deletes that
                // row in its own transaction, so it waits until this purge has committed (after the unlink) and then finds
                // the file gone and puts its own copy back (ConfirmStoredAsync); or it went first, and the row is gone.
                await using var claim = connection.CreateCommand(transaction, "SELECT 1 FROM archive_deletions WHERE kind = @k AND name = @n FOR UPDATE")
                    .With("@k", kind).With("@n", name);
                if (await claim.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is null)
                {
                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }
            }

            if (kind == "object" && ObjectId.TryParse(name, out var id))
            {
                await using var check = connection.CreateCommand(transaction, "SELECT COUNT(*) FROM archive_objects WHERE object_id = @o")
                    .With("@o", id.ToArray());
                if (SqlArchiveIndex.ToLong(await check.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false)) > 0)
                {
                    reclaimed++;
                }
                else if (await NamedByIndexAsync(connection, transaction, kind, name, cancellationToken).ConfigureAwait(false) is { } reference)
                {
                    // No decision of ours leaves a deletion for a file a version or quarantine record still names: the row was
                    // planted (until 2026-12-08 the file went, an acknowledged image lost for good). Dropped, never acted on.
                    refused.Add($"object {name} ({reference})");
                }
                else if (await _store.DeleteObjectAsync(id, cancellationToken).ConfigureAwait(false))
                {
                    deleted++;
                }
            }
            else if (kind == "quarantine")
            {
                // Retention deletes the record in the transaction that schedules its file, and the scrub schedules only files
                // whose record is gone: a record still there means the row was planted to destroy the evidence.
                if (await NamedByIndexAsync(connection, transaction, kind, name, cancellationToken).ConfigureAwait(false) is { } reference)
                {
                    refused.Add($"quarantine {name} ({reference})");
                }
                else if (await _store.DeleteQuarantinedAsync(name, cancellationToken).ConfigureAwait(false))
                {
                    deleted++;
                }
            }

            await using (var remove = connection.CreateCommand(transaction, "DELETE FROM archive_deletions WHERE kind = @k AND name = @n")
                             .With("@k", kind).With("@n", name))
            {
                await remove.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        if (refused.Count > 0)
        {
            _logger.LogError("Purge: {Count} scheduled deletions name files the index still references, so the index was tampered with; their files "
                + "are kept and the rows dropped: {Rows}", refused.Count, string.Join("; ", refused));
        }

        await using var count = connection.CreateCommand(null, "SELECT COUNT(*) FROM archive_deletions");
        var pending = (int)SqlArchiveIndex.ToLong(await count.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false));
        return new PurgeReport(deleted, reclaimed, pending, refused);
    }

    /// <summary>
    /// What in the index still names the file of a scheduled deletion (a version or quarantine record), or null when
    /// nothing does, as every deletion the archive decides leaves it. The scrub reports the same rows as tampered.
    /// </summary>
    internal static async Task<string?> NamedByIndexAsync(DbConnection connection, DbTransaction? transaction, string kind, string name,
        CancellationToken cancellationToken)
    {
        if (kind == "object" && ObjectId.TryParse(name, out var id))
        {
            await using var version = connection.CreateCommand(transaction,
                    "SELECT instance_id, version FROM archive_versions WHERE object_id = @o ORDER BY instance_id, version LIMIT 1")
                .With("@o", id.ToArray());
            await using (var reader = await version.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return $"instance #{SqlArchiveIndex.ToLong(reader.GetValue(0))} v{SqlArchiveIndex.ToLong(reader.GetValue(1))} names it";
                }
            }

            await using var quarantined = connection.CreateCommand(transaction, "SELECT quarantine_id FROM archive_quarantine WHERE object_id = @o LIMIT 1")
                .With("@o", id.ToArray());
            return await quarantined.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string quarantineId
                ? $"quarantine record {quarantineId} names it"
                : null;
        }

        if (kind == "quarantine")
        {
            await using var record = connection.CreateCommand(transaction, "SELECT COUNT(*) FROM archive_quarantine WHERE quarantine_id = @q").With("@q", name);
            return SqlArchiveIndex.ToLong(await record.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false)) > 0
                ? "its quarantine record is still there"
                : null;
        }

        return null;
    }

    private async Task<(int Removed, int Kept)> RemoveSupersededAsync(RetentionPolicy policy, long cutoff, IReadOnlySet<ObjectId> held,
        CancellationToken cancellationToken)
    {
        int removed = 0, kept = 0;
        // Rows kept for a hold stay due: the walk goes on after them instead of reading them again.
        (long Instance, int Version) after = (0, 0);
        while (true)
        {
            await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            var rows = new List<(long Instance, int Version, ObjectId Object, long Study, byte[] StudyKey, byte[] PatientKey)>();
            await using (var command = connection.CreateCommand(transaction, $"""
                             SELECT v.instance_id, v.version, v.object_id, st.id, st.study_uid, p.patient_key
                             FROM archive_versions v
                             JOIN archive_instances i ON i.id = v.instance_id
                             JOIN archive_series se ON se.id = i.series_id
                             JOIN archive_studies st ON st.id = se.study_id
                             JOIN archive_patients p ON p.id = st.patient_id
                             WHERE {VersionDue} AND (v.instance_id > @ai OR (v.instance_id = @ai AND v.version > @av))
                             ORDER BY v.instance_id, v.version LIMIT @n
                             """).With("@c", cutoff).With("@n", BatchSize).With("@ai", after.Instance).With("@av", after.Version))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add((SqlArchiveIndex.ToLong(reader.GetValue(0)), (int)SqlArchiveIndex.ToLong(reader.GetValue(1)),
                        new ObjectId((byte[])reader.GetValue(2)), SqlArchiveIndex.ToLong(reader.GetValue(3)), (byte[])reader.GetValue(4),
                        (byte[])reader.GetValue(5)));
                }
            }

            if (rows.Count == 0)
            {
                return (removed, kept);
            }

            var decidedAt = _time.GetUtcNow();
            after = (rows[^1].Instance, rows[^1].Version);
            foreach (var row in rows)
            {
                if (held.Contains(row.Object))
                {
                    kept++;
                    continue;
                }

                removed++;
                await _audit.RecordAsync(connection, transaction, new RetentionEvent(RetentionAction.SupersededVersionRemoved, policy.Name, decidedAt,
                    row.Study, row.StudyKey, row.PatientKey, row.Instance, row.Version, [row.Object], null, 1), cancellationToken).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, "DELETE FROM archive_versions WHERE instance_id = @i AND version = @v", cancellationToken,
                    ("@i", row.Instance), ("@v", row.Version)).ConfigureAwait(false);
                await ReleaseObjectAsync(connection, transaction, row.Object, cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A study's or patient's indexed attributes in clear, for the audit entry of its deletion (PS3.15 A.5.3.8 names the
    /// study and the patient); null without the keys, or when the row's attributes cannot be opened (the deletion goes on).
    /// </summary>
    private AttributeSet? Attributes(int level, byte[] key, byte[]? parentKey, byte[] sealedAttributes) =>
        // The older seal form too: for an audit entry's names only, never to serve anything.
        _keys is null ? null : SqlArchiveIndex.TryOpenAttributes(_keys, level, key, parentKey, 0, sealedAttributes, acceptLegacy: true);

    private async Task<(int Studies, int Instances, int Kept)> RemoveStudiesAsync(RetentionPolicy policy, long cutoff, IReadOnlySet<ObjectId> held,
        CancellationToken cancellationToken)
    {
        int studies = 0, instances = 0, kept = 0;
        long after = 0;
        while (true)
        {
            await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            var candidates = new List<(long Study, long Patient, byte[] StudyKey, byte[] PatientKey, AttributeSet? StudyAttributes, AttributeSet? PatientAttributes)>();
            await using (var command = connection.CreateCommand(transaction, $"""
                             SELECT st.id, st.patient_id, st.study_uid, p.patient_key, st.attributes, p.attributes FROM archive_studies st
                             JOIN archive_patients p ON p.id = st.patient_id
                             WHERE {StudyDue} AND st.id > @after
                             ORDER BY st.id LIMIT @n
                             """).With("@c", cutoff).With("@n", 10).With("@after", after))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var (studyKey, patientKey) = ((byte[])reader.GetValue(2), (byte[])reader.GetValue(3));
                    candidates.Add((SqlArchiveIndex.ToLong(reader.GetValue(0)), SqlArchiveIndex.ToLong(reader.GetValue(1)), studyKey, patientKey,
                        Attributes(1, studyKey, patientKey, (byte[])reader.GetValue(4)), Attributes(0, patientKey, null, (byte[])reader.GetValue(5))));
                }
            }

            if (candidates.Count == 0)
            {
                return (studies, instances, kept);
            }

            var decidedAt = _time.GetUtcNow();
            after = candidates[^1].Study;
            foreach (var (study, patient, studyKey, patientKey, studyAttributes, patientAttributes) in candidates)
            {
                var objects = new List<ObjectId>();
                await using (var command = connection.CreateCommand(transaction, """
                                 SELECT DISTINCT v.object_id FROM archive_versions v
                                 JOIN archive_instances i ON i.id = v.instance_id JOIN archive_series se ON se.id = i.series_id
                                 WHERE se.study_id = @s
                                 """).With("@s", study))
                await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        objects.Add(new ObjectId((byte[])reader.GetValue(0)));
                    }
                }

                if (objects.Any(held.Contains))
                {
                    kept++;
                    continue;
                }

                await using var countCommand = connection.CreateCommand(transaction,
                    "SELECT COUNT(*) FROM archive_instances i JOIN archive_series se ON se.id = i.series_id WHERE se.study_id = @s").With("@s", study);
                var instanceCount = (int)SqlArchiveIndex.ToLong(await countCommand.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false));

                await _audit.RecordAsync(connection, transaction, new RetentionEvent(RetentionAction.StudyRemoved, policy.Name, decidedAt, study,
                    studyKey, patientKey, null, null, objects, null, instanceCount, studyAttributes, patientAttributes), cancellationToken).ConfigureAwait(false);

                const string instancesOfStudy = "SELECT i.id FROM archive_instances i JOIN archive_series se ON se.id = i.series_id WHERE se.study_id = @s";
                await ExecuteAsync(connection, transaction, $"DELETE FROM archive_versions WHERE instance_id IN ({instancesOfStudy})", cancellationToken,
                    ("@s", study)).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, $"DELETE FROM archive_terms WHERE level = 3 AND row_id IN ({instancesOfStudy})", cancellationToken,
                    ("@s", study)).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, $"DELETE FROM archive_instances WHERE id IN ({instancesOfStudy})", cancellationToken,
                    ("@s", study)).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction,
                    "DELETE FROM archive_terms WHERE level = 2 AND row_id IN (SELECT id FROM archive_series WHERE study_id = @s)", cancellationToken,
                    ("@s", study)).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, "DELETE FROM archive_series WHERE study_id = @s", cancellationToken, ("@s", study))
                    .ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, "DELETE FROM archive_terms WHERE level = 1 AND row_id = @s", cancellationToken, ("@s", study))
                    .ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, "DELETE FROM archive_studies WHERE id = @s", cancellationToken, ("@s", study))
                    .ConfigureAwait(false);
                await ExecuteAsync(connection, transaction,
                    "DELETE FROM archive_terms WHERE level = 0 AND row_id = @p AND NOT EXISTS (SELECT 1 FROM archive_studies WHERE patient_id = @p)",
                    cancellationToken, ("@p", patient)).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction,
                    "DELETE FROM archive_patients WHERE id = @p AND NOT EXISTS (SELECT 1 FROM archive_studies WHERE patient_id = @p)", cancellationToken,
                    ("@p", patient)).ConfigureAwait(false);
                foreach (var id in objects)
                {
                    await ReleaseObjectAsync(connection, transaction, id, cancellationToken).ConfigureAwait(false);
                }

                studies++;
                instances += instanceCount;
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<int> RemoveQuarantineAsync(RetentionPolicy policy, long cutoff, CancellationToken cancellationToken)
    {
        var removed = 0;
        while (true)
        {
            await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            var rows = new List<(long Id, string QuarantineId, ObjectId Object)>();
            await using (var command = connection.CreateCommand(transaction,
                             "SELECT id, quarantine_id, object_id FROM archive_quarantine WHERE quarantined_at < @c ORDER BY id LIMIT @n")
                             .With("@c", cutoff).With("@n", BatchSize))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add((SqlArchiveIndex.ToLong(reader.GetValue(0)), reader.GetString(1), new ObjectId((byte[])reader.GetValue(2))));
                }
            }

            if (rows.Count == 0)
            {
                return removed;
            }

            var decidedAt = _time.GetUtcNow();
            foreach (var row in rows)
            {
                await _audit.RecordAsync(connection, transaction, new RetentionEvent(RetentionAction.QuarantineRemoved, policy.Name, decidedAt,
                    null, null, null, null, null, [row.Object], row.QuarantineId, 0), cancellationToken).ConfigureAwait(false);
                await ExecuteAsync(connection, transaction, "DELETE FROM archive_quarantine WHERE id = @i", cancellationToken, ("@i", row.Id))
                    .ConfigureAwait(false);
                await ScheduleDeletionAsync(connection, transaction, "quarantine", row.QuarantineId, cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            removed += rows.Count;
        }
    }

    /// <summary>When no version references the object any more, drops its row and schedules its file.</summary>
    private async Task ReleaseObjectAsync(DbConnection connection, DbTransaction transaction, ObjectId id, CancellationToken cancellationToken)
    {
        if (_database.Provider == DatabaseProvider.Postgres)
        {
            // Under READ COMMITTED a store of the same content, not yet committed, would not be counted below: its insert
            // locks this row too, so whichever comes second waits for the other and then sees what it did.
            await using var claim = connection.CreateCommand(transaction, "SELECT 1 FROM archive_objects WHERE object_id = @o FOR UPDATE")
                .With("@o", id.ToArray());
            await claim.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var check = connection.CreateCommand(transaction, "SELECT COUNT(*) FROM archive_versions WHERE object_id = @o").With("@o", id.ToArray());
        if (SqlArchiveIndex.ToLong(await check.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false)) > 0)
        {
            return;
        }

        await ExecuteAsync(connection, transaction, "DELETE FROM archive_objects WHERE object_id = @o", cancellationToken, ("@o", id.ToArray()))
            .ConfigureAwait(false);
        await ScheduleDeletionAsync(connection, transaction, "object", id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task ScheduleDeletionAsync(DbConnection connection, DbTransaction transaction, string kind, string name, CancellationToken cancellationToken)
    {
        var after = (_time.GetUtcNow() + _options.DeletionGrace).ToUnixTimeMilliseconds();
        await ExecuteAsync(connection, transaction,
            "INSERT INTO archive_deletions (kind, name, delete_after) VALUES (@k, @n, @a) ON CONFLICT (kind, name) DO UPDATE SET delete_after = excluded.delete_after",
            cancellationToken, ("@k", kind), ("@n", name), ("@a", after)).ConfigureAwait(false);
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken,
        params (string Name, object Value)[] parameters)
    {
        await using var command = connection.CreateCommand(transaction, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
