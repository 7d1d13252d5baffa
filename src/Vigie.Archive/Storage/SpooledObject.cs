using Vigie.Archive.IO;

namespace Vigie.Archive.Storage;

/// <summary>Where a completed spool went.</summary>
public enum SpoolState
{
    /// <summary>Complete and waiting for the decision: inspect it, then commit or quarantine it.</summary>
    Pending,

    /// <summary>Moving into the store or quarantine.</summary>
    Moving,

    Committed,

    Quarantined,

    /// <summary>Deleted without being kept (disposed while pending, or a failed move).</summary>
    Discarded,

    /// <summary>
    /// Equal content was already stored, so the spool was not moved in; it is kept (closed) until
    /// <see cref="IObjectStore.ConfirmStoredAsync"/> has checked that the stored copy outlived the index commit, and
    /// deleted then or when disposed.
    /// </summary>
    Duplicate,
}

/// <summary>
/// A complete, still encrypted spool file: read it back for inspection, then commit it or quarantine it.
/// Disposing it while pending deletes it, so an object that was never committed leaves nothing behind.
/// </summary>
public sealed class SpooledObject : IAsyncDisposable
{
    private readonly FileObjectStore _store;
    private readonly byte[] _sha256;
    private readonly Lock _fileLock = new();
    private FileStream? _file;
    private Exception? _syncFailure;
    private bool _synced;
    private bool _trimmed;
    private int _state;

    internal SpooledObject(FileObjectStore store, string path, ObjectId id, long length, byte[] sha256, Guid keyId, FileStream file,
        long fileLength, long slotBytes)
    {
        _store = store;
        Path = path;
        FileLength = fileLength;
        SlotBytes = slotBytes;
        Id = id;
        Length = length;
        _sha256 = sha256;
        KeyId = keyId;
        _file = file;
    }

    /// <summary>The id this content has (equal content, equal id).</summary>
    public ObjectId Id { get; }

    /// <summary>Plaintext length.</summary>
    public long Length { get; }

    public Guid KeyId { get; }

    public SpoolState State => (SpoolState)Volatile.Read(ref _state);

    /// <summary>
    /// The plaintext's SHA-256, for known-bad hash lists during inspection. Keep it in memory only: persisting or logging
    /// it would reveal a plain hash of health data, which the store itself never does.
    /// </summary>
    public ReadOnlyMemory<byte> ContentSha256 => _sha256;

    internal string Path { get; }

    /// <summary>Where the object ends in its file: a landing slot is longer (zeros, and room for the landing record).</summary>
    internal long FileLength { get; }

    /// <summary>The landing slot's size when the spool is one, else 0.</summary>
    internal long SlotBytes { get; }

    /// <summary>A landing slot with room left for the landing record: the commit can make it durable with one data flush.</summary>
    internal bool Landable => SlotBytes > 0 && FileLength <= SlotBytes - LandingSlots.RecordSize;

    /// <summary>
    /// Starts the fsync of the spool on a sync worker now, before the verdict: inspection and the index rows then run
    /// while the disk flushes, and the commit or the quarantine, which still syncs before it moves the file, finds it
    /// done. A failure is kept and thrown by that later sync.
    /// </summary>
    public void StartSync()
    {
        // A landing slot is flushed once, with its record, by the commit: a second flush costs more than the overlap
        // saves (its data is already under writeback since it was written).
        if (Landable)
        {
            return;
        }

        if (_store.Durable)
        {
            _ = _store.Workers.RunAsync(SyncEarly, CancellationToken.None);
        }
    }

    private void SyncEarly()
    {
        lock (_fileLock)
        {
            if (_file is not { } file || _syncFailure is not null)
            {
                return;
            }

            try
            {
                SyncLocked(file);
            }
            catch (Exception)
            {
                // Kept in _syncFailure: the commit's or the quarantine's own sync throws it.
            }
        }
    }

    /// <summary>The fsync itself, under the file lock: once only, and a failure is kept for good.</summary>
    private void SyncLocked(FileStream file)
    {
        if (_synced)
        {
            return;
        }

        try
        {
            FileSync.SyncFile(file.SafeFileHandle);
            _synced = true;
        }
        catch (Exception e)
        {
            _syncFailure = e;
            throw;
        }
    }

    /// <summary>
    /// Makes the spool's bytes durable (when <paramref name="durable"/>) and closes it. Blocking: a sync worker runs it.
    /// A failed fsync is never retried, since Linux may have dropped the dirty pages it could not write: the spool stays failed.
    /// </summary>
    internal void SyncAndClose(bool durable)
    {
        lock (_fileLock)
        {
            if (_syncFailure is not null)
            {
                throw new IOException("An earlier sync of this spool failed.", _syncFailure);
            }

            if (_file is not { } file)
            {
                return;
            }

            try
            {
                TrimLocked(file);
                if (durable)
                {
                    SyncLocked(file);
                    if (_store.ReleaseWrittenPages)
                    {
                        FileSync.ReleasePages(file.SafeFileHandle);
                    }
                }
            }
            finally
            {
                _file = null;
                file.Dispose();
            }
        }
    }

    /// <summary>
    /// A landing slot that goes anywhere but its landing (quarantine, a duplicate, an object too large for the record):
    /// cut to the object, so that it is an ordinary object file. The cut changes the size, so an earlier data sync no
    /// longer counts.
    /// </summary>
    private void TrimLocked(FileStream file)
    {
        if (SlotBytes == 0 || _trimmed)
        {
            return;
        }

        if (RandomAccess.GetLength(file.SafeFileHandle) > FileLength)
        {
            file.SetLength(FileLength);
            _synced = false;
        }

        _trimmed = true;
    }

    /// <summary>
    /// Writes the landing record into the slot's last page and flushes the slot's data, which makes the object durable:
    /// its bytes and the record that lets a start find it, in one flush with no metadata (over space already written,
    /// only data changes; timestamps aside, which fdatasync leaves). Then closes the file.
    /// A failed flush is never retried (see <see cref="SyncAndClose"/>).
    /// </summary>
    internal void LandAndClose(ReadOnlySpan<byte> record, long recordOffset)
    {
        lock (_fileLock)
        {
            if (_syncFailure is not null)
            {
                throw new IOException("An earlier sync of this spool failed.", _syncFailure);
            }

            if (_file is not { } file || !Landable || _trimmed)
            {
                throw new InvalidOperationException("Only an open landing slot with room for its record can land.");
            }

            try
            {
                RandomAccess.Write(file.SafeFileHandle, record, recordOffset);
                FileSync.SyncData(file.SafeFileHandle);
                _synced = true;
                if (_store.ReleaseWrittenPages)
                {
                    FileSync.ReleasePages(file.SafeFileHandle);
                }
            }
            catch (Exception e)
            {
                _syncFailure ??= e;
                throw;
            }
            finally
            {
                _file = null;
                file.Dispose();
            }
        }
    }

    /// <summary>Reads the spool back decrypted, as a stream or by range, for inspection.</summary>
    public ValueTask<ArchiveObjectReader> OpenReaderAsync(CancellationToken cancellationToken)
    {
        if (State != SpoolState.Pending)
        {
            throw new InvalidOperationException($"The spool is {State}; read the stored object instead.");
        }

        return _store.OpenSpoolAsync(this, cancellationToken);
    }

    internal void BeginMove()
    {
        if (Interlocked.CompareExchange(ref _state, (int)SpoolState.Moving, (int)SpoolState.Pending) != (int)SpoolState.Pending)
        {
            throw new InvalidOperationException($"The spool is {State}; it can be committed or quarantined once.");
        }
    }

    internal void EndMove(SpoolState state) => Volatile.Write(ref _state, (int)state);

    /// <summary>Takes a kept duplicate for its confirmation; false when it is not one (or already taken).</summary>
    internal bool TakeDuplicate() =>
        Interlocked.CompareExchange(ref _state, (int)SpoolState.Moving, (int)SpoolState.Duplicate) == (int)SpoolState.Duplicate;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.CompareExchange(ref _state, (int)SpoolState.Discarded, (int)SpoolState.Duplicate) == (int)SpoolState.Duplicate)
        {
            _store.DeleteSpoolFile(Path);
            return;
        }

        if (Interlocked.CompareExchange(ref _state, (int)SpoolState.Discarded, (int)SpoolState.Pending) == (int)SpoolState.Pending)
        {
            FileStream? file;
            lock (_fileLock)
            {
                file = _file;
                _file = null;
            }

            if (file is not null)
            {
                await file.DisposeAsync().ConfigureAwait(false);
            }

            _store.DeleteSpoolFile(Path);
        }
    }
}

/// <summary>The outcome of a commit: the object is durable (when the store is) under <paramref name="Id"/>.</summary>
/// <param name="AlreadyStored">True when equal content was already stored; the spool was dropped.</param>
public sealed record CommittedObject(ObjectId Id, long Length, bool AlreadyStored)
{
    /// <summary>Set when a damaged copy of this content was set aside and replaced by this one: what its check found.</summary>
    public string? ReplacedDamagedCopy { get; init; }
}

/// <summary>A spool moved to quarantine, still encrypted, with its sealed reason beside it.</summary>
public sealed record QuarantinedObject(string QuarantineId, ObjectId Id, long Length, DateTimeOffset QuarantinedAt);
