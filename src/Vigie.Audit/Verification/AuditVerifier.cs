using System.Data.Common;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Vigie.Audit.Merkle;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;

namespace Vigie.Audit.Verification;

/// <summary>
/// Recomputes the whole log from its columns in one streaming pass: leaf hashes, the hash chain, every stored
/// subtree node, every signed tree head, and the append state. Memory stays bounded whatever the log size
/// (besides the list of tree heads and of problems, which is capped).
/// </summary>
internal sealed class AuditVerifier(AuditStore store, int maxProblems)
{
    private static readonly byte[] ZeroHash = new byte[MerkleHash.Size];

    public async ValueTask<AuditVerificationReport> VerifyAsync(IReadOnlyList<AuditPublicKey> trustedKeys, IReadOnlyList<SignedTreeHead> witnessed,
        CancellationToken cancellationToken)
    {
        using var activity = AuditTelemetry.ActivitySource.StartActivity("audit.verify");
        var stopwatch = Stopwatch.StartNew();
        var problems = new Problems(maxProblems);
        // The log as of now. A serving node keeps appending while this runs, and the entries, subtree nodes and append
        // state are read at different moments: entries appended meanwhile are left for the next run instead of being
        // taken for a tail without its state, a missing subtree node or a removed tail (false alarms on every run).
        var (atStart, stateError) = await ReadStateAsync(cancellationToken).ConfigureAwait(false);
        var bound = atStart?.TreeSize ?? long.MaxValue;
        // The patient and time runs are checked on connections of their own, alongside the pass over the entries.
        var runProblems = store.FindRunProblemsAsync(maxProblems, cancellationToken).AsTask();

        // 1. Tree heads: signatures first; only heads that verify are used to judge the entries.
        var heads = new List<SignedTreeHead>();
        var present = new HashSet<long>();
        var headsChecked = 0;
        await foreach (var (head, error) in store.StreamTreeHeadsAsync(cancellationToken).ConfigureAwait(false))
        {
            headsChecked++;
            if (head is null)
            {
                problems.Add(AuditProblemKind.TreeHeadSignature, null, null, error ?? "unreadable tree head");
                continue;
            }

            present.Add(head.TreeSize);
            if (CheckHead(head, trustedKeys, problems, "stored"))
            {
                heads.Add(head);
            }
        }

        // A collector keeps every head it was sent, some twice: each distinct one is checked once, by size.
        var stored = new Dictionary<long, SignedTreeHead>(heads.Count);
        foreach (var head in heads)
        {
            stored.TryAdd(head.TreeSize, head);
        }

        var seen = new HashSet<(long, string)>();
        foreach (var head in witnessed)
        {
            if (!seen.Add((head.TreeSize, Convert.ToHexString(head.RootHash))))
            {
                continue;
            }

            headsChecked++;
            if (!CheckHead(head, trustedKeys, problems, "witnessed"))
            {
                continue;
            }

            if (!stored.TryGetValue(head.TreeSize, out var storedHead))
            {
                // A stored head of that size that failed its key or signature is reported already: not "deleted" too, but the
                // witnessed one judges the entries in its place (a re-signed trail then shows the entries rewritten under it).
                if (!present.Contains(head.TreeSize))
                {
                    problems.Add(AuditProblemKind.TreeHeadMismatch, null, head.TreeSize, "a witnessed tree head is missing from the database (tree heads were deleted)");
                }

                heads.Add(head);
            }
            else if (!storedHead.RootHash.AsSpan().SequenceEqual(head.RootHash))
            {
                problems.Add(AuditProblemKind.TreeHeadMismatch, null, head.TreeSize, "the stored tree head differs from the witnessed one: the log was forked");
                heads.Add(head);
            }
        }

        heads.Sort((a, b) => a.TreeSize.CompareTo(b.TreeSize));

        // 2. One pass over the entries, rebuilding the tree and checking stored nodes as they complete.
        var frontier = new MerkleFrontier();
        var nodes = store.StreamNodesAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
        var entriesChecked = 0L;
        var headIndex = 0;
        long lastGoodHeadSize = 0;
        SignedTreeHead? latestVerified = null;
        byte[]? previousStoredLeaf = null;
        var previousOk = false;
        long shift = 0;
        var misfits = new Misfits(MaxMisfits);
        AuditState? atEnd = null;
        try
        {
            var pendingNode = await NextNodeAsync(nodes).ConfigureAwait(false);
            await foreach (var (row, seq, error, rowLeaf) in ReadAndHashAsync(bound, cancellationToken).ConfigureAwait(false))
            {
                entriesChecked++;
                var position = frontier.Size;
                byte[] recomputed;
                var ok = false;
                if (row is null)
                {
                    problems.AddEntry(AuditProblemKind.EntryUnreadable, seq ?? position, error ?? "unreadable row");
                    recomputed = ZeroHash;
                }
                else
                {
                    if (row.Seq < position)
                    {
                        problems.AddEntry(AuditProblemKind.EntryModified, row.Seq, $"sequence number {row.Seq} appears after {position - 1}: rows were renumbered");
                        continue;
                    }

                    if (row.Seq > position)
                    {
                        var gap = row.Seq - position;
                        problems.AddEntry(AuditProblemKind.EntryMissing, position,
                            gap == 1 ? $"entry {position} was deleted" : $"entries {position} to {row.Seq - 1} were deleted ({gap} entries)");
                        // Keep leaf indexes aligned with sequence numbers; the missing leaves are unknown.
                        for (var i = 0; i < gap; i++)
                        {
                            pendingNode = await AppendLeafAsync(frontier, ZeroHash, nodes, pendingNode, problems).ConfigureAwait(false);
                            CheckHeads(frontier, heads, ref headIndex, ref lastGoodHeadSize, ref latestVerified, problems);
                        }

                        previousOk = false;
                    }

                    recomputed = rowLeaf!;
                    if (!CryptographicOperations.FixedTimeEquals(recomputed, row.LeafHash))
                    {
                        misfits.Add(row);
                        var moved = FindShift(row);
                        if (moved != 0 && moved == shift)
                        {
                            // Same renumbering as the entry before: already reported once.
                            problems.Suppress(row.Seq);
                        }
                        else if (moved > 0)
                        {
                            shift = moved;
                            problems.AddEntry(AuditProblemKind.EntryInserted, row.Seq - moved,
                                $"entry {row.Seq - moved} was inserted: the entries after it were renumbered (entry {row.Seq} was stored as {row.Seq - moved})");
                        }
                        else if (moved < 0)
                        {
                            shift = moved;
                            problems.AddEntry(AuditProblemKind.EntryRemoved, row.Seq,
                                $"the entry stored at {row.Seq} was removed and the entries after it renumbered (entry {row.Seq} was stored as {row.Seq - moved})");
                        }
                        else
                        {
                            problems.AddEntry(AuditProblemKind.EntryModified, row.Seq, "its columns do not hash to its stored leaf hash (the entry was modified)");
                        }
                    }
                    else
                    {
                        ok = true;
                        if (previousOk && previousStoredLeaf is not null && !CryptographicOperations.FixedTimeEquals(row.PrevHash, previousStoredLeaf))
                        {
                            problems.AddEntry(AuditProblemKind.ChainBroken, row.Seq - 1,
                                $"entry {row.Seq - 1} and its leaf hash were rewritten: entry {row.Seq} still chains to a different entry {row.Seq - 1}");
                        }
                        else if (row.Seq == 0 && !CryptographicOperations.FixedTimeEquals(row.PrevHash, ZeroHash))
                        {
                            problems.AddEntry(AuditProblemKind.ChainBroken, 0, "the first entry must chain to the zero hash");
                        }
                    }

                    previousStoredLeaf = row.LeafHash.ToArray();
                }

                previousOk = ok;
                pendingNode = await AppendLeafAsync(frontier, recomputed, nodes, pendingNode, problems).ConfigureAwait(false);
                CheckHeads(frontier, heads, ref headIndex, ref lastGoodHeadSize, ref latestVerified, problems);
            }

            // Unreadable, it is reported from the first reading.
            (atEnd, _) = await ReadStateAsync(cancellationToken).ConfigureAwait(false);
            var appendedTo = Math.Max(frontier.Size, atEnd?.TreeSize ?? 0);
            while (pendingNode is not null)
            {
                // Nodes over entries appended meanwhile are theirs.
                if ((pendingNode.Value.Index + 1) << pendingNode.Value.Level > appendedTo)
                {
                    problems.Add(AuditProblemKind.NodeUnexpected, pendingNode.Value.Index << pendingNode.Value.Level, null,
                        $"a stored subtree node (level {pendingNode.Value.Level}, index {pendingNode.Value.Index}) lies beyond the last entry");
                }

                pendingNode = await NextNodeAsync(nodes).ConfigureAwait(false);
            }
        }
        finally
        {
            await nodes.DisposeAsync().ConfigureAwait(false);
        }

        // Entries that traded places are named as such, rather than as an insertion here and a removal there.
        var moves = misfits.FindMoves();
        foreach (var (storedAt, original) in moves)
        {
            var swapped = moves.Contains((original, storedAt));
            problems.ReplaceEntry(storedAt, original, new AuditProblem(AuditProblemKind.EntryMoved, storedAt, null, swapped
                ? $"swapped with entry {original}: each is stored in the other's place"
                : $"entry {original} is stored here: entries were reordered"));
        }

        // 3. Heads beyond the log: its tail was removed. A head over entries appended meanwhile was signed meanwhile.
        var logEnd = Math.Max(frontier.Size, atEnd?.TreeSize ?? 0);
        for (; headIndex < heads.Count; headIndex++)
        {
            var head = heads[headIndex];
            if (head.TreeSize <= logEnd && frontier.Size == bound)
            {
                continue;
            }

            problems.Add(AuditProblemKind.Truncated, frontier.Size, head.TreeSize,
                $"a signed tree head covers {head.TreeSize} entries but the log holds {frontier.Size}: entries {frontier.Size} to {head.TreeSize - 1} were removed");
        }

        // Entries stored beyond the append state were not appended: a forged tail.
        var (beyond, firstBeyond, stateSize) = await store.FindEntriesBeyondStateAsync(cancellationToken).ConfigureAwait(false);
        if (beyond > 0)
        {
            problems.Add(AuditProblemKind.StateMismatch, firstBeyond, null,
                $"{beyond} entries are stored beyond the append state's {stateSize}: they were not appended through the log");
        }

        // 4. The append state must continue exactly where the entries end.
        try
        {
            var state = atStart ?? throw stateError!;
            if (state.TreeSize != frontier.Size)
            {
                problems.Add(AuditProblemKind.StateMismatch, Math.Min(state.TreeSize, frontier.Size), null,
                    $"the append state records {state.TreeSize} entries but the log holds {frontier.Size}");
            }
            else if (frontier.Size > 0 && previousStoredLeaf is not null && !state.LastLeaf.AsSpan().SequenceEqual(previousStoredLeaf))
            {
                problems.Add(AuditProblemKind.StateMismatch, null, null, $"the append state's last leaf hash is not that of entry {frontier.Size - 1}");
            }
            else if (MerkleFrontier.TryParse(state.TreeSize, state.Frontier) is null)
            {
                // Whatever the entries hold, a frontier of the wrong length was written into the row: said even beside a bad entry.
                problems.Add(AuditProblemKind.StateMismatch, null, null, string.Create(CultureInfo.InvariantCulture,
                    $"the append state's frontier ({state.Frontier.Length} bytes) does not fit its {state.TreeSize} entries: the row was altered"));
            }
            else if (!problems.AnyEntryIn(0, frontier.Size) && !state.Frontier.AsSpan().SequenceEqual(frontier.Serialize()))
            {
                // Only without bad entries: a bad entry changes the recomputed frontier too, and is already named.
                problems.Add(AuditProblemKind.StateMismatch, null, null, $"the append state's frontier does not match the {frontier.Size} entries");
            }
        }
        catch (Exception ex) when (ex is AuditIntegrityException or InvalidDataException or InvalidCastException)
        {
            problems.Add(AuditProblemKind.StateMismatch, null, null, ex.Message);
        }

        // 5. The runs: one missing, or naming another patient or minute, would hide entries from a patient's view or a search by time.
        try
        {
            foreach (var (kind, seq, problem) in await runProblems.ConfigureAwait(false))
            {
                // A run boundary at or just after a bad entry follows from it (the entry's patient or minute changed).
                if (!problems.AnyEntryIn(seq - 1, seq + 1))
                {
                    problems.Add(kind, seq, null, problem);
                }
            }
        }
        catch (DbException ex)
        {
            problems.Add(AuditProblemKind.PatientIndexMismatch, null, null, "the patient and time indexes cannot be read: " + ex.Message);
        }

        AuditTelemetry.VerificationProblems.Add(problems.Count);
        return new AuditVerificationReport(entriesChecked, frontier.Size, headsChecked, latestVerified, problems.List, problems.Count, stopwatch.Elapsed)
        {
            AppendedMeanwhile = Math.Max(0, (atEnd?.TreeSize ?? 0) - frontier.Size),
            SignedTreeSize = heads.Count == 0 ? 0 : heads.Max(h => h.TreeSize),
        };
    }

    /// <summary>The append state, or why it cannot be read (a problem of the log, not of the verification).</summary>
    private async ValueTask<(AuditState? State, Exception? Error)> ReadStateAsync(CancellationToken cancellationToken)
    {
        try
        {
            return (await store.ReadStateAsync(cancellationToken).ConfigureAwait(false), null);
        }
        catch (Exception ex) when (ex is AuditIntegrityException or InvalidDataException or InvalidCastException)
        {
            return (null, ex);
        }
    }

    private const int ChunkSize = 8192;

    /// <summary>
    /// Reads and hashes the log in sequence-range chunks on several connections at once (reading and hashing are
    /// the slow part, and leaf hashes depend only on each row's own columns), and hands the chunks over in order.
    /// A log whose sequence numbers are wildly sparse (tampered) is read chunk after chunk by keyset instead.
    /// </summary>
    private async IAsyncEnumerable<(VerifyRow? Row, long? Seq, string? Error, byte[]? Leaf)> ReadAndHashAsync(long bound,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var bounds = await store.SequenceBoundsAsync(cancellationToken).ConfigureAwait(false);
        if (bounds is null)
        {
            yield break;
        }

        var (min, max, count) = bounds.Value;
        max = Math.Min(max, bound - 1);
        var start = Math.Min(0, min);
        if (max < start)
        {
            yield break;
        }

        if (max - start + 1 > 2 * count + ChunkSize)
        {
            var from = long.MinValue;
            while (true)
            {
                var (chunk, items) = await ReadChunkAsync(from, bound, cancellationToken).ConfigureAwait(false);
                using (chunk)
                {
                    foreach (var item in items)
                    {
                        yield return item;
                    }
                }

                if (items.Length < ChunkSize || items[^1].Seq is not { } last || last == long.MaxValue)
                {
                    yield break;
                }

                from = last + 1;
            }
        }

        var chunks = (max - start) / ChunkSize + 1;
        var parallel = Math.Clamp(Environment.ProcessorCount, 1, 4);
        var window = new Queue<Task<(CanonicalChunk Chunk, (VerifyRow? Row, long? Seq, string? Error, byte[]? Leaf)[] Items)>>();
        long next = 0;
        try
        {
            while (next < chunks && window.Count <= parallel)
            {
                var from = start + next++ * ChunkSize;
                window.Enqueue(Task.Run(() => ReadChunkAsync(from, Math.Min(from + ChunkSize, bound), cancellationToken), cancellationToken));
            }

            while (window.Count > 0)
            {
                var (chunk, items) = await window.Dequeue().ConfigureAwait(false);
                if (next < chunks)
                {
                    var from = start + next++ * ChunkSize;
                    window.Enqueue(Task.Run(() => ReadChunkAsync(from, Math.Min(from + ChunkSize, bound), cancellationToken), cancellationToken));
                }

                using (chunk)
                {
                    foreach (var item in items)
                    {
                        yield return item;
                    }
                }
            }
        }
        finally
        {
            // Chunks read ahead but never consumed (cancellation, failure) go back to the pool.
            while (window.Count > 0)
            {
                try
                {
                    (await window.Dequeue().ConfigureAwait(false)).Chunk.Dispose();
                }
                catch (Exception ex) when (ex is OperationCanceledException or DbException)
                {
                }
            }
        }
    }

    private async Task<(CanonicalChunk Chunk, (VerifyRow? Row, long? Seq, string? Error, byte[]? Leaf)[] Items)> ReadChunkAsync(long from, long to,
        CancellationToken cancellationToken)
    {
        var chunk = await store.ReadCanonicalChunkAsync(from, to, ChunkSize, cancellationToken).ConfigureAwait(false);
        var items = new (VerifyRow? Row, long? Seq, string? Error, byte[]? Leaf)[chunk.Rows.Count];
        for (var i = 0; i < items.Length; i++)
        {
            var r = chunk.Rows[i];
            if (r.Length < 0)
            {
                items[i] = (null, r.Seq == long.MinValue ? null : r.Seq, r.Error, null);
                continue;
            }

            var leaf = new byte[MerkleHash.Size];
            MerkleHash.LeafPrefixed(chunk.Span(r.Offset, r.Length), leaf);
            items[i] = (new VerifyRow(chunk, r), r.Seq, null, leaf);
        }

        return (chunk, items);
    }

    /// <summary>A row as verification sees it: its 0x00-prefixed canonical bytes and its stored hashes, inside a chunk buffer.</summary>
    private sealed class VerifyRow(CanonicalChunk chunk, CanonicalRow row)
    {
        public long Seq => row.Seq;

        public ReadOnlySpan<byte> Canonical => chunk.Span(row.Offset, row.Length);

        public ReadOnlySpan<byte> PrevHash => chunk.Span(row.PrevOffset, row.PrevLength);

        public ReadOnlySpan<byte> LeafHash => chunk.Span(row.LeafOffset, row.LeafLength);
    }

    private static bool CheckHead(SignedTreeHead head, IReadOnlyList<AuditPublicKey> trustedKeys, Problems problems, string origin)
    {
        var key = trustedKeys.FirstOrDefault(k => k.KeyId == head.KeyId && k.PublicKey.AsSpan().SequenceEqual(head.PublicKey));
        if (key is null)
        {
            problems.Add(AuditProblemKind.TreeHeadUntrustedKey, null, head.TreeSize, $"the {origin} tree head is signed by key {head.KeyId}, which is not trusted: "
                + "neither the signing key file's nor a trusted public key (a key found in the database says nothing: the heads may have been re-signed there)");
            return false;
        }

        if (head.RootHash.Length != MerkleHash.Size || !head.VerifySignature(key))
        {
            problems.Add(AuditProblemKind.TreeHeadSignature, null, head.TreeSize, $"the {origin} tree head's signature does not verify (forged or altered head)");
            return false;
        }

        return true;
    }

    private static void CheckHeads(MerkleFrontier frontier, List<SignedTreeHead> heads, ref int headIndex, ref long lastGoodHeadSize,
        ref SignedTreeHead? latestVerified, Problems problems)
    {
        while (headIndex < heads.Count && heads[headIndex].TreeSize <= frontier.Size)
        {
            var head = heads[headIndex++];
            if (head.TreeSize != frontier.Size)
            {
                continue; // Size 0 or a duplicate: nothing to compare.
            }

            if (CryptographicOperations.FixedTimeEquals(frontier.Root(), head.RootHash))
            {
                lastGoodHeadSize = head.TreeSize;
                latestVerified = head;
                continue;
            }

            var located = problems.FirstEntryIn(lastGoodHeadSize, head.TreeSize);
            if (problems.ExtendHeadMismatch(located, head.TreeSize))
            {
                continue;
            }

            problems.Add(AuditProblemKind.TreeHeadMismatch, located, head.TreeSize, located is null
                ? $"the entries do not hash to the signed root: one or more of entries {lastGoodHeadSize} to {head.TreeSize - 1} were altered and their hashes rewritten to hide it"
                : $"the entries do not hash to the signed root (see entry {located})");
        }
    }

    private async ValueTask<(int Level, long Index, byte[] Hash)?> AppendLeafAsync(MerkleFrontier frontier, byte[] leaf,
        IAsyncEnumerator<(int Level, long Index, byte[] Hash)> nodes, (int Level, long Index, byte[] Hash)? pending, Problems problems)
    {
        List<(int Level, long Index, byte[] Hash)>? completed = null;
        frontier.Append(leaf, (level, index, hash) =>
        {
            if (level % AuditStore.NodeStride == 0)
            {
                (completed ??= []).Add((level, index, hash));
            }
        });
        if (completed is null)
        {
            return pending;
        }

        foreach (var expected in completed)
        {
            var end = (expected.Index + 1) << expected.Level;
            while (pending is not null && Compare(pending.Value, end, expected.Level) < 0)
            {
                problems.Add(AuditProblemKind.NodeUnexpected, pending.Value.Index << pending.Value.Level, null,
                    $"a stored subtree node (level {pending.Value.Level}, index {pending.Value.Index}) should not exist");
                pending = await NextNodeAsync(nodes).ConfigureAwait(false);
            }

            var start = expected.Index << expected.Level;
            if (pending is null || Compare(pending.Value, end, expected.Level) > 0)
            {
                if (!problems.AnyEntryIn(start, end))
                {
                    problems.Add(AuditProblemKind.NodeMissing, start, null, $"the subtree node over entries {start} to {end - 1} is missing (proofs cannot be served)");
                }

                continue;
            }

            if (!CryptographicOperations.FixedTimeEquals(pending.Value.Hash, expected.Hash) && !problems.AnyEntryIn(start, end))
            {
                problems.Add(AuditProblemKind.NodeMismatch, start, null,
                    $"the stored subtree node over entries {start} to {end - 1} (level {expected.Level}) does not match them");
            }

            pending = await NextNodeAsync(nodes).ConfigureAwait(false);
        }

        return pending;
    }

    private static int Compare((int Level, long Index, byte[] Hash) node, long end, int level)
    {
        var nodeEnd = (node.Index + 1) << node.Level;
        return nodeEnd != end ? nodeEnd.CompareTo(end) : node.Level.CompareTo(level);
    }

    private static async ValueTask<(int Level, long Index, byte[] Hash)?> NextNodeAsync(IAsyncEnumerator<(int Level, long Index, byte[] Hash)> nodes) =>
        await nodes.MoveNextAsync().ConfigureAwait(false) ? nodes.Current : null;

    /// <summary>When a row's stored leaf hash fits its content under a nearby sequence number, the rows were renumbered by that much.</summary>
    private static long FindShift(VerifyRow row)
    {
        Span<byte> probe = stackalloc byte[MerkleHash.Size];
        var bytes = row.Canonical.ToArray();
        foreach (var delta in (ReadOnlySpan<long>)[1, -1, 2, -2, 3, -3])
        {
            if (row.Seq - delta < 0)
            {
                continue;
            }

            System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(EntryRow.PrefixedSeqOffset), row.Seq - delta);
            MerkleHash.LeafPrefixed(bytes, probe);
            if (probe.SequenceEqual(row.LeafHash))
            {
                return delta;
            }
        }

        return 0;
    }

    private const int MaxMisfits = 256;

    /// <summary>The first rows whose stored leaf hash does not fit them, kept to find entries that traded places.</summary>
    private sealed class Misfits(int max)
    {
        private readonly List<(long Seq, byte[] Canonical, byte[] LeafHash)> _rows = [];

        public void Add(VerifyRow row)
        {
            if (_rows.Count < max)
            {
                _rows.Add((row.Seq, row.Canonical.ToArray(), row.LeafHash.ToArray()));
            }
        }

        /// <summary>
        /// (stored at, original sequence) for each row whose content hashes under another misfit's sequence number, when
        /// those rows form closed cycles (swaps, rotations). A renumbered tail never closes, and stays a removal or an insertion.
        /// </summary>
        public List<(long StoredAt, long Original)> FindMoves()
        {
            var original = new Dictionary<long, long>();
            Span<byte> probe = stackalloc byte[MerkleHash.Size];
            foreach (var (seq, canonical, leaf) in _rows)
            {
                foreach (var (candidate, _, _) in _rows)
                {
                    if (candidate == seq)
                    {
                        continue;
                    }

                    System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(canonical.AsSpan(EntryRow.PrefixedSeqOffset), candidate);
                    MerkleHash.LeafPrefixed(canonical, probe);
                    if (probe.SequenceEqual(leaf))
                    {
                        original[seq] = candidate;
                        break;
                    }
                }
            }

            var moves = new List<(long, long)>();
            foreach (var start in original.Keys)
            {
                var at = start;
                for (var steps = 0; steps <= original.Count && original.TryGetValue(at, out var next); steps++)
                {
                    at = next;
                    if (at == start)
                    {
                        moves.Add((start, original[start]));
                        break;
                    }
                }
            }

            moves.Sort();
            return moves;
        }
    }

    /// <summary>The capped problem list, plus the sorted sequence numbers of bad entries (to tell causes from consequences).</summary>
    private sealed class Problems(int max)
    {
        private readonly List<long> _badEntries = [];
        private int _lastHeadMismatch = -1;
        private long? _lastHeadMismatchEntry;
        private long _firstMismatchedHead;
        private int _mismatchedHeads;

        public List<AuditProblem> List { get; } = [];

        public int Count { get; private set; }

        public void Add(AuditProblemKind kind, long? sequence, long? treeSize, string reason)
        {
            Count++;
            if (List.Count < max)
            {
                List.Add(new AuditProblem(kind, sequence, treeSize, reason));
            }
        }

        public void AddEntry(AuditProblemKind kind, long sequence, string reason)
        {
            Suppress(sequence);
            Add(kind, sequence, null, reason);
        }

        /// <summary>Marks an entry bad without listing it again.</summary>
        public void Suppress(long sequence)
        {
            if (_badEntries.Count == 0 || _badEntries[^1] < sequence)
            {
                _badEntries.Add(sequence);
            }
            else
            {
                var at = _badEntries.BinarySearch(sequence);
                if (at < 0)
                {
                    _badEntries.Insert(~at, sequence);
                }
            }
        }

        /// <summary>
        /// Folds a tree head that fails because of the same bad entry as the one before into that problem, so that one
        /// altered entry gives one line however many heads were signed after it.
        /// </summary>
        public bool ExtendHeadMismatch(long? located, long treeSize)
        {
            if (located is null || _lastHeadMismatch < 0 || _lastHeadMismatchEntry != located)
            {
                _lastHeadMismatch = located is null ? -1 : List.Count;
                _lastHeadMismatchEntry = located;
                _firstMismatchedHead = treeSize;
                _mismatchedHeads = 1;
                return false;
            }

            _mismatchedHeads++;
            if (_lastHeadMismatch < List.Count)
            {
                List[_lastHeadMismatch] = new AuditProblem(AuditProblemKind.TreeHeadMismatch, located, treeSize,
                    $"the entries do not hash to the signed roots of the {_mismatchedHeads} tree heads from size {_firstMismatchedHead} to {treeSize} (see entry {located})");
            }

            return true;
        }

        /// <summary>Replaces what was listed about the entries at these two places (an insertion, removal or change) by one problem.</summary>
        public void ReplaceEntry(long storedAt, long original, AuditProblem problem)
        {
            var at = List.FindIndex(p => p.Sequence == storedAt && p.Kind is AuditProblemKind.EntryModified or AuditProblemKind.EntryInserted or AuditProblemKind.EntryRemoved);
            if (at < 0)
            {
                at = List.FindIndex(p => p.Sequence == original && p.Kind is AuditProblemKind.EntryInserted or AuditProblemKind.EntryRemoved);
            }

            if (at >= 0)
            {
                List[at] = problem;
            }
            else
            {
                Add(problem.Kind, problem.Sequence, null, problem.Reason);
            }

            Suppress(original);
        }

        public bool AnyEntryIn(long start, long end) => FirstEntryIn(start, end) is not null;

        public long? FirstEntryIn(long start, long end)
        {
            var at = _badEntries.BinarySearch(start);
            if (at < 0)
            {
                at = ~at;
            }

            return at < _badEntries.Count && _badEntries[at] < end ? _badEntries[at] : null;
        }
    }
}
