using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Mail;

/// <summary>How a link's host relates to the organisation's own domains: look-alikes, mixed scripts, punycode.</summary>
internal static class LinkChecks
{
    private static readonly IdnMapping Idn = new();

    /// <summary>Confusable letters mapped to the Latin letter they imitate (a small, common subset of Unicode's list).</summary>
    private static readonly Dictionary<char, char> Confusables = new()
    {
        ['а'] = 'a', ['е'] = 'e', ['о'] = 'o', ['р'] = 'p', ['с'] = 'c', ['у'] = 'y', ['х'] = 'x', ['і'] = 'i', ['ј'] = 'j',
        ['ԁ'] = 'd', ['ѕ'] = 's', ['һ'] = 'h', ['ӏ'] = 'l', ['ԛ'] = 'q', ['ԝ'] = 'w', ['ν'] = 'v', ['ο'] = 'o', ['α'] = 'a',
        ['ρ'] = 'p', ['τ'] = 't', ['ι'] = 'i', ['κ'] = 'k', ['ɡ'] = 'g', ['ı'] = 'i', ['ł'] = 'l', ['0'] = 'o', ['1'] = 'l',

        // Armenian and IPA letters that read as Latin ones.
        ['օ'] = 'o', ['ս'] = 'u', ['ց'] = 'g', ['հ'] = 'h', ['ո'] = 'n', ['ɪ'] = 'i', ['ʏ'] = 'y', ['ɴ'] = 'n', ['ʀ'] = 'r',
        ['ʟ'] = 'l', ['ᴀ'] = 'a', ['ᴄ'] = 'c', ['ᴅ'] = 'd', ['ᴇ'] = 'e', ['ᴊ'] = 'j', ['ᴋ'] = 'k', ['ᴍ'] = 'm', ['ᴏ'] = 'o',
        ['ᴘ'] = 'p', ['ᴛ'] = 't', ['ᴜ'] = 'u', ['ᴠ'] = 'v', ['ᴡ'] = 'w', ['ᴢ'] = 'z',

        // Capitals whose small letter looks different (Cyrillic М is M, м is not): a display name keeps its case.
        ['А'] = 'a', ['В'] = 'b', ['Е'] = 'e', ['К'] = 'k', ['М'] = 'm', ['Н'] = 'h', ['О'] = 'o', ['Р'] = 'p', ['С'] = 'c',
        ['Т'] = 't', ['Х'] = 'x', ['У'] = 'y', ['І'] = 'i', ['Ј'] = 'j', ['Ѕ'] = 's', ['Ӏ'] = 'l', ['Α'] = 'a', ['Β'] = 'b',
        ['Ε'] = 'e', ['Ζ'] = 'z', ['Η'] = 'h', ['Ι'] = 'i', ['Κ'] = 'k', ['Μ'] = 'm', ['Ν'] = 'n', ['Ο'] = 'o', ['Ρ'] = 'p',
        ['Τ'] = 't', ['Υ'] = 'y', ['Χ'] = 'x',
    };

    /// <summary>The Unicode form of a host ("xn--" labels decoded); the input when it cannot be decoded.</summary>
    public static string Unicode(string host)
    {
        try
        {
            return Idn.GetUnicode(host);
        }
        catch (ArgumentException)
        {
            return host;
        }
    }

    public static bool IsPunycode(string host) => host.Split('.').Any(l => l.StartsWith("xn--", StringComparison.OrdinalIgnoreCase));

    /// <summary>True when one label mixes letters of several scripts (Latin with Cyrillic or Greek...).</summary>
    public static bool IsMixedScript(string unicodeHost)
    {
        foreach (var label in unicodeHost.Split('.'))
        {
            string? script = null;
            foreach (var c in label)
            {
                var s = Script(c);
                if (s is null)
                {
                    continue;
                }

                if (script is not null && script != s)
                {
                    return true;
                }

                script = s;
            }
        }

        return false;
    }

    private static string? Script(char c) => c switch
    {
        >= 'a' and <= 'z' or >= 'A' and <= 'Z' => "Latin",
        >= '\u00C0' and <= '\u024F' => "Latin",
        >= '\u0370' and <= '\u03FF' => "Greek",
        >= '\u0400' and <= '\u052F' => "Cyrillic",
        _ when char.IsLetter(c) => "Other",
        _ => null,
    };

    public static string Skeleton(string unicodeHost)
    {
        var builder = new StringBuilder(unicodeHost.Length);
        foreach (var c in unicodeHost)
        {
            var lower = char.ToLowerInvariant(c);
            builder.Append(Confusables.TryGetValue(c, out var capital) ? capital : Confusables.GetValueOrDefault(lower, lower));
        }

        return builder.ToString();
    }

    /// <summary>
    /// A display name as it reads on screen, for comparing with internal names: NFKC, invisible characters removed
    /// (zero-width, soft hyphen, joiners, bidi controls), every space one space, ideographic full stops as dots,
    /// look-alike letters as the Latin ones (<see cref="Skeleton"/>), lower case.
    /// </summary>
    public static string NameSkeleton(string name)
    {
        try
        {
            // Compatibility forms folded, then letters and their marks apart, so that "Hélène" and "Helene" (French
            // senders often drop accents) or a letter with a combining dot read as one name (until 2026-12-07 they did not).
            name = name.Normalize(NormalizationForm.FormKC).Normalize(NormalizationForm.FormD);
        }
        catch (ArgumentException)
        {
            // A lone surrogate: compared as it is.
        }

        var builder = new StringBuilder(name.Length);
        foreach (var rune in name.EnumerateRunes())
        {
            var value = rune.Value;
            if (Rune.IsWhiteSpace(rune) || Rune.GetUnicodeCategory(rune) is UnicodeCategory.SpaceSeparator)
            {
                if (builder.Length > 0 && builder[^1] != ' ')
                {
                    builder.Append(' ');
                }
            }
            else if (value is 0x3002 or 0xFF61)
            {
                builder.Append('.');
            }
            else if (!IsIgnorable(rune) && Rune.GetUnicodeCategory(rune) is not (UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark))
            {
                builder.Append(rune.ToString());
            }
        }

        return Skeleton(builder.ToString().TrimEnd(' '));
    }

    /// <summary>Unicode's default-ignorable characters that render as nothing (format controls, variation selectors, fillers).</summary>
    private static bool IsIgnorable(Rune rune) =>
        Rune.GetUnicodeCategory(rune) is UnicodeCategory.Format or UnicodeCategory.Control
        || rune.Value is 0x034F or (>= 0x180B and <= 0x180F) or (>= 0xFE00 and <= 0xFE0F) or (>= 0xE0100 and <= 0xE01EF)
            or 0x115F or 0x1160 or 0x3164 or 0xFFA0 or 0x17B4 or 0x17B5;

    public static bool IsSameOrSubdomain(string host, string domain) =>
        host.Equals(domain, StringComparison.OrdinalIgnoreCase) || host.EndsWith("." + domain, StringComparison.OrdinalIgnoreCase);

    /// <summary>Why <paramref name="host"/> imitates <paramref name="protectedDomain"/>, or null when it does not.</summary>
    public static string? LookalikeReason(string host, string protectedDomain, int maxDistance)
    {
        host = host.ToLowerInvariant();
        protectedDomain = protectedDomain.ToLowerInvariant().Trim('.');
        if (protectedDomain.Length == 0 || IsSameOrSubdomain(host, protectedDomain))
        {
            return null;
        }

        if (host.StartsWith(protectedDomain + ".", StringComparison.Ordinal))
        {
            return $"starts with {protectedDomain} but belongs to another domain";
        }

        var unicode = Unicode(host);
        var skeleton = Skeleton(unicode);
        var labels = protectedDomain.Split('.').Length;
        var hostTail = string.Join('.', skeleton.Split('.').TakeLast(labels));
        if (hostTail == Skeleton(protectedDomain))
        {
            return $"reads as {protectedDomain} with look-alike characters";
        }

        var distance = Distance(string.Join('.', host.Split('.').TakeLast(labels)), protectedDomain, maxDistance);
        return distance > 0 && distance <= maxDistance ? $"is {distance} edit{(distance > 1 ? "s" : "")} away from {protectedDomain}" : null;
    }

    /// <summary>Optimal string alignment distance (adjacent swaps count as one), giving up above <paramref name="max"/>.</summary>
    public static int Distance(string a, string b, int max)
    {
        if (Math.Abs(a.Length - b.Length) > max || a.Length > 256 || b.Length > 256)
        {
            return max + 1;
        }

        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }

        for (var j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }

        return d[a.Length, b.Length];
    }
}
