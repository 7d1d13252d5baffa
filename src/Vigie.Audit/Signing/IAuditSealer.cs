namespace Vigie.Audit.Signing;

/// <summary>
/// Encrypts the part of an entry that identifies health data. The host implements it with the archive's key
/// hierarchy; Vigie.Audit never sees the key. The Merkle leaf covers the sealed bytes, so verification needs no key.
/// Implementations must be thread-safe: records are sealed on their producers' threads and large batches in parallel.
/// </summary>
public interface IAuditSealer
{
    /// <summary>The key that <see cref="Seal"/> uses now, stored beside each sealed blob.</summary>
    string KeyId { get; }

    byte[] Seal(ReadOnlySpan<byte> plaintext);

    /// <summary>Decrypts a blob sealed under <paramref name="keyId"/> (possibly an older key); throws when it cannot be authenticated.</summary>
    byte[] Open(string keyId, ReadOnlySpan<byte> sealedBytes);
}
