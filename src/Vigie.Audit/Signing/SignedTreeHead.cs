using System.Buffers.Binary;

namespace Vigie.Audit.Signing;

/// <summary>
/// A signed tree head: the log's size and Merkle root at a time, signed with Ed25519. The public key and its id
/// are published with it; a verifier decides which keys it trusts.
/// </summary>
public sealed record SignedTreeHead(long TreeSize, DateTimeOffset Timestamp, byte[] RootHash, string KeyId, byte[] PublicKey, byte[] Signature)
{
    private static ReadOnlySpan<byte> Context => "VIGIE-AUDIT-STH-v1\0"u8;

    /// <summary>The signed bytes: a context string, then size, time (ms since the epoch) and root.</summary>
    public static byte[] SignedBytes(long treeSize, long timestampMs, ReadOnlySpan<byte> rootHash)
    {
        var bytes = new byte[Context.Length + 8 + 8 + rootHash.Length];
        Context.CopyTo(bytes);
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(Context.Length), treeSize);
        BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(Context.Length + 8), timestampMs);
        rootHash.CopyTo(bytes.AsSpan(Context.Length + 16));
        return bytes;
    }

    public byte[] SignedBytes() => SignedBytes(TreeSize, Timestamp.ToUnixTimeMilliseconds(), RootHash);

    /// <summary>Checks the signature with <paramref name="key"/> (which must be one the caller trusts).</summary>
    public bool VerifySignature(AuditPublicKey key) =>
        key.KeyId == KeyId && key.PublicKey.AsSpan().SequenceEqual(PublicKey) && key.Verify(SignedBytes(), Signature);
}
