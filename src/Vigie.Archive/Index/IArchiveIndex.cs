using System.Data.Common;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Index;

/// <summary>
/// The index: DICOM's patient / study / series / instance hierarchy, instance versions and the objects they point to,
/// and quarantine records. Identifying fields are sealed or replaced by keyed hashes. Writes happen in the caller's
/// connection and transaction, so that the gateway commits them with its audit entry and outbox events.
/// The same contract runs on SQLite and PostgreSQL.
/// </summary>
public interface IArchiveIndex
{
    /// <summary>Files an instance (creating its patient, study and series as needed) and references its object.</summary>
    ValueTask<IndexWriteResult> StoreInstanceAsync(DbConnection connection, DbTransaction transaction, InstanceIndexEntry entry,
        CancellationToken cancellationToken);

    /// <summary>
    /// How filing <paramref name="entry"/> would disagree with the hierarchy already indexed (its study under another
    /// patient, its series under another study, its instance under another series), read before the object is stored,
    /// so that such a store can be refused instead of filed under the links that exist.
    /// </summary>
    ValueTask<HierarchyConflict> FindHierarchyConflictsAsync(InstanceIndexEntry entry, CancellationToken cancellationToken);

    /// <summary>
    /// Schedules the removal of an object file no row references (an object stored, then refused by the index: the
    /// loser of two conflicting stores), after <see cref="ArchiveOptions.DeletionGrace"/>; the purge checks again that
    /// nothing references it.
    /// </summary>
    ValueTask ScheduleUnreferencedObjectDeletionAsync(ObjectId id, CancellationToken cancellationToken);

    /// <summary>Records a quarantined object; returns its row id.</summary>
    ValueTask<long> AddQuarantineAsync(DbConnection connection, DbTransaction transaction, QuarantineEntry entry,
        CancellationToken cancellationToken);

    /// <summary>Answers a C-FIND-like query with decrypted attribute sets.</summary>
    /// <summary>The archive (data folder) this index belongs to; null for an index that has never been bound.</summary>
    ValueTask<string?> ReadArchiveIdAsync(CancellationToken cancellationToken);

    /// <summary>Binds the index to <paramref name="candidate"/> unless it is bound already; returns the archive it belongs to.</summary>
    ValueTask<string> BindArchiveIdAsync(string candidate, CancellationToken cancellationToken);

    /// <summary>Whether the index references any object.</summary>
    ValueTask<bool> HasObjectsAsync(CancellationToken cancellationToken);

    ValueTask<QueryResult> QueryAsync(ArchiveQuery query, CancellationToken cancellationToken);

    /// <summary>The current version of an instance, or null.</summary>
    ValueTask<InstanceLocation?> FindInstanceAsync(string sopInstanceUid, CancellationToken cancellationToken);

    /// <summary>
    /// The SOP Class UID the current version of each of <paramref name="sopInstanceUids"/> was filed with, and the object
    /// that holds it, by the UID as given; instances not held are absent.
    /// </summary>
    ValueTask<IReadOnlyDictionary<string, StoredInstance>> FindStoredInstancesAsync(IReadOnlyCollection<string> sopInstanceUids, CancellationToken cancellationToken);

    /// <summary>Every stored version of an instance, oldest first.</summary>
    ValueTask<IReadOnlyList<InstanceVersion>> GetVersionsAsync(string sopInstanceUid, CancellationToken cancellationToken);

    /// <summary>Quarantine records after <paramref name="afterRowId"/>, oldest first.</summary>
    ValueTask<IReadOnlyList<QuarantineRecord>> ListQuarantineAsync(long afterRowId, int limit, CancellationToken cancellationToken);

    /// <summary>The quarantine record of <paramref name="quarantineId"/>, or null.</summary>
    ValueTask<QuarantineRecord?> FindQuarantineAsync(string quarantineId, CancellationToken cancellationToken);

    ValueTask<ArchiveStats> GetStatsAsync(CancellationToken cancellationToken);

    /// <summary>When the newest object reference was filed, or null when there is none.</summary>
    ValueTask<DateTimeOffset?> LatestObjectTimeAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The earliest write time recovery must look at whatever <see cref="LatestObjectTimeAsync"/> says, set when the
    /// wall clock stepped back; null when none is set.
    /// </summary>
    ValueTask<DateTimeOffset?> RecoveryFloorAsync(CancellationToken cancellationToken);

    /// <summary>Lowers the recovery floor to <paramref name="scanFrom"/> (sets it when there is none), synced before it returns.</summary>
    ValueTask LowerRecoveryFloorAsync(DateTimeOffset scanFrom, CancellationToken cancellationToken);

    /// <summary>Removes the recovery floor, synced: once recovery has filed everything written since it.</summary>
    ValueTask ClearRecoveryFloorAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Re-seals the rows an earlier version sealed without their parent's key hash (and an instance's current version), once;
    /// from then on only the bound form opens. Returns how many were re-sealed and how many opened in neither form.
    /// </summary>
    ValueTask<(int Resealed, int Failed)> BindLegacySealsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The object ids of the quarantine records while quarantine files written before 2026-12-07 (data key wrapped as an
    /// archive object's) may remain, that is until <see cref="RecordQuarantinePurposeBoundAsync"/>; null once recorded.
    /// </summary>
    ValueTask<IReadOnlySet<ObjectId>?> FindLegacyQuarantinedAsync(CancellationToken cancellationToken);

    /// <summary>Records, synced, that every quarantine file's data key is wrapped for quarantine (the start re-wrapped them).</summary>
    ValueTask RecordQuarantinePurposeBoundAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Those of <paramref name="ids"/> that no version references (an <c>archive_objects</c> row alone does not count, since
    /// 2026-12-07), no quarantine record names, and no deletion awaits: files the index has lost.
    /// </summary>
    ValueTask<IReadOnlyList<ObjectId>> FindUnreferencedAsync(IReadOnlyList<ObjectId> ids, CancellationToken cancellationToken);
}
