using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Signatures;

/// <summary>A signature file or line Vigie cannot read; carries the file and line so an administrator can fix it.</summary>
public sealed class SignatureFormatException(string message) : FormatException(message);

/// <summary>Thrown for valid ClamAV syntax that this engine does not implement; the signature is skipped and listed.</summary>
internal sealed class UnsupportedSignatureException(string message) : Exception(message);

/// <summary>A gap between two fixed parts of a body pattern: <c>{n}</c>, <c>{n-m}</c>, <c>{-m}</c>, <c>{n-}</c> or <c>*</c>.</summary>
internal readonly record struct PatternGap(int Min, int Max)
{
    public const int Unbounded = int.MaxValue;

    public bool IsUnbounded => Max == Unbounded;
}

/// <summary>
/// A run of exact bytes the scanner looks for (upper-case letters compared without case when <paramref name="IgnoresCase"/>),
/// and where a match starts from a hit: <paramref name="Offset"/> bytes before it, or up to <paramref name="Slack"/> more.
/// </summary>
internal sealed record PatternAnchor(byte[] Bytes, int Offset, int Slack, bool IgnoresCase);

/// <summary>
/// A run of bytes that must match at one position; each byte has a mask (0xFF exact, 0xF0 or 0x0F one nibble,
/// 0xDF a letter in either case, 0x00 any byte, from <c>??</c>). Positions that hold a set of bytes (<c>(aa|bb)</c>,
/// <c>!(aa|bb)</c>, <c>(W)</c>) or a group of multi-byte alternatives carry mask 0x00 and are checked after the masks.
/// </summary>
internal sealed class PatternSegment(byte[] values, byte[] masks, PatternByteSet[] sets, PatternAlternatives[] groups)
{
    /// <summary>
    /// A part that is one of several runs of different lengths: ClamAV's alternatives of different lengths
    /// (<c>(aa|bbcc)</c>), and a string both as it is and wide (<c>::wa</c>). Its own bytes are empty.
    /// </summary>
    public static PatternSegment Choice(PatternSegment[] options) => new([], [], [], []) { Options = options };

    /// <summary>The runs a choice part may be; null for an ordinary part.</summary>
    public PatternSegment[]? Options { get; private init; }

    public int MinLength => Options is { } options ? options.Min(o => o.Length) : Length;

    public int MaxLength => Options is { } options ? options.Max(o => o.Length) : Length;

    public byte[] Values { get; } = values;

    public byte[] Masks { get; } = masks;

    /// <summary>Positions that match one byte of a set.</summary>
    public PatternByteSet[] Sets { get; } = sets;

    /// <summary>Runs of positions that match one of several strings of the same length (or none of them, when negated).</summary>
    public PatternAlternatives[] Groups { get; } = groups;

    public int Length => Values.Length;

    public bool MatchesAt(ReadOnlySpan<byte> data)
    {
        if (data.Length < Values.Length)
        {
            return false;
        }

        for (var i = 0; i < Values.Length; i++)
        {
            if ((data[i] & Masks[i]) != Values[i])
            {
                return false;
            }
        }

        foreach (var set in Sets)
        {
            if (!set.Contains(data[set.Position]))
            {
                return false;
            }
        }

        foreach (var group in Groups)
        {
            if (!group.MatchesAt(data.Slice(group.Position, group.Length)))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>One position that matches any byte of a set: single-byte alternatives, their negation, or a character class.</summary>
internal sealed class PatternByteSet(int position, ulong[] bits)
{
    public int Position { get; } = position;

    /// <summary>256 bits, one per byte value.</summary>
    public ulong[] Bits { get; } = bits;

    public bool Contains(byte value) => (Bits[value >> 6] & (1UL << (value & 63))) != 0;

    public static PatternByteSet Of(int position, IEnumerable<byte> members)
    {
        var bits = new ulong[4];
        foreach (var v in members)
        {
            bits[v >> 6] |= 1UL << (v & 63);
        }

        return new PatternByteSet(position, bits);
    }

    public IEnumerable<byte> Members() => Enumerable.Range(0, 256).Select(v => (byte)v).Where(Contains);
}

/// <summary>Alternatives of one length at one position: <c>(aabb|ccdd)</c>, or any string but those, <c>!(aabb|ccdd)</c>.</summary>
internal sealed class PatternAlternatives(int position, int length, (byte[] Values, byte[] Masks)[] alternatives, bool negated)
{
    public int Position { get; } = position;

    public int Length { get; } = length;

    public (byte[] Values, byte[] Masks)[] Alternatives { get; } = alternatives;

    public bool Negated { get; } = negated;

    public bool MatchesAt(ReadOnlySpan<byte> data)
    {
        var any = false;
        foreach (var (values, masks) in Alternatives)
        {
            var match = true;
            for (var i = 0; i < values.Length && match; i++)
            {
                match = (data[i] & masks[i]) == values[i];
            }

            if (match)
            {
                any = true;
                break;
            }
        }

        return any != Negated;
    }
}

/// <summary>
/// A ClamAV body pattern (the hex part of an .ndb signature or an .ldb sub-signature): hex bytes, <c>??</c>, nibble
/// wildcards, alternatives (<c>(aa|bb)</c>, <c>!(aa|bb)</c>, <c>(aa|bbcc)</c>), classes (<c>(W)</c>, <c>(B)</c>,
/// <c>(L)</c>, tests of the byte beside the match at either end), gaps (<c>{n-m}</c>, <c>*</c>, <c>[n-m]</c>), and
/// the sub-signature modifiers. The anchor is a run of exact bytes
/// (or letters in either case) starting with the rarest byte pair, in a part whose distance from the start varies
/// by a few bytes at most; the scanner looks for anchors and verifies the whole pattern around each hit.
/// </summary>
internal sealed class BodyPattern
{
    private const int MaxSegmentBytes = 4096;
    private const int MaxSegments = 64;
    private const int MaxAlternatives = 256;
    private const int MaxAnchorSlack = 64;

    private BodyPattern(string source, string modifiers, PatternSegment[] segments, PatternGap[] gaps)
    {
        Source = source;
        Modifiers = modifiers;
        Segments = segments;
        Gaps = gaps;
        ChooseAnchor();
        MinLength = segments.Sum(s => (long)s.MinLength) + gaps.Sum(g => (long)g.Min);
    }

    /// <summary>The pattern as written (lower-case hex), for export.</summary>
    public string Source { get; }

    /// <summary>The sub-signature modifiers as written after <c>::</c> (empty when none), for export.</summary>
    public string Modifiers { get; }

    public PatternSegment[] Segments { get; }

    /// <summary>Gaps[i] separates Segments[i] and Segments[i + 1].</summary>
    public PatternGap[] Gaps { get; }

    /// <summary>
    /// Where the scanner looks for this pattern: one anchor, or one per run of a choice that comes before any part
    /// with an anchor of its own (<c>::wa</c>, <c>(aabb|ccddee)</c> first); empty when the pattern has none.
    /// </summary>
    public IReadOnlyList<PatternAnchor> Anchors { get; private set; } = [];

    public long MinLength { get; }

    public bool HasUsableAnchor => Anchors.Count > 0;

    /// <summary>What the byte before a match must be (a class at the start of the pattern, or <c>::f</c>).</summary>
    public EdgeTest LeftEdge { get; private init; }

    /// <summary>What the byte after a match must be (a class at the end of the pattern, or <c>::f</c>).</summary>
    public EdgeTest RightEdge { get; private init; }

    /// <summary>
    /// Parses ClamAV hex pattern syntax, with the sub-signature modifiers that follow <c>::</c> (<c>i</c>, <c>w</c>,
    /// <c>a</c>, <c>f</c>). Throws <see cref="SignatureFormatException"/> on bad syntax and
    /// <see cref="UnsupportedSignatureException"/> on syntax not implemented here.
    /// </summary>
    public static BodyPattern Parse(string text, string modifiers = "")
    {
        foreach (var modifier in modifiers)
        {
            switch (modifier)
            {
                case 'i' or 'a' or 'w' or 'f':
                    break;
                default:
                    throw new SignatureFormatException($"unknown sub-signature modifier '{modifier}'");
            }
        }

        var ignoreCase = modifiers.Contains('i', StringComparison.Ordinal);
        // A class at either end of the pattern looks at the byte beside the match and takes none of its own.
        var (left, right) = (EdgeTest.None, EdgeTest.None);
        var (prefix, suffix) = (string.Empty, string.Empty);
        if (TrimEdge(ref text, atStart: true) is { } leading)
        {
            (left, prefix) = leading;
        }

        if (text.Length > 0 && TrimEdge(ref text, atStart: false) is { } trailing)
        {
            (right, suffix) = trailing;
        }

        if (modifiers.Contains('f', StringComparison.Ordinal))
        {
            if (modifiers.Contains('w', StringComparison.Ordinal) || left != EdgeTest.None || right != EdgeTest.None)
            {
                throw new UnsupportedSignatureException("modifier 'f' with 'w' or with a class at an end of the pattern is not supported");
            }

            (left, right) = (EdgeTest.Word, EdgeTest.Word);
        }

        var segments = new List<PatternSegment>();
        var gaps = new List<PatternGap>();
        var values = new List<byte>();
        var masks = new List<byte>();
        var sets = new List<PatternByteSet>();
        var groups = new List<PatternAlternatives>();
        var normalised = new StringBuilder(text.Length);
        var i = 0;

        // Parts that follow each other with no gap between them (a choice and its neighbours) are joined by a gap of 0.
        void AddSegment(PatternSegment segment)
        {
            if (segments.Count > gaps.Count)
            {
                gaps.Add(new PatternGap(0, 0));
            }

            segments.Add(segment);
            if (segments.Count > MaxSegments)
            {
                throw new UnsupportedSignatureException($"more than {MaxSegments} parts");
            }
        }

        void FlushBytes()
        {
            if (values.Count > 0)
            {
                AddSegment(new PatternSegment([.. values], [.. masks], [.. sets], [.. groups]));
                values.Clear();
                masks.Clear();
                sets.Clear();
                groups.Clear();
            }
        }

        void CloseSegment(int at)
        {
            FlushBytes();
            if (segments.Count == gaps.Count)
            {
                throw new SignatureFormatException($"a gap at character {at} has no fixed bytes before it");
            }
        }

        void CheckLength()
        {
            if (values.Count > MaxSegmentBytes)
            {
                throw new UnsupportedSignatureException($"a fixed part longer than {MaxSegmentBytes} bytes");
            }
        }

        while (i < text.Length)
        {
            var c = text[i];
            if (c == '*')
            {
                CloseSegment(i);
                gaps.Add(new PatternGap(0, PatternGap.Unbounded));
                normalised.Append('*');
                i++;
            }
            else if (c is '{' or '[')
            {
                var close = c == '{' ? '}' : ']';
                var end = text.IndexOf(close, i);
                if (end < 0)
                {
                    throw new SignatureFormatException($"'{c}' at character {i} is not closed");
                }

                CloseSegment(i);
                var gap = ParseGap(text[(i + 1)..end], i);
                // ClamAV's anchored range joins a single byte to a pattern, over at most 32 bytes.
                if (c == '[' && (gap.IsUnbounded || gap.Max > 32 || text.IndexOf('-', i, end - i) < 0))
                {
                    throw new SignatureFormatException($"range [{text[(i + 1)..end]}] at character {i} must be [n-m] with m at most 32");
                }

                gaps.Add(gap);
                normalised.Append(text, i, end - i + 1);
                i = end + 1;
            }
            else if (c == '(' || c == '!' && i + 1 < text.Length && text[i + 1] == '(')
            {
                var negated = c == '!';
                var open = negated ? i + 1 : i;
                var end = text.IndexOf(')', open);
                if (end < 0)
                {
                    throw new SignatureFormatException($"'(' at character {open} is not closed");
                }

                var body = text[(open + 1)..end];
                if (ParseAlternatives(body, negated, open, values, masks, sets, groups, normalised) is { } choice)
                {
                    FlushBytes();
                    AddSegment(choice);
                }

                CheckLength();
                i = end + 1;
            }
            else if (c is '!' or 'B' or 'L' or '/')
            {
                throw new UnsupportedSignatureException($"'{c}' (boundaries) at character {i} is not supported");
            }
            else
            {
                var (value, mask) = ParseByte(text, i);
                if (ignoreCase && mask == 0xFF && char.IsAsciiLetter((char)value))
                {
                    // Either case: the bit that tells them apart is left out of the comparison.
                    value &= 0xDF;
                    mask = 0xDF;
                }

                values.Add(value);
                masks.Add(mask);
                normalised.Append(char.ToLowerInvariant(text[i])).Append(char.ToLowerInvariant(text[i + 1]));
                CheckLength();
                i += 2;
            }
        }

        FlushBytes();
        if (segments.Count == 0 || segments.Count == gaps.Count)
        {
            throw new SignatureFormatException(segments.Count == 0 ? "the pattern is empty" : "the pattern ends with a gap");
        }

        if (modifiers.Contains('w', StringComparison.Ordinal))
        {
            segments = [Widen(segments, gaps, modifiers.Contains('a', StringComparison.Ordinal))];
        }

        return new BodyPattern(prefix + normalised + suffix, modifiers, [.. segments], [.. gaps]) { LeftEdge = left, RightEdge = right };
    }

    /// <summary>Takes a class marker off one end of the pattern: <c>(B)</c>, <c>(L)</c>, <c>(W)</c>, or one of them negated.</summary>
    private static (EdgeTest Test, string Marker)? TrimEdge(ref string text, bool atStart)
    {
        foreach (var (marker, test) in EdgeMarkers)
        {
            if (atStart ? text.StartsWith(marker, StringComparison.Ordinal) : text.EndsWith(marker, StringComparison.Ordinal))
            {
                // "!(B)" at the end: the "!" belongs to the marker, not to what precedes it.
                text = atStart ? text[marker.Length..] : text[..^marker.Length];
                return (test, marker);
            }
        }

        return null;
    }

    private static readonly (string Marker, EdgeTest Test)[] EdgeMarkers =
    [
        ("!(B)", EdgeTest.NotBoundary), ("!(L)", EdgeTest.NotLine), ("!(W)", EdgeTest.NotWord),
        ("(B)", EdgeTest.Boundary), ("(L)", EdgeTest.Line), ("(W)", EdgeTest.Word),
    ];

    private static (byte Value, byte Mask) ParseByte(string text, int i)
    {
        if (i + 1 >= text.Length)
        {
            throw new SignatureFormatException($"odd number of hex digits at character {i}");
        }

        var high = text[i];
        var low = text[i + 1];
        byte value = 0, mask = 0;
        if (high != '?')
        {
            value |= (byte)(HexValue(high, i) << 4);
            mask |= 0xF0;
        }

        if (low != '?')
        {
            value |= HexValue(low, i + 1);
            mask |= 0x0F;
        }

        return (value, mask);
    }

    /// <summary>
    /// <c>(aa|bb)</c> and <c>!(aa|bb)</c> become one position holding a set; <c>(aabb|ccdd)</c> and <c>!(aabb|ccdd)</c>
    /// a group of positions; <c>(W)</c> and <c>(B)</c> a set; <c>(L)</c> and alternatives of different lengths a
    /// choice, returned for the caller to place as a part of its own.
    /// </summary>
    private static PatternSegment? ParseAlternatives(string body, bool negated, int at, List<byte> values, List<byte> masks, List<PatternByteSet> sets,
        List<PatternAlternatives> groups, StringBuilder normalised)
    {
        if (body is "B" or "L" or "W")
        {
            if (negated)
            {
                throw new UnsupportedSignatureException($"!({body}) inside a pattern at character {at} is not supported");
            }

            normalised.Append('(').Append(body).Append(')');
            if (body == "L")
            {
                // A line end: LF, or CR LF.
                return PatternSegment.Choice([new PatternSegment([0x0A], [0xFF], [], []), new PatternSegment([0x0D, 0x0A], [0xFF, 0xFF], [], [])]);
            }

            // One byte that ClamAV counts as a word boundary (on either side), or that is not a letter or digit.
            sets.Add(PatternByteSet.Of(values.Count, body == "B"
                ? EdgeTests.Boundaries
                : Enumerable.Range(0, 256).Where(v => !char.IsAsciiLetterOrDigit((char)v)).Select(v => (byte)v)));
            values.Add(0);
            masks.Add(0);
            return null;
        }

        var texts = body.Split('|');
        if (texts.Length < 2 && !negated)
        {
            throw new SignatureFormatException($"alternatives at character {at} need at least two strings");
        }

        if (texts.Length > MaxAlternatives)
        {
            throw new UnsupportedSignatureException($"more than {MaxAlternatives} alternatives at character {at}");
        }

        var alternatives = new (byte[] Values, byte[] Masks)[texts.Length];
        var wildcards = false;
        for (var a = 0; a < texts.Length; a++)
        {
            var alternative = texts[a];
            if (alternative.Length == 0 || alternative.Length % 2 != 0 || alternative.AsSpan().IndexOfAny("{}[]*()!") >= 0)
            {
                throw new SignatureFormatException($"alternative '{alternative}' at character {at} is not a string of hex bytes");
            }

            if (alternative.Length / 2 > MaxSegmentBytes)
            {
                throw new UnsupportedSignatureException($"an alternative longer than {MaxSegmentBytes} bytes at character {at}");
            }

            var altValues = new byte[alternative.Length / 2];
            var altMasks = new byte[altValues.Length];
            for (var b = 0; b < altValues.Length; b++)
            {
                (altValues[b], altMasks[b]) = ParseByte(alternative, 2 * b);
                wildcards |= altMasks[b] != 0xFF;
            }

            alternatives[a] = (altValues, altMasks);
        }

        var length = alternatives[0].Values.Length;
        if (alternatives.Any(a => a.Values.Length != length))
        {
            if (negated)
            {
                throw new SignatureFormatException($"negated alternatives at character {at} must all have the same length");
            }

            normalised.Append('(').Append(body.ToLowerInvariant()).Append(')');
            return PatternSegment.Choice([.. alternatives.Select(a => new PatternSegment(a.Values, a.Masks, [], []))]);
        }

        if (negated && wildcards)
        {
            throw new SignatureFormatException($"negated alternatives at character {at} cannot hold wildcards");
        }

        if (length == 1 && !wildcards)
        {
            var members = alternatives.Select(a => a.Values[0]).ToHashSet();
            sets.Add(PatternByteSet.Of(values.Count, Enumerable.Range(0, 256).Select(v => (byte)v).Where(v => members.Contains(v) != negated)));
            values.Add(0);
            masks.Add(0);
        }
        else
        {
            groups.Add(new PatternAlternatives(values.Count, length, alternatives, negated));
            for (var b = 0; b < length; b++)
            {
                values.Add(0);
                masks.Add(0);
            }
        }

        normalised.Append(negated ? "!(" : "(").Append(body.ToLowerInvariant()).Append(')');
        return null;
    }

    /// <summary>
    /// The <c>::w</c> form of a sub-signature: each byte followed by a zero, as UTF-16 text of ASCII; with <c>::a</c>
    /// too, a choice between the string as it is and wide. Only plain strings (bytes and nibble wildcards, in one
    /// part) are widened here.
    /// </summary>
    private static PatternSegment Widen(List<PatternSegment> segments, List<PatternGap> gaps, bool alsoAscii)
    {
        if (segments.Count != 1 || gaps.Count != 0 || segments[0].Options is not null || segments[0].Sets.Length + segments[0].Groups.Length > 0)
        {
            throw new UnsupportedSignatureException("modifier 'w' on a pattern with gaps or alternatives is not supported");
        }

        var ascii = segments[0];
        var values = new byte[ascii.Length * 2];
        var masks = new byte[values.Length];
        for (var i = 0; i < ascii.Length; i++)
        {
            (values[2 * i], masks[2 * i]) = (ascii.Values[i], ascii.Masks[i]);
            masks[(2 * i) + 1] = 0xFF;
        }

        var wide = new PatternSegment(values, masks, [], []);
        return alsoAscii ? PatternSegment.Choice([ascii, wide]) : wide;
    }

    private static PatternGap ParseGap(string body, int at)
    {
        static int Number(string s, int at) =>
            int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= 1_000_000
                ? n
                : throw new SignatureFormatException($"bad gap length '{s}' at character {at}");

        var dash = body.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            var n = Number(body, at);
            return new PatternGap(n, n);
        }

        var min = dash == 0 ? 0 : Number(body[..dash], at);
        var max = dash == body.Length - 1 ? PatternGap.Unbounded : Number(body[(dash + 1)..], at);
        return min > max ? throw new SignatureFormatException($"gap {{{body}}} at character {at} has its bounds reversed") : new PatternGap(min, max);
    }

    private static byte HexValue(char c, int at) => c switch
    {
        >= '0' and <= '9' => (byte)(c - '0'),
        >= 'a' and <= 'f' => (byte)(c - 'a' + 10),
        >= 'A' and <= 'F' => (byte)(c - 'A' + 10),
        _ => throw new SignatureFormatException($"'{c}' at character {at} is not a hex digit"),
    };

    /// <summary>
    /// Picks the anchor: the run of exact bytes that starts with the rarest byte pair, in any part whose distance from
    /// the start varies by at most <see cref="MaxAnchorSlack"/> bytes (each extra distance is one more start to verify
    /// per hit). A choice holds no single anchor; when one comes before every part that does, each of its runs gets
    /// its own. The scanner filters positions on the anchor's first pair, so a pair of bytes common in images (0x00,
    /// 0xFF, small values of 12-bit pixels, ASCII) would make every other position a candidate.
    /// </summary>
    private void ChooseAnchor()
    {
        PatternAnchor? best = null;
        var bestCost = int.MaxValue;
        IReadOnlyList<PatternAnchor>? firstChoice = null;
        int distance = 0, slack = 0;
        for (var s = 0; s < Segments.Length; s++)
        {
            if (s > 0)
            {
                var gap = Gaps[s - 1];
                if (gap.IsUnbounded)
                {
                    break;
                }

                var before = Segments[s - 1];
                if (slack + (long)(gap.Max - gap.Min) + (before.MaxLength - before.MinLength) > MaxAnchorSlack)
                {
                    break;
                }

                distance += before.MinLength + gap.Min;
                slack += gap.Max - gap.Min + (before.MaxLength - before.MinLength);
            }

            var segment = Segments[s];
            if (segment.Options is { } options)
            {
                if (firstChoice is null)
                {
                    var perRun = options.Select(o => BestIn(o, distance, slack)).ToList();
                    firstChoice = perRun.All(a => a.Anchor is not null) ? [.. perRun.Select(a => a.Anchor!)] : null;
                }

                continue;
            }

            var (anchor, cost) = BestIn(segment, distance, slack);
            if (anchor is not null && cost < bestCost)
            {
                (best, bestCost) = (anchor, cost);
            }
        }

        // One anchor where there is one (the choices before it only widen its slack); else one per run of the first choice.
        Anchors = best is not null ? [best] : firstChoice ?? [];
    }

    /// <summary>The best anchor inside one run of bytes that starts <paramref name="distance"/> (+ up to <paramref name="slack"/>) after the match.</summary>
    private static (PatternAnchor? Anchor, int Cost) BestIn(PatternSegment segment, int distance, int slack)
    {
        PatternAnchor? best = null;
        var bestCost = int.MaxValue;
        for (var i = 0; i + 1 < segment.Length; i++)
        {
            if (!Anchorable(segment, i) || !Anchorable(segment, i + 1))
            {
                continue;
            }

            var length = 2;
            while (i + length < segment.Length && Anchorable(segment, i + length) && length < 64)
            {
                length++;
            }

            // Rarity first; among equally rare pairs, the longer run verifies more before the full check, and a fixed
            // distance from the start verifies one start per hit.
            var cost = (ByteCost(segment.Values[i]) + ByteCost(segment.Values[i + 1])) * 100 - length + slack;
            if (cost < bestCost)
            {
                best = new PatternAnchor(segment.Values.AsSpan(i, length).ToArray(), distance + i, slack,
                    segment.Masks.AsSpan(i, length).Contains((byte)0xDF));
                bestCost = cost;
            }
        }

        return (best, bestCost);
    }

    /// <summary>An exact byte, or (case-insensitive patterns) a letter in either case, held as its upper case.</summary>
    private static bool Anchorable(PatternSegment segment, int i) =>
        segment.Masks[i] == 0xFF || segment.Masks[i] == 0xDF && char.IsAsciiLetterUpper((char)segment.Values[i]);

    private static int ByteCost(byte value) => value switch
    {
        0x00 => 12,
        0xFF => 8,
        < 0x10 => 6,
        0x20 or (>= 0x30 and <= 0x39) or (>= 0x61 and <= 0x7A) => 4,
        < 0x20 or (>= 0x21 and <= 0x7E) => 3,
        _ => 1,
    };
}

/// <summary>A test of the byte beside a match, which the match does not include; the end of the content passes each one but the negated.</summary>
internal enum EdgeTest
{
    None,
    Boundary,
    NotBoundary,
    Line,
    NotLine,
    Word,
    NotWord,
}

/// <summary>ClamAV's edge classes, as its matcher tests them.</summary>
internal static class EdgeTests
{
    /// <summary>Bytes that end a word before a match (1), after one (2), or either (3).</summary>
    private static readonly byte[] BoundaryKind = Kinds();

    public static IEnumerable<byte> Boundaries => Enumerable.Range(0, 256).Where(v => BoundaryKind[v] != 0).Select(v => (byte)v);

    /// <summary>The edge before a match, given the byte before it (null at the start of the content).</summary>
    public static bool Before(EdgeTest test, byte? previous) => test switch
    {
        EdgeTest.None => true,
        EdgeTest.Boundary => previous is not { } b || BoundaryKind[b] is 1 or 3,
        EdgeTest.NotBoundary => !Before(EdgeTest.Boundary, previous),
        EdgeTest.Line => previous is not { } b || b == '\n',
        EdgeTest.NotLine => !Before(EdgeTest.Line, previous),
        EdgeTest.Word => previous is not { } b || !char.IsAsciiLetterOrDigit((char)b),
        EdgeTest.NotWord => !Before(EdgeTest.Word, previous),
        _ => false,
    };

    /// <summary>The edge after a match, given the next byte and the one after it (null past the end of the content).</summary>
    public static bool After(EdgeTest test, byte? next, byte? afterNext) => test switch
    {
        EdgeTest.None => true,
        EdgeTest.Boundary => next is not { } b || BoundaryKind[b] >= 2,
        EdgeTest.NotBoundary => !After(EdgeTest.Boundary, next, afterNext),
        EdgeTest.Line => next is not { } b || b == '\n' || b == '\r' && afterNext == '\n',
        EdgeTest.NotLine => !After(EdgeTest.Line, next, afterNext),
        EdgeTest.Word => next is not { } b || !char.IsAsciiLetterOrDigit((char)b),
        EdgeTest.NotWord => !After(EdgeTest.Word, next, afterNext),
        _ => false,
    };

    private static byte[] Kinds()
    {
        var kinds = new byte[256];
        foreach (var b in "\n\r\"'=>"u8)
        {
            kinds[b] = 2;
        }

        foreach (var b in ".<@"u8)
        {
            kinds[b] = 1;
        }

        foreach (var b in " -/_"u8)
        {
            kinds[b] = 3;
        }

        return kinds;
    }
}

/// <summary>
/// Where a match may start: anywhere, at an absolute offset, counted back from the end, from a PE or ELF file's entry
/// point, or from a PE section's raw data; plus a range of extra positions. <paramref name="Section"/> numbers the section of
/// <c>Sx+n</c> and <c>SEx</c>.
/// </summary>
internal readonly record struct SignatureOffset(SignatureOffsetKind Kind, long Value, long Range, int Section = 0)
{
    public static readonly SignatureOffset Any = new(SignatureOffsetKind.Any, 0, 0);

    /// <summary>Placed from an executable's entry point or sections: only an executable whose headers read gives it a place.</summary>
    public bool NeedsExecutableLayout => Kind is SignatureOffsetKind.EntryPoint or SignatureOffsetKind.SectionStart or SignatureOffsetKind.SectionWhole
        or SignatureOffsetKind.LastSection;

    public static SignatureOffset Parse(string text)
    {
        if (text == "*")
        {
            return Any;
        }

        var whole = text;
        var range = 0L;
        var comma = text.IndexOf(',', StringComparison.Ordinal);
        if (comma >= 0)
        {
            range = ParseNumber(text[(comma + 1)..], whole);
            text = text[..comma];
        }

        if (text.StartsWith("EOF-", StringComparison.Ordinal))
        {
            return new SignatureOffset(SignatureOffsetKind.FromEnd, ParseNumber(text[4..], whole), range);
        }

        if (text.StartsWith("EP+", StringComparison.Ordinal) || text.StartsWith("EP-", StringComparison.Ordinal))
        {
            var n = ParseNumber(text[3..], whole);
            return new SignatureOffset(SignatureOffsetKind.EntryPoint, text[2] == '-' ? -n : n, range);
        }

        if (text.StartsWith("SL+", StringComparison.Ordinal))
        {
            return new SignatureOffset(SignatureOffsetKind.LastSection, ParseNumber(text[3..], whole), range);
        }

        if (text.StartsWith("SE", StringComparison.Ordinal))
        {
            return comma >= 0
                ? throw new SignatureFormatException($"offset '{whole}': a whole section takes no range")
                : new SignatureOffset(SignatureOffsetKind.SectionWhole, 0, 0, SectionNumber(text[2..], whole));
        }

        if (text.StartsWith('S'))
        {
            var plus = text.IndexOf('+', StringComparison.Ordinal);
            return plus < 0
                ? throw new SignatureFormatException($"bad offset '{whole}': a section offset is Sx+n")
                : new SignatureOffset(SignatureOffsetKind.SectionStart, ParseNumber(text[(plus + 1)..], whole), range, SectionNumber(text[1..plus], whole));
        }

        if (text.StartsWith("VI", StringComparison.Ordinal))
        {
            throw new UnsupportedSignatureException($"offset '{text}' (version-information relative) is not supported");
        }

        return new SignatureOffset(SignatureOffsetKind.Absolute, ParseNumber(text, whole), range);
    }

    /// <summary>
    /// The starts a match may have in content of this length, [First, Last]; false when there are none (an offset
    /// counted back from the end of content shorter than it, or placed in an executable by what this content lacks).
    /// </summary>
    public bool TryGetStarts(long contentLength, Executables.ExecutableLayout? layout, out long first, out long last)
    {
        (first, last) = (0, -1);
        switch (Kind)
        {
            case SignatureOffsetKind.Absolute:
                (first, last) = (Value, Value + Range);
                break;
            case SignatureOffsetKind.FromEnd:
                (first, last) = (contentLength - Value, contentLength - Value + Range);
                break;
            case SignatureOffsetKind.EntryPoint when layout is { EntryPoint: >= 0 }:
                (first, last) = (layout.EntryPoint + Value, layout.EntryPoint + Value + Range);
                break;
            case SignatureOffsetKind.SectionStart when layout is not null && Section < layout.Sections.Count:
                first = layout.Sections[Section].RawOffset + Value;
                last = first + Range;
                break;
            case SignatureOffsetKind.SectionWhole when layout is not null && Section < layout.Sections.Count && layout.Sections[Section].RawSize > 0:
                first = layout.Sections[Section].RawOffset;
                last = first + layout.Sections[Section].RawSize - 1;
                break;
            case SignatureOffsetKind.LastSection when layout is { Sections.Count: > 0 }:
                first = layout.Sections[^1].RawOffset + Value;
                last = first + Range;
                break;
            case SignatureOffsetKind.Any:
                (first, last) = (0, contentLength - 1);
                break;
            default:
                return false;
        }

        return first >= 0 && first < contentLength;
    }

    public bool Allows(long start, long contentLength, Executables.ExecutableLayout? layout) =>
        TryGetStarts(contentLength, layout, out var first, out var last) && start >= first && start <= last;

    public override string ToString()
    {
        var range = Range > 0 ? $",{Range}" : string.Empty;
        return Kind switch
        {
            SignatureOffsetKind.Any => "*",
            SignatureOffsetKind.Absolute => $"{Value}{range}",
            SignatureOffsetKind.FromEnd => $"EOF-{Value}{range}",
            SignatureOffsetKind.EntryPoint => $"EP{(Value < 0 ? "-" : "+")}{Math.Abs(Value)}{range}",
            SignatureOffsetKind.SectionStart => $"S{Section}+{Value}{range}",
            SignatureOffsetKind.SectionWhole => $"SE{Section}",
            SignatureOffsetKind.LastSection => $"SL+{Value}{range}",
            _ => "*",
        };
    }

    private static int SectionNumber(string s, string whole) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n < Executables.ExecutableLayout.MaxSections
            ? n
            : throw new SignatureFormatException($"bad section number in offset '{whole}'");

    private static long ParseNumber(string s, string whole) =>
        long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= int.MaxValue
            ? n
            : throw new SignatureFormatException($"bad offset '{whole}'");
}

internal enum SignatureOffsetKind
{
    Any,
    Absolute,
    FromEnd,
    EntryPoint,
    SectionStart,
    SectionWhole,
    LastSection,
}
