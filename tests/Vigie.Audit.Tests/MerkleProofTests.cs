using System.Security.Cryptography;
using Vigie.Audit.Merkle;

namespace Vigie.Audit.Tests;

/// <summary>
/// RFC 9162 proofs checked against a brute-force implementation of the RFC's recursive definitions (MTH, PATH,
/// PROOF/SUBPROOF) over raw leaves, for every tree size up to 64 and every leaf or pair of sizes.
/// </summary>
public sealed class MerkleProofTests
{
    private const int MaxSize = 64;

    private static readonly byte[][] Leaves = Enumerable.Range(0, MaxSize).Select(i => new[] { (byte)i, (byte)(i * 7) }).ToArray();

    // MTH(D[n]) straight from RFC 9162 2.1.1.
    private static byte[] Mth(int start, int end)
    {
        var n = end - start;
        if (n == 0)
        {
            return SHA256.HashData(ReadOnlySpan<byte>.Empty);
        }

        if (n == 1)
        {
            return SHA256.HashData([0x00, .. Leaves[start]]);
        }

        var k = 1;
        while (k * 2 < n)
        {
            k *= 2;
        }

        return SHA256.HashData([0x01, .. Mth(start, start + k), .. Mth(start + k, end)]);
    }

    private static List<byte[]> BrutePath(int m, int start, int end)
    {
        var n = end - start;
        if (n == 1)
        {
            return [];
        }

        var k = 1;
        while (k * 2 < n)
        {
            k *= 2;
        }

        return m < k
            ? [.. BrutePath(m, start, start + k), Mth(start + k, end)]
            : [.. BrutePath(m - k, start + k, end), Mth(start, start + k)];
    }

    private static List<byte[]> BruteSubProof(int m, int start, int end, bool b)
    {
        var n = end - start;
        if (m == n)
        {
            return b ? [] : [Mth(start, end)];
        }

        var k = 1;
        while (k * 2 < n)
        {
            k *= 2;
        }

        return m <= k
            ? [.. BruteSubProof(m, start, start + k, b), Mth(start + k, end)]
            : [.. BruteSubProof(m - k, start + k, end, false), Mth(start, start + k)];
    }

    /// <summary>The production path: proof ranges decomposed into perfect subtrees, each hashed as the store would serve it.</summary>
    private static List<byte[]> FromRanges(List<(long Start, long End)> ranges) =>
        ranges.Select(r => MerkleProofs.FoldRange(MerkleProofs.Decompose(r.Start, r.End)
            .Select(s => Mth((int)s.Start, (int)s.End)).ToList())).ToList();

    [Fact]
    public void Empty_tree_root_is_the_hash_of_nothing()
    {
        Assert.Equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Convert.ToHexStringLower(MerkleHash.EmptyRoot()));
        Assert.Equal(MerkleHash.EmptyRoot(), new MerkleFrontier().Root());
    }

    [Fact]
    public void Frontier_root_equals_brute_force_root_for_every_size()
    {
        var frontier = new MerkleFrontier();
        var completed = new List<Subtree>();
        for (var n = 1; n <= MaxSize; n++)
        {
            frontier.Append(MerkleHash.Leaf(Leaves[n - 1]), (level, index, hash) =>
            {
                var subtree = new Subtree(level, index);
                Assert.Equal(Mth((int)subtree.Start, (int)subtree.End), hash);
                completed.Add(subtree);
            });
            Assert.Equal(Mth(0, n), frontier.Root());
            var reparsed = MerkleFrontier.Parse(n, frontier.Serialize());
            Assert.Equal(frontier.Root(), reparsed.Root());
        }

        Assert.Equal(MaxSize - 1, completed.Count);
    }

    [Fact]
    public void Inclusion_proofs_match_brute_force_and_verify_for_every_leaf_and_size()
    {
        for (var n = 1; n <= MaxSize; n++)
        {
            var root = Mth(0, n);
            for (var m = 0; m < n; m++)
            {
                var expected = BrutePath(m, 0, n);
                var actual = FromRanges(MerkleProofs.InclusionRanges(m, n));
                Assert.Equal(expected, actual);
                var leaf = MerkleHash.Leaf(Leaves[m]);
                Assert.True(MerkleProofs.VerifyInclusion(m, n, leaf, actual, root), $"leaf {m} of {n}");

                // Wrong leaf, index, size or a flipped path byte must all fail.
                Assert.False(MerkleProofs.VerifyInclusion(m, n, MerkleHash.Leaf(Leaves[(m + 1) % MaxSize]), actual, root));
                if (n > 1)
                {
                    Assert.False(MerkleProofs.VerifyInclusion((m + 1) % n, n, leaf, actual, root), $"moved leaf {m} of {n}");
                    var tampered = actual.Select(p => (byte[])p.Clone()).ToList();
                    tampered[m % tampered.Count][0] ^= 1;
                    Assert.False(MerkleProofs.VerifyInclusion(m, n, leaf, tampered, root));
                    Assert.False(MerkleProofs.VerifyInclusion(m, n, leaf, actual[..^1], root));
                }

                Assert.False(MerkleProofs.VerifyInclusion(m, n + 1, leaf, actual, Mth(0, Math.Min(n + 1, MaxSize))));
            }
        }
    }

    [Fact]
    public void Consistency_proofs_match_brute_force_and_verify_for_every_pair_of_sizes()
    {
        for (var n = 1; n <= MaxSize; n++)
        {
            var second = Mth(0, n);
            for (var m = 1; m <= n; m++)
            {
                var first = Mth(0, m);
                var expected = m == n ? [] : BruteSubProof(m, 0, n, true);
                var actual = FromRanges(MerkleProofs.ConsistencyRanges(m, n));
                Assert.Equal(expected, actual);
                Assert.True(MerkleProofs.VerifyConsistency(m, n, first, second, actual), $"{m} -> {n}");

                if (m < n)
                {
                    var tampered = actual.Select(p => (byte[])p.Clone()).ToList();
                    tampered[^1][31] ^= 0x80;
                    Assert.False(MerkleProofs.VerifyConsistency(m, n, first, second, tampered), $"tampered {m} -> {n}");
                    Assert.False(MerkleProofs.VerifyConsistency(m, n, Mth(1, m + 1), second, actual), $"wrong first root {m} -> {n}");
                    Assert.False(MerkleProofs.VerifyConsistency(m, n, first, Mth(0, n - 1), actual), $"wrong second root {m} -> {n}");
                    Assert.False(MerkleProofs.VerifyConsistency(m, n, first, second, []));
                }
            }
        }
    }

    [Fact]
    public void Decompose_covers_each_range_with_aligned_perfect_subtrees()
    {
        for (var n = 1; n <= MaxSize; n++)
        {
            foreach (var (start, end) in Enumerable.Range(0, n).SelectMany(m => MerkleProofs.InclusionRanges(m, n)))
            {
                var parts = MerkleProofs.Decompose(start, end);
                Assert.Equal(start, parts[0].Start);
                Assert.Equal(end, parts[^1].End);
                for (var i = 1; i < parts.Count; i++)
                {
                    Assert.Equal(parts[i - 1].End, parts[i].Start);
                    Assert.True(parts[i].Level < parts[i - 1].Level);
                }
            }
        }
    }
}
