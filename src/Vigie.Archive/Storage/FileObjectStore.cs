using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.IO;
using Vigie.Archive.Keys;

namespace Vigie.Archive.Storage;

/// <summary>The object store on a local (or shared) file system. See <see cref="IObjectStore"/> and docs/archive.md.</summary>
internal sealed class FileObjectStore : IObjectStore, IDisposable
{
    private readonly ArchiveOptions _options;
    private readonly ILogger<FileObjectStore> _logger;
    private readonly TimeProvider _time;
    private readonly Lazy<SyncWorkers> _workers;
    private readonly SpoolReserve _reserve;
    private readonly LandingSlots _landing;
    // Fan-out folders whose entry in objects/ this process has seen synced: by its start, or by a sync it ran itself.
    // A folder that another thread or node made is not durable until someone syncs objects/ after making it.
    private readonly ConcurrentDictionary<string, bool> _durableFanOuts = new(StringComparer.Ordinal);
    private int _disposed;

    public FileObjectStore(ArchiveKeyService keys, IOptions<ArchiveOptions> options, TimeProvider time, ILogger<FileObjectStore> logger)
    {
        Keys = keys;
        _options = options.Value;
        _options.Validate();
        _time = time;
        _logger = logger;
        Layout = new ArchiveLayout(_options.DataFolder);
        _workers = new Lazy<SyncWorkers>(() => new SyncWorkers(_options.SyncThreads));
        _reserve = new SpoolReserve(Layout, _options.SpoolReserve, _options.StaleSpoolAge, time, NewFileOptions, logger);
        // Landing needs durable commits: without them an ordinary spool is as fast.
        _landing = new LandingSlots(this, Layout, _options.Durable ? _options.LandingSlots : 0, _options.LandingSlotBytes, _options.StaleSpoolAge,
            time, logger)
        {
            IdleWork = _options.LandingIdleWork,
        };
        Space = new ArchiveSpace(_options.DataFolder, _options.MinFreeSpace, time,
            reserve: new FullDiskReserve(_options.DataFolder, _options.FullDiskReserve, _options.MinFreeSpace, time, logger));
    }

    public ArchiveSpace Space { get; }

    internal ArchiveKeyService Keys { get; }

    /// <summary>Records that objects/ was synced after every fan-out folder existed (at start, once they are all made).</summary>
    internal void FanOutFoldersAreDurable()
    {
        foreach (var fanOut in ArchiveLayout.FanOutNames())
        {
            _durableFanOuts.TryAdd(Path.Combine(Layout.Objects, fanOut), true);
        }
    }

    internal ArchiveLayout Layout { get; }

    internal SyncWorkers Workers => _workers.Value;

    internal bool Durable => _options.Durable;

    internal LandingSlots Slots => _landing;

    public LandingStatus Landing => _landing.Status;

    internal void NoteActivity() => _landing.NoteActivity();

    /// <summary>Starts making landing slots and moving landed objects while the node is idle (the serving host).</summary>
    internal void StartLanding() => _landing.Start();

    /// <summary>
    /// Moves every landed object (this node's or another's) to objects/: the start, the scrub, retention and key
    /// rotation walk objects/ and expect to find them there. Returns how many were moved.
    /// </summary>
    internal Task<int> MoveLandedAsync(CancellationToken cancellationToken) => _landing.MoveAllAsync(cancellationToken);

    internal bool ReleaseWrittenPages => _options.ReleaseWrittenPages ?? true;

    public async ValueTask<SpoolWriter> CreateSpoolAsync(CancellationToken cancellationToken)
    {
        Space.EnsureRoomForObject();
        await Keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var dataKey = ObjectFormat.NewDataKey();
        try
        {
            var prefix = ObjectFormat.BuildPrefix(_options.SegmentSize, RandomNumberGenerator.GetBytes(ObjectFormat.NoncePrefixSize));
            const uint generation = 1;
            var wrapped = await Keys.KeyEncryptionKeys.WrapAsync(dataKey, ObjectFormat.DataKeyContext(prefix, generation), cancellationToken)
                .ConfigureAwait(false);
            var header = new byte[ObjectFormat.HeaderSize];
            prefix.CopyTo(header, 0);
            ObjectFormat.WriteSlot(header.AsSpan(ObjectFormat.SlotOffset(0)), generation, wrapped.KeyId, wrapped.Wrapped);

            _landing.NoteActivity();
            _landing.Start();
            long slotBytes = 0;
            if (_landing.TryTake(out var path, out var file))
            {
                slotBytes = _landing.SlotBytes;
            }
            else if (!_reserve.TryTake(out path, out file))
            {
                path = Layout.SpoolPath(ArchiveLayout.NewSpoolName());
                file = new FileStream(path, NewFileOptions(FileAccess.ReadWrite));
            }

            return new SpoolWriter(this, path, file, header, dataKey, wrapped.KeyId, _options.SegmentSize, _options.WriteBufferSegments,
                _options.MaxObjectBytes, slotBytes);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    public async ValueTask<CommittedObject> CommitAsync(SpooledObject spool, CancellationToken cancellationToken)
    {
        using var activity = ArchiveTelemetry.Source.StartActivity("archive.commit");
        spool.BeginMove();
        try
        {
            // One job on one sync worker: file sync, rename, folder sync. Each hand-off between threads costs a wake-up,
            // which on a busy virtual machine is worth more than the fsyncs themselves. Concurrent commits still share
            // the file system's journal commits, since their fsyncs run side by side on the other workers.
            _landing.NoteActivity();
            var damaged = await SetAsideIfDamagedAsync(spool.Id, cancellationToken).ConfigureAwait(false);
            var result = _options.Durable
                ? await Workers.RunAsync(() => spool.Landable && _landing.Enabled ? Land(spool) : SyncIntoPlace(spool), cancellationToken)
                    .ConfigureAwait(false)
                : MoveIntoPlace(spool, durable: false);
            if (damaged is not null)
            {
                result = result with { ReplacedDamagedCopy = damaged };
            }

            spool.EndMove(result.AlreadyStored ? SpoolState.Duplicate : SpoolState.Committed);
            (result.AlreadyStored ? ArchiveTelemetry.ObjectsDeduplicated : ArchiveTelemetry.ObjectsCommitted).Add(1);
            return result;
        }
        catch
        {
            if (File.Exists(spool.Path))
            {
                // The move did not happen: the spool stays pending so the caller can retry or quarantine it.
                spool.EndMove(SpoolState.Pending);
            }
            else
            {
                spool.EndMove(SpoolState.Discarded);
            }

            throw;
        }
    }

    public async ValueTask ConfirmStoredAsync(SpooledObject spool, CancellationToken cancellationToken)
    {
        if (!spool.TakeDuplicate())
        {
            return;
        }

        try
        {
            if (!File.Exists(Layout.ObjectPath(spool.Id)) && !_landing.TryFind(spool.Id, out _))
            {
                _logger.LogWarning("Object {ObjectId} was purged while equal content was being stored again: put back from the new copy", spool.Id);
                if (_options.Durable)
                {
                    // Not cancellable: the index already names this object, and the kept spool is its only copy.
                    await Workers.RunAsync(() => PutBack(spool), CancellationToken.None).ConfigureAwait(false);
                }
                else
                {
                    PutBack(spool);
                }
            }
        }
        finally
        {
            DeleteSpoolFile(spool.Path);
            spool.EndMove(SpoolState.Discarded);
        }
    }

    /// <summary>
    /// A kept duplicate's spool moved into place as a commit would move it. Its bytes were never synced (the stored
    /// copy's were), so they are synced first; a copy put back by another writer meanwhile is kept.
    /// </summary>
    private void PutBack(SpooledObject spool)
    {
        if (_options.Durable)
        {
            FileSync.SyncFile(spool.Path);
        }

        MoveIntoPlace(spool, _options.Durable);
    }

    public async ValueTask<IReadOnlyList<CommittedObject>> CommitAsync(IReadOnlyList<SpooledObject> spools, CancellationToken cancellationToken)
    {
        var tasks = new Task<CommittedObject>[spools.Count];
        for (var i = 0; i < spools.Count; i++)
        {
            tasks[i] = CommitAsync(spools[i], cancellationToken).AsTask();
        }

        return await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    /// <summary>
    /// Checks the copy already stored under this content's name, if any, and sets it aside when it fails (truncated,
    /// altered, encrypted under a key this archive does not hold): the content that has just arrived hashes to that
    /// name, so it takes its place. Sending an image again is how the operators heal one that scrub found damaged;
    /// before 2026-12-06 the damaged copy was kept and the new one dropped as a duplicate. Reads the stored copy once,
    /// for objects sent again only.
    /// </summary>
    private async ValueTask<string?> SetAsideIfDamagedAsync(ObjectId id, CancellationToken cancellationToken)
    {
        var target = Layout.ObjectPath(id);
        if (!File.Exists(target))
        {
            return null;
        }

        string problem;
        try
        {
            await using var reader = await ArchiveObjectReader.OpenAsync(target, id, Keys, id.ToString(), _options.MaxObjectBytes, null, cancellationToken)
                .ConfigureAwait(false);
            await reader.VerifyAsync(cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is ObjectFormatException or CryptographicException or UnknownKeyEncryptionKeyException)
        {
            problem = e is ObjectFormatException format ? format.Problem.ToString() : e.GetType().Name;
        }

        FileSync.EnsureDirectory(Layout.Damaged, durable: true);
        try
        {
            File.Move(target, Path.Combine(Layout.Damaged, $"{id}.{_time.GetUtcNow().ToUnixTimeMilliseconds()}"));
        }
        catch (FileNotFoundException)
        {
            return null; // another commit of the same content set it aside first
        }

        ArchiveTelemetry.ObjectsRepaired.Add(1);
        _logger.LogWarning("Stored object {ObjectId} failed its check ({Problem}) when the same content arrived again: the new copy replaces it, "
            + "the damaged file is kept in {Folder}", id, problem, Layout.Damaged);
        return problem;
    }

    /// <summary>Runs between a landing record's write and its object's registration (tests: what another thread may do then).</summary>
    internal Action? RecordWritten { get; set; }

    /// <summary>
    /// Commits into the landing slot itself: the landing record is written into its last page and the slot's data flushed,
    /// which is all a slot needs (see <see cref="LandingSlots"/>). Equal content already stored or landed is a duplicate,
    /// as in <see cref="MoveIntoPlace"/>.
    /// </summary>
    private CommittedObject Land(SpooledObject spool)
    {
        var started = Stopwatch.GetTimestamp();
        if (File.Exists(Layout.ObjectPath(spool.Id)))
        {
            return MoveIntoPlace(spool, durable: true);
        }

        if (_landing.TryGet(spool.Id, out _))
        {
            // Landed already, and durable since: kept until ConfirmStoredAsync, as in MoveIntoPlace.
            spool.SyncAndClose(durable: false);
            return new CommittedObject(spool.Id, spool.Length, AlreadyStored: true);
        }

        var landedAt = _time.GetUtcNow();
        spool.LandAndClose(_landing.BuildRecord(spool.Path, spool.Id, spool.FileLength, landedAt), _landing.RecordOffset);
        RecordWritten?.Invoke();
        var landed = _landing.Register(spool.Id, spool.Path, spool.FileLength, landedAt);
        ArchiveTelemetry.CommitSyncDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        if (landed)
        {
            ArchiveTelemetry.ObjectsLanded.Add(1);
        }

        // Equal content landed in another slot at the same moment: this one is kept until ConfirmStoredAsync, then deleted.
        return new CommittedObject(spool.Id, spool.Length, AlreadyStored: !landed);
    }

    private CommittedObject SyncIntoPlace(SpooledObject spool)
    {
        var started = Stopwatch.GetTimestamp();
        var result = MoveIntoPlace(spool, durable: true);
        ArchiveTelemetry.CommitSyncDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return result;
    }

    /// <summary>
    /// Syncs the spool, renames it to objects/xyz/&lt;id&gt; without replacing an existing file (link + unlink on Unix),
    /// or drops it when the id exists, then syncs the folder: even a duplicate syncs it, in case the first writer has not yet.
    /// A duplicate's own bytes are not synced: every writer syncs its file before the rename, so an object that is
    /// visible in its folder has durable content, and only its folder entry may still be pending.
    /// </summary>
    internal CommittedObject MoveIntoPlace(SpooledObject spool, bool durable)
    {
        var directory = Layout.FanOutDirectory(spool.Id);
        var target = Layout.ObjectPath(spool.Id);
        // Fan-out folders are made on first use; a new one needs objects/ synced too.
        var created = FileSync.EnsureDirectory(directory, durable: false);
        CommittedObject result;
        if (File.Exists(target))
        {
            // Kept until ConfirmStoredAsync: the stored copy may be a file due for deletion, purged before the index
            // holds it again.
            spool.SyncAndClose(durable: false);
            result = new CommittedObject(spool.Id, spool.Length, AlreadyStored: true);
        }
        else
        {
            spool.SyncAndClose(durable);
            try
            {
                FileSync.MoveNoReplace(spool.Path, target);
                result = new CommittedObject(spool.Id, spool.Length, AlreadyStored: false);
            }
            catch (IOException) when (File.Exists(target))
            {
                // Another writer (or node) stored the same content first.
                result = new CommittedObject(spool.Id, spool.Length, AlreadyStored: true);
            }
        }

        if (durable)
        {
            try
            {
                SyncFanOut(directory, created);
            }
            catch (Exception e)
            {
                throw new IOException("The object was moved into place but its folder could not be synced.", e);
            }
        }

        return result;
    }

    /// <summary>
    /// Makes a file just linked into a fan-out folder durable by name: the folder, and objects/ too unless this process
    /// has seen that folder's own entry synced (<paramref name="created"/>: this call made it).
    /// </summary>
    internal void SyncFanOut(string directory, bool created)
    {
        FileSync.SyncDirectory(directory);
        if (created || !_durableFanOuts.ContainsKey(directory))
        {
            FileSync.SyncDirectory(Layout.Objects);
            _durableFanOuts.TryAdd(directory, true);
        }
    }

    public async IAsyncEnumerable<WrittenObject> ListWrittenSinceAsync(DateTimeOffset since,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var threshold = since.UtcDateTime;
        var landed = new HashSet<ObjectId>();
        // Objects landed by this node, or by another sharing the folder (a rescan from the command line runs beside the server).
        _landing.LookThroughFolder();
        foreach (var written in _landing.Landed.Where(l => l.LandedAt >= since).ToList())
        {
            landed.Add(written.Id);
            yield return new WrittenObject(written.Id, written.LandedAt);
        }

        foreach (var fanOut in ArchiveLayout.FanOutNames())
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Linking a file into a folder moves the folder's time past the file's own: older folders hold nothing newer.
            var directory = new DirectoryInfo(Path.Combine(Layout.Objects, fanOut));
            if (!directory.Exists || directory.LastWriteTimeUtc < threshold)
            {
                continue;
            }

            var found = await Task.Run(() => directory.EnumerateFiles()
                .Where(f => f.LastWriteTimeUtc >= threshold)
                .Select(f => ObjectId.TryParse(f.Name, out var id) && id.FanOut == fanOut
                    ? new WrittenObject(id, new DateTimeOffset(f.LastWriteTimeUtc, TimeSpan.Zero))
                    : (WrittenObject?)null)
                .OfType<WrittenObject>()
                .ToList(), cancellationToken).ConfigureAwait(false);
            foreach (var written in found.Where(w => !landed.Contains(w.Id)))
            {
                yield return written;
            }
        }
    }

    public async ValueTask<QuarantinedObject> QuarantineAsync(SpooledObject spool, string reason, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        spool.BeginMove();
        try
        {
            if (_options.Durable)
            {
                await Workers.RunAsync(() => spool.SyncAndClose(durable: true), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                spool.SyncAndClose(durable: false);
            }

            // Its data key re-wrapped for quarantine before it leaves spool/ (since 2026-12-07): copied into objects/ and
            // named by index rows, it never opens as an archive object. A crash before the move leaves a stale spool.
            using (var handle = File.OpenHandle(spool.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete))
            {
                await DataKeys.BindToQuarantineAsync(handle, Keys.KeyEncryptionKeys, "spool/" + Path.GetFileName(spool.Path), SyncOrNull(),
                    cancellationToken).ConfigureAwait(false);
            }

            var quarantineId = Guid.NewGuid().ToString("N");
            var sealedReason = Keys.Seal(Encoding.UTF8.GetBytes(reason), QuarantineReasonContext(quarantineId));
            await FileSync.WriteAtomicallyAsync(Layout.QuarantineReasonPath(quarantineId), sealedReason, cancellationToken).ConfigureAwait(false);
            File.Move(spool.Path, Layout.QuarantinePath(quarantineId), overwrite: false);
            if (_options.Durable)
            {
                await Workers.RunAsync(() => FileSync.SyncDirectory(Layout.Quarantine), cancellationToken).ConfigureAwait(false);
            }

            spool.EndMove(SpoolState.Quarantined);
            ArchiveTelemetry.ObjectsQuarantined.Add(1);
            return new QuarantinedObject(quarantineId, spool.Id, spool.Length, _time.GetUtcNow());
        }
        catch
        {
            spool.EndMove(File.Exists(spool.Path) ? SpoolState.Pending : SpoolState.Discarded);
            throw;
        }
    }

    /// <summary>How a re-wrap makes its writes durable (on a sync worker), or null when the store is not durable.</summary>
    private Func<Microsoft.Win32.SafeHandles.SafeFileHandle, CancellationToken, Task>? SyncOrNull() =>
        _options.Durable ? (handle, token) => Workers.RunAsync(() => FileSync.SyncFile(handle), token) : null;

    // Object ids the index records as quarantined while quarantine files written before 2026-12-07 (data key wrapped as an
    // archive object's) may remain: refused as archive objects until the start re-wraps them (ArchiveInitializer).
    private volatile IReadOnlySet<ObjectId>? _legacyQuarantined;

    /// <summary>Refuses these ids as archive objects (the quarantine records of an archive not re-wrapped yet); null: none.</summary>
    internal void RefuseAsQuarantined(IReadOnlySet<ObjectId>? ids) => _legacyQuarantined = ids is { Count: > 0 } ? ids : null;

    /// <summary>
    /// Re-wraps for quarantine the data key of each quarantine file still wrapped as an archive object (written before
    /// 2026-12-07), key slots only, a file at a time. Only the files the quarantine records name are looked at, each by its
    /// record's quarantine id and only if it holds the record's object: since 2026-12-07; before, every file in quarantine/
    /// was, so a clean object's file copied there was re-wrapped, and its original in objects/ with it (review 25 F1).
    /// Copies in objects/ are looked for only with <paramref name="isArchived"/> (the one-time pass).
    /// Returns how many were re-wrapped, the files that could not be (to try again), and those left as they are.
    /// </summary>
    internal async Task<(int Rewrapped, IReadOnlyList<string> Failed, IReadOnlyList<string> Skipped)> BindQuarantinePurposeAsync(
        IReadOnlyList<(string QuarantineId, ObjectId ObjectId)> records, Func<ObjectId, CancellationToken, ValueTask<bool>>? isArchived,
        CancellationToken cancellationToken)
    {
        await Keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var rewrapped = 0;
        var failed = new List<string>();
        var skipped = new List<string>();
        foreach (var (quarantineId, objectId) in records)
        {
            if (!IsQuarantineId(quarantineId))
            {
                skipped.Add(quarantineId);
                continue;
            }

            var path = Layout.QuarantinePath(quarantineId);
            var location = "quarantine/" + Path.GetFileName(path);
            try
            {
                // The record's object, or nothing is touched: any other file put under that name is the scrub's to name.
                await using (await ArchiveObjectReader.OpenAsync(path, objectId, Keys, location, _options.MaxObjectBytes, null, cancellationToken,
                                 KeyPurpose.Quarantine).ConfigureAwait(false))
                {
                }

                using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                if (await DataKeys.BindToQuarantineAsync(handle, Keys.KeyEncryptionKeys, location, SyncOrNull(), cancellationToken).ConfigureAwait(false))
                {
                    rewrapped++;
                    if (isArchived is not null)
                    {
                        await BindCopyInObjectsAsync(path, objectId, isArchived, cancellationToken).ConfigureAwait(false);
                    }
                }
            }
            catch (FileNotFoundException)
            {
                // Removed by retention meanwhile.
            }
            catch (ObjectFormatException e) when (e.Problem is not (ObjectProblem.Unreadable or ObjectProblem.UnknownKey))
            {
                // Gone, not ours, or not the record's object: left as it is.
                if (e.Problem != ObjectProblem.NotFound)
                {
                    skipped.Add(location);
                }
            }
            catch (Exception e) when (e is ObjectFormatException or IOException or UnauthorizedAccessException or CryptographicException
                                          or UnknownKeyEncryptionKeyException)
            {
                failed.Add(location);
            }
        }

        return (rewrapped, failed, skipped);
    }

    /// <summary>Whether this file's data key opens as an archive object's (a file in quarantine/ that was never quarantined).</summary>
    internal async ValueTask<bool> OpensAsArchiveObjectAsync(string path, string location, CancellationToken cancellationToken)
    {
        try
        {
            await using var reader = await ArchiveObjectReader.OpenAsync(path, null, Keys, location, _options.MaxObjectBytes, null, cancellationToken)
                .ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is ObjectFormatException or IOException or UnauthorizedAccessException or UnknownKeyEncryptionKeyException)
        {
            return false;
        }
    }

    private static bool IsQuarantineId(string id) =>
        id.Length == 32 && id.All(c => char.IsAsciiDigit(c) || char.IsAsciiHexDigitLower(c));

    /// <summary>
    /// A copy of a quarantine file put into objects/ before its re-wrap (the same random nonce prefix: the same file, not
    /// equal content stored on its own) is re-wrapped for quarantine too, so it does not open as an archive object; unless
    /// a version row names it (since 2026-12-07): an acknowledged object is never made a quarantined one from what the
    /// index says, since a clean object's file copied into quarantine/ under a record looks the same.
    /// </summary>
    private async ValueTask BindCopyInObjectsAsync(string quarantinePath, ObjectId id, Func<ObjectId, CancellationToken, ValueTask<bool>> isArchived,
        CancellationToken cancellationToken)
    {
        var copy = Layout.ObjectPath(id);
        if (!File.Exists(copy))
        {
            return;
        }

        var prefix = new byte[ObjectFormat.PrefixSize];
        var other = new byte[ObjectFormat.PrefixSize];
        using var quarantined = File.OpenHandle(quarantinePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var handle = File.OpenHandle(copy, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        if (await RandomAccess.ReadAsync(quarantined, prefix, 0, cancellationToken).ConfigureAwait(false) != prefix.Length
            || await RandomAccess.ReadAsync(handle, other, 0, cancellationToken).ConfigureAwait(false) != other.Length
            || !prefix.AsSpan().SequenceEqual(other))
        {
            return;
        }

        if (await isArchived(id, cancellationToken).ConfigureAwait(false))
        {
            _logger.LogError("Object {ObjectId} in objects/, named by a version row, is the same file as a quarantined one: left as it is (an archive object " +
                             "copied into quarantine/, or a quarantined one put into the archive). Run vigie scrub", id);
            return;
        }

        if (await DataKeys.BindToQuarantineAsync(handle, Keys.KeyEncryptionKeys, id.ToString(), SyncOrNull(), cancellationToken).ConfigureAwait(false))
        {
            _logger.LogError("Object {ObjectId} in objects/ is a copy of a quarantined file: re-wrapped for quarantine, it is no longer served. Run vigie scrub", id);
        }
    }

    public async ValueTask<ArchiveObjectReader> OpenReadAsync(ObjectId id, CancellationToken cancellationToken)
    {
        if (_legacyQuarantined is { } quarantined && quarantined.Contains(id))
        {
            throw new ObjectFormatException(ObjectProblem.Quarantined,
                "the index records this object as quarantined, and quarantine files of before 2026-12-07 are not re-wrapped yet: not opened as an archive object",
                id.ToString());
        }

        ValueTask<ArchiveObjectReader> Open(string path, long? fileLength) =>
            ArchiveObjectReader.OpenAsync(path, id, Keys, id.ToString(), _options.MaxObjectBytes, fileLength, cancellationToken);

        if (_landing.TryGet(id, out var landed))
        {
            try
            {
                return await Open(landed.Path, landed.FileLength).ConfigureAwait(false);
            }
            catch (ObjectFormatException e) when (e.Problem == ObjectProblem.NotFound)
            {
                // Moved to objects/ since.
            }
        }

        try
        {
            return await Open(Layout.ObjectPath(id), null).ConfigureAwait(false);
        }
        catch (ObjectFormatException e) when (e.Problem == ObjectProblem.NotFound)
        {
            if (_landing.TryFind(id, out var elsewhere))
            {
                try
                {
                    // Landed by another node sharing the folder, and not moved yet.
                    return await Open(elsewhere.Path, elsewhere.FileLength).ConfigureAwait(false);
                }
                catch (ObjectFormatException again) when (again.Problem == ObjectProblem.NotFound)
                {
                }
            }

            // Moved from its slot into objects/ by the other node between the two looks.
            return await Open(Layout.ObjectPath(id), null).ConfigureAwait(false);
        }
    }

    public ValueTask<ArchiveObjectReader> OpenQuarantinedAsync(string quarantineId, CancellationToken cancellationToken)
    {
        ValidateQuarantineId(quarantineId);
        return ArchiveObjectReader.OpenAsync(Layout.QuarantinePath(quarantineId), null, Keys, "quarantine/" + quarantineId,
            _options.MaxObjectBytes, null, cancellationToken, KeyPurpose.Quarantine);
    }

    public async ValueTask<string> ReadQuarantineReasonAsync(string quarantineId, CancellationToken cancellationToken)
    {
        ValidateQuarantineId(quarantineId);
        await Keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var sealedReason = await File.ReadAllBytesAsync(Layout.QuarantineReasonPath(quarantineId), cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(Keys.Open(sealedReason, QuarantineReasonContext(quarantineId)));
    }

    public ValueTask<bool> ExistsAsync(ObjectId id, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // objects/ again last: another node may have moved it there from its slot between the first two looks.
        return ValueTask.FromResult(File.Exists(Layout.ObjectPath(id)) || _landing.TryFind(id, out _) || File.Exists(Layout.ObjectPath(id)));
    }

    public async ValueTask<string?> FindProblemAsync(ObjectId id, long length, bool whole, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (!whole && SizeLooksRight(id, length) is { } looked)
        {
            return looked ? null : nameof(ObjectProblem.Truncated);
        }

        try
        {
            await using var reader = await OpenReadAsync(id, cancellationToken).ConfigureAwait(false);
            if (reader.Length != length)
            {
                return nameof(ObjectProblem.LengthMismatch);
            }

            if (whole)
            {
                await reader.VerifyAsync(cancellationToken).ConfigureAwait(false);
            }

            return null;
        }
        catch (ObjectFormatException e)
        {
            return e.Problem.ToString();
        }
        catch (UnknownKeyEncryptionKeyException)
        {
            return nameof(ObjectProblem.UnknownKey);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return nameof(ObjectProblem.NotFound);
        }
    }

    /// <summary>
    /// A look without a read (lstat): true when the object's file is a plain file of the size its plaintext length gives
    /// under the configured segment size (or its landing slot holds that much); false when it is a size no segment size
    /// gives; null when unsure (missing here: the slow path looks again; another segment size, or not a plain file).
    /// </summary>
    private bool? SizeLooksRight(ObjectId id, long length)
    {
        if (_landing.TryGet(id, out var landed))
        {
            var slot = new FileInfo(landed.Path);
            return slot.Exists && slot.LinkTarget is null && slot.Length >= landed.FileLength && landed.FileLength == ObjectFormat.FileLengthFor(length, _options.SegmentSize)
                ? true : null;
        }

        var file = new FileInfo(Layout.ObjectPath(id));
        if (!file.Exists || file.LinkTarget is not null || (file.Attributes & (FileAttributes.Directory | FileAttributes.Device)) != 0)
        {
            return null;
        }

        if (file.Length == ObjectFormat.FileLengthFor(length, _options.SegmentSize))
        {
            return true;
        }

        // Shorter than any segment size could make it (the smallest tags are the fewest): cut.
        return file.Length < ObjectFormat.FileLengthFor(length, ObjectFormat.MaxSegmentSize) ? false : null;
    }

    public async ValueTask<CommittedObject> PutAsync(Stream content, CancellationToken cancellationToken)
    {
        await using var writer = await CreateSpoolAsync(cancellationToken).ConfigureAwait(false);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(_options.SegmentSize);
        try
        {
            int read;
            while ((read = await content.ReadAsync(buffer.AsMemory(0, _options.SegmentSize), cancellationToken).ConfigureAwait(false)) > 0)
            {
                await writer.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        await using var spool = await writer.CompleteAsync(cancellationToken).ConfigureAwait(false);
        return await CommitAsync(spool, cancellationToken).ConfigureAwait(false);
    }

    internal ValueTask<ArchiveObjectReader> OpenSpoolAsync(SpooledObject spool, CancellationToken cancellationToken) =>
        ArchiveObjectReader.OpenAsync(spool.Path, spool.Id, Keys, "spool/" + Path.GetFileName(spool.Path), _options.MaxObjectBytes,
            spool.FileLength, cancellationToken);

    internal void DeleteSpoolFile(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException e)
        {
            _logger.LogWarning(e, "Could not delete spool file {Spool}; it will be removed at the next start.", Path.GetFileName(path));
        }
    }

    /// <summary>Removes an object for retention only. The caller has recorded and audited the decision.</summary>
    internal async ValueTask<bool> DeleteObjectAsync(ObjectId id, CancellationToken cancellationToken)
    {
        var landed = await _landing.RemoveAsync(id, _options.Durable, cancellationToken).ConfigureAwait(false);
        var path = Layout.ObjectPath(id);
        if (!File.Exists(path))
        {
            return landed;
        }

        File.Delete(path);
        if (_options.Durable)
        {
            await Workers.RunAsync(() => FileSync.SyncDirectory(Layout.FanOutDirectory(id)), cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    internal async ValueTask<bool> DeleteQuarantinedAsync(string quarantineId, CancellationToken cancellationToken)
    {
        ValidateQuarantineId(quarantineId);
        var existed = File.Exists(Layout.QuarantinePath(quarantineId));
        File.Delete(Layout.QuarantinePath(quarantineId));
        File.Delete(Layout.QuarantineReasonPath(quarantineId));
        if (_options.Durable)
        {
            await Workers.RunAsync(() => FileSync.SyncDirectory(Layout.Quarantine), cancellationToken).ConfigureAwait(false);
        }

        return existed;
    }

    /// <summary>
    /// Removes spools left by a crash (never acknowledged, so never needed), and reserve files as old. Young ones may
    /// belong to another node.
    /// </summary>
    internal int RemoveStaleSpools()
    {
        var removed = 0;
        var cutoff = _time.GetUtcNow().UtcDateTime - _options.StaleSpoolAge;
        foreach (var folder in new[] { Layout.Spool, Layout.SpoolReserve })
        {
            if (!Directory.Exists(folder))
            {
                continue;
            }

            foreach (var file in Directory.EnumerateFiles(folder))
            {
                if (File.GetLastWriteTimeUtc(file) < cutoff)
                {
                    DeleteSpoolFile(file);
                    removed++;
                }
            }
        }

        return removed;
    }

    internal int SpoolReserveCount => _reserve.Count;

    internal FileStreamOptions NewFileOptions(FileAccess access)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = access,
            Share = FileShare.Read | FileShare.Delete,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        return options;
    }

    internal static byte[] QuarantineReasonContext(string quarantineId) => Encoding.ASCII.GetBytes("vigie/quarantine-reason/v1/" + quarantineId);

    internal static void ValidateQuarantineId(string quarantineId)
    {
        if (quarantineId is not { Length: 32 } || !quarantineId.All(c => char.IsAsciiDigit(c) || char.IsAsciiHexDigitLower(c)))
        {
            throw new ArgumentException("A quarantine id is 32 lowercase hex digits.", nameof(quarantineId));
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _landing.Dispose();
        _reserve.Dispose();
        if (_workers.IsValueCreated)
        {
            _workers.Value.Dispose();
        }
    }
}
