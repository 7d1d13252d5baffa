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
                return MatchesDateTime(pattern.Trim(), value.Trim());
            case QueryValueKind.PersonName:
                var key = IndexNormalizer.PersonName(pattern);
                var name = IndexNormalizer.PersonName(value);
                // Trailing empty components are insignificant (PS3.5 6.2): "DOE^JANE^*" matches "DOE^JANE", stored or
                // sent as "DOE^JANE^^^", as the five components it stands for.
                return Wildcard(key, name) || (key.Contains('^', StringComparison.Ordinal)
                    && Wildcard(key, name + new string('^', Math.Max(0, 4 - name.Count(c => c == '^')))));
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

    /// <summary>
    /// DT single value or range matching (PS3.4 C.2.2.2.5): a value with a UTC offset ("&amp;ZZXX") is compared in UTC, so
    /// 23:00+0200 is 21:00+0000. The range's '-' is told from a negative offset's by trying each dash: the split whose
    /// two sides are both empty or valid values. A value without an offset is compared as it is.
    /// </summary>
    private static bool MatchesDateTime(string pattern, string value)
    {
        if (ParseDateTime(value, upper: false) is not { } stored)
        {
            return false;
        }

        if (ParseDateTime(pattern, upper: false) is { } single && !IsRange(pattern))
        {
            return single == stored;
        }

        for (var dash = pattern.IndexOf('-', StringComparison.Ordinal); dash >= 0; dash = pattern.IndexOf('-', dash + 1))
        {
            var low = pattern[..dash];
            var high = pattern[(dash + 1)..];
            var lower = low.Length == 0 ? DateTime.MinValue : ParseDateTime(low, upper: false);
            var upper = high.Length == 0 ? DateTime.MaxValue : ParseDateTime(high, upper: true);
            if (lower is not null && upper is not null && (low.Length > 0 || high.Length > 0))
            {
                return stored >= lower && stored <= upper;
            }
        }

        return false;
    }

    /// <summary>A pattern that only parses as one value ends in an offset ("-0500"); one that splits into two values is a range.</summary>
    private static bool IsRange(string pattern) =>
        pattern.StartsWith('-') || pattern.EndsWith('-') || (pattern.Count(c => c == '-') > 1) ||
        (pattern.IndexOf('-', StringComparison.Ordinal) is var dash and > 0 && pattern.Length - dash != 5);

    /// <summary>
    /// YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&amp;ZZXX] as a point in time, in UTC when it has an offset. A partial value is
    /// its first instant, or with <paramref name="upper"/> its last, so that "2024" as an upper bound covers the year.
    /// </summary>
    internal static DateTime? ParseDateTime(string text, bool upper)
    {
        text = text.Trim();
        TimeSpan? offset = null;
        if (text.Length >= 9 && text[^5] is '+' or '-' && text[^4..].All(char.IsAsciiDigit))
        {
            var hours = int.Parse(text.AsSpan(text.Length - 4, 2), CultureInfo.InvariantCulture);
            var minutes = int.Parse(text.AsSpan(text.Length - 2, 2), CultureInfo.InvariantCulture);
            if (hours > 14 || minutes > 59)
            {
                return null;
            }

            offset = new TimeSpan(hours, minutes, 0) * (text[^5] == '-' ? -1 : 1);
            text = text[..^5];
        }

        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var whole = dot < 0 ? text : text[..dot];
        var fraction = dot < 0 ? "" : text[(dot + 1)..];
        if (whole.Length is < 4 or > 14 || whole.Length % 2 != 0 || !whole.All(char.IsAsciiDigit) || fraction.Length > 6 || !fraction.All(char.IsAsciiDigit)
            || (dot >= 0 && whole.Length != 14))
        {
            return null;
        }

        int Part(int at, int low) => whole.Length > at ? int.Parse(whole.AsSpan(at, 2), CultureInfo.InvariantCulture) : low;
        var year = int.Parse(whole.AsSpan(0, 4), CultureInfo.InvariantCulture);
        var month = Part(4, upper ? 12 : 1);
        if (year < 1 || month is < 1 or > 12)
        {
            return null;
        }

        var day = Part(6, upper ? DateTime.DaysInMonth(year, month) : 1);
        var hour = Part(8, upper ? 23 : 0);
        var minute = Part(10, upper ? 59 : 0);
        var second = Part(12, upper ? 59 : 0);
        if (day < 1 || day > DateTime.DaysInMonth(year, month) || hour > 23 || minute > 59 || second > 60)
        {
            return null;
        }

        var ticks = fraction.Length > 0 ? long.Parse(fraction.PadRight(7, '0'), CultureInfo.InvariantCulture) : upper ? TimeSpan.TicksPerSecond - 1 : 0;
        var time = new DateTime(year, month, day, hour, minute, Math.Min(second, 59), DateTimeKind.Unspecified).AddTicks(ticks);
        if (offset is { } o)
        {
            // Near the calendar's ends an offset could step outside it: such a value matches nothing rather than failing.
            return time.Ticks - o.Ticks is var utc && utc >= DateTime.MinValue.Ticks && utc <= DateTime.MaxValue.Ticks ? new DateTime(utc) : null;
        }

        return time;
    }

    /// <summary>
    /// Glob matching with * and ?, greedy with one backtrack point: O(pattern × value) at worst, no recursion. '?' is one
    /// character, a surrogate pair included (a CJK extension ideograph, an emoji), not one UTF-16 unit.
    /// </summary>
    internal static bool Wildcard(string pattern, string value)
    {
        int p = 0, v = 0, star = -1, mark = 0;
        while (v < value.Length)
        {
            if (p < pattern.Length && pattern[p] == '?')
            {
                p++;
                v += CharLength(value, v);
            }
            else if (p < pattern.Length && pattern[p] == value[v])
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
                mark += CharLength(value, mark);
                v = mark;
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

    private static int CharLength(string value, int at) =>
        char.IsHighSurrogate(value[at]) && at + 1 < value.Length && char.IsLowSurrogate(value[at + 1]) ? 2 : 1;
}
