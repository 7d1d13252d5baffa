using System.Globalization;
using Vigie.Archive.Index;
using Vigie.Dicom;
using Vigie.Gateway.Ingest;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Dimse;

/// <summary>
/// C-FIND identifiers to index queries and back (PS3.4 C.4.1): matching keys become query keys in DICOM matching syntax
/// (the index applies universal, single value, wildcard, range and UID list matching), return keys are filled from the
/// matched attribute sets.
/// </summary>
internal static class QueryTranslator
{
    /// <summary>The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).</summary>
    private static readonly (QueryLevel Level, DicomTag Tag)[] UniqueKeys =
    [
        (QueryLevel.Patient, DicomTags.PatientID), (QueryLevel.Study, DicomTags.StudyInstanceUID),
        (QueryLevel.Series, DicomTags.SeriesInstanceUID), (QueryLevel.Instance, DicomTags.SOPInstanceUID),
    ];

    /// <summary>The level each indexed attribute is kept at: what C-FIND can match on.</summary>
    private static readonly Dictionary<uint, QueryLevel> IndexedLevels = BuildIndexedLevels();

    public static bool TryLevel(DicomDataset identifier, string informationModel, out QueryLevel level, out string? problem)
    {
        problem = null;
        level = QueryLevel.Study;
        // CS values are upper case (PS3.5 6.2): `study` is no level (accepted before 2026-12-07).
        var text = identifier.GetSingleString(DicomTags.QueryRetrieveLevel)?.Trim();
        switch (text)
        {
            case "PATIENT":
                level = QueryLevel.Patient;
                if (informationModel is DicomUids.StudyRootQueryRetrieveInformationModelFind or DicomUids.StudyRootQueryRetrieveInformationModelGet
                    or DicomUids.StudyRootQueryRetrieveInformationModelMove)
                {
                    problem = "PATIENT level is not part of the Study Root information model";
                    return false;
                }

                return true;
            case "STUDY":
                level = QueryLevel.Study;
                return true;
            case "SERIES":
                level = QueryLevel.Series;
                return true;
            case "IMAGE":
                level = QueryLevel.Instance;
                return true;
            default:
                problem = $"Query/Retrieve Level '{text}' is not PATIENT, STUDY, SERIES or IMAGE";
                return false;
        }
    }

    /// <summary>
    /// The matching keys of the identifier (non-empty values), with the kind of matching their VR implies. A key Vigie
    /// does not index, or one of a level below the query's, cannot be matched: it is returned empty, as PS3.4 C.2.2.1.1
    /// lets an SCP do with an optional key, rather than matching nothing.
    /// </summary>
    public static ArchiveQuery ToQuery(DicomDataset identifier, QueryLevel level, int limit)
    {
        var keys = new List<QueryKey>();
        var counts = new HashSet<QueryLevel>();
        foreach (var element in identifier)
        {
            if (element.Tag == DicomTags.QueryRetrieveLevel || element.Tag == DicomTags.SpecificCharacterSet || element.Tag.Group == 0x0002)
            {
                continue;
            }

            if (CountLevel(element.Tag) is { } countLevel && countLevel <= level)
            {
                counts.Add(countLevel);
            }

            if (element is not DicomValueElement value || (value.Length == 0 && element.Tag != DicomTags.ModalitiesInStudy)
                || !(DicomVRInfo.IsString(value.VR) || value.VR == DicomVR.US) || !IndexedLevels.TryGetValue(element.Tag.Value, out var keyLevel) || keyLevel > level)
            {
                continue;
            }

            // Rows, Columns and other US keys: single value matching on the number, as the index keeps it.
            var text = value.VR == DicomVR.US ? string.Join('\\', IndexedAttributes.NumberStrings(value)) : value.GetText(identifier.CharacterSet);
            if (element.Tag == DicomTags.ModalitiesInStudy && text.Length == 0)
            {
                // Derived from the series: the index computes it only when the key is present, so ask with universal matching.
                text = "*";
            }

            if (text.Length == 0)
            {
                continue;
            }

            keys.Add(new QueryKey(element.Tag.Value, text, Kind(value.VR)));
        }

        return new ArchiveQuery(level, keys) { Limit = limit, IncludeCounts = counts.Contains(level), ParentCounts = [.. counts.Where(l => l < level)] };
    }

    /// <summary>
    /// Whether the identifier gives a matching value on a key Vigie does not match on (not indexed, of a level below
    /// the query's, a sequence with a value in an item, Timezone Offset From UTC): its matches are then sent with
    /// FF01, "one or more Optional Keys were not supported for matching" (PS3.4 C.4.1.1.4), not FF00.
    /// </summary>
    public static bool HasUnmatchedKeys(DicomDataset identifier, QueryLevel level)
    {
        foreach (var element in identifier)
        {
            if (element.Tag == DicomTags.QueryRetrieveLevel || element.Tag == DicomTags.SpecificCharacterSet || element.Tag.Group == 0x0002
                || CountLevel(element.Tag) is not null)
            {
                continue;
            }

            if (element is DicomSequence sequence)
            {
                // An empty item asks for the sequence to be returned (universal matching); a value in it asks to match.
                if (sequence.Items.Any(item => HasValue(item)))
                {
                    return true;
                }

                continue;
            }

            if (element is not DicomValueElement { Length: > 0 } value || !HasValue(value, identifier))
            {
                continue;
            }

            var matched = (DicomVRInfo.IsString(value.VR) || value.VR == DicomVR.US) && IndexedLevels.TryGetValue(element.Tag.Value, out var keyLevel) && keyLevel <= level;
            if (!matched)
            {
                return true;
            }
        }

        return false;
    }

    private static bool HasValue(DicomDataset item) => item.Any(e => e is DicomSequence s ? s.Items.Any(HasValue) : e is DicomValueElement v && HasValue(v, item));

    private static bool HasValue(DicomValueElement value, DicomDataset owner) =>
        value.Length > 0 && (!DicomVRInfo.IsString(value.VR) || value.GetText(owner.CharacterSet).Trim(' ', '\0', '\\', '*').Length > 0);

    /// <summary>
    /// The instances a C-GET or C-MOVE takes, as an IMAGE level query (PS3.4 C.4.2.2.1, C.4.3.2.1): the unique key of
    /// its level (one value or a UID list, no wildcard) is required; those of the levels above are matched when they
    /// hold a value; every other key is ignored. So a retrieve names what it takes, and "*" never empties the archive.
    /// </summary>
    public static ArchiveQuery? ToRetrieveQuery(DicomDataset identifier, QueryLevel level, int limit, out string? problem)
    {
        var keys = new List<QueryKey>();
        problem = null;
        foreach (var (keyLevel, tag) in UniqueKeys.Where(u => u.Level <= level))
        {
            var text = identifier[tag] is DicomValueElement { Length: > 0 } value && DicomVRInfo.IsString(value.VR)
                ? value.GetText(identifier.CharacterSet).Trim().TrimEnd('\0')
                : "";
            var wildcard = text.IndexOfAny(['*', '?']) >= 0;
            if (keyLevel == level && (text.Length == 0 || wildcard))
            {
                problem = text.Length == 0
                    ? $"a {LevelName(level)} level retrieve needs its unique key {DicomDictionary.KeywordOf(tag)} {tag}"
                    : $"{DicomDictionary.KeywordOf(tag)} {tag} is the unique key of a {LevelName(level)} level retrieve: it takes no wildcard";
                return null;
            }

            if (text.Length == 0 || wildcard)
            {
                // A parent's key (the Study Root model has no patient key): adds nothing to what the level's key names.
                continue;
            }

            if (tag == DicomTags.PatientID && text.Contains('\\', StringComparison.Ordinal))
            {
                // PS3.4 C.4.2.2.1: only UIDs come as a list; a patient is named by one ID (before 2026-12-07 a list sent every patient named).
                problem = $"{DicomDictionary.KeywordOf(tag)} {tag} takes one value in a retrieve, not a list";
                return null;
            }

            keys.Add(new QueryKey(tag.Value, text, tag == DicomTags.PatientID ? QueryValueKind.Text : QueryValueKind.Uid));
        }

        // A Patient ID is unique only within its issuer's domain: the issuer, when given, completes the patient's identity,
        // and is matched as C-FIND matches it (before 2026-12-07 it was ignored, and the same ID under another issuer was sent too).
        if (identifier[DicomTags.IssuerOfPatientID] is DicomValueElement { Length: > 0 } issuer && DicomVRInfo.IsString(issuer.VR)
            && issuer.GetText(identifier.CharacterSet) is { Length: > 0 } issuerText && issuerText.Trim(' ', '\0').Length > 0)
        {
            keys.Add(new QueryKey(DicomTags.IssuerOfPatientID.Value, issuerText, QueryValueKind.Text));
        }

        // The instances to send, whatever the level they were named at.
        return new ArchiveQuery(QueryLevel.Instance, keys) { Limit = limit };
    }

    private static string LevelName(QueryLevel level) => level == QueryLevel.Instance ? "IMAGE" : level.ToString().ToUpperInvariant();

    private static QueryLevel? CountLevel(DicomTag tag) =>
        tag == DicomTags.NumberOfPatientRelatedStudies || tag == DicomTags.NumberOfPatientRelatedSeries || tag == DicomTags.NumberOfPatientRelatedInstances
            ? QueryLevel.Patient
            : tag == DicomTags.NumberOfStudyRelatedSeries || tag == DicomTags.NumberOfStudyRelatedInstances ? QueryLevel.Study
            : tag == DicomTags.NumberOfSeriesRelatedInstances ? QueryLevel.Series
            : null;

    private static Dictionary<uint, QueryLevel> BuildIndexedLevels()
    {
        var levels = new Dictionary<uint, QueryLevel> { [DicomTags.ModalitiesInStudy.Value] = QueryLevel.Study };
        foreach (var (level, tags) in new[]
                 {
                     (QueryLevel.Patient, IndexedAttributes.Patient), (QueryLevel.Study, IndexedAttributes.Study),
                     (QueryLevel.Series, IndexedAttributes.Series), (QueryLevel.Instance, IndexedAttributes.Instance),
                 })
        {
            foreach (var tag in tags)
            {
                levels[tag.Value] = level;
            }
        }

        return levels;
    }

    /// <summary>The response identifier: every key the requestor asked for, filled where the index knows the value.</summary>
    public static DicomDataset ToResponse(DicomDataset identifier, QueryMatch match, string retrieveAE)
    {
        var response = new DicomDataset();
        var attributes = match.Attributes;
        var nonAscii = identifier.Any(e => attributes.TryGetValue(e.Tag.Value, out var list) && list.Any(v => v.Any(c => c > 0x7F)));
        if (nonAscii)
        {
            response.SetString(DicomTags.SpecificCharacterSet, DicomVR.CS, "ISO_IR 192");
        }

        response.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, identifier.GetSingleString(DicomTags.QueryRetrieveLevel)?.Trim() ?? "STUDY");
        response.SetString(DicomTags.RetrieveAETitle, DicomVR.AE, retrieveAE);
        foreach (var element in identifier)
        {
            var tag = element.Tag;
            if (tag == DicomTags.QueryRetrieveLevel || tag == DicomTags.SpecificCharacterSet || tag == DicomTags.RetrieveAETitle || tag.Group == 0x0002)
            {
                continue;
            }

            if (element is DicomSequence)
            {
                // Sequence matching is not supported: the key is returned empty, as PS3.4 C.2.2.1.3 allows.
                response.AddOrUpdate(new DicomSequence(tag));
                continue;
            }

            if (CountLevel(tag) is { } countLevel)
            {
                if (match.CountsOf(countLevel) is { } counts)
                {
                    var count = tag == DicomTags.NumberOfPatientRelatedStudies ? counts.Studies
                        : tag == DicomTags.NumberOfPatientRelatedSeries || tag == DicomTags.NumberOfStudyRelatedSeries ? counts.Series
                        : counts.Instances;
                    response.SetString(tag, DicomVR.IS, count.ToString(CultureInfo.InvariantCulture));
                }
                else
                {
                    // A count of a level below the match (Number of Series Related Instances at STUDY level): not an attribute of it.
                    response.SetBytes(tag, DicomVR.IS, ReadOnlyMemory<byte>.Empty);
                }

                continue;
            }

            var vr = element.VR == DicomVR.None || element.VR == DicomVR.UN ? DicomDictionary.VRFor(tag) : element.VR;
            if (attributes.TryGetValue(tag.Value, out var values) && values.Count > 0 && DicomVRInfo.IsString(vr))
            {
                response.SetStrings(tag, vr, values);
            }
            else if (attributes.TryGetValue(tag.Value, out values) && values.Count > 0 && vr is DicomVR.US)
            {
                response.SetUInt16(tag, values.Select(v => (ushort)double.Parse(v, CultureInfo.InvariantCulture)).ToArray());
            }
            else
            {
                response.SetBytes(tag, vr, ReadOnlyMemory<byte>.Empty);
            }
        }

        return response;
    }

    private static QueryValueKind Kind(DicomVR vr) => vr switch
    {
        DicomVR.PN => QueryValueKind.PersonName,
        DicomVR.UI => QueryValueKind.Uid,
        DicomVR.DA => QueryValueKind.Date,
        DicomVR.TM => QueryValueKind.Time,
        DicomVR.DT => QueryValueKind.DateTime,
        _ => QueryValueKind.Text,
    };
}
