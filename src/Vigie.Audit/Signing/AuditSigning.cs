using System.Security.Cryptography;
using NSec.Cryptography;
using Vigie.Core.IO;

namespace Vigie.Audit.Signing;

/// <summary>Signs tree heads. Behind an interface so an HSM can hold the key later.</summary>
public interface IAuditSigner
{
    /// <summary>Hex of the first 8 bytes of SHA-256 of the raw public key.</summary>
    string KeyId { get; }

    /// <summary>Raw 32-byte Ed25519 public key.</summary>
    byte[] PublicKey { get; }

    byte[] Sign(ReadOnlySpan<byte> message);
}

/// <summary>Provides the tree-head signer and the public keys a verifier trusts.</summary>
public interface IAuditSigningKeyProvider
{
    ValueTask<IAuditSigner> GetSignerAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The signing key's public half when the key exists, without making one: verification is read-only, and may run
    /// where the private key is not (an auditor's copy), trusting the public keys it is given.
    /// </summary>
    async ValueTask<AuditPublicKey?> FindPublicKeyAsync(CancellationToken cancellationToken)
    {
        var signer = await GetSignerAsync(cancellationToken).ConfigureAwait(false);
        return new AuditPublicKey(signer.KeyId, signer.PublicKey);
    }

    /// <summary>Why the signing key in use could not be had again after a restart (its file gone), or null.</summary>
    string? FindCustodyProblem() => null;
}

/// <summary>An Ed25519 public key as published with each tree head.</summary>
public sealed record AuditPublicKey(string KeyId, byte[] PublicKey)
{
    public string Algorithm => "Ed25519";

    public static string KeyIdOf(ReadOnlySpan<byte> publicKey) => Convert.ToHexStringLower(SHA256.HashData(publicKey)[..8]);

    public static AuditPublicKey FromRaw(byte[] publicKey)
    {
        if (publicKey.Length != 32)
        {
            throw new ArgumentException("An Ed25519 public key has 32 bytes.", nameof(publicKey));
        }

        return new AuditPublicKey(KeyIdOf(publicKey), publicKey);
    }

    public bool Verify(ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != 64)
        {
            return false;
        }

        if (!NSec.Cryptography.PublicKey.TryImport(SignatureAlgorithm.Ed25519, PublicKey, KeyBlobFormat.RawPublicKey, out var key) || key is null)
        {
            return false;
        }

        return SignatureAlgorithm.Ed25519.Verify(key, message, signature);
    }
}

/// <summary>An Ed25519 key held in memory (loaded from the key file).</summary>
internal sealed class Ed25519Signer : IAuditSigner, IDisposable
{
    private readonly Key _key;

    public Ed25519Signer(Key key)
    {
        _key = key;
        PublicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        KeyId = AuditPublicKey.KeyIdOf(PublicKey);
    }

    public string KeyId { get; }

    public byte[] PublicKey { get; }

    public byte[] Sign(ReadOnlySpan<byte> message) => SignatureAlgorithm.Ed25519.Sign(_key, message);

    public void Dispose() => _key.Dispose();
}

/// <summary>
/// The default key store: an Ed25519 private key in a PEM file outside the data folder, created with mode 0600 on
/// first use. A key file that group or others can read is refused.
/// </summary>
internal sealed class FileSigningKeyProvider(Microsoft.Extensions.Options.IOptions<AuditOptions> options, Storage.AuditStore store)
    : IAuditSigningKeyProvider, IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Ed25519Signer? _signer;

    public async ValueTask<IAuditSigner> GetSignerAsync(CancellationToken cancellationToken)
    {
        if (_signer is not null)
        {
            return _signer;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var path = options.Value.SigningKeyPath ?? throw new InvalidOperationException("Audit:SigningKeyPath is not set.");
            if (_signer is null && !File.Exists(path))
            {
                await RefuseToReplaceAsync(path, cancellationToken).ConfigureAwait(false);
            }

            if (_signer is null)
            {
                var signer = await LoadOrCreateAsync(path, cancellationToken).ConfigureAwait(false);
                await RefuseForeignKeyAsync(path, signer, cancellationToken).ConfigureAwait(false);
                _signer = signer;
            }

            return _signer;
        }
        finally
        {
            _gate.Release();
        }
    }

    public string? FindCustodyProblem()
    {
        var path = options.Value.SigningKeyPath;
        if (_signer is null || path is null)
        {
            return null;
        }

        // A key folder the account can no longer enter hides the file: that is a permission to fix, not a key to restore
        // (it read "is gone" until 2026-12-07).
        var unreadable = Vigie.Core.IO.FileProblems.WhyUnreadable(path);
        if (unreadable == Vigie.Core.IO.FileProblems.Missing)
        {
            return $"the audit signing key file {path} is gone: tree heads are signed with the key in memory, but the next start refuses "
                   + "to make another one over a signed log; restore the file from its backup";
        }

        if (unreadable is not null)
        {
            return $"the audit signing key file {path} {unreadable}: tree heads are signed with the key in memory, but the next start will fail";
        }

        if (ExposedToOthers(path))
        {
            return $"the audit signing key file {path} is readable or writable by group or others: the next start refuses it; chmod 600 it";
        }

        // A file replaced under the node (a wrong backup restored) passed as in place until 2026-12-06.
        byte[] blob;
        try
        {
            blob = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"the audit signing key file {path} cannot be read ({e.Message}): the next start will fail";
        }

        using var onDisk = blob.Length <= 4096 ? Import(blob) : null;
        return onDisk is null || !onDisk.PublicKey.AsSpan().SequenceEqual(_signer.PublicKey)
            ? $"the audit signing key file {path} no longer holds the key in use ({_signer.KeyId}): tree heads are signed with the key in memory, "
              + "but the next start refuses the file; put the right one back"
            : null;
    }

    /// <summary>
    /// A key file that holds another key than the one which signed the latest head (another archive's, a wrong backup)
    /// is refused, unless that head's key is trusted: taken silently until 2026-12-06, it signed new heads while every
    /// earlier one failed verification as untrusted.
    /// </summary>
    private async ValueTask RefuseForeignKeyAsync(string path, Ed25519Signer signer, CancellationToken cancellationToken)
    {
        var latest = await store.FindTreeHeadAsync(Storage.TreeHeadLookup.Latest, 0, cancellationToken).ConfigureAwait(false);
        if (latest is null || latest.PublicKey.AsSpan().SequenceEqual(signer.PublicKey)
            || options.Value.TrustedPublicKeys.Contains(Convert.ToBase64String(latest.PublicKey), StringComparer.Ordinal))
        {
            return;
        }

        signer.Dispose();
        // The head's key comes from the database, which whoever forged the heads wrote: never offered to be trusted as it
        // is (until 2026-12-07 this message gave it in full, and trusting it made a re-signed forgery verify).
        throw new InvalidOperationException(
            $"The audit signing key file {path} holds key {signer.KeyId}, but the latest tree head (entry {latest.TreeSize}) is signed with key "
            + $"{latest.KeyId}, found in the database, not trusted. Either this key file is the wrong one (restore the right key file), or the tree heads "
            + "were re-signed in the database by someone else (a tampered trail: run `vigie audit verify`, which names them). If the key was changed "
            + $"on purpose, compare {latest.KeyId} with a key known from outside the database (an earlier `vigie audit head --json`, the earlier "
            + "key file's public key, the heads your audit collector holds) and only then add that key, from that source, to Audit:TrustedPublicKeys.");
    }

    public async ValueTask<AuditPublicKey?> FindPublicKeyAsync(CancellationToken cancellationToken)
    {
        if (_signer is { } loaded)
        {
            return new AuditPublicKey(loaded.KeyId, loaded.PublicKey);
        }

        var path = options.Value.SigningKeyPath;
        if (path is null || !File.Exists(path))
        {
            return null;
        }

        // Verification trusts the key file's key without the start's comparison with the latest head: heads signed by
        // another key are then reported one by one (TreeHeadUntrustedKey, exit 1). Until 2026-12-07 that comparison stopped
        // the run (exit 2) with no report.
        using var signer = await LoadOrCreateAsync(path, cancellationToken).ConfigureAwait(false);
        return new AuditPublicKey(signer.KeyId, signer.PublicKey);
    }

    /// <summary>
    /// A key file gone from a log that already has signed heads (a volume not mounted, a restore without it) is not
    /// replaced silently: a new key would leave every earlier head unverifiable and mix two signers. The operator
    /// restores the file, or, if it is lost, trusts its public key (Audit:TrustedPublicKeys), taken from outside the database, and a new key is made.
    /// </summary>
    private async ValueTask RefuseToReplaceAsync(string path, CancellationToken cancellationToken)
    {
        var latest = await store.FindTreeHeadAsync(Storage.TreeHeadLookup.Latest, 0, cancellationToken).ConfigureAwait(false);
        if (latest is null || options.Value.TrustedPublicKeys.Contains(Convert.ToBase64String(latest.PublicKey), StringComparer.Ordinal))
        {
            return;
        }

        throw new InvalidOperationException(
            $"The audit signing key file {path} is missing, but the audit log has tree heads signed with key {latest.KeyId} (up to entry " +
            $"{latest.TreeSize}; the key as found in the database, not trusted). Restore the file. If it is lost, take its public key from a " +
            "source outside the database (an earlier `vigie audit head --json`, the heads your audit collector holds), check that its key id is " +
            $"{latest.KeyId}, and add it to Audit:TrustedPublicKeys: a new key is then made, and the earlier heads stay verifiable.");
    }

    internal static async Task<Ed25519Signer> LoadOrCreateAsync(string path, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            var directory = Path.GetDirectoryName(Path.GetFullPath(path));
            if (!string.IsNullOrEmpty(directory))
            {
                Directory.CreateDirectory(directory);
            }

            // Created once, complete and durable: nodes starting together all sign with the one key that won, and a
            // power cut cannot take back a key whose tree heads are already stored.
            await DurableFile.CreateOnceAsync(path, NewKeyPem(), cancellationToken).ConfigureAwait(false);
        }

        if (ExposedToOthers(path))
        {
            throw new UnauthorizedAccessException($"The audit signing key file {path} is readable or writable by group or others; chmod 600 it.");
        }

        var blob = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        if (blob.Length > 4096)
        {
            throw new InvalidDataException($"The audit signing key file {path} is too large to be an Ed25519 key.");
        }

        return Import(blob) ?? throw new InvalidDataException($"The audit signing key file {path} does not hold a PEM Ed25519 private key.");
    }

    private static bool ExposedToOthers(string path) => !OperatingSystem.IsWindows()
        && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0;

    private static byte[] NewKeyPem()
    {
        var parameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport };
        using var created = Key.Create(SignatureAlgorithm.Ed25519, parameters);
        return created.Export(KeyBlobFormat.PkixPrivateKeyText);
    }

    private static Ed25519Signer? Import(byte[] blob)
    {
        var parameters = new KeyCreationParameters { ExportPolicy = KeyExportPolicies.None };
        return Key.TryImport(SignatureAlgorithm.Ed25519, blob, KeyBlobFormat.PkixPrivateKeyText, out var key, parameters) && key is not null
            ? new Ed25519Signer(key)
            : null;
    }

    public void Dispose()
    {
        _signer?.Dispose();
        _gate.Dispose();
    }
}
