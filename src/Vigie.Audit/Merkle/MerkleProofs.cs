using System.Numerics;
using System.Security.Cryptography;

namespace Vigie.Audit.Merkle;

/// <summary>A perfect subtree: 2^Level leaves starting at Index * 2^Level.</summary>
public readonly record struct Subtree(int Level, long Index)
{
    public long Start => Index << Level;
    public long End => (Index + 1) << Level;
}

/// <summary>
/// RFC 9162 inclusion and consistency proofs, expressed as the node ranges they are made of so that the hashes
/// come from stored perfect subtrees rather than from rehashing leaves; and the two verification algorithms.
/// </summary>
public static class MerkleProofs
{
    /// <summary>The ranges [start, end) whose hashes form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), bottom first.</summary>
    public static List<(long Start, long End)> InclusionRanges(long index, long size)
    {
        if (index < 0 || index >= size)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"Leaf {index} is not in a tree of size {size}.");
        }

        var path = new List<(long, long)>();
        Path(index, 0, size, path);
        return path;
    }

    private static void Path(long m, long start, long end, List<(long, long)> path)
    {
        var n = end - start;
        if (n == 1)
        {
            return;
        }

        var k = LargestPowerOfTwoBelow(n);
        if (m < k)
        {
            Path(m, start, start + k, path);
            path.Add((start + k, end));
        }
        else
        {
            Path(m - k, start + k, end, path);
            path.Add((start, start + k));
        }
    }

    /// <summary>The ranges whose hashes form PROOF(first, D[0:second]) (RFC 9162 2.1.4.1).</summary>
    public static List<(long Start, long End)> ConsistencyRanges(long first, long second)
    {
        if (first <= 0 || first > second)
        {
            throw new ArgumentOutOfRangeException(nameof(first), $"No consistency proof from size {first} to size {second}.");
        }

        var proof = new List<(long, long)>();
        if (first < second)
        {
            SubProof(first, 0, second, true, proof);
        }

        return proof;
    }

    private static void SubProof(long m, long start, long end, bool b, List<(long, long)> proof)
    {
        var n = end - start;
        if (m == n)
        {
            if (!b)
            {
                proof.Add((start, end));
            }

            return;
        }

        var k = LargestPowerOfTwoBelow(n);
        if (m <= k)
        {
            SubProof(m, start, start + k, b, proof);
            proof.Add((start + k, end));
        }
        else
        {
            SubProof(m - k, start + k, end, false, proof);
            proof.Add((start, start + k));
        }
    }

    /// <summary>The perfect subtrees whose hashes, folded right to left, give the hash of the RFC 9162 range [start, end).</summary>
    public static List<Subtree> Decompose(long start, long end)
    {
        var parts = new List<Subtree>();
        while (start < end)
        {
            var n = end - start;
            // The largest aligned power of two that starts here and fits.
            var size = start == 0 ? 1L << (63 - BitOperations.LeadingZeroCount((ulong)n)) : start & -start;
            while (size > n)
            {
                size >>= 1;
            }

            var level = BitOperations.TrailingZeroCount(size);
            parts.Add(new Subtree(level, start >> level));
            start += size;
        }

        return parts;
    }

    /// <summary>Hash of the range [start, end) from the hashes of its <see cref="Decompose"/> parts.</summary>
    public static byte[] FoldRange(IReadOnlyList<byte[]> partHashes)
    {
        var hash = partHashes[^1];
        for (var i = partHashes.Count - 2; i >= 0; i--)
        {
            hash = MerkleHash.Node(partHashes[i], hash);
        }

        return hash;
    }

    /// <summary>RFC 9162 2.1.3.2: verifies that <paramref name="leafHash"/> is leaf <paramref name="index"/> of the tree of <paramref name="size"/> with <paramref name="root"/>.</summary>
    public static bool VerifyInclusion(long index, long size, ReadOnlySpan<byte> leafHash, IReadOnlyList<byte[]> path, ReadOnlySpan<byte> root)
    {
        if (index < 0 || index >= size || leafHash.Length != MerkleHash.Size || root.Length != MerkleHash.Size)
        {
            return false;
        }

        var fn = index;
        var sn = size - 1;
        var r = leafHash.ToArray();
        foreach (var p in path)
        {
            if (p is null || p.Length != MerkleHash.Size || sn == 0)
            {
                return false;
            }

            if ((fn & 1) == 1 || fn == sn)
            {
                r = MerkleHash.Node(p, r);
                if ((fn & 1) == 0)
                {
                    while ((fn & 1) == 0 && fn != 0)
                    {
                        fn >>= 1;
                        sn >>= 1;
                    }
                }
            }
            else
            {
                r = MerkleHash.Node(r, p);
            }

            fn >>= 1;
            sn >>= 1;
        }

        return sn == 0 && CryptographicOperations.FixedTimeEquals(r, root);
    }

    /// <summary>RFC 9162 2.1.4.2: verifies that the tree of <paramref name="secondSize"/> extends the tree of <paramref name="firstSize"/>.</summary>
    public static bool VerifyConsistency(long firstSize, long secondSize, ReadOnlySpan<byte> firstRoot, ReadOnlySpan<byte> secondRoot,
        IReadOnlyList<byte[]> proof)
    {
        if (firstSize <= 0 || firstSize > secondSize || firstRoot.Length != MerkleHash.Size || secondRoot.Length != MerkleHash.Size)
        {
            return false;
        }

        if (firstSize == secondSize)
        {
            return proof.Count == 0 && CryptographicOperations.FixedTimeEquals(firstRoot, secondRoot);
        }

        if (proof.Count == 0 || proof.Any(p => p is null || p.Length != MerkleHash.Size))
        {
            return false;
        }

        var path = new List<byte[]>(proof.Count + 1);
        if ((firstSize & (firstSize - 1)) == 0)
        {
            path.Add(firstRoot.ToArray());
        }

        path.AddRange(proof);
        var fn = firstSize - 1;
        var sn = secondSize - 1;
        while ((fn & 1) == 1)
        {
            fn >>= 1;
            sn >>= 1;
        }

        var fr = path[0];
        var sr = path[0];
        for (var i = 1; i < path.Count; i++)
        {
            var c = path[i];
            if (sn == 0)
            {
                return false;
            }

            if ((fn & 1) == 1 || fn == sn)
            {
                fr = MerkleHash.Node(c, fr);
                sr = MerkleHash.Node(c, sr);
                if ((fn & 1) == 0)
                {
                    while ((fn & 1) == 0 && fn != 0)
                    {
                        fn >>= 1;
                        sn >>= 1;
                    }
                }
            }
            else
            {
                sr = MerkleHash.Node(sr, c);
            }

            fn >>= 1;
            sn >>= 1;
        }

        return sn == 0 && CryptographicOperations.FixedTimeEquals(fr, firstRoot) && CryptographicOperations.FixedTimeEquals(sr, secondRoot);
    }

    internal static long LargestPowerOfTwoBelow(long n) => 1L << (63 - BitOperations.LeadingZeroCount((ulong)(n - 1)));
}
