namespace Vigie.Archive.Keys;

/// <summary>What a key-encryption key may still do.</summary>
public enum KeyEncryptionKeyState
{
    /// <summary>Wraps new data keys; exactly one key is active.</summary>
    Active,

    /// <summary>Unwraps data keys made before a rotation, until nothing uses it any more.</summary>
    DecryptOnly,
}

/// <summary>A key-encryption key as listed by <c>vigie keys list</c>: never the key material.</summary>
public sealed record KeyEncryptionKeyInfo(Guid Id, KeyEncryptionKeyState State, DateTimeOffset CreatedAt);

/// <summary>A data key wrapped by the key-encryption key <paramref name="KeyId"/>; the bytes are provider-specific.</summary>
public sealed record WrappedKey(Guid KeyId, byte[] Wrapped);

/// <summary>A rotation that started and has not finished: the new active key and the keys being retired.</summary>
public sealed record KeyRotationState(Guid ActiveKeyId, IReadOnlyList<Guid> RetiringKeyIds, bool Resumed);

/// <summary>Thrown when a wrapped key names a key-encryption key this store does not hold.</summary>
public sealed class UnknownKeyEncryptionKeyException(Guid keyId)
    : Exception($"Key-encryption key {keyId} is unknown to this node.")
{
    public Guid KeyId { get; } = keyId;
}

/// <summary>
/// The key-encryption keys (KEK). The default keeps them in a key file outside the data folder; a PKCS#11 token or a KMS
/// can implement this interface instead. Wrapping must bind <c>context</c> (associated data) to the wrapped key.
/// </summary>
public interface IKeyEncryptionKeyStore
{
    /// <summary>True when the store has keys (false on a first start).</summary>
    ValueTask<bool> ExistsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Creates the first active key, once: when another process created the keys first, uses those. True when this
    /// call created them.
    /// </summary>
    ValueTask<bool> CreateAsync(CancellationToken cancellationToken);

    /// <summary>Wraps a data key under the active key.</summary>
    ValueTask<WrappedKey> WrapAsync(ReadOnlyMemory<byte> dataKey, ReadOnlyMemory<byte> context, CancellationToken cancellationToken);

    /// <summary>
    /// Unwraps a data key. Throws <see cref="UnknownKeyEncryptionKeyException"/> when the key is not held and
    /// <see cref="System.Security.Cryptography.CryptographicException"/> when the wrapped bytes or the context do not authenticate.
    /// </summary>
    ValueTask<byte[]> UnwrapAsync(WrappedKey wrapped, ReadOnlyMemory<byte> context, CancellationToken cancellationToken);

    /// <summary>The keys, without their material.</summary>
    ValueTask<IReadOnlyList<KeyEncryptionKeyInfo>> ListAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Why the keys in use could not be had again after a restart (their file deleted or unreadable while the node runs on
    /// what it holds in memory), or null. A store without such a file (a token, a KMS) has nothing to say.
    /// </summary>
    string? FindCustodyProblem() => null;

    /// <summary>Looks at the key file again if it is due, so that <see cref="FindCustodyProblem"/> speaks of the file as it is now.</summary>
    ValueTask RefreshAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>
    /// Starts a rotation: a new active key, the others decrypt-only. When a rotation is already under way it is
    /// returned unchanged (<see cref="KeyRotationState.Resumed"/>), so that re-running finishes the same job.
    /// </summary>
    ValueTask<KeyRotationState> BeginRotationAsync(CancellationToken cancellationToken);

    /// <summary>Ends the rotation and forgets the retired keys, which nothing uses any more.</summary>
    ValueTask CompleteRotationAsync(IReadOnlyCollection<Guid> retiredKeyIds, CancellationToken cancellationToken);
}
