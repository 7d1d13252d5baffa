using System.Globalization;

namespace Vigie.Archive.Index;

/// <summary>
/// DICOM C-FIND attribute matching (PS3.4 C.2.2.2) on decrypted values: universal, single value, wildcard (* and ?),
/// list of UIDs, and range for dates and times. A multi-valued attribute matches when one of its values does, and a
/// multi-valued key (values separated by backslashes) when one of its values matches (multiple value matching).
/// Person names match without regard to case or accents; other text is case-sensitive. Wildcards are matched in
/// linear time (no regular expressions), so a hostile pattern cannot stall a query.
/// </summary>
public static class AttributeMatcher
{
    /// <summary>The value kind of a tag: the one given, or inferred for the tags the index knows, else text.</summary>
    public static QueryValueKind KindOf(QueryKey key) => key.Kind ?? key.Tag switch
    {
        DicomTags.PatientName or DicomTags.ReferringPhysicianName => QueryValueKind.PersonName,
        DicomTags.SopClassUid or DicomTags.SopInstanceUid or DicomTags.StudyInstanceUid or DicomTags.SeriesInstanceUid => QueryValueKind.Uid,
        DicomTags.StudyDate or DicomTags.SeriesDate or DicomTags.PatientBirthDate => QueryValueKind.Date,
        DicomTags.StudyTime => QueryValueKind.Time,
        _ => QueryValueKind.Text,
    };

    /// <summary>True when the key matches anything (empty value, or only "*").</summary>
    public static bool IsUniversal(QueryKey key)
    {
        var value = key.Value.Trim();
        return value.Length == 0 || value.All(c => c == '*');
    }

    public static bool Matches(QueryKey key, AttributeSet attributes)
    {
        if (IsUniversal(key))
        {
            return true;
        }

        if (!attributes.TryGetValue(key.Tag, out var values) || values.Count == 0)
        {
            return false;
        }

        var kind = KindOf(key);
        foreach (var pattern in Patterns(key.Value, kind))
        {
            foreach (var value in values)
            {
                if (MatchesValue(kind, pattern, value))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>The values of a key: a UID list is one pattern (matched as a list); anything else splits on backslashes.</summary>
    public static IEnumerable<string> Patterns(string value, QueryValueKind kind) =>
        kind == QueryValueKind.Uid || !value.Contains('\\', StringComparison.Ordinal) ? [value] : value.Split('\\');

    private static bool MatchesValue(QueryValueKind kind, string pattern, string value)
    {
        switch (kind)
        {
            case QueryValueKind.Uid:
                var uid = IndexNormalizer.Uid(value);
                foreach (var candidate in pattern.Split('\\'))
                {
                    if (string.Equals(IndexNormalizer.Uid(candidate), uid, StringComparison.Ordinal))
                    {
                        return true;
                    }
                }

                return false;
            case QueryValueKind.Date:
                return MatchesRange(IndexNormalizer.Date(pattern), IndexNormalizer.Date(value), NormalizeDate);
            case QueryValueKind.Time:
                return MatchesRange(pattern.Trim(), value.Trim(), NormalizeTime);
            case QueryValueKind.DateTime:
                return MatchesRange(pattern.Trim(), value.Trim(), NormalizeDateTime);
            case QueryValueKind.PersonName:
                return Wildcard(IndexNormalizer.PersonName(pattern), IndexNormalizer.PersonName(value));
            case QueryValueKind.Text:
                return Wildcard(pattern.Trim(), value.Trim());
            default:
                return false;
        }
    }

    private static bool MatchesRange(string pattern, string value, Func<string, bool, string?> normalize)
    {
        var dash = pattern.IndexOf('-', StringComparison.Ordinal);
        var stored = normalize(value, false);
        if (stored is null)
        {
            return false;
        }

        if (dash < 0)
        {
            var single = normalize(pattern, false);
            return single is not null && string.CompareOrdinal(single, stored) == 0;
        }

        var low = pattern[..dash];
        var high = pattern[(dash + 1)..];
        if (low.Length > 0 && (normalize(low, false) is not { } lower || string.CompareOrdinal(stored, lower) < 0))
        {
            return false;
        }

        return high.Length == 0 || (normalize(high, true) is { } upper && string.CompareOrdinal(stored, upper) <= 0);
    }

    private static string? NormalizeDate(string value, bool upper)
    {
        var date = IndexNormalizer.Date(value);
        return date.Length == 8 && date.All(char.IsAsciiDigit) ? date : null;
    }

    /// <summary>HHMMSS.FFFFFF, padded: a lower bound with zeros, an upper bound with nines, so "10-12" covers 12:59:59.</summary>
    private static string? NormalizeTime(string value, bool upper)
    {
        var time = value.Trim().Replace(":", "", StringComparison.Ordinal);
        var dot = time.IndexOf('.', StringComparison.Ordinal);
        var whole = dot < 0 ? time : time[..dot];
        var fraction = dot < 0 ? "" : time[(dot + 1)..];
        if (whole.Length is 0 or > 6 || whole.Length % 2 != 0 || !whole.All(char.IsAsciiDigit) || fraction.Length > 6 || !fraction.All(char.IsAsciiDigit))
        {
            return null;
        }

        var pad = upper ? '9' : '0';
        return whole.PadRight(6, pad) + "." + fraction.PadRight(6, dot < 0 ? pad : '0');
    }

    private static string? NormalizeDateTime(string value, bool upper)
    {
        var text = value.Trim();
        var offset = text.IndexOfAny(['+', '-'], Math.Min(8, text.Length));
        if (offset >= 0)
        {
            text = text[..offset];
        }

        if (text.Length < 4 || !text.Replace(".", "", StringComparison.Ordinal).All(char.IsAsciiDigit))
        {
            return null;
        }

        var pad = upper ? '9' : '0';
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var whole = dot < 0 ? text : text[..dot];
        var fraction = dot < 0 ? "" : text[(dot + 1)..];
        return whole.PadRight(14, pad).ToString(CultureInfo.InvariantCulture) + "." + fraction.PadRight(6, dot < 0 ? pad : '0');
    }

    /// <summary>Glob matching with * and ?, greedy with one backtrack point: O(pattern × value) at worst, no recursion.</summary>
    internal static bool Wildcard(string pattern, string value)
    {
        int p = 0, v = 0, star = -1, mark = 0;
        while (v < value.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == value[v]))
            {
                p++;
                v++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = v;
            }
            else if (star >= 0)
            {
                p = star + 1;
                v = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
