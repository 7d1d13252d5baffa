namespace Vigie.Audit.Merkle;

/// <summary>
/// The right frontier of an append-only Merkle tree: one perfect subtree root per set bit of the size, largest first.
/// Appending a leaf merges equal-sized subtrees; every merge completes a node the caller may store.
/// </summary>
internal sealed class MerkleFrontier
{
    private readonly List<byte[]> _roots = [];

    public MerkleFrontier()
    {
    }

    private MerkleFrontier(long size, List<byte[]> roots)
    {
        Size = size;
        _roots = roots;
    }

    public long Size { get; private set; }

    /// <summary>Rebuilds a frontier from its serialised form (the concatenated roots, largest subtree first).</summary>
    public static MerkleFrontier Parse(long size, ReadOnlySpan<byte> serialized)
    {
        if (size < 0 || serialized.Length != long.PopCount(size) * MerkleHash.Size)
        {
            throw new InvalidDataException($"The stored Merkle frontier ({serialized.Length} bytes) does not fit tree size {size}.");
        }

        var roots = new List<byte[]>();
        for (var offset = 0; offset < serialized.Length; offset += MerkleHash.Size)
        {
            roots.Add(serialized.Slice(offset, MerkleHash.Size).ToArray());
        }

        return new MerkleFrontier(size, roots);
    }

    /// <summary>As <see cref="Parse"/>, null when the bytes do not fit the size (an altered state row).</summary>
    public static MerkleFrontier? TryParse(long size, ReadOnlySpan<byte> serialized) =>
        size < 0 || serialized.Length != long.PopCount(size) * MerkleHash.Size ? null : Parse(size, serialized);

    /// <summary>A frontier from the roots of its perfect subtrees, largest first.</summary>
    public static MerkleFrontier FromRoots(long size, List<byte[]> roots) =>
        roots.Count == long.PopCount(size) ? new MerkleFrontier(size, roots) : throw new ArgumentException("One root per set bit of the size.", nameof(roots));

    public byte[] Serialize()
    {
        var bytes = new byte[_roots.Count * MerkleHash.Size];
        for (var i = 0; i < _roots.Count; i++)
        {
            _roots[i].CopyTo(bytes, i * MerkleHash.Size);
        }

        return bytes;
    }

    /// <summary>Appends a leaf hash; <paramref name="completed"/> is told of each new perfect subtree (level, index, hash).</summary>
    public void Append(ReadOnlySpan<byte> leafHash, Action<int, long, byte[]>? completed)
    {
        var hash = leafHash.ToArray();
        var index = Size;
        var level = 0;
        // Each trailing one bit of the old size is a subtree of the same height to merge with.
        while ((index & 1) == 1)
        {
            var left = _roots[^1];
            _roots.RemoveAt(_roots.Count - 1);
            hash = MerkleHash.Node(left, hash);
            index >>= 1;
            level++;
            completed?.Invoke(level, index, hash);
        }

        _roots.Add(hash);
        Size++;
    }

    /// <summary>The tree head: the frontier folded right to left.</summary>
    public byte[] Root()
    {
        if (_roots.Count == 0)
        {
            return MerkleHash.EmptyRoot();
        }

        var root = _roots[^1];
        for (var i = _roots.Count - 2; i >= 0; i--)
        {
            root = MerkleHash.Node(_roots[i], root);
        }

        return root;
    }
}
