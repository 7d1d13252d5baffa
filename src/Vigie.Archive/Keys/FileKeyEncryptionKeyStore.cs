using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using Vigie.Archive.IO;

namespace Vigie.Archive.Keys;

/// <summary>
/// Key-encryption keys in a JSON key file outside the data folder, mode 0600. Data keys are wrapped with AES-256-GCM:
/// nonce (12) || ciphertext || tag (16), associated data = "vigie/kek-wrap/v1" || key id || context.
/// The file is re-read when it changes, so that a rotation made by another process is seen.
/// </summary>
internal sealed class FileKeyEncryptionKeyStore : IKeyEncryptionKeyStore
{
    public const string Format = "vigie-kek/1";
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private static readonly byte[] WrapLabel = "vigie/kek-wrap/v1"u8.ToArray();

    private readonly string _path;
    private readonly TimeSpan _reloadInterval;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly SemaphoreSlim _reloading = new(1, 1);
    private volatile Snapshot? _snapshot;
    private long _lastCheckTicks;
    private RefusedReload? _refusedReload;

    public FileKeyEncryptionKeyStore(IOptions<ArchiveOptions> options, TimeProvider time)
    {
        var value = options.Value;
        _path = value.ResolveKeyFile();
        _reloadInterval = value.KeyReloadInterval;
        _time = time;
        var layout = new ArchiveLayout(value.DataFolder);
        if (layout.Contains(_path))
        {
            var real = Vigie.Core.IO.RealPath.Resolve(_path);
            throw new InvalidOperationException(
                $"The key file {_path} is inside the data folder {layout.Root}{(real == _path ? "" : $" (through a symbolic link, it is {real})")}; keep it elsewhere (Archive:KeyFile).");
        }
    }

    public string KeyFilePath => _path;

    /// <summary>
    /// The key-encryption key the archive's root key is wrapped under, as on disk now (set by the archive's key
    /// service): a key file that does not hold it, and shares no key with the one in memory, is another archive's.
    /// </summary>
    public Func<CancellationToken, ValueTask<Guid?>>? RootKeyWrappedUnder { get; set; }

    public string? FindCustodyProblem()
    {
        if (_snapshot is null)
        {
            return null;
        }

        if (Volatile.Read(ref _refusedReload) is { } refused)
        {
            return refused.Problem;
        }

        try
        {
            using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            // The node holds its keys; the next start would refuse the file (before 2026-12-06 /health said nothing of it).
            return OthersMayAccess() is { } mode
                ? $"the key-encryption key file {_path} is open to group or others (mode {mode}): the node will not start again until it is chmod 600"
                : null;
        }
        catch (FileNotFoundException)
        {
            return $"the key-encryption key file {_path} is gone: the node runs on the keys it holds in memory, but will not start again "
                + "and no other node can read the archive; restore the file from its backup";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"the key-encryption key file {_path} cannot be read ({e.GetType().Name}): the node will not start again";
        }
    }

    /// <summary>The key file's full path.</summary>
    public string FilePath => _path;

    public ValueTask<bool> ExistsAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(File.Exists(_path));
    }

    public async ValueTask<bool> CreateAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (File.Exists(_path))
            {
                // Another node starting beside this one made it since this one looked: use theirs.
                await LoadAsync(cancellationToken).ConfigureAwait(false);
                return false;
            }

            var directory = Path.GetDirectoryName(_path)!;
            FileSync.EnsureDirectory(directory, durable: true);
            var model = new KeyFileModel
            {
                Format = Format,
                Keys = [NewKey(KeyEncryptionKeyState.Active)],
            };
            // Nodes started together on a new shared folder all get here. A rename would let the last one replace the
            // file under the others, which would then wrap the root key under a KEK kept nowhere: the file is created
            // once, and every node loads the one that won.
            var bytes = JsonSerializer.SerializeToUtf8Bytes(model, KeyFileJsonContext.Default.KeyFileModel);
            var created = await FileSync.CreateOnceAsync(_path, bytes, cancellationToken).ConfigureAwait(false);
            await LoadAsync(cancellationToken).ConfigureAwait(false);
            return created;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask<WrappedKey> WrapAsync(ReadOnlyMemory<byte> dataKey, ReadOnlyMemory<byte> context, CancellationToken cancellationToken)
    {
        var snapshot = await CurrentAsync(cancellationToken).ConfigureAwait(false);
        var active = snapshot.Active;
        var wrapped = new byte[NonceSize + dataKey.Length + TagSize];
        RandomNumberGenerator.Fill(wrapped.AsSpan(0, NonceSize));
        var aad = AssociatedData(active.Id, context.Span);
        using var gcm = new AesGcm(active.Material, TagSize);
        gcm.Encrypt(wrapped.AsSpan(0, NonceSize), dataKey.Span, wrapped.AsSpan(NonceSize, dataKey.Length),
            wrapped.AsSpan(NonceSize + dataKey.Length, TagSize), aad);
        return new WrappedKey(active.Id, wrapped);
    }

    public async ValueTask<byte[]> UnwrapAsync(WrappedKey wrapped, ReadOnlyMemory<byte> context, CancellationToken cancellationToken)
    {
        var snapshot = await CurrentAsync(cancellationToken).ConfigureAwait(false);
        if (!snapshot.Keys.TryGetValue(wrapped.KeyId, out var key))
        {
            // Another node may have rotated since the last look; re-read only if the file changed, so that a
            // store full of foreign files does not re-parse it for each one.
            snapshot = await ReloadAsync(force: false, cancellationToken).ConfigureAwait(false);
            if (!snapshot.Keys.TryGetValue(wrapped.KeyId, out key))
            {
                throw new UnknownKeyEncryptionKeyException(wrapped.KeyId);
            }
        }

        var data = wrapped.Wrapped;
        if (data.Length < NonceSize + TagSize + 1 || data.Length > NonceSize + TagSize + 1024)
        {
            throw new CryptographicException("The wrapped key has an impossible length.");
        }

        var plain = new byte[data.Length - NonceSize - TagSize];
        using var gcm = new AesGcm(key.Material, TagSize);
        gcm.Decrypt(data.AsSpan(0, NonceSize), data.AsSpan(NonceSize, plain.Length), data.AsSpan(NonceSize + plain.Length, TagSize),
            plain, AssociatedData(wrapped.KeyId, context.Span));
        return plain;
    }

    public async ValueTask<IReadOnlyList<KeyEncryptionKeyInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var snapshot = await ReloadAsync(force: true, cancellationToken).ConfigureAwait(false);
        return snapshot.Model.Keys.Select(k => new KeyEncryptionKeyInfo(k.Id, k.State, k.Created)).ToList();
    }

    public async ValueTask<KeyRotationState> BeginRotationAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var model = (await LoadAsync(cancellationToken).ConfigureAwait(false)).Model;
            if (model.Rotation is { } pending)
            {
                return new KeyRotationState(model.Keys.Single(k => k.State == KeyEncryptionKeyState.Active).Id, pending.Retiring, Resumed: true);
            }

            var retiring = model.Keys.Select(k => k.Id).ToList();
            var keys = model.Keys.Select(k => k with { State = KeyEncryptionKeyState.DecryptOnly }).ToList();
            var fresh = NewKey(KeyEncryptionKeyState.Active);
            keys.Add(fresh);
            var next = model with
            {
                Keys = keys,
                Rotation = new RotationModel { Started = _time.GetUtcNow(), Retiring = retiring },
            };
            await SaveAsync(next, cancellationToken).ConfigureAwait(false);
            return new KeyRotationState(fresh.Id, retiring, Resumed: false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask CompleteRotationAsync(IReadOnlyCollection<Guid> retiredKeyIds, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var model = (await LoadAsync(cancellationToken).ConfigureAwait(false)).Model;
            var retired = retiredKeyIds.ToHashSet();
            if (model.Keys.Any(k => k.State == KeyEncryptionKeyState.Active && retired.Contains(k.Id)))
            {
                throw new InvalidOperationException("The active key-encryption key cannot be retired.");
            }

            var next = model with
            {
                Keys = model.Keys.Where(k => !retired.Contains(k.Id)).ToList(),
                Rotation = null,
            };
            await SaveAsync(next, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private static KeyModel NewKey(KeyEncryptionKeyState state) => new()
    {
        Id = Guid.NewGuid(),
        State = state,
        Created = DateTimeOffset.UtcNow,
        Material = RandomNumberGenerator.GetBytes(KeySize),
    };

    private static byte[] AssociatedData(Guid keyId, ReadOnlySpan<byte> context)
    {
        var aad = new byte[WrapLabel.Length + 16 + context.Length];
        WrapLabel.CopyTo(aad, 0);
        keyId.TryWriteBytes(aad.AsSpan(WrapLabel.Length, 16), bigEndian: true, out _);
        context.CopyTo(aad.AsSpan(WrapLabel.Length + 16));
        return aad;
    }

    /// <summary>
    /// The keys as of at most one reload interval ago. The check time is read before the snapshot, and set only once
    /// the snapshot it vouches for is in place: set first (as it was), a store racing the reload got the fresh check
    /// time with the old snapshot, and right after a completed rotation wrapped its data key under the key just removed
    /// from the file. Acknowledged, that object could no longer be read by anyone.
    /// </summary>
    private async ValueTask<Snapshot> CurrentAsync(CancellationToken cancellationToken)
    {
        var checkedAt = Interlocked.Read(ref _lastCheckTicks);
        var snapshot = _snapshot;
        if (snapshot is not null && _time.GetElapsedTime(checkedAt, _time.GetTimestamp()) < _reloadInterval)
        {
            return snapshot;
        }

        return await ReloadAsync(force: false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One reload at a time: two racing loads could otherwise install the older file last.</summary>
    private async ValueTask<Snapshot> ReloadAsync(bool force, CancellationToken cancellationToken)
    {
        await _reloading.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var checking = _time.GetTimestamp();
            var snapshot = _snapshot;
            if (snapshot is null)
            {
                snapshot = await LoadAsync(cancellationToken).ConfigureAwait(false);
            }
            // After a refusal, any change is looked at, the right file put back with its own time (cp -p) too: it
            // was compared with the snapshot's time only, and the refusal stayed (before 2026-12-06).
            else if (force || File.GetLastWriteTimeUtc(_path) is var written
                     && (Volatile.Read(ref _refusedReload) is { } refused ? written != refused.WriteTime : written != snapshot.WriteTime))
            {
                snapshot = await ReplaceAsync(snapshot, cancellationToken).ConfigureAwait(false);
            }

            // The snapshot vouches for the file as it was when this check began.
            Interlocked.Exchange(ref _lastCheckTicks, checking);
            return snapshot;
        }
        finally
        {
            _reloading.Release();
        }
    }

    /// <summary>
    /// Installs the key file as it is now, if it continues the one in memory: it shares a key with it (a rotation
    /// begun or completed), or holds the key the root key is wrapped under (a rotation completed between two looks).
    /// Otherwise, or when the file is gone or unreadable, the node goes on with the keys in memory and /health says why.
    /// Installed as it came, another archive's key file (a wrong backup restored) had every store acknowledged under a
    /// key this archive does not keep, unreadable once the right file was back; a file removed made every store fail.
    /// </summary>
    private async ValueTask<Snapshot> ReplaceAsync(Snapshot current, CancellationToken cancellationToken)
    {
        Snapshot candidate;
        try
        {
            candidate = await ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            // FindCustodyProblem names a missing or unreadable file; a damaged one is named here.
            if (File.Exists(_path))
            {
                Refuse(e.Message + " The node goes on with the keys it holds in memory.");
            }

            return current;
        }

        var continues = candidate.Keys.Values.Any(k => current.Keys.TryGetValue(k.Id, out var known) && known.Material.AsSpan().SequenceEqual(k.Material));
        if (!continues && RootKeyWrappedUnder is { } rootKey)
        {
            Guid? required;
            try
            {
                required = await rootKey(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException or CryptographicException)
            {
                required = Guid.Empty;
            }

            if (required is { } key && !candidate.Keys.ContainsKey(key))
            {
                Refuse($"the key file {_path} was replaced by one that shares no key with the keys in use and does not hold key {key}, which the "
                       + "archive's root key is wrapped under: another archive's key file, or a wrong backup. The node goes on with the keys it holds "
                       + "in memory and wraps nothing under the new file; put the right file back");
                return current;
            }
        }

        Volatile.Write(ref _refusedReload, null);
        _snapshot = candidate;
        return candidate;

        void Refuse(string problem) => Volatile.Write(ref _refusedReload, new RefusedReload(candidateTime(), problem));

        DateTime candidateTime()
        {
            try
            {
                return File.GetLastWriteTimeUtc(_path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return default;
            }
        }
    }

    private sealed record RefusedReload(DateTime WriteTime, string Problem);

    /// <summary>The file's mode in octal when the group or others have any right to it; null when owner-only.</summary>
    private string? OthersMayAccess()
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }

        var mode = File.GetUnixFileMode(_path);
        const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                                    | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        return (mode & others) != 0 ? Convert.ToString((int)mode, 8) : null;
    }

    /// <summary>Reads the file again if the reload interval has passed, as a store would: /health then says what is on disk now.</summary>
    public async ValueTask RefreshAsync(CancellationToken cancellationToken)
    {
        if (_snapshot is not null)
        {
            _ = await CurrentAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask<Snapshot> LoadAsync(CancellationToken cancellationToken)
    {
        var snapshot = await ReadAsync(cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _refusedReload, null);
        _snapshot = snapshot;
        return snapshot;
    }

    private async ValueTask<Snapshot> ReadAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(_path))
        {
            throw new InvalidOperationException($"The key file {_path} is missing (Archive:KeyFile).");
        }

        if (OthersMayAccess() is { } mode)
        {
            throw new InvalidOperationException($"The key file {_path} is open to group or others (mode {mode}); chmod 600 it.");
        }

        var writeTime = File.GetLastWriteTimeUtc(_path);
        var bytes = await File.ReadAllBytesAsync(_path, cancellationToken).ConfigureAwait(false);
        if (bytes.Length > 1024 * 1024)
        {
            throw new InvalidOperationException($"The key file {_path} is too large to be a key file.");
        }

        KeyFileModel model;
        try
        {
            model = JsonSerializer.Deserialize(bytes, KeyFileJsonContext.Default.KeyFileModel)
                    ?? throw new InvalidOperationException($"The key file {_path} is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"The key file {_path} is not valid: {e.Message}", e);
        }

        if (model.Format != Format)
        {
            throw new InvalidOperationException($"The key file {_path} has format '{model.Format}', expected '{Format}'.");
        }

        if (model.Keys.Count(k => k.State == KeyEncryptionKeyState.Active) != 1
            || model.Keys.Any(k => k.Material is not { Length: KeySize })
            || model.Keys.Select(k => k.Id).Distinct().Count() != model.Keys.Count)
        {
            throw new InvalidOperationException($"The key file {_path} must hold exactly one active key and 32-byte keys with distinct ids.");
        }

        return new Snapshot(model, writeTime);
    }

    private async Task SaveAsync(KeyFileModel model, CancellationToken cancellationToken)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(model, KeyFileJsonContext.Default.KeyFileModel);
        await FileSync.WriteAtomicallyAsync(_path, bytes, cancellationToken).ConfigureAwait(false);
        _snapshot = new Snapshot(model, File.GetLastWriteTimeUtc(_path));
    }

    private sealed class Snapshot
    {
        public Snapshot(KeyFileModel model, DateTime writeTime)
        {
            Model = model;
            WriteTime = writeTime;
            Keys = model.Keys.ToDictionary(k => k.Id);
            Active = model.Keys.Single(k => k.State == KeyEncryptionKeyState.Active);
        }

        public KeyFileModel Model { get; }

        public DateTime WriteTime { get; }

        public Dictionary<Guid, KeyModel> Keys { get; }

        public KeyModel Active { get; }
    }
}

internal sealed record KeyFileModel
{
    public string Format { get; init; } = "";

    public RotationModel? Rotation { get; init; }

    public List<KeyModel> Keys { get; init; } = [];
}

internal sealed record RotationModel
{
    public DateTimeOffset Started { get; init; }

    public List<Guid> Retiring { get; init; } = [];
}

internal sealed record KeyModel
{
    public Guid Id { get; init; }

    public KeyEncryptionKeyState State { get; init; }

    public DateTimeOffset Created { get; init; }

    public byte[] Material { get; init; } = [];
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(KeyFileModel))]
internal sealed partial class KeyFileJsonContext : JsonSerializerContext;
