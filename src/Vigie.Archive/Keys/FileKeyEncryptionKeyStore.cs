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

    public FileKeyEncryptionKeyStore(IOptions<ArchiveOptions> options, TimeProvider time)
    {
        var value = options.Value;
        _path = value.ResolveKeyFile();
        _reloadInterval = value.KeyReloadInterval;
        _time = time;
        var layout = new ArchiveLayout(value.DataFolder);
        if (layout.Contains(_path))
        {
            throw new InvalidOperationException(
                $"The key file {_path} is inside the data folder {layout.Root}; keep it elsewhere (Archive:KeyFile).");
        }
    }

    public string KeyFilePath => _path;

    public string? FindCustodyProblem()
    {
        if (_snapshot is null)
        {
            return null;
        }

        try
        {
            using var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            return null;
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
            if (force || snapshot is null || File.GetLastWriteTimeUtc(_path) != snapshot.WriteTime)
            {
                snapshot = await LoadAsync(cancellationToken).ConfigureAwait(false);
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

    private async ValueTask<Snapshot> LoadAsync(CancellationToken cancellationToken)
    {
        if (!File.Exists(_path))
        {
            throw new InvalidOperationException($"The key file {_path} is missing (Archive:KeyFile).");
        }

        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(_path);
            const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                                        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if ((mode & others) != 0)
            {
                throw new InvalidOperationException($"The key file {_path} is readable by others (mode {Convert.ToString((int)mode, 8)}); chmod 600 it.");
            }
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

        var snapshot = new Snapshot(model, writeTime);
        _snapshot = snapshot;
        return snapshot;
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
