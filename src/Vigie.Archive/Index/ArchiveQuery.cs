using Vigie.Archive.Storage;

namespace Vigie.Archive.Index;

/// <summary>The C-FIND query/retrieve levels.</summary>
public enum QueryLevel
{
    Patient,
    Study,
    Series,
    Instance,
}

/// <summary>How a key's value is compared (the VR family). Inferred for the tags in <see cref="DicomTags"/> when not given.</summary>
public enum QueryValueKind
{
    /// <summary>LO, SH, CS, LT...: exact (case-sensitive) or wildcard.</summary>
    Text,

    /// <summary>PN: wildcard, compared without case or accents.</summary>
    PersonName,

    /// <summary>UI: exact or a backslash-separated list.</summary>
    Uid,

    /// <summary>DA: exact or range (a-b, a-, -b).</summary>
    Date,

    /// <summary>TM: exact or range.</summary>
    Time,

    /// <summary>DT: exact or range.</summary>
    DateTime,
}

/// <summary>A C-FIND matching key: <paramref name="Value"/> in DICOM matching syntax (empty or "*" matches anything).</summary>
public sealed record QueryKey(uint Tag, string Value, QueryValueKind? Kind = null);

/// <summary>
/// A query on the index. The index narrows candidates with keyed hashes where it can (Patient ID, name prefixes,
/// birth date, UIDs and UID lists, accession number, study month), decrypts the candidates and keeps those that match
/// every key (<see cref="AttributeMatcher"/>). Keys of levels below <see cref="Level"/> are ignored.
/// </summary>
public sealed record ArchiveQuery(QueryLevel Level, IReadOnlyList<QueryKey> Keys)
{
    /// <summary>Most matches returned.</summary>
    public int Limit { get; init; } = 1000;

    /// <summary>Adds the numbers of related studies, series and instances to each match.</summary>
    public bool IncludeCounts { get; init; }

    /// <summary>
    /// Also the numbers related to these parents of each match (a study's patient: Number of Patient Related Studies at
    /// STUDY level), in <see cref="QueryMatch.ParentCounts"/>. Levels at or below <see cref="Level"/> are ignored.
    /// </summary>
    public IReadOnlyCollection<QueryLevel> ParentCounts { get; init; } = [];
}

/// <summary>Numbers of related entities (C-FIND's Number of ... Related ... attributes).</summary>
public sealed record RelatedCounts(long Studies, long Series, long Instances);

/// <summary>
/// One match: the decrypted attributes of the entity and its parents merged, its row ids, and for an instance the
/// object of its current version.
/// </summary>
public sealed record QueryMatch(
    QueryLevel Level,
    AttributeSet Attributes,
    long PatientRowId,
    long? StudyRowId,
    long? SeriesRowId,
    long? InstanceRowId,
    ObjectId? ObjectId,
    long? ObjectLength,
    int? Version,
    RelatedCounts? Counts)
{
    /// <summary>The numbers related to the parents asked for in <see cref="ArchiveQuery.ParentCounts"/>.</summary>
    public IReadOnlyDictionary<QueryLevel, RelatedCounts> ParentCounts { get; init; } = new Dictionary<QueryLevel, RelatedCounts>();

    /// <summary>The numbers related to the match itself or to one of its parents; null when they were not asked for.</summary>
    public RelatedCounts? CountsOf(QueryLevel level) => level == Level ? Counts : ParentCounts.GetValueOrDefault(level);
}

/// <param name="Incomplete">True when the candidate limit stopped the scan before every candidate was checked, or more than Limit matched.</param>
public sealed record QueryResult(IReadOnlyList<QueryMatch> Matches, int CandidatesScanned, bool Incomplete)
{
    /// <summary>
    /// Candidate rows left out because their sealed attributes did not open bound to their parent (and version): moved or
    /// altered in the database (since 2026-12-07). The caller logs and alerts with these row ids; no identifier is known.
    /// </summary>
    public IReadOnlyList<IndexRowRef> Tampered { get; init; } = [];
}

/// <summary>An index row by level and row id: what can be named about a row whose attributes do not open.</summary>
public sealed record IndexRowRef(QueryLevel Level, long RowId)
{
    public override string ToString() => $"{Level.ToString().ToLowerInvariant()} #{RowId}";
}
