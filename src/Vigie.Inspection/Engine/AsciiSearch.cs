namespace Vigie.Inspection.Engine;

/// <summary>Case-insensitive ASCII searches over raw bytes (keywords in scripts, markup, headers), without decoding.</summary>
internal static class AsciiSearch
{
    /// <summary>Index of <paramref name="needle"/> (ASCII, any case) in <paramref name="haystack"/>, or -1.</summary>
    public static int IndexOfIgnoreCase(ReadOnlySpan<byte> haystack, string needle)
    {
        if (needle.Length == 0)
        {
            return 0;
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
