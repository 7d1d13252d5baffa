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
/// A run of bytes that must match at one position; each byte has a mask (0xFF exact, 0xF0 or 0x0F one nibble,
/// 0x00 any byte, from <c>??</c>).
/// </summary>
internal sealed class PatternSegment(byte[] values, byte[] masks)
{
    public byte[] Values { get; } = values;

    public byte[] Masks { get; } = masks;

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

        return true;
    }
}

/// <summary>
/// A ClamAV body pattern (the hex part of an .ndb signature or an .ldb sub-signature): hex bytes, <c>??</c>,
/// nibble wildcards, and gaps. The anchor is a run of exact bytes in the first segment, starting with its rarest
/// byte pair; the scanner looks for anchors and verifies the rest around each hit.
/// </summary>
internal sealed class BodyPattern
{
    private const int MaxSegmentBytes = 4096;
    private const int MaxSegments = 64;

    private BodyPattern(string source, PatternSegment[] segments, PatternGap[] gaps)
    {
        Source = source;
        Segments = segments;
        Gaps = gaps;
        (AnchorOffset, AnchorLength) = ChooseAnchor(segments[0]);
        MinLength = segments.Sum(s => s.Length) + gaps.Sum(g => (long)g.Min);
    }

    /// <summary>The pattern as written (lower-case hex), for export.</summary>
    public string Source { get; }

    public PatternSegment[] Segments { get; }

    /// <summary>Gaps[i] separates Segments[i] and Segments[i + 1].</summary>
    public PatternGap[] Gaps { get; }

    public int AnchorOffset { get; }

    public int AnchorLength { get; }

    public long MinLength { get; }

    public ReadOnlySpan<byte> Anchor => Segments[0].Values.AsSpan(AnchorOffset, AnchorLength);

    public bool HasUsableAnchor => AnchorLength >= 2;

    /// <summary>Parses ClamAV hex pattern syntax. Throws <see cref="SignatureFormatException"/> on bad syntax and <see cref="UnsupportedSignatureException"/> on syntax not implemented here.</summary>
    public static BodyPattern Parse(string text)
    {
        var segments = new List<PatternSegment>();
        var gaps = new List<PatternGap>();
        var values = new List<byte>();
        var masks = new List<byte>();
        var normalised = new StringBuilder(text.Length);
        var i = 0;

        void CloseSegment(int at)
        {
            if (values.Count == 0)
            {
                throw new SignatureFormatException($"a gap at character {at} has no fixed bytes before it");
            }

            segments.Add(new PatternSegment([.. values], [.. masks]));
            values.Clear();
            masks.Clear();
            if (segments.Count > MaxSegments)
            {
                throw new UnsupportedSignatureException($"more than {MaxSegments} parts");
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
            else if (c == '{')
            {
                var end = text.IndexOf('}', i);
                if (end < 0)
                {
                    throw new SignatureFormatException($"'{{' at character {i} is not closed");
                }

                CloseSegment(i);
                var gap = ParseGap(text[(i + 1)..end], i);
                gaps.Add(gap);
                normalised.Append(text, i, end - i + 1);
                i = end + 1;
            }
            else if (c is '(' or '[' or '!' or 'B' or 'L' or '/')
            {
                throw new UnsupportedSignatureException($"'{c}' (alternatives, anchored ranges, boundaries) at character {i} is not supported");
            }
            else
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

                values.Add(value);
                masks.Add(mask);
                normalised.Append(char.ToLowerInvariant(high)).Append(char.ToLowerInvariant(low));
                if (values.Count > MaxSegmentBytes)
                {
                    throw new UnsupportedSignatureException($"a fixed part longer than {MaxSegmentBytes} bytes");
                }

                i += 2;
            }
        }

        if (values.Count == 0)
        {
            throw new SignatureFormatException(segments.Count == 0 ? "the pattern is empty" : "the pattern ends with a gap");
        }

        segments.Add(new PatternSegment([.. values], [.. masks]));
        return new BodyPattern(normalised.ToString(), [.. segments], [.. gaps]);
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
    /// Picks the anchor: the run of exact bytes in the first segment that starts with the rarest byte pair. The scanner
    /// filters positions on that pair, so a pair of bytes common in images (0x00, 0xFF, small values of 12-bit pixels,
    /// ASCII) would make every other position a candidate.
    /// </summary>
    private static (int Offset, int Length) ChooseAnchor(PatternSegment segment)
    {
        int bestOffset = 0, bestLength = 0, bestCost = int.MaxValue;
        for (var i = 0; i + 1 < segment.Length; i++)
        {
            if (segment.Masks[i] != 0xFF || segment.Masks[i + 1] != 0xFF)
            {
                continue;
            }

            var length = 2;
            while (i + length < segment.Length && segment.Masks[i + length] == 0xFF && length < 64)
            {
                length++;
            }

            // Rarity first; among equally rare pairs, the longer run verifies more before the full check.
            var cost = (ByteCost(segment.Values[i]) + ByteCost(segment.Values[i + 1])) * 100 - length;
            if (cost < bestCost)
            {
                (bestOffset, bestLength, bestCost) = (i, length, cost);
            }
        }

        return (bestOffset, bestLength);
    }

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

/// <summary>Where a match may start: anywhere, at an absolute offset, or counted back from the end; plus a range of extra positions.</summary>
internal readonly record struct SignatureOffset(SignatureOffsetKind Kind, long Value, long Range)
{
    public static readonly SignatureOffset Any = new(SignatureOffsetKind.Any, 0, 0);

    public static SignatureOffset Parse(string text)
    {
        if (text == "*")
        {
            return Any;
        }

        var range = 0L;
        var comma = text.IndexOf(',', StringComparison.Ordinal);
        if (comma >= 0)
        {
            range = ParseNumber(text[(comma + 1)..], text);
            text = text[..comma];
        }

        if (text.StartsWith("EOF-", StringComparison.Ordinal))
        {
            return new SignatureOffset(SignatureOffsetKind.FromEnd, ParseNumber(text[4..], text), range);
        }

        if (text.StartsWith("EP", StringComparison.Ordinal) || text.StartsWith('S') || text.StartsWith("VI", StringComparison.Ordinal))
        {
            throw new UnsupportedSignatureException($"offset '{text}' (entry point, section or version-information relative) is not supported");
        }

        return new SignatureOffset(SignatureOffsetKind.Absolute, ParseNumber(text, text), range);
    }

    /// <summary>
    /// The starts a match may have in content of this length, [First, Last]; false when there are none (an offset
    /// counted back from the end of content shorter than it).
    /// </summary>
    public bool TryGetStarts(long contentLength, out long first, out long last)
    {
        (first, last) = Kind switch
        {
            SignatureOffsetKind.Absolute => (Value, Value + Range),
            SignatureOffsetKind.FromEnd => (contentLength - Value, contentLength - Value + Range),
            _ => (0, contentLength - 1),
        };
        return first >= 0 && first < contentLength;
    }

    public bool Allows(long start, long contentLength) =>
        TryGetStarts(contentLength, out var first, out var last) && start >= first && start <= last;

    public override string ToString() => Kind switch
    {
        SignatureOffsetKind.Any => "*",
        SignatureOffsetKind.Absolute => Range > 0 ? $"{Value},{Range}" : Value.ToString(CultureInfo.InvariantCulture),
        SignatureOffsetKind.FromEnd => Range > 0 ? $"EOF-{Value},{Range}" : $"EOF-{Value}",
        _ => "*",
    };

    private static long ParseNumber(string s, string whole) =>
        long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new SignatureFormatException($"bad offset '{whole}'");
}

internal enum SignatureOffsetKind
{
    Any,
    Absolute,
    FromEnd,
}
