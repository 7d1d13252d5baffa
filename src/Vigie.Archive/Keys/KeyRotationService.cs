using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;
using Vigie.Archive.IO;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Keys;

/// <summary>The outcome of <c>vigie keys rotate</c>.</summary>
/// <param name="Completed">True when nothing uses the retiring keys any more and they were removed; false: run it again.</param>
/// <param name="Remaining">Files still under a retiring key (or unreadable headers of spools being written) at the final check.</param>
public sealed record KeyRotationReport(
    Guid ActiveKeyId,
    IReadOnlyList<Guid> RetiringKeyIds,
    bool Resumed,
    long Rewrapped,
    long AlreadyCurrent,
    long Skipped,
    IReadOnlyList<string> Failures,
    long Remaining,
    bool Completed);

/// <summary>
/// Rotates the key-encryption key without re-encrypting any data: a new active KEK, then every object's data key is
/// re-wrapped in place in its free header slot (synced), and the old slot is cleared (synced). Each object is readable at
/// every instant, so a crash midway loses nothing, and running the rotation again resumes the same rotation (the key file
/// records it) until no file uses the old keys; only then are they removed from the key file.
/// </summary>
public sealed class KeyRotationService
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private readonly ArchiveKeyService _keys;
    private readonly FileObjectStore _store;
    private readonly ArchiveOptions _options;
    private readonly ILogger<KeyRotationService> _logger;

    internal KeyRotationService(ArchiveKeyService keys, FileObjectStore store, IOptions<ArchiveOptions> options, ILogger<KeyRotationService> logger)
    {
        _keys = keys;
        _store = store;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>Test hook: called after each object's new slot is durable, before its old slot is cleared (throw to simulate a crash).</summary>
    internal Action<string>? AfterNewSlotWritten { get; set; }

    /// <summary>How long to wait before the final check, so that other processes see the new key before it is declared the only one.</summary>
    internal TimeSpan SettleDelay => _options.KeyReloadInterval * 2;

    /// <summary>
    /// Two rotations run at once (from two hosts on a shared key file) would each add a new key and save the file by
    /// replacing it: the key one of them wrapped the root key under would then be kept nowhere. An exclusive lock
    /// beside the key file (flock, also honoured over NFSv4) lets one run at a time; the other stops at once.
    /// </summary>
    private static FileStream? LockAgainstOtherRotations(IKeyEncryptionKeyStore keks)
    {
        if (keks is not FileKeyEncryptionKeyStore file)
        {
            return null; // A KMS or a token serialises its own key changes.
        }

        var path = file.KeyFilePath + ".rotation.lock";
        var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            return new FileStream(path, options);
        }
        catch (IOException e) when (e.HResult == WouldBlock || (e.HResult & 0xFFFF) == SharingViolation)
        {
            throw new InvalidOperationException($"Another key rotation is running (it holds {path}); run this one again once it has finished.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read-only or full keys folder is not another rotation: say what it is.
            throw new InvalidOperationException($"The rotation lock {path} cannot be made: {e.Message}", e);
        }
    }

    /// <summary>
    /// How .NET reports a file another holder keeps locked: EWOULDBLOCK from flock (FileShare.None) on Linux,
    /// ERROR_SHARING_VIOLATION on Windows.
    /// </summary>
    private const int WouldBlock = 11;

    private const int SharingViolation = 32;

    public async Task<KeyRotationReport> RotateAsync(CancellationToken cancellationToken)
    {
        await Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var activity = ArchiveTelemetry.Source.StartActivity("archive.keys.rotate");
            await _keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
            var keks = _keys.KeyEncryptionKeys;
            using var exclusive = LockAgainstOtherRotations(keks);
            var state = await keks.BeginRotationAsync(cancellationToken).ConfigureAwait(false);
            var retiring = state.RetiringKeyIds.ToHashSet();
            _logger.LogInformation("Key rotation {Mode}: new active key {Active}, retiring {Retiring}.",
                state.Resumed ? "resumed" : "started", state.ActiveKeyId, string.Join(", ", retiring));

            await _keys.RewrapRootKeyAsync(state.ActiveKeyId, cancellationToken).ConfigureAwait(false);

            // Landed objects first go where the walk below expects them; any landing meanwhile is seen in spool/landing/.
            await _store.MoveLandedAsync(cancellationToken).ConfigureAwait(false);
            var counters = new Counters();
            var batch = new List<string>(_options.RotationBatchSize);
            foreach (var file in ObjectFiles())
            {
                batch.Add(file);
                if (batch.Count == _options.RotationBatchSize)
                {
                    await RewrapBatchAsync(batch, state.ActiveKeyId, counters, cancellationToken).ConfigureAwait(false);
                    batch.Clear();
                }
            }

            await RewrapBatchAsync(batch, state.ActiveKeyId, counters, cancellationToken).ConfigureAwait(false);

            // Let other processes reload the key file, then check that nothing (spools included) still uses a retiring key.
            await Task.Delay(SettleDelay, cancellationToken).ConfigureAwait(false);
            var remaining = await CountRemainingAsync(retiring, cancellationToken).ConfigureAwait(false);
            if (await _keys.RootKeyWrappedUnderAsync(cancellationToken).ConfigureAwait(false) != state.ActiveKeyId)
            {
                remaining++;
            }

            var completed = remaining == 0 && counters.Failures.IsEmpty;
            if (completed)
            {
                await keks.CompleteRotationAsync(state.RetiringKeyIds, cancellationToken).ConfigureAwait(false);
                _logger.LogInformation("Key rotation complete: {Count} retired key(s) removed from the key file.", retiring.Count);
            }
            else
            {
                // `vigie keys rotate` runs further passes itself; this pass's count is not the command's outcome.
                _logger.LogInformation(
                    "Key rotation pass: {Remaining} file(s) still under a retiring key (stored while the pass ran), {Failures} failure(s); the retiring keys stay until a pass finds none.",
                    remaining, counters.Failures.Count);
            }

            return new KeyRotationReport(state.ActiveKeyId, state.RetiringKeyIds, state.Resumed, counters.Rewrapped, counters.AlreadyCurrent,
                counters.Skipped, counters.Failures.ToList(), remaining, completed);
        }
        finally
        {
            Gate.Release();
        }
    }

    /// <summary>Spools first, then quarantine and objects: a file moving out of spool/ during the walk is seen in one place or the other.</summary>
    private IEnumerable<string> ObjectFiles()
    {
        var layout = _store.Layout;
        foreach (var file in EnumerateFiles(layout.Spool))
        {
            yield return file;
        }

        // Taken landing slots carry their header from the moment they are taken; untaken ones are zeros, with no key.
        foreach (var file in EnumerateFiles(layout.Landing).Where(f => f.EndsWith(ArchiveLayout.SlotExtension, StringComparison.Ordinal) && !IsUntakenSlot(f)))
        {
            yield return file;
        }

        foreach (var file in EnumerateFiles(layout.Quarantine).Where(f => f.EndsWith(ArchiveLayout.QuarantineExtension, StringComparison.Ordinal)))
        {
            yield return file;
        }

        foreach (var fanOut in ArchiveLayout.FanOutNames())
        {
            foreach (var file in EnumerateFiles(Path.Combine(layout.Objects, fanOut)))
            {
                yield return file;
            }
        }
    }

    private static bool IsUntakenSlot(string path)
    {
        try
        {
            return LandingSlots.IsUntaken(path);
        }
        catch (IOException)
        {
            return true; // gone: moved to objects/, where the walk finds it
        }
    }

    private static IEnumerable<string> EnumerateFiles(string directory) =>
        Directory.Exists(directory) ? Directory.EnumerateFiles(directory) : [];

    private async Task RewrapBatchAsync(List<string> files, Guid active, Counters counters, CancellationToken cancellationToken)
    {
        var pending = new List<Pending>();
        try
        {
            // Phase 1: write the new slot of every file, then sync them together.
            foreach (var file in files)
            {
                var item = await WriteNewSlotAsync(file, active, counters, cancellationToken).ConfigureAwait(false);
                if (item is not null)
                {
                    pending.Add(item);
                }
            }

            await _store.Workers.RunAllAsync(pending.Where(p => p.NewSlotWritten).Select(p => (Action)(() => FileSync.SyncFile(p.Handle))),
                cancellationToken).ConfigureAwait(false);

            // Phase 2: once the new slot is durable and opens, clear the old one, then sync again.
            foreach (var item in pending)
            {
                AfterNewSlotWritten?.Invoke(item.Path);
                if (await NewSlotOpensAsync(item, active, cancellationToken).ConfigureAwait(false))
                {
                    await RandomAccess.WriteAsync(item.Handle, new byte[ObjectFormat.SlotSize], ObjectFormat.SlotOffset(item.OldSlot), cancellationToken)
                        .ConfigureAwait(false);
                    item.Cleared = true;
                    counters.Rewrapped++;
                }
                else if (item.Path.StartsWith(_store.Layout.Spool, StringComparison.Ordinal))
                {
                    counters.Skipped++; // a spool whose writer rewrote its header meanwhile; the final check catches it.
                }
                else
                {
                    counters.Failures.Enqueue(Relative(item.Path) + ": the new key slot did not read back");
                }
            }

            await _store.Workers.RunAllAsync(pending.Where(p => p.Cleared).Select(p => (Action)(() => FileSync.SyncFile(p.Handle))),
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            foreach (var item in pending)
            {
                item.Handle.Dispose();
            }
        }
    }

    private async Task<Pending?> WriteNewSlotAsync(string path, Guid active, Counters counters, CancellationToken cancellationToken)
    {
        var isSpool = path.StartsWith(_store.Layout.Spool, StringComparison.Ordinal);
        SafeFileHandle handle;
        try
        {
            if (!isSpool)
            {
                // A FIFO, a link or a stub in place of an object: named like any other bad file, not a bare "does not support seeking".
                ArchiveObjectReader.RefuseNonObjectFile(path, Relative(path));
            }

            handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            counters.Skipped++; // moved (spool committed) or removed by retention; the final check sees its new place.
            return null;
        }
        catch (Exception e) when (e is ObjectFormatException or UnauthorizedAccessException or IOException)
        {
            counters.Failures.Enqueue(e is ObjectFormatException ? e.Message : $"{Relative(path)}: {e.Message}");
            return null;
        }

        byte[]? dataKey = null;
        try
        {
            var header = new byte[ObjectFormat.HeaderSize];
            var read = await RandomAccess.ReadAsync(handle, header, 0, cancellationToken).ConfigureAwait(false);
            ObjectHeader parsed;
            try
            {
                parsed = ObjectFormat.ParseHeader(header.AsSpan(0, read), Relative(path));
            }
            catch (ObjectFormatException) when (isSpool)
            {
                counters.Skipped++; // a spool whose header is not written yet
                handle.Dispose();
                return null;
            }

            // Either purpose, kept as found: a quarantined object stays one under the new key (since 2026-12-07).
            var (key, slot, purpose) = await DataKeys.OpenAsync(parsed, _keys.KeyEncryptionKeys, Relative(path), KeyPurpose.Archive, cancellationToken,
                anyPurpose: true).ConfigureAwait(false);
            dataKey = key;
            var other = 1 - slot;
            if (parsed.Slots[slot].KeyId == active)
            {
                if (!parsed.Slots[other].Used)
                {
                    counters.AlreadyCurrent++;
                    handle.Dispose();
                    return null;
                }

                // A crash after the new slot was synced and before the old was cleared: only the clearing is left.
                return new Pending(path, handle, slot, other, parsed.Slots[slot].Generation, NewSlotWritten: false, purpose);
            }

            var generation = parsed.Slots.Where(s => s.Used).Max(s => s.Generation) + 1;
            // One quarantined before 2026-12-07 (wrapped as an archive object) is wrapped for quarantine now.
            if (path.StartsWith(_store.Layout.Quarantine + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                purpose = KeyPurpose.Quarantine;
            }

            var wrapped = await _keys.KeyEncryptionKeys.WrapAsync(key, ObjectFormat.DataKeyContext(parsed.Prefix, generation, purpose), cancellationToken)
                .ConfigureAwait(false);
            if (wrapped.KeyId != active)
            {
                throw new InvalidOperationException($"The key store wrapped under {wrapped.KeyId}, not the rotation's active key {active}.");
            }

            var slotBytes = new byte[ObjectFormat.SlotSize];
            ObjectFormat.WriteSlot(slotBytes, generation, wrapped.KeyId, wrapped.Wrapped);
            await RandomAccess.WriteAsync(handle, slotBytes, ObjectFormat.SlotOffset(other), cancellationToken).ConfigureAwait(false);
            return new Pending(path, handle, other, slot, generation, NewSlotWritten: true, purpose);
        }
        catch (ObjectFormatException e)
        {
            handle.Dispose();
            counters.Failures.Enqueue($"{Relative(path)}: {e.Message}");
            return null;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        finally
        {
            if (dataKey is not null)
            {
                CryptographicOperations.ZeroMemory(dataKey);
            }
        }
    }

    private async Task<bool> NewSlotOpensAsync(Pending item, Guid active, CancellationToken cancellationToken)
    {
        var header = new byte[ObjectFormat.HeaderSize];
        var read = await RandomAccess.ReadAsync(item.Handle, header, 0, cancellationToken).ConfigureAwait(false);
        try
        {
            var parsed = ObjectFormat.ParseHeader(header.AsSpan(0, read), Relative(item.Path));
            var slot = parsed.Slots[item.NewSlot];
            if (!slot.Used || slot.KeyId != active || slot.Generation != item.Generation)
            {
                return false;
            }

            var key = await _keys.KeyEncryptionKeys.UnwrapAsync(new WrappedKey(slot.KeyId, slot.Wrapped),
                ObjectFormat.DataKeyContext(parsed.Prefix, slot.Generation, item.Purpose), cancellationToken).ConfigureAwait(false);
            CryptographicOperations.ZeroMemory(key);
            return true;
        }
        catch (Exception e) when (e is ObjectFormatException or CryptographicException or UnknownKeyEncryptionKeyException)
        {
            return false;
        }
    }

    private async Task<long> CountRemainingAsync(HashSet<Guid> retiring, CancellationToken cancellationToken)
    {
        long remaining = 0;
        var header = new byte[ObjectFormat.HeaderSize];
        foreach (var path in ObjectFiles())
        {
            cancellationToken.ThrowIfCancellationRequested();
            int read;
            try
            {
                using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                read = await RandomAccess.ReadAsync(handle, header, 0, cancellationToken).ConfigureAwait(false);
            }
            catch (FileNotFoundException)
            {
                continue;
            }

            try
            {
                var parsed = ObjectFormat.ParseHeader(header.AsSpan(0, read), Relative(path));
                if (parsed.Slots.Any(s => s.Used && retiring.Contains(s.KeyId)))
                {
                    remaining++;
                }
            }
            catch (ObjectFormatException) when (path.StartsWith(_store.Layout.Spool, StringComparison.Ordinal) && IsBeingWritten(path))
            {
                remaining++; // a spool still being written: its key is not known yet
            }
            catch (ObjectFormatException)
            {
                // Not ours or damaged: scrub reports it; it does not hold a retiring key.
            }
        }

        return remaining;
    }

    /// <summary>
    /// A spool without a readable header that nothing has written to for the orphan grace was left by a process killed
    /// before its header (often 0 bytes): it holds no key, and counting it kept every rotation from completing until a
    /// start swept it, hours later.
    /// </summary>
    private bool IsBeingWritten(string path)
    {
        try
        {
            return DateTime.UtcNow - File.GetLastWriteTimeUtc(path) < _options.OrphanGrace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private string Relative(string path) => Path.GetRelativePath(_store.Layout.Root, path);

    private sealed class Counters
    {
        public long Rewrapped;
        public long AlreadyCurrent;
        public long Skipped;

        public System.Collections.Concurrent.ConcurrentQueue<string> Failures { get; } = new();
    }

    private sealed record Pending(string Path, SafeFileHandle Handle, int NewSlot, int OldSlot, uint Generation, bool NewSlotWritten,
        KeyPurpose Purpose = KeyPurpose.Archive)
    {
        public bool Cleared { get; set; }
    }
}
