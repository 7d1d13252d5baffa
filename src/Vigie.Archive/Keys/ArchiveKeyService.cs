using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.IO;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Keys;

/// <summary>
/// The key hierarchy under the key-encryption key (KEK):
/// <list type="bullet">
/// <item>a random root key, kept in data/keys/root.key wrapped by the KEK, stable across KEK rotations;</item>
/// <item>HKDF-SHA256 subkeys of the root for the index's keyed hashes, sealing index and audit details, naming objects, and attribute MACs;</item>
/// <item>a random data key per object, wrapped by the KEK in the object's header.</item>
/// </list>
/// </summary>
internal sealed class ArchiveKeyService(
    IKeyEncryptionKeyStore keks,
    IOptions<ArchiveOptions> options,
    ILogger<ArchiveKeyService> logger) : IArchiveKeyService
{
    public const int IdentifierHashSize = 16;
    private const int RootKeySize = 32;
    private const int SealNonceSize = 12;
    private const int SealTagSize = 16;
    private const byte SealVersion = 1;

    /// <summary>Keys older than this, over a data folder with no archive, belong to another archive (see EnsureLoadedAsync).</summary>
    private static readonly TimeSpan KeysOfAnotherArchiveAge = TimeSpan.FromMinutes(10);
    private static readonly byte[] RootMagic = "VGROOTK1"u8.ToArray();
    private static readonly byte[] RootContext = "vigie/root-key/v1"u8.ToArray();

    private readonly ArchiveLayout _layout = new(options.Value.DataFolder);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile DerivedKeys? _keys;

    public int IdentifierHashLength => IdentifierHashSize;

    public IKeyEncryptionKeyStore KeyEncryptionKeys => keks;

    /// <summary>True when this process made the key-encryption keys (first start; not when another node made them first).</summary>
    public bool KeysCreated { get; private set; }

    public ValueTask RefreshKeyFileAsync(CancellationToken cancellationToken) => _keys is null ? ValueTask.CompletedTask : keks.RefreshAsync(cancellationToken);

    public IReadOnlyList<string> FindCustodyProblems()
    {
        if (_keys is null)
        {
            return [];
        }

        var problems = new List<string>(2);
        if (keks.FindCustodyProblem() is { } kek)
        {
            problems.Add(kek);
        }

        if (!File.Exists(_layout.RootKeyFile))
        {
            problems.Add($"the archive's root key {_layout.RootKeyFile} is gone: the node runs on the copy in memory, but will not start again "
                + "and the index's keyed hashes and sealed details cannot be read without it; restore it from its backup");
        }

        return problems;
    }

    public async ValueTask EnsureLoadedAsync(CancellationToken cancellationToken)
    {
        if (_keys is not null)
        {
            return;
        }

        if (keks is FileKeyEncryptionKeyStore { RootKeyWrappedUnder: null } keyFile)
        {
            keyFile.RootKeyWrappedUnder = RootKeyWrappedUnderIfAnyAsync;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_keys is not null)
            {
                return;
            }

            // The root key first: a node starting beside this one makes the key file, then the root key, so a root key
            // seen here means its key file is already there (read the other way round, both could appear in between).
            var rootExists = File.Exists(_layout.RootKeyFile);
            var kekExists = await keks.ExistsAsync(cancellationToken).ConfigureAwait(false);
            if (!kekExists && rootExists)
            {
                // A folder in its place, or a file this account may not read, is not a lost key: say which (before 2026-12-06 "missing").
                var kekPath = (keks as FileKeyEncryptionKeyStore)?.FilePath;
                var why = kekPath is null ? null : Vigie.Core.IO.FileProblems.WhyUnreadable(kekPath);
                throw new InvalidOperationException(why is null or Vigie.Core.IO.FileProblems.Missing
                    ? "The data folder holds a root key but the key-encryption key file is missing: point Archive:KeyFile at it. "
                      + "A new key would make every stored object unreadable, so none is created."
                    : $"The key-encryption key file {kekPath} {why}. A new key would make every stored object unreadable, so none is created.");
            }

            if (kekExists && !rootExists && !DataFolderHasObjects() && keks is FileKeyEncryptionKeyStore file
                && File.GetLastWriteTimeUtc(file.KeyFilePath) is var made && DateTime.UtcNow - made > KeysOfAnotherArchiveAge)
            {
                // Keys from an earlier start, and a data folder with no archive in it: most likely the data volume is not
                // mounted. Starting would begin a new, empty archive (a second audit log) beside the old one's keys. Nodes
                // of a new cluster that start together see keys made seconds ago, and go on.
                throw new InvalidOperationException(
                    $"The key file {file.KeyFilePath} was made on {made:yyyy-MM-dd HH:mm} UTC, but the data folder {options.Value.DataFolder} holds no " +
                    "archive (no root key): is its volume mounted? Nothing is created. To start a new archive on purpose, move the old key folder away.");
            }

            if (!kekExists)
            {
                if (DataFolderHasObjects())
                {
                    throw new InvalidOperationException("The data folder holds objects but no keys: refusing to create new keys.");
                }

                logger.LogInformation("First start: creating the key-encryption key file and the archive root key.");
                KeysCreated = await keks.CreateAsync(cancellationToken).ConfigureAwait(false);
            }

            if (!File.Exists(_layout.RootKeyFile))
            {
                if (DataFolderHasObjects())
                {
                    throw new InvalidOperationException($"The root key {_layout.RootKeyFile} is missing but the data folder holds objects.");
                }

                await CreateRootKeyAsync(cancellationToken).ConfigureAwait(false);
            }

            var root = await ReadRootKeyAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                _keys = new DerivedKeys(root);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(root);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    public byte[] Seal(ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> context)
    {
        var keys = Keys;
        var output = new byte[1 + SealNonceSize + plaintext.Length + SealTagSize];
        output[0] = SealVersion;
        var nonce = output.AsSpan(1, SealNonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var gcm = new AesGcm(keys.Seal, SealTagSize);
        gcm.Encrypt(nonce, plaintext, output.AsSpan(1 + SealNonceSize, plaintext.Length), output.AsSpan(1 + SealNonceSize + plaintext.Length), context);
        return output;
    }

    public byte[] Open(ReadOnlySpan<byte> sealedData, ReadOnlySpan<byte> context)
    {
        var keys = Keys;
        if (sealedData.Length < 1 + SealNonceSize + SealTagSize || sealedData[0] != SealVersion)
        {
            throw new CryptographicException("Not a sealed value of a known version.");
        }

        var length = sealedData.Length - 1 - SealNonceSize - SealTagSize;
        var plain = new byte[length];
        using var gcm = new AesGcm(keys.Seal, SealTagSize);
        gcm.Decrypt(sealedData.Slice(1, SealNonceSize), sealedData.Slice(1 + SealNonceSize, length), sealedData[^SealTagSize..], plain, context);
        return plain;
    }

    public byte[] HashIdentifier(string kind, string value)
    {
        var hash = new byte[IdentifierHashSize];
        HashIdentifier(kind, value, hash);
        return hash;
    }

    public void HashIdentifier(string kind, string value, Span<byte> destination)
    {
        var keys = Keys;
        var length = Encoding.UTF8.GetByteCount(kind) + 1 + Encoding.UTF8.GetByteCount(value);
        var rented = length <= 512 ? null : ArrayPool<byte>.Shared.Rent(length);
        var buffer = rented is null ? stackalloc byte[length] : rented.AsSpan(0, length);
        var written = Encoding.UTF8.GetBytes(kind, buffer);
        buffer[written++] = 0;
        Encoding.UTF8.GetBytes(value, buffer[written..]);
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(keys.IndexHash, buffer, mac);
        mac[..destination.Length].CopyTo(destination);
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>The object id of content whose SHA-256 is <paramref name="sha256"/>.</summary>
    public ObjectId NameObject(ReadOnlySpan<byte> sha256)
    {
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(Keys.ObjectName, sha256, mac);
        return new ObjectId(mac);
    }

    /// <summary>A keyed digest of a serialised attribute set, to skip rewriting unchanged index rows.</summary>
    public byte[] AttributesMac(ReadOnlySpan<byte> serialized)
    {
        var mac = new byte[IdentifierHashSize];
        Span<byte> full = stackalloc byte[32];
        HMACSHA256.HashData(Keys.AttributesMac, serialized, full);
        full[..IdentifierHashSize].CopyTo(mac);
        return mac;
    }

    /// <summary>Re-wraps the root key under the active KEK when it is not already. Returns true when it rewrote the file.</summary>
    public async ValueTask<bool> RewrapRootKeyAsync(Guid activeKeyId, CancellationToken cancellationToken)
    {
        var (keyId, _) = await ReadRootKeyFileAsync(cancellationToken).ConfigureAwait(false);
        if (keyId == activeKeyId)
        {
            return false;
        }

        var root = await ReadRootKeyAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var wrapped = await keks.WrapAsync(root, RootContext, cancellationToken).ConfigureAwait(false);
            await FileSync.WriteAtomicallyAsync(_layout.RootKeyFile, EncodeRootFile(wrapped), cancellationToken).ConfigureAwait(false);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(root);
        }
    }

    private async ValueTask<Guid?> RootKeyWrappedUnderIfAnyAsync(CancellationToken cancellationToken) =>
        File.Exists(_layout.RootKeyFile) ? await RootKeyWrappedUnderAsync(cancellationToken).ConfigureAwait(false) : null;

    /// <summary>The KEK the root key file is wrapped under.</summary>
    public async ValueTask<Guid> RootKeyWrappedUnderAsync(CancellationToken cancellationToken) =>
        (await ReadRootKeyFileAsync(cancellationToken).ConfigureAwait(false)).KeyId;

    private DerivedKeys Keys => _keys ?? throw new InvalidOperationException("The archive keys are not loaded: call EnsureLoadedAsync (ArchiveInitializer) first.");

    /// <summary>
    /// Anything encrypted under keys this node would replace: stored objects, quarantined ones, and landing slots taken
    /// (acknowledged objects may still be there after a crash; an untaken slot is zeros).
    /// </summary>
    private bool DataFolderHasObjects() =>
        HasFiles(_layout.Objects) || HasFiles(_layout.Quarantine)
        || (Directory.Exists(_layout.Landing) && Directory.EnumerateFiles(_layout.Landing).Any(SlotHoldsData));

    private static bool HasFiles(string folder) =>
        Directory.Exists(folder) && Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Any();

    private static bool SlotHoldsData(string path)
    {
        if (!path.EndsWith(ArchiveLayout.SlotExtension, StringComparison.Ordinal))
        {
            return true; // set aside (*.damaged) or unknown: not ours to call empty
        }

        try
        {
            return !LandingSlots.IsUntaken(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    private async Task CreateRootKeyAsync(CancellationToken cancellationToken)
    {
        FileSync.EnsureDirectory(_layout.Root, durable: true);
        FileSync.EnsureDirectory(_layout.Keys, durable: true);
        var root = RandomNumberGenerator.GetBytes(RootKeySize);
        try
        {
            var wrapped = await keks.WrapAsync(root, RootContext, cancellationToken).ConfigureAwait(false);
            // Never replace a root key another node created meanwhile: the first one wins, and this node reads that one.
            await FileSync.CreateOnceAsync(_layout.RootKeyFile, EncodeRootFile(wrapped), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(root);
        }
    }

    private static byte[] EncodeRootFile(WrappedKey wrapped)
    {
        var bytes = new byte[RootMagic.Length + 16 + 2 + wrapped.Wrapped.Length];
        RootMagic.CopyTo(bytes, 0);
        wrapped.KeyId.TryWriteBytes(bytes.AsSpan(RootMagic.Length, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(RootMagic.Length + 16), checked((ushort)wrapped.Wrapped.Length));
        wrapped.Wrapped.CopyTo(bytes, RootMagic.Length + 18);
        return bytes;
    }

    private async ValueTask<(Guid KeyId, byte[] Wrapped)> ReadRootKeyFileAsync(CancellationToken cancellationToken)
    {
        var bytes = await File.ReadAllBytesAsync(_layout.RootKeyFile, cancellationToken).ConfigureAwait(false);
        if (bytes.Length < RootMagic.Length + 18 || !bytes.AsSpan(0, RootMagic.Length).SequenceEqual(RootMagic))
        {
            throw new InvalidOperationException($"{_layout.RootKeyFile} is not a Vigie root key file.");
        }

        var keyId = new Guid(bytes.AsSpan(RootMagic.Length, 16), bigEndian: true);
        var length = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(RootMagic.Length + 16));
        if (bytes.Length != RootMagic.Length + 18 + length)
        {
            throw new InvalidOperationException($"{_layout.RootKeyFile} is truncated or has trailing bytes.");
        }

        return (keyId, bytes.AsSpan(RootMagic.Length + 18).ToArray());
    }

    private async ValueTask<byte[]> ReadRootKeyAsync(CancellationToken cancellationToken)
    {
        var (keyId, wrapped) = await ReadRootKeyFileAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var root = await keks.UnwrapAsync(new WrappedKey(keyId, wrapped), RootContext, cancellationToken).ConfigureAwait(false);
            if (root.Length != RootKeySize)
            {
                throw new InvalidOperationException("The root key has the wrong length.");
            }

            return root;
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"The root key {_layout.RootKeyFile} does not open with key-encryption key {keyId}.", e);
        }
        catch (UnknownKeyEncryptionKeyException e)
        {
            throw new InvalidOperationException(
                $"The root key {_layout.RootKeyFile} is wrapped under key-encryption key {keyId}, which the key file does not hold (wrong Archive:KeyFile?).", e);
        }
    }

    private sealed class DerivedKeys
    {
        public DerivedKeys(byte[] root)
        {
            IndexHash = Derive(root, "vigie/v1/index-hash");
            Seal = Derive(root, "vigie/v1/seal");
            ObjectName = Derive(root, "vigie/v1/object-name");
            AttributesMac = Derive(root, "vigie/v1/attributes-mac");
        }

        public byte[] IndexHash { get; }

        public byte[] Seal { get; }

        public byte[] ObjectName { get; }

        public byte[] AttributesMac { get; }

        private static byte[] Derive(byte[] root, string purpose) =>
            HKDF.DeriveKey(HashAlgorithmName.SHA256, root, 32, salt: [], info: Encoding.ASCII.GetBytes(purpose));
    }
}
