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
    private int _state;

    internal SpooledObject(FileObjectStore store, string path, ObjectId id, long length, byte[] sha256, Guid keyId, FileStream file)
    {
        _store = store;
        Path = path;
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

    /// <summary>
    /// Starts the fsync of the spool on a sync worker now, before the verdict: inspection and the index rows then run
    /// while the disk flushes, and the commit or the quarantine, which still syncs before it moves the file, finds it
    /// done. A failure is kept and thrown by that later sync.
    /// </summary>
    public void StartSync()
    {
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
public sealed record CommittedObject(ObjectId Id, long Length, bool AlreadyStored);

/// <summary>A spool moved to quarantine, still encrypted, with its sealed reason beside it.</summary>
public sealed record QuarantinedObject(string QuarantineId, ObjectId Id, long Length, DateTimeOffset QuarantinedAt);
