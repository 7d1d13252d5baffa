using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Vigie.Archive.IO;

namespace Vigie.Archive.Storage;

/// <summary>An object committed into a landing slot and not yet moved to objects/.</summary>
internal sealed record LandedObject(ObjectId Id, string Path, long FileLength, DateTimeOffset LandedAt, bool Verified);

/// <summary>
/// Landing slots at a glance, for /health: slots ready, objects landed and not yet moved to objects/ (durable and
/// readable where they are), when the oldest landed, and the last move that failed (cleared by the next that succeeds).
/// </summary>
public sealed record LandingStatus(bool Enabled, int Ready, int Landed, DateTimeOffset? OldestLandedAt, string? LastMoveFailure,
    DateTimeOffset? LastMoveFailureAt)
{
    /// <summary>Objects wait in their slots and the last try to move them failed.</summary>
    public bool MovesFailing => LastMoveFailure is not null && Landed > 0;
}

/// <summary>
/// Landing slots: files in spool/landing/ written full of zeros and synced while the node is idle. An object written
/// into one is made durable by one data flush, since nothing but its data changes on disk (no block to allocate, no size,
/// no name); the landing record written with it in the slot's last page names the object. When the node is idle again,
/// each landed object is copied to its place in objects/ the ordinary way (flush, rename, folder flush) and its slot
/// removed. After a crash, the start finds landed objects by their records and moves them then. On this machine's disk
/// the flushes that precede an answer cost about 0.5 ms per object this way against 1.2 ms (docs/archive.md).
/// The node keeps ready as many slots as its largest burst so far asked for, from <see cref="MinReady"/> up to the
/// configured most: writing zeros while objects arrive would compete with their flushes.
/// </summary>
internal sealed class LandingSlots : IDisposable
{
    /// <summary>The slot's last page: the landing record, written whole so that no page has to be read first.</summary>
    public const int RecordSize = 4096;

    public const int MinReady = 16;

    private const int MakeBatch = 16;
    private static readonly TimeSpan IdleAfter = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);
    private static readonly byte[] Zeros = new byte[1 << 20];
    private const int PayloadSize = ObjectId.Size + 8 + 8;
    private static ReadOnlySpan<byte> RecordMagic => "VGLAND\r\n"u8;

    private readonly FileObjectStore _store;
    private readonly ArchiveLayout _layout;
    private readonly int _capacity;
    private readonly TimeSpan _maxAge;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<(string Path, DateTimeOffset MadeAt)> _ready = new();
    private readonly ConcurrentDictionary<ObjectId, LandedObject> _landed = new();
    private readonly SemaphoreSlim _moving = new(1, 1);
    private readonly Lock _lookLock = new();
    private readonly CancellationTokenSource _stop = new();
    private long _lastActivity = Stopwatch.GetTimestamp();
    private int _readyCount;
    private int _target = MinReady;
    private int _burst;
    private int _started;
    private int _disposed;
    private Task? _loop;

    public LandingSlots(FileObjectStore store, ArchiveLayout layout, int capacity, int slotBytes, TimeSpan maxAge, TimeProvider time, ILogger logger)
    {
        _store = store;
        _layout = layout;
        _capacity = capacity;
        SlotBytes = slotBytes;
        _maxAge = maxAge;
        _time = time;
        _logger = logger;
    }

    public bool Enabled => _capacity > 0;

    public long SlotBytes { get; }

    public long RecordOffset => SlotBytes - RecordSize;

    /// <summary>Slots ready to take.</summary>
    public int ReadyCount => Volatile.Read(ref _readyCount);

    /// <summary>Objects landed and not yet moved to objects/.</summary>
    public int LandedCount => _landed.Count;

    public LandingStatus Status
    {
        get
        {
            DateTimeOffset? oldest = null;
            foreach (var landed in _landed.Values)
            {
                if (oldest is null || landed.LandedAt < oldest)
                {
                    oldest = landed.LandedAt;
                }
            }

            var failure = Volatile.Read(ref _moveFailure);
            return new LandingStatus(Enabled, ReadyCount, _landed.Count, oldest, failure?.Reason, failure?.At);
        }
    }

    private sealed record MoveFailure(string Reason, DateTimeOffset At);

    private MoveFailure? _moveFailure;

    private void NoteMoveFailure(Exception e) =>
        Volatile.Write(ref _moveFailure, new MoveFailure(e.GetType().Name, _time.GetUtcNow()));

    /// <summary>
    /// A slot file whose first bytes are zeros: made ahead and never taken, so it holds no key (a taken slot gets its
    /// header when it is taken). Throws <see cref="IOException"/> when the file cannot be read.
    /// </summary>
    public static bool IsUntaken(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        Span<byte> start = stackalloc byte[8];
        return RandomAccess.Read(handle, start, 0) == start.Length && start.IndexOfAnyExcept((byte)0) < 0;
    }

    /// <summary>Off: the idle-time work waits (tests drive <see cref="MakeReadyAsync"/> and <see cref="MoveAllAsync"/> themselves).</summary>
    internal bool IdleWork { get; set; } = true;

    /// <summary>Makes <paramref name="count"/> slots ready now, idle or not.</summary>
    internal async Task MakeReadyAsync(int count, CancellationToken cancellationToken)
    {
        FileSync.EnsureDirectory(_layout.Landing, _store.Durable);
        var made = new List<string>(count);
        for (var i = 0; i < count; i++)
        {
            made.Add(await MakeSlotAsync(cancellationToken).ConfigureAwait(false));
        }

        await PublishAsync(made, cancellationToken).ConfigureAwait(false);
    }

    public void NoteActivity() => Volatile.Write(ref _lastActivity, Stopwatch.GetTimestamp());

    private bool Idle => Stopwatch.GetElapsedTime(Volatile.Read(ref _lastActivity)) >= IdleAfter;

    /// <summary>Starts the idle-time work (moving landed objects, making slots) once.</summary>
    public void Start()
    {
        if (!Enabled || Interlocked.Exchange(ref _started, 1) == 1)
        {
            return;
        }

        _loop = Task.Run(() => RunAsync(_stop.Token));
    }

    /// <summary>Takes a ready slot, open for writing. False when none is ready (the caller uses an ordinary spool file).</summary>
    public bool TryTake([NotNullWhen(true)] out string? path, [NotNullWhen(true)] out FileStream? file)
    {
        path = null;
        file = null;
        // Every object counts towards the burst, taken slot or not: the reserve grows to what the bursts ask for.
        Interlocked.Increment(ref _burst);
        while (_ready.TryDequeue(out var ready))
        {
            Interlocked.Decrement(ref _readyCount);
            // Another node's start removes slot files past the stale-spool age: a fresh one is safer than a race.
            if (_time.GetUtcNow() - ready.MadeAt > _maxAge / 2)
            {
                Delete(ready.Path);
                continue;
            }

            try
            {
                file = new FileStream(ready.Path, new FileStreamOptions
                {
                    Mode = FileMode.Open,
                    Access = FileAccess.ReadWrite,
                    Share = FileShare.Read | FileShare.Delete,
                    BufferSize = 0,
                });
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            path = ready.Path;
            return true;
        }

        return false;
    }

    /// <summary>The landing record of an object: what a start needs to find it again, sealed under the node's keys.</summary>
    public byte[] BuildRecord(string slotPath, ObjectId id, long fileLength, DateTimeOffset landedAt)
    {
        Span<byte> payload = stackalloc byte[PayloadSize];
        id.WriteTo(payload);
        BinaryPrimitives.WriteInt64BigEndian(payload[ObjectId.Size..], fileLength);
        BinaryPrimitives.WriteInt64BigEndian(payload[(ObjectId.Size + 8)..], landedAt.ToUnixTimeMilliseconds());
        var sealedPayload = _store.Keys.Seal(payload, RecordContext(slotPath));
        var record = new byte[RecordSize];
        RecordMagic.CopyTo(record);
        BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(RecordMagic.Length), (ushort)sealedPayload.Length);
        sealedPayload.CopyTo(record, RecordMagic.Length + 2);
        return record;
    }

    /// <summary>Records a landed object. False when equal content landed first in another slot (the caller treats it as a duplicate).</summary>
    public bool Register(ObjectId id, string slotPath, long fileLength, DateTimeOffset landedAt)
    {
        var entry = new LandedObject(id, slotPath, fileLength, landedAt, Verified: true);
        while (!_landed.TryAdd(id, entry))
        {
            // A look through the folder (a read of another node's object) may have found this very slot by its record,
            // written just before: it is this object, not a duplicate. Taken for one, its slot was deleted as a spare
            // copy, and the object, already acknowledged, was lost.
            if (_landed.TryGetValue(id, out var found))
            {
                if (found.Path != slotPath)
                {
                    return false;
                }

                if (_landed.TryUpdate(id, entry, found))
                {
                    return true;
                }
            }
        }

        return true;
    }

    /// <summary>A landed object whose slot is still there; an entry whose slot was moved by another process is dropped.</summary>
    public bool TryGet(ObjectId id, [NotNullWhen(true)] out LandedObject? landed)
    {
        if (_landed.TryGetValue(id, out landed))
        {
            if (File.Exists(landed.Path))
            {
                return true;
            }

            _landed.TryRemove(new KeyValuePair<ObjectId, LandedObject>(id, landed));
        }

        landed = null;
        return false;
    }

    public ICollection<LandedObject> Landed => _landed.Values;

    /// <summary>
    /// <see cref="TryGet"/>, then, on a miss, a look through spool/landing/ for an object another node sharing the
    /// folder (or an earlier run) landed and has not moved yet: a retrieve or a forward of it on this node must not fail.
    /// Misses are rare (objects/ is looked at first), and a look reads one page of each taken slot.
    /// </summary>
    public bool TryFind(ObjectId id, [NotNullWhen(true)] out LandedObject? landed)
    {
        if (TryGet(id, out landed))
        {
            return true;
        }

        if (!Directory.Exists(_layout.Landing))
        {
            return false;
        }

        lock (_lookLock)
        {
            if (TryGet(id, out landed))
            {
                return true; // found by a look that just ran
            }

            LookLocked();
        }

        return TryGet(id, out landed);
    }

    /// <summary>Adds to the landed objects those other nodes (or an earlier run) left in spool/landing/, without moving them.</summary>
    public void LookThroughFolder()
    {
        if (!Directory.Exists(_layout.Landing))
        {
            return;
        }

        lock (_lookLock)
        {
            LookLocked();
        }
    }

    private void LookLocked()
    {
        var known = _landed.Values.Select(l => l.Path).Concat(_ready.Select(r => r.Path)).ToHashSet(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFiles(_layout.Landing, "*" + ArchiveLayout.SlotExtension))
        {
            if (!known.Contains(path) && TryReadRecord(path) is { } found)
            {
                _landed.TryAdd(found.Id, found);
            }
        }
    }

    /// <summary>
    /// Removes a landed object for retention, under the same lock as the moves so that a move under way cannot put it
    /// back in objects/ afterwards. The caller deletes objects/ as well. True when a slot was removed.
    /// </summary>
    public async ValueTask<bool> RemoveAsync(ObjectId id, bool durable, CancellationToken cancellationToken)
    {
        await _moving.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_landed.TryRemove(id, out var landed) || !File.Exists(landed.Path))
            {
                return false;
            }

            File.Delete(landed.Path);
            if (durable)
            {
                await _store.Workers.RunAsync(() => FileSync.SyncDirectory(_layout.Landing), cancellationToken).ConfigureAwait(false);
            }

            return true;
        }
        finally
        {
            _moving.Release();
        }
    }

    /// <summary>Holds off the moves (retention and key rotation use it).</summary>
    public async ValueTask<IDisposable> HoldMovesAsync(CancellationToken cancellationToken)
    {
        await _moving.WaitAsync(cancellationToken).ConfigureAwait(false);
        return new Releaser(_moving);
    }

    /// <summary>
    /// Finds every landed object in spool/landing/ (this node's, another node's, or a crashed run's, by their records),
    /// moves them all to objects/, and removes stale slot files that hold none. The start, the scrub and key rotation run
    /// it first. Returns how many objects were moved.
    /// </summary>
    public async Task<int> MoveAllAsync(CancellationToken cancellationToken)
    {
        if (!Directory.Exists(_layout.Landing))
        {
            return 0;
        }

        await _moving.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _store.Keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
            var ready = _ready.Select(r => r.Path).ToHashSet(StringComparer.Ordinal);
            var staleBefore = _time.GetUtcNow().UtcDateTime - _maxAge;
            foreach (var path in Directory.EnumerateFiles(_layout.Landing, "*" + ArchiveLayout.SlotExtension))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (ready.Contains(path))
                {
                    continue;
                }

                var found = TryReadRecord(path);
                if (found is not null)
                {
                    _landed.TryAdd(found.Id, found);
                }
                else if (File.GetLastWriteTimeUtc(path) < staleBefore || LeftByGoneProcess(path))
                {
                    // Zeros never taken, or an object that was never committed: never acknowledged, never needed. Another
                    // node's may still be written to, so only past the stale age, unless its owner is a process of this
                    // machine that is gone (a crash left up to the largest burst's worth, hundreds of MiB, for 6 hours).
                    Delete(path);
                }
            }

            // Oldest first, as they landed: recovery after a power cut files two versions of an instance in file-time order.
            var moved = 0;
            foreach (var landed in _landed.Values.OrderBy(l => l.LandedAt).ToList())
            {
                try
                {
                    if (await MoveLockedAsync(landed, cancellationToken).ConfigureAwait(false))
                    {
                        moved++;
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // A full disk, a permission: the object stays durable and readable in its slot, and moves later.
                    NoteMoveFailure(e);
                    _logger.LogWarning("Landing slots: could not move landed object {ObjectId} ({Reason}); it stays in its slot", landed.Id,
                        e.GetType().Name);
                }
            }

            return moved;
        }
        finally
        {
            _moving.Release();
        }
    }

    private LandedObject? TryReadRecord(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var length = RandomAccess.GetLength(handle);
            if (length < RecordSize + ObjectFormat.HeaderSize)
            {
                return null;
            }

            var record = new byte[RecordSize];
            if (RandomAccess.Read(handle, record, length - RecordSize) != RecordSize || !record.AsSpan(0, RecordMagic.Length).SequenceEqual(RecordMagic))
            {
                return null;
            }

            var sealedLength = BinaryPrimitives.ReadUInt16BigEndian(record.AsSpan(RecordMagic.Length));
            if (sealedLength > RecordSize - RecordMagic.Length - 2)
            {
                return null;
            }

            var payload = _store.Keys.Open(record.AsSpan(RecordMagic.Length + 2, sealedLength), RecordContext(path));
            if (payload.Length != PayloadSize)
            {
                return null;
            }

            var fileLength = BinaryPrimitives.ReadInt64BigEndian(payload.AsSpan(ObjectId.Size));
            if (fileLength < ObjectFormat.HeaderSize || fileLength > length - RecordSize)
            {
                return null;
            }

            // The record's time, not the file's: a data flush does not make timestamps durable.
            var landedAt = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64BigEndian(payload.AsSpan(ObjectId.Size + 8)));
            return new LandedObject(new ObjectId(payload.AsSpan(0, ObjectId.Size)), path, fileLength, landedAt, Verified: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return null;
        }
    }

    /// <summary>
    /// Copies one landed object to objects/ (a new file, flushed, renamed without replacing, its folder flushed), then
    /// removes its slot. A slot found by its record after a crash is read through first: its record and its data were
    /// flushed together, so a cut could have kept one without the other (it was then never acknowledged). One that does
    /// not read back is renamed *.damaged and left for an analyst.
    /// </summary>
    private async Task<bool> MoveLockedAsync(LandedObject landed, CancellationToken cancellationToken)
    {
        if (!File.Exists(landed.Path))
        {
            _landed.TryRemove(new KeyValuePair<ObjectId, LandedObject>(landed.Id, landed));
            return false;
        }

        if (!landed.Verified && await ReadBackFailureAsync(landed, cancellationToken).ConfigureAwait(false) is { } failure)
        {
            _landed.TryRemove(new KeyValuePair<ObjectId, LandedObject>(landed.Id, landed));
            if (!File.Exists(landed.Path))
            {
                // Another node sharing the folder moved it meanwhile: nothing is damaged.
                return false;
            }

            _logger.LogWarning("Landing slot {Slot} holds a record but its object does not read back ({Reason}); left as {Extension}",
                Path.GetFileName(landed.Path), failure, ArchiveLayout.DamagedExtension);
            try
            {
                File.Move(landed.Path, landed.Path + ArchiveLayout.DamagedExtension, overwrite: false);
            }
            catch (IOException)
            {
            }

            return false;
        }

        var durable = _store.Durable;
        await _store.Workers.RunAsync(() => CopyIntoPlace(landed, durable), cancellationToken).ConfigureAwait(false);
        _landed.TryRemove(new KeyValuePair<ObjectId, LandedObject>(landed.Id, landed));
        Delete(landed.Path);
        ArchiveTelemetry.ObjectsMovedFromLanding.Add(1);
        Volatile.Write(ref _moveFailure, null);
        return true;
    }

    /// <summary>Why a landed object found by its record does not read back whole, or null when it does.</summary>
    private async Task<string?> ReadBackFailureAsync(LandedObject landed, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            await using var reader = await ArchiveObjectReader.OpenAsync(landed.Path, landed.Id, _store.Keys, "landing/" + Path.GetFileName(landed.Path),
                long.MaxValue, landed.FileLength, cancellationToken).ConfigureAwait(false);
            long position = 0;
            int read;
            while ((read = await reader.ReadAsync(position, buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                position += read;
            }

            return null;
        }
        catch (Exception e) when (e is ObjectFormatException or CryptographicException or IOException)
        {
            return e.GetType().Name;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void CopyIntoPlace(LandedObject landed, bool durable)
    {
        var target = _layout.ObjectPath(landed.Id);
        var directory = _layout.FanOutDirectory(landed.Id);
        var created = FileSync.EnsureDirectory(directory, durable: false);
        if (!File.Exists(target))
        {
            var spool = _layout.SpoolPath(ArchiveLayout.NewSpoolName());
            var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
            try
            {
                using (var source = File.OpenHandle(landed.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                using (var copy = new FileStream(spool, _store.NewFileOptions(FileAccess.Write)))
                {
                    long offset = 0;
                    while (offset < landed.FileLength)
                    {
                        var want = (int)Math.Min(buffer.Length, landed.FileLength - offset);
                        var read = RandomAccess.Read(source, buffer.AsSpan(0, want), offset);
                        if (read <= 0)
                        {
                            throw new IOException($"Landing slot {Path.GetFileName(landed.Path)} ended at {offset} of {landed.FileLength} bytes.");
                        }

                        RandomAccess.Write(copy.SafeFileHandle, buffer.AsSpan(0, read), offset);
                        offset += read;
                    }

                    // The object file says when the object was stored, as one committed the ordinary way does: recovery
                    // after a power cut looks for files by that time.
                    File.SetLastWriteTimeUtc(copy.SafeFileHandle, landed.LandedAt.UtcDateTime);
                    if (durable)
                    {
                        FileSync.SyncFile(copy.SafeFileHandle);
                        FileSync.ReleasePages(copy.SafeFileHandle);
                    }
                }

                try
                {
                    FileSync.MoveNoReplace(spool, target);
                }
                catch (IOException) when (File.Exists(target))
                {
                    File.Delete(spool); // equal content stored meanwhile
                }
            }
            catch
            {
                if (File.Exists(spool))
                {
                    File.Delete(spool);
                }

                throw;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        if (durable)
        {
            _store.SyncFanOut(directory, created);
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            FileSync.EnsureDirectory(_layout.Landing, _store.Durable);
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(Poll, _time, cancellationToken).ConfigureAwait(false);
                if (!Idle || !IdleWork)
                {
                    continue;
                }

                // The largest burst so far sets how many slots to keep ready.
                var burst = Interlocked.Exchange(ref _burst, 0);
                _target = Math.Min(_capacity, Math.Max(MinReady, Math.Max(_target, burst + MinReady / 2)));
                try
                {
                    await MoveWhileIdleAsync(cancellationToken).ConfigureAwait(false);
                    await MakeWhileIdleAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Only time is lost: objects stay durable in their slots, and new ones take ordinary spool files.
                    _logger.LogWarning(e, "Landing slots: idle-time work failed; retrying later");
                    await Task.Delay(TimeSpan.FromSeconds(5), _time, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task MoveWhileIdleAsync(CancellationToken cancellationToken)
    {
        foreach (var landed in _landed.Values.OrderBy(l => l.LandedAt).ToList())
        {
            if (!Idle)
            {
                return;
            }

            await _moving.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (_landed.TryGetValue(landed.Id, out var current) && ReferenceEquals(current, landed))
                {
                    await MoveLockedAsync(landed, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                NoteMoveFailure(e);
                throw;
            }
            finally
            {
                _moving.Release();
            }
        }
    }

    private async Task MakeWhileIdleAsync(CancellationToken cancellationToken)
    {
        var made = new List<string>(MakeBatch);
        try
        {
            while (ReadyCount + made.Count < _target && Idle && RoomForSlot && Volatile.Read(ref _disposed) == 0)
            {
                made.Add(await MakeSlotAsync(cancellationToken).ConfigureAwait(false));
                if (made.Count == MakeBatch)
                {
                    await PublishAsync(made, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            if (made.Count > 0)
            {
                await PublishAsync(made, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Ready slots are disk space set aside: never made when they would bring the node near its free-space floor.</summary>
    private bool RoomForSlot => _store.Space.FreeBytes > 2 * Math.Max(0, _store.Space.MinFreeBytes) + 4 * SlotBytes;

    private const char OwnerSeparator = '~';

    private static bool LeftByGoneProcess(string path)
    {
        var name = Path.GetFileNameWithoutExtension(path);
        var separator = name.LastIndexOf(OwnerSeparator);
        return separator > 0 && Vigie.Core.IO.LocalProcess.IsEarlierProcessOfThisMachine(name[..separator], Vigie.Core.IO.LocalProcess.Incarnation);
    }

    /// <summary>Makes one slot on a sync worker; it is takeable once published.</summary>
    private async Task<string> MakeSlotAsync(CancellationToken cancellationToken)
    {
        // Named after its owner, so that the next start of this machine's node removes what a crash left at once.
        var path = Path.Combine(_layout.Landing, Vigie.Core.IO.LocalProcess.Incarnation + OwnerSeparator + ArchiveLayout.NewSpoolName() + ArchiveLayout.SlotExtension);
        await _store.Workers.RunAsync(() => MakeSlot(path), cancellationToken).ConfigureAwait(false);
        return path;
    }

    private void MakeSlot(string path)
    {
        using var file = new FileStream(path, _store.NewFileOptions(FileAccess.Write));
        // Written, not just allocated: extents still marked unwritten would turn each object's flush into a metadata change.
        for (long at = 0; at < SlotBytes; at += Zeros.Length)
        {
            RandomAccess.Write(file.SafeFileHandle, Zeros.AsSpan(0, (int)Math.Min(Zeros.Length, SlotBytes - at)), at);
        }

        if (_store.Durable)
        {
            FileSync.SyncFile(file.SafeFileHandle);
        }
    }

    /// <summary>Slots become takeable only once their folder entries are durable: an object's single flush covers its data only.</summary>
    private async Task PublishAsync(List<string> made, CancellationToken cancellationToken)
    {
        if (_store.Durable)
        {
            await _store.Workers.RunAsync(() => FileSync.SyncDirectory(_layout.Landing), cancellationToken).ConfigureAwait(false);
        }

        var now = _time.GetUtcNow();
        foreach (var path in made)
        {
            _ready.Enqueue((path, now));
            Interlocked.Increment(ref _readyCount);
        }

        made.Clear();
        if (Volatile.Read(ref _disposed) == 1)
        {
            DrainReady();
        }
    }

    private static byte[] RecordContext(string slotPath) => Encoding.ASCII.GetBytes("vigie/landing/v1/" + Path.GetFileName(slotPath));

    private void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("Could not delete landing slot {Slot}; it will be removed at a later start.", Path.GetFileName(path));
        }
    }

    private void DrainReady()
    {
        while (_ready.TryDequeue(out var ready))
        {
            Interlocked.Decrement(ref _readyCount);
            Delete(ready.Path);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _stop.Cancel();
        try
        {
            _loop?.Wait(TimeSpan.FromSeconds(10));
        }
        catch (AggregateException)
        {
        }

        DrainReady();
        // A clean stop leaves every object in objects/, where backups and other tools look. A crash leaves them to the
        // next start, which finds them by their records.
        if (!_landed.IsEmpty)
        {
            try
            {
                MoveAllAsync(CancellationToken.None).GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Landing slots: could not move {Count} landed object(s) at stop; the next start moves them", _landed.Count);
            }
        }

        _stop.Dispose();
    }

    private sealed class Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                semaphore.Release();
            }
        }
    }
}
