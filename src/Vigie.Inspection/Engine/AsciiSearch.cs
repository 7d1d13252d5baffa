using System.Buffers;
using System.Numerics;

namespace Vigie.Inspection.Engine;

/// <summary>Case-insensitive ASCII searches over raw bytes (keywords in scripts, markup, headers), without decoding.</summary>
internal static class AsciiSearch
{
    private const int Chunk = 64 * 1024;

    /// <summary>
    /// For each set of <paramref name="sets"/>, whether the first <paramref name="limit"/> bytes hold one of its words
    /// (ASCII, any case): one pass, which stops once every set is found.
    /// </summary>
    public static bool[] Mentions(ContentSource content, long limit, string[][] sets, CancellationToken cancellationToken)
    {
        var found = new bool[sets.Length];
        var overlap = sets.Max(set => set.Max(n => n.Length)) - 1;
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk + overlap);
        try
        {
            long position = 0;
            var carried = 0;
            while (position < limit && !found.All(f => f))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(position, buffer.AsSpan(carried, (int)Math.Min(Chunk, limit - position)));
                if (read <= 0)
                {
                    break;
                }

                var window = buffer.AsSpan(0, carried + read);
                for (var i = 0; i < sets.Length; i++)
                {
                    foreach (var needle in sets[i])
                    {
                        found[i] = found[i] || AsciiSearch.ContainsIgnoreCase(window, needle);
                    }
                }

                position += read;
                carried = Math.Min(overlap, window.Length);
                window[^carried..].CopyTo(buffer);
            }

            return found;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Index of <paramref name="needle"/> (ASCII, any case) in <paramref name="haystack"/>, or -1.</summary>
    public static int IndexOfIgnoreCase(ReadOnlySpan<byte> haystack, string needle)
    {
        if (needle.Length == 0)
        {
            return 0;
        }

        if (haystack.Length > 4096)
        {
            return IndexOfIgnoreCaseLarge(haystack, needle);
        }

        var lower = (byte)char.ToLowerInvariant(needle[0]);
        var upper = (byte)char.ToUpperInvariant(needle[0]);
        var offset = 0;
        while (offset <= haystack.Length - needle.Length)
        {
            var i = haystack[offset..].IndexOfAny(lower, upper);
            if (i < 0)
            {
                return -1;
            }

            var start = offset + i;
            if (start > haystack.Length - needle.Length)
            {
                return -1;
            }

            if (EqualsIgnoreCase(haystack.Slice(start, needle.Length), needle))
            {
                return start;
            }

            offset = start + 1;
        }

        return -1;
    }

    /// <summary>Lower-cases windows of the haystack (vectorised) and searches them with the vectorised exact search.</summary>
    private static int IndexOfIgnoreCaseLarge(ReadOnlySpan<byte> haystack, string needle)
    {
        Span<byte> lowerNeedle = stackalloc byte[needle.Length];
        for (var i = 0; i < needle.Length; i++)
        {
            var c = needle[i];
            lowerNeedle[i] = (byte)(c is >= 'A' and <= 'Z' ? c + 32 : c);
        }

        const int Window = 16 * 1024;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(Window + needle.Length);
        try
        {
            for (var offset = 0; offset < haystack.Length; offset += Window)
            {
                var length = Math.Min(Window + needle.Length - 1, haystack.Length - offset);
                var window = buffer.AsSpan(0, length);
                ToLowerAscii(haystack.Slice(offset, length), window);
                var hit = window.IndexOf(lowerNeedle);
                if (hit >= 0)
                {
                    return offset + hit;
                }
            }

            return -1;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Lower-cases A-Z and leaves every other byte (UTF-8, binary) as it is.</summary>
    private static void ToLowerAscii(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var a = new Vector<byte>((byte)'A');
            var span = new Vector<byte>((byte)('Z' - 'A'));
            var bit = new Vector<byte>(0x20);
            for (; i + Vector<byte>.Count <= source.Length; i += Vector<byte>.Count)
            {
                var v = new Vector<byte>(source[i..]);
                var upper = Vector.LessThanOrEqual(v - a, span);
                (v | (upper & bit)).CopyTo(destination[i..]);
            }
        }

        for (; i < source.Length; i++)
        {
            var b = source[i];
            destination[i] = (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
        }
    }

    public static bool ContainsIgnoreCase(ReadOnlySpan<byte> haystack, string needle) => IndexOfIgnoreCase(haystack, needle) >= 0;

    public static bool EqualsIgnoreCase(ReadOnlySpan<byte> bytes, string text)
    {
        if (bytes.Length != text.Length)
        {
            return false;
        }

        for (var i = 0; i < text.Length; i++)
        {
            var b = bytes[i];
            if (b is >= (byte)'A' and <= (byte)'Z')
            {
                b = (byte)(b + 32);
            }

            var c = text[i];
            if (c is >= 'A' and <= 'Z')
            {
                c = (char)(c + 32);
            }

            if (b != c)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Counts occurrences, stopping at <paramref name="max"/>.</summary>
    public static int CountIgnoreCase(ReadOnlySpan<byte> haystack, string needle, int max = int.MaxValue)
    {
        var count = 0;
        var offset = 0;
        while (count < max)
        {
            var i = IndexOfIgnoreCase(haystack[offset..], needle);
            if (i < 0)
            {
                break;
            }

            count++;
            offset += i + needle.Length;
        }

        return count;
    }
}
