using System.Globalization;

namespace Vigie.Dicom;

/// <summary>One element of the data dictionary (PS3.6 / PS3.7 command elements).</summary>
/// <param name="Tag">The tag; for repeating groups, the tag with the repeating nibbles cleared.</param>
/// <param name="Mask">Bits that must match; 0xFFFFFFFF except for repeating groups such as (60xx,3000).</param>
/// <param name="VR">The VR, or the first of the alternatives ("US or SS" gives US).</param>
/// <param name="AlternativeVRs">Other VRs the standard allows; which one applies depends on other attributes.</param>
public sealed record DicomDictionaryEntry(
    DicomTag Tag, uint Mask, DicomVR VR, IReadOnlyList<DicomVR> AlternativeVRs, string VM, string Keyword, string Name, bool IsRetired)
{
    public bool IsAmbiguous => AlternativeVRs.Count > 0;
}

/// <summary>The public data dictionary and UID registry, generated from public sources by tools/gen_dictionary.py.</summary>
public static class DicomDictionary
{
    private static readonly Lazy<Tables> LazyTables = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly DicomDictionaryEntry PrivateCreator =
        new(new DicomTag(0x00010010), 0xFFFFFF00, DicomVR.LO, [], "1", "PrivateCreator", "Private Creator", false);

    private static readonly DicomDictionaryEntry GroupLength =
        new(new DicomTag(0x00000000), 0x0000FFFF, DicomVR.UL, [], "1", "GroupLength", "Group Length", false);

    /// <summary>Entries of the public dictionary, in tag order (repeating groups last).</summary>
    public static IReadOnlyList<DicomDictionaryEntry> Entries => LazyTables.Value.All;

    /// <summary>Finds the entry of a public tag, a repeating-group tag, a group length or a private creator element.</summary>
    public static DicomDictionaryEntry? Find(DicomTag tag)
    {
        var tables = LazyTables.Value;
        if (tables.LineByTag.TryGetValue(tag.Value, out var line))
        {
            return tables.Entry(line);
        }

        if (tag.IsPrivateCreator)
        {
            return PrivateCreator;
        }

        if (tag.IsGroupLength && tag.Group != 0xFFFE)
        {
            return GroupLength;
        }

        if (tag.IsPrivate)
        {
            return null;
        }

        foreach (var repeater in tables.Repeaters)
        {
            if ((tag.Value & repeater.Mask) == repeater.Tag.Value)
            {
                return repeater;
            }
        }

        return null;
    }

    /// <summary>The VR for implicit VR decoding: the dictionary's, UN for unknown or private elements.</summary>
    public static DicomVR VRFor(DicomTag tag) => Find(tag)?.VR ?? DicomVR.UN;

    public static DicomDictionaryEntry? FindByKeyword(string keyword) =>
        LazyKeywords.Value.TryGetValue(keyword, out var entry) ? entry : null;

    /// <summary>The keyword of a tag, or null for private and unknown tags.</summary>
    public static string? KeywordOf(DicomTag tag) => Find(tag)?.Keyword;

    /// <summary>
    /// The entry of a private data element (gggg,xxee) given its creator (the value of (gggg,00xx)), from the private
    /// dictionary (GDCM's, through pydicom); null when the creator or element is unknown.
    /// </summary>
    public static DicomDictionaryEntry? FindPrivate(string creator, DicomTag tag)
    {
        var table = LazyPrivate.Value;
        var key = string.Create(CultureInfo.InvariantCulture, $"{creator.Trim()}|{tag.Group:X4}|{tag.Element & 0xFF:X2}");
        if (table.TryGetValue(key, out var entry))
        {
            return entry;
        }

        return table.TryGetValue(string.Create(CultureInfo.InvariantCulture, $"{creator.Trim()}|{tag.Group:X4}|={tag.Element:X4}"), out entry) ? entry : null;
    }

    /// <summary>A registered UID (transfer syntax, SOP class, well-known instance...), or null.</summary>
    public static DicomUidEntry? FindUid(string uid) =>
        LazyUids.Value.TryGetValue(uid, out var entry) ? entry : null;

    public static IEnumerable<DicomUidEntry> Uids => LazyUids.Value.Values;

    // Each table is built on first use, and as a plain Dictionary: frozen string-keyed tables cost tens of milliseconds
    // to build (measured: 55 ms for the public tables, 34 ms for the private one), paid by every short-lived
    // `vigie scan` or `vigie dump`, for lookups that are not measurably faster.
    private static readonly Lazy<Dictionary<string, DicomDictionaryEntry>> LazyKeywords = new(
        () => LazyTables.Value.All.Where(e => e.Keyword.Length > 0).GroupBy(e => e.Keyword, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal),
        LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<Dictionary<string, DicomUidEntry>> LazyUids = new(BuildUids, LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<Dictionary<string, DicomDictionaryEntry>> LazyPrivate = new(BuildPrivate, LazyThreadSafetyMode.ExecutionAndPublication);

    private static Dictionary<string, DicomDictionaryEntry> BuildPrivate()
    {
        var result = new Dictionary<string, DicomDictionaryEntry>(10_000, StringComparer.Ordinal);
        foreach (var line in DicomPrivateDictionaryData.Elements.Split('\n'))
        {
            var f = line.Split('|');
            var group = ushort.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var element = f[2][0] == '='
                ? ushort.Parse(f[2].AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                : (ushort)(0x1000 | byte.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            var vr = DicomVRInfo.Parse(f[3]);
            result.TryAdd($"{f[0]}|{f[1]}|{f[2]}", new DicomDictionaryEntry(new DicomTag(group, element), 0xFFFFFFFF, vr == DicomVR.None ? DicomVR.UN : vr, [],
                f[4], string.Empty, f[5], false));
        }

        return result;
    }

    // Only the tag and mask of each line are read up front (well under a millisecond); an entry is parsed the first
    // time it is looked up. A file uses a hundred-odd of the ~5,000 elements, and every short-lived command reads one.
    private static Tables Build()
    {
        var data = DicomDictionaryData.Elements;
        var starts = new List<int>(5000);
        var lineByTag = new Dictionary<uint, int>(5000);
        var repeaterLines = new List<int>();
        for (var start = 0; start < data.Length;)
        {
            var end = data.IndexOf('\n', start);
            if (end < 0)
            {
                end = data.Length;
            }

            var line = starts.Count;
            starts.Add(start);
            var tag = uint.Parse(data.AsSpan(start, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var mask = uint.Parse(data.AsSpan(start + 9, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (mask == 0xFFFFFFFF)
            {
                lineByTag[tag] = line;
            }
            else
            {
                repeaterLines.Add(line);
            }

            start = end + 1;
        }

        starts.Add(data.Length + 1);
        return new Tables(data, [.. starts], lineByTag, [.. repeaterLines]);
    }

    private static Dictionary<string, DicomUidEntry> BuildUids()
    {
        var uids = new Dictionary<string, DicomUidEntry>(StringComparer.Ordinal);
        foreach (var line in DicomUids.Registry.Split('\n'))
        {
            var f = line.Split('|');
            uids[f[0]] = new DicomUidEntry(f[0], f[1], f[2], f[3], f[4] == "1");
        }

        return uids;
    }

    private sealed class Tables(string data, int[] lineStarts, Dictionary<uint, int> lineByTag, int[] repeaterLines)
    {
        private readonly DicomDictionaryEntry?[] _entries = new DicomDictionaryEntry?[lineStarts.Length - 1];
        private List<DicomDictionaryEntry>? _all;
        private DicomDictionaryEntry[]? _repeaters;

        public Dictionary<uint, int> LineByTag { get; } = lineByTag;

        public DicomDictionaryEntry[] Repeaters => _repeaters ??= [.. repeaterLines.Select(Entry)];

        public List<DicomDictionaryEntry> All => _all ??= [.. Enumerable.Range(0, _entries.Length).Select(Entry)];

        public DicomDictionaryEntry Entry(int line)
        {
            if (Volatile.Read(ref _entries[line]) is { } known)
            {
                return known;
            }

            // Parsing twice in a race is harmless: both results are equal and the first one stored wins.
            var f = data.Substring(lineStarts[line], lineStarts[line + 1] - 1 - lineStarts[line]).Split('|');
            var entry = new DicomDictionaryEntry(
                new DicomTag(uint.Parse(f[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture)),
                uint.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                f[2] == "None" ? DicomVR.None : DicomVRInfo.Parse(f[2]),
                f[3].Length == 0 ? [] : f[3].Split(',').Select(v => DicomVRInfo.Parse(v)).ToArray(),
                f[4],
                f[5],
                f[6],
                f[7] == "1");
            return Interlocked.CompareExchange(ref _entries[line], entry, null) ?? entry;
        }
    }
}

/// <summary>An entry of the UID registry (PS3.6 Annex A).</summary>
public sealed record DicomUidEntry(string Uid, string Name, string Type, string Keyword, bool IsRetired);
