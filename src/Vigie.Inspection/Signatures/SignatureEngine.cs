using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Engine;
using Vigie.Inspection.Executables;

namespace Vigie.Inspection.Signatures;

/// <summary>
/// Hash and byte-pattern known-bad matching (ClamAV .hdb/.hsb/.ndb/.ldb semantics, plain hash lists), run on every
/// object and inner object. Floating patterns are found in one pass: every position is checked against a bit per
/// anchor byte pair (anchors start with their pattern's rarest pair), then candidate anchors and the rest of the
/// pattern are verified.
/// </summary>
internal sealed class SignatureEngine : IKnownBadEngine
{
    private const int ChunkSize = 1024 * 1024;

    private readonly SignatureDatabase _database;
    private readonly int _budgetFactor;
    private readonly Dictionary<(HashAlgorithmKind, string), List<HashSignature>> _hashes = [];
    private readonly HashSet<long>[] _hashSizes = [[], [], []];
    private readonly bool[] _unsizedHashes = new bool[3];
    private readonly List<PatternUse> _fixedUses = [];
    private readonly List<PatternUse>[] _anchorUses;
    private readonly byte[][] _anchors;
    private readonly bool[] _anchorIgnoresCase;
    private readonly ulong[] _pairFilter = new ulong[65536 / 64];
    private readonly int[] _pairStart = new int[65537];
    private readonly int[] _anchorsByPair;
    private readonly int _maxAnchorLength;

    public SignatureEngine(SignatureDatabase database, IOptions<SignatureOptions> options)
        : this(database, options.Value.VerifyBudgetFactor)
    {
    }

    internal SignatureEngine(SignatureDatabase database, int budgetFactor = 32)
    {
        _database = database;
        _budgetFactor = Math.Max(1, budgetFactor);
        foreach (var hash in database.Hashes)
        {
            var key = (hash.Algorithm, Convert.ToHexStringLower(hash.Hash));
            if (!_hashes.TryGetValue(key, out var list))
            {
                _hashes[key] = list = [];
            }

            list.Add(hash);
            if (hash.Size is { } size)
            {
                _hashSizes[(int)hash.Algorithm].Add(size);
            }
            else
            {
                _unsizedHashes[(int)hash.Algorithm] = true;
            }
        }

        var anchorIds = new Dictionary<(string Bytes, bool IgnoresCase), int>();
        var anchorUses = new List<List<PatternUse>>();
        void AddUse(PatternUse use)
        {
            if (use.Offset.Kind != SignatureOffsetKind.Any && use.Offset.Range <= 1024 * 1024 || !use.Pattern.HasUsableAnchor)
            {
                _fixedUses.Add(use);
                return;
            }

            foreach (var anchor in use.Pattern.Anchors)
            {
                var key = (Encoding.Latin1.GetString(anchor.Bytes), anchor.IgnoresCase);
                if (!anchorIds.TryGetValue(key, out var id))
                {
                    anchorIds[key] = id = anchorUses.Count;
                    anchorUses.Add([]);
                }

                anchorUses[id].Add(use with { Anchor = anchor });
            }
        }

        for (var i = 0; i < database.Bodies.Count; i++)
        {
            var body = database.Bodies[i];
            AddUse(new PatternUse(body.Pattern, body.Offset, body.Target, i, -1));
        }

        for (var i = 0; i < database.Logicals.Count; i++)
        {
            var logical = database.Logicals[i];
            for (var s = 0; s < logical.SubSignatures.Length; s++)
            {
                AddUse(new PatternUse(logical.SubSignatures[s].Pattern, logical.SubSignatures[s].Offset, logical.Target, i, s));
            }
        }

        _anchorUses = [.. anchorUses];
        var ordered = anchorIds.OrderBy(p => p.Value).Select(p => p.Key).ToList();
        _anchors = [.. ordered.Select(a => Encoding.Latin1.GetBytes(a.Bytes))];
        _anchorIgnoresCase = [.. ordered.Select(a => a.IgnoresCase)];
        _maxAnchorLength = _anchors.Length == 0 ? 0 : _anchors.Max(a => a.Length);

        // Anchors grouped by their first two bytes (read as a little-endian ushort), with a bit per pair to filter on;
        // an anchor without case is filed under each case of its first two letters.
        var entries = Enumerable.Range(0, _anchors.Length).SelectMany(id => Pairs(id).Select(pair => (Pair: pair, Id: id))).OrderBy(e => e.Pair).ToArray();
        _anchorsByPair = [.. entries.Select(e => e.Id)];
        foreach (var (pair, _) in entries)
        {
            _pairFilter[pair >> 6] |= 1UL << (pair & 63);
            _pairStart[pair + 1]++;
        }

        for (var p = 1; p < _pairStart.Length; p++)
        {
            _pairStart[p] += _pairStart[p - 1];
        }
    }

    private IEnumerable<int> Pairs(int anchorId)
    {
        var anchor = _anchors[anchorId];
        byte[] firsts = Cases(anchor[0]), seconds = Cases(anchor[1]);
        return firsts.SelectMany(first => seconds.Select(second => first | second << 8)).Distinct();

        byte[] Cases(byte value) => _anchorIgnoresCase[anchorId] && char.IsAsciiLetterUpper((char)value) ? [value, (byte)(value | 0x20)] : [value];
    }

    public string Name => "signatures";

    public bool IsAvailable(out string? reason)
    {
        reason = null;
        return true;
    }

    public ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        ScanHashes(context, content, cancellationToken);
        if (_database.Bodies.Count + _database.Logicals.Count > 0)
        {
            ScanPatterns(context, content, cancellationToken);
        }

        return ValueTask.CompletedTask;
    }

    private void ScanHashes(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var length = content.Length;
        Span<bool> wanted = stackalloc bool[3];
        var any = false;
        for (var a = 0; a < 3; a++)
        {
            wanted[a] = _unsizedHashes[a] || _hashSizes[a].Contains(length);
            any |= wanted[a];
        }

        if (!any)
        {
            return;
        }

        // The spool already hashed the object with SHA-256 on its way in: no second pass over it for that.
        var known = wanted[(int)HashAlgorithmKind.Sha256] ? content.KnownSha256 : null;
        using var md5 = wanted[(int)HashAlgorithmKind.Md5] ? IncrementalHash.CreateHash(HashAlgorithmName.MD5) : null;
        using var sha1 = wanted[(int)HashAlgorithmKind.Sha1] ? IncrementalHash.CreateHash(HashAlgorithmName.SHA1) : null;
        using var sha256 = wanted[(int)HashAlgorithmKind.Sha256] && known is null ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
        var reading = md5 is not null || sha1 is not null || sha256 is not null;
        if (reading && content.Memory is { } memory)
        {
            md5?.AppendData(memory.Span);
            sha1?.AppendData(memory.Span);
            sha256?.AppendData(memory.Span);
        }
        else if (reading)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
            try
            {
                for (long offset = 0; offset < length;)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var read = content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(ChunkSize, length - offset)));
                    if (read == 0)
                    {
                        break;
                    }

                    md5?.AppendData(buffer, 0, read);
                    sha1?.AppendData(buffer, 0, read);
                    sha256?.AppendData(buffer, 0, read);
                    offset += read;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        // One finding per signature name: a list that carries the same file's MD5 and SHA-256 names it once.
        var matches = new List<(string Name, string Hash)>();
        Match(context, HashAlgorithmKind.Md5, md5?.GetHashAndReset(), length, matches);
        Match(context, HashAlgorithmKind.Sha1, sha1?.GetHashAndReset(), length, matches);
        Match(context, HashAlgorithmKind.Sha256, known is { } digest ? digest.ToArray() : sha256?.GetHashAndReset(), length, matches);
        foreach (var signature in matches.GroupBy(m => m.Name, StringComparer.Ordinal))
        {
            context.Report(Rules.SignatureHash, Severity.High,
                $"matches known-bad signature '{signature.Key}' ({string.Join(", ", signature.Select(m => m.Hash))})");
        }
    }

    private void Match(InspectionContext context, HashAlgorithmKind algorithm, byte[]? digest, long length, List<(string Name, string Hash)> matches)
    {
        if (digest is null)
        {
            return;
        }

        if (algorithm == HashAlgorithmKind.Sha256)
        {
            context.RecordSha256(digest);
        }

        var hex = Convert.ToHexStringLower(digest);
        if (!_hashes.TryGetValue((algorithm, hex), out var found))
        {
            return;
        }

        foreach (var name in found.Where(m => m.Size is null || m.Size == length).Select(m => m.Name).Distinct(StringComparer.Ordinal))
        {
            matches.Add((name, $"{algorithm} {hex}"));
        }
    }

    private void ScanPatterns(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var state = new PatternScan(this, context, content, (long)_budgetFactor * Math.Max(content.Length, ChunkSize));
        foreach (var use in _fixedUses)
        {
            if (state.Applies(use))
            {
                state.CheckFixed(use, cancellationToken);
            }
        }

        if (_anchors.Length > 0 && state.AnyFloatingApplies(_anchorUses))
        {
            ScanAnchors(state, content, cancellationToken);
        }

        state.ReportResults();
    }

    private void ScanAnchors(PatternScan state, ContentSource content, CancellationToken cancellationToken)
    {
        var overlap = _maxAnchorLength - 1;
        var bytes = content.Memory is null ? ArrayPool<byte>.Shared.Rent(ChunkSize + overlap) : null;
        try
        {
            var length = content.Length;
            for (long chunkStart = 0; chunkStart < length; chunkStart += ChunkSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var window = ReadWindow(content, chunkStart, (int)Math.Min(ChunkSize + overlap, length - chunkStart), bytes);
                var own = (int)Math.Min(ChunkSize, length - chunkStart);
                if (!ScanWindow(state, window, own, chunkStart, cancellationToken))
                {
                    return;
                }
            }
        }
        finally
        {
            if (bytes is not null)
            {
                ArrayPool<byte>.Shared.Return(bytes);
            }
        }
    }

    /// <summary>The bytes at [start, start+count): a slice of the content when it is in memory, else read into <paramref name="buffer"/>.</summary>
    private static ReadOnlySpan<byte> ReadWindow(ContentSource content, long start, int count, byte[]? buffer) =>
        content.Memory is { } memory
            ? memory.Span.Slice((int)start, count)
            : buffer.AsSpan(0, content.ReadAt(start, buffer.AsSpan(0, count)));

    /// <summary>Checks every position below <paramref name="own"/> against the pair filter; false once the budget is spent.</summary>
    private bool ScanWindow(PatternScan state, ReadOnlySpan<byte> window, int own, long windowStart, CancellationToken cancellationToken)
    {
        ref var data = ref MemoryMarshal.GetReference(window);
        ref var filter = ref MemoryMarshal.GetArrayDataReference(_pairFilter);
        var limit = Math.Min(own, window.Length - 1);
        for (var i = 0; i < limit; i++)
        {
            uint pair = Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref data, i));
            if ((Unsafe.Add(ref filter, (int)(pair >> 6)) & (1UL << (int)(pair & 63))) == 0)
            {
                continue;
            }

            for (var k = _pairStart[pair]; k < _pairStart[pair + 1]; k++)
            {
                var anchorId = _anchorsByPair[k];
                var anchor = _anchors[anchorId];
                if (_anchorIgnoresCase[anchorId]
                        ? window.Length - i >= anchor.Length && EqualsIgnoringCase(window.Slice(i, anchor.Length), anchor)
                        : window[i..].StartsWith(anchor))
                {
                    foreach (var use in _anchorUses[anchorId])
                    {
                        state.CheckAnchorHit(use, windowStart + i, cancellationToken);
                    }
                }
            }

            if (state.Exhausted)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// ASCII letters compared without case (the anchor holds upper case), every other byte exactly: unlike
    /// <see cref="Ascii.EqualsIgnoreCase(ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>, bytes above 0x7F may match.
    /// </summary>
    private static bool EqualsIgnoringCase(ReadOnlySpan<byte> data, ReadOnlySpan<byte> anchor)
    {
        for (var i = 0; i < anchor.Length; i++)
        {
            var a = anchor[i];
            if (data[i] != a && !(char.IsAsciiLetterUpper((char)a) && (data[i] & 0xDF) == a))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>One use of a pattern: an .ndb signature (SubIndex -1) or sub-signature SubIndex of logical signature Owner.</summary>
    private sealed record PatternUse(BodyPattern Pattern, SignatureOffset Offset, int Target, int Owner, int SubIndex)
    {
        /// <summary>The anchor this use was filed under (floating uses only).</summary>
        public PatternAnchor? Anchor { get; init; }
    }

    /// <summary>The state of one object's pattern scan: what matched, match counts, and the verification budget.</summary>
    private sealed class PatternScan(SignatureEngine engine, InspectionContext context, ContentSource content, long budget)
    {
        private const int MaxCount = 1_000_000;

        private readonly long[] _bodyMatches = CreateFilled(engine._database.Bodies.Count);
        private readonly int[][] _counts = [.. engine._database.Logicals.Select(l => new int[l.SubSignatures.Length])];
        private readonly HashSet<(int Owner, int Sub, long Start)> _seen = [];
        private long _budget = budget;
        private ExecutableLayout? _layout;
        private bool _layoutRead;
        private bool _budgetReported;

        public bool Exhausted => _budget <= 0;

        /// <summary>The executable's layout, read once per object and only for signatures placed by it.</summary>
        private ExecutableLayout? LayoutFor(PatternUse use)
        {
            if (!use.Offset.NeedsExecutableLayout)
            {
                return null;
            }

            if (!_layoutRead)
            {
                _layout = ExecutableLayout.TryRead(content, context.ContentType);
                _layoutRead = true;
            }

            return _layout;
        }

        public bool Applies(PatternUse use) =>
            SignatureDatabase.TargetMatches(use.Target, context.ContentType) && (use.SubIndex >= 0 || _bodyMatches[use.Owner] < 0);

        public bool AnyFloatingApplies(List<PatternUse>[] uses) => uses.Any(list => list.Any(u => SignatureDatabase.TargetMatches(u.Target, context.ContentType)));

        public void CheckFixed(PatternUse use, CancellationToken cancellationToken)
        {
            if (!use.Offset.TryGetStarts(content.Length, LayoutFor(use), out var first, out var last))
            {
                return;
            }

            last = Math.Min(last, content.Length - use.Pattern.MinLength);
            for (var start = first; start <= last && Applies(use); start++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (Exhausted)
                {
                    return;
                }

                TryMatch(use, start);
            }
        }

        public void CheckAnchorHit(PatternUse use, long anchorPosition, CancellationToken cancellationToken)
        {
            if (!Applies(use))
            {
                return;
            }

            cancellationToken.ThrowIfCancellationRequested();
            // Bounded gaps before the anchor's part leave a few possible starts; each is verified whole.
            var anchor = use.Anchor!;
            var latest = anchorPosition - anchor.Offset;
            for (var start = Math.Max(0, latest - anchor.Slack); start <= latest && Applies(use) && !Exhausted; start++)
            {
                if (use.Offset.Allows(start, content.Length, LayoutFor(use)))
                {
                    TryMatch(use, start);
                }
            }
        }

        public void ReportResults()
        {
            for (var i = 0; i < _bodyMatches.Length; i++)
            {
                if (_bodyMatches[i] >= 0)
                {
                    var body = engine._database.Bodies[i];
                    context.Report(Rules.SignaturePattern, Severity.High, $"matches known-bad signature '{body.Name}' ({body.Origin})", _bodyMatches[i]);
                }
            }

            for (var i = 0; i < _counts.Length; i++)
            {
                var logical = engine._database.Logicals[i];
                if (!SignatureDatabase.TargetMatches(logical.Target, context.ContentType)
                    || logical.MinSize is { } min && content.Length < min || logical.MaxSize is { } max && content.Length > max)
                {
                    continue;
                }

                if (logical.Expression.Evaluate(_counts[i]).Matched)
                {
                    context.Report(Rules.SignaturePattern, Severity.High, $"matches known-bad signature '{logical.Name}' ({logical.Origin})");
                }
            }

            if (Exhausted && !_budgetReported)
            {
                _budgetReported = true;
                context.Report(Rules.SignatureBudget, Severity.Info, "pattern verification stopped at its budget: later candidate matches were not verified");
            }
        }

        private void TryMatch(PatternUse use, long start)
        {
            if (use.SubIndex >= 0 && !_seen.Add((use.Owner, use.SubIndex, start)))
            {
                return;
            }

            if (!EdgeTests.Before(use.Pattern.LeftEdge, ByteAt(start - 1)) || !Matches(use.Pattern, 0, start))
            {
                return;
            }

            if (use.SubIndex < 0)
            {
                _bodyMatches[use.Owner] = start;
            }
            else if (_counts[use.Owner][use.SubIndex] < MaxCount)
            {
                _counts[use.Owner][use.SubIndex]++;
            }
        }

        /// <summary>True when segments k.. match with segment k starting exactly at <paramref name="position"/>.</summary>
        private bool Matches(BodyPattern pattern, int k, long position)
        {
            var segment = pattern.Segments[k];
            if (segment.Options is not { } options)
            {
                return SegmentAt(segment, position) && MatchesAfter(pattern, k, position + segment.Length);
            }

            foreach (var option in options)
            {
                if (SegmentAt(option, position) && MatchesAfter(pattern, k, position + option.Length))
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>True when segments after k match, segment k having ended at <paramref name="end"/>.</summary>
        private bool MatchesAfter(BodyPattern pattern, int k, long end)
        {
            if (k == pattern.Segments.Length - 1)
            {
                return pattern.RightEdge == EdgeTest.None || EdgeTests.After(pattern.RightEdge, ByteAt(end), ByteAt(end + 1));
            }

            var gap = pattern.Gaps[k];
            var next = pattern.Segments[k + 1];
            var from = end + gap.Min;
            var to = gap.IsUnbounded ? content.Length - next.MinLength : Math.Min(end + (long)gap.Max, content.Length - next.MinLength);
            while (from <= to && !Exhausted)
            {
                var found = FindStart(next, from, to);
                if (found < 0)
                {
                    return false;
                }

                if (Matches(pattern, k + 1, found))
                {
                    return true;
                }

                from = found + 1;
            }

            return false;
        }

        /// <summary>The first position in [from, to] where <paramref name="segment"/> (or one run of a choice) matches, or -1.</summary>
        private long FindStart(PatternSegment segment, long from, long to)
        {
            if (segment.Options is not { } options)
            {
                return FindSegment(segment, from, to);
            }

            var first = -1L;
            foreach (var option in options)
            {
                var found = FindSegment(option, from, Math.Min(first < 0 ? to : first - 1, content.Length - option.Length));
                if (found >= 0)
                {
                    first = found;
                }
            }

            return first;
        }

        /// <summary>The byte at <paramref name="position"/>, or null outside the content.</summary>
        private byte? ByteAt(long position)
        {
            if (position < 0 || position >= content.Length)
            {
                return null;
            }

            if (content.Memory is { } memory)
            {
                return memory.Span[(int)position];
            }

            Span<byte> one = stackalloc byte[1];
            return content.ReadAt(position, one) == 1 ? one[0] : null;
        }

        private bool SegmentAt(PatternSegment segment, long position)
        {
            if (position < 0 || position + segment.Length > content.Length)
            {
                return false;
            }

            _budget -= segment.Length;
            if (content.Memory is { } memory)
            {
                return segment.MatchesAt(memory.Span.Slice((int)position, segment.Length));
            }

            Span<byte> buffer = stackalloc byte[segment.Length];
            return content.ReadAt(position, buffer) == segment.Length && segment.MatchesAt(buffer);
        }

        /// <summary>The first position in [from, to] where <paramref name="segment"/> matches, or -1.</summary>
        private long FindSegment(PatternSegment segment, long from, long to)
        {
            const int Window = 64 * 1024;
            var buffer = content.Memory is null ? ArrayPool<byte>.Shared.Rent(Window + segment.Length) : null;
            try
            {
                for (var windowStart = from; windowStart <= to && !Exhausted; windowStart += Window)
                {
                    var positions = (int)Math.Min(Window, to - windowStart + 1);
                    var need = positions + segment.Length - 1;
                    var span = ReadWindow(content, windowStart, need, buffer);

                    _budget -= need;
                    var exactFirst = segment.Masks[0] == 0xFF;
                    for (var i = 0; i < positions && i + segment.Length <= span.Length;)
                    {
                        if (exactFirst)
                        {
                            var skip = span[i..positions].IndexOf(segment.Values[0]);
                            if (skip < 0)
                            {
                                break;
                            }

                            i += skip;
                            if (i + segment.Length > span.Length)
                            {
                                break;
                            }
                        }

                        if (segment.MatchesAt(span[i..]))
                        {
                            return windowStart + i;
                        }

                        i++;
                    }
                }

                return -1;
            }
            finally
            {
                if (buffer is not null)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }

        private static long[] CreateFilled(int count)
        {
            var array = new long[count];
            Array.Fill(array, -1);
            return array;
        }
    }
}
