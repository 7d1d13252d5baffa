namespace Vigie.Archive.Storage;

/// <summary>
/// The encrypted, content-addressed, immutable object store. No member overwrites or deletes a stored object:
/// a correction is a new object (a new version in the index), and only retention removes objects.
/// <para>Ingest: <see cref="CreateSpoolAsync"/>, write, complete, inspect the spool, then <see cref="CommitAsync(SpooledObject, CancellationToken)"/>
/// (durable when it returns: file and directory synced) or <see cref="QuarantineAsync"/>; then commit the index
/// transaction, then acknowledge.</para>
/// </summary>
public interface IObjectStore
{
    /// <summary>The data folder's free space and its floor (Archive:MinFreeSpace).</summary>
    ArchiveSpace Space { get; }

    /// <summary>Landing slots: how many are ready, how many objects wait in one to be moved, and why the last move failed.</summary>
    LandingStatus Landing { get; }

    /// <summary>
    /// Opens a new spool under a fresh data key wrapped by the active key-encryption key. Throws
    /// <see cref="ArchiveFullException"/> when the data folder is under its free-space floor.
    /// </summary>
    ValueTask<SpoolWriter> CreateSpoolAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Moves a spool into the store under its id and makes it durable (file fsync, rename, folder fsync). Concurrent
    /// commits run side by side and share the file system's journal commits. When the id exists already the spool is
    /// dropped and the result says so.
    /// </summary>
    ValueTask<CommittedObject> CommitAsync(SpooledObject spool, CancellationToken cancellationToken);

    /// <summary>Commits several spools concurrently.</summary>
    ValueTask<IReadOnlyList<CommittedObject>> CommitAsync(IReadOnlyList<SpooledObject> spools, CancellationToken cancellationToken);

    /// <summary>
    /// After the index commit of a spool that <see cref="CommitAsync(SpooledObject, CancellationToken)"/> found already
    /// stored: if the stored copy was purged meanwhile (a deletion that fell due before the index held the object again),
    /// puts this spool in its place, durably; then drops the spool. Does nothing for a spool that was moved in.
    /// </summary>
    ValueTask ConfirmStoredAsync(SpooledObject spool, CancellationToken cancellationToken);

    /// <summary>Moves a spool to quarantine, still encrypted, with the reason sealed beside it.</summary>
    ValueTask<QuarantinedObject> QuarantineAsync(SpooledObject spool, string reason, CancellationToken cancellationToken);

    /// <summary>Opens a stored object; its content is checked to be the object <paramref name="id"/> names.</summary>
    ValueTask<ArchiveObjectReader> OpenReadAsync(ObjectId id, CancellationToken cancellationToken);

    /// <summary>Opens a quarantined object (for review or release).</summary>
    ValueTask<ArchiveObjectReader> OpenQuarantinedAsync(string quarantineId, CancellationToken cancellationToken);

    /// <summary>The reason a quarantined object was set aside.</summary>
    ValueTask<string> ReadQuarantineReasonAsync(string quarantineId, CancellationToken cancellationToken);

    ValueTask<bool> ExistsAsync(ObjectId id, CancellationToken cancellationToken);

    /// <summary>
    /// Why object <paramref name="id"/> is not held whole as <paramref name="length"/> plaintext bytes (a problem name such
    /// as NotFound, Truncated, LengthMismatch), or null. With <paramref name="whole"/> every segment is read and
    /// authenticated and the content hash checked; without, the file (or landing slot) is only looked at: there, a plain
    /// file, of the size that length implies. An unsure size (another segment size) is settled by the sealed trailer.
    /// </summary>
    ValueTask<string?> FindProblemAsync(ObjectId id, long length, bool whole, CancellationToken cancellationToken);

    /// <summary>Objects whose file was written at or after <paramref name="since"/>; fan-out folders untouched since then are skipped unread.</summary>
    IAsyncEnumerable<WrittenObject> ListWrittenSinceAsync(DateTimeOffset since, CancellationToken cancellationToken);

    /// <summary>Spools and commits a whole stream (imports, disarmed copies).</summary>
    ValueTask<CommittedObject> PutAsync(Stream content, CancellationToken cancellationToken);
}

/// <summary>An object file and the time its content was written.</summary>
public readonly record struct WrittenObject(ObjectId Id, DateTimeOffset WrittenAt);
