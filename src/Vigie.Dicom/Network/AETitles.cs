namespace Vigie.Dicom.Network;

/// <summary>
/// The one rule for AE titles that people write into the configuration (the node's own, the callers allowed, the
/// destinations): what the wire can carry (PS3.5 AE: 1 to 16 characters of the default repertoire, no backslash or
/// control character) and what can match what arrives (spaces at either end are not significant, and Vigie trims
/// them from what peers send).
/// </summary>
public static class AETitles
{
    public const int MaxLength = 16;

    /// <summary>The rule in words, for configuration errors.</summary>
    public const string Rule = "1 to 16 characters of printable ASCII, without a backslash";

    /// <summary>A character an AE title may hold: printable ASCII but the backslash.</summary>
    public static bool IsAllowed(char c) => c is >= ' ' and <= '~' and not '\\';

    /// <summary>Why <paramref name="title"/> cannot be used as an AE title, or null when it can.</summary>
    public static string? Problem(string? title)
    {
        if (string.IsNullOrWhiteSpace(title))
        {
            return "is empty";
        }

        if (title.Length > MaxLength)
        {
            return $"has {title.Length} characters; at most {MaxLength}";
        }

        foreach (var c in title)
        {
            if (!IsAllowed(c))
            {
                return c == '\\' ? "holds a backslash" : $"holds U+{(int)c:X4}, outside printable ASCII";
            }
        }

        return title.Trim() != title ? $"has spaces at its ends, which DICOM ignores: write '{title.Trim()}'" : null;
    }
}
