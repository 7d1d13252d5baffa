using System.Globalization;
using Vigie.Archive.Index;
using Vigie.Dicom;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Dimse;

/// <summary>
/// C-FIND identifiers to index queries and back (PS3.4 C.4.1): matching keys become query keys in DICOM matching syntax
/// (the index applies universal, single value, wildcard, range and UID list matching), return keys are filled from the
/// matched attribute sets.
/// </summary>
internal static class QueryTranslator
{
    private static readonly HashSet<uint> CountTags =
    [
        DicomTags.NumberOfPatientRelatedStudies.Value, DicomTags.NumberOfPatientRelatedSeries.Value, DicomTags.NumberOfPatientRelatedInstances.Value,
        DicomTags.NumberOfStudyRelatedSeries.Value, DicomTags.NumberOfStudyRelatedInstances.Value, DicomTags.NumberOfSeriesRelatedInstances.Value,
    ];

    public static bool TryLevel(DicomDataset identifier, string informationModel, out QueryLevel level, out string? problem)
    {
        problem = null;
        level = QueryLevel.Study;
        var text = identifier.GetSingleString(DicomTags.QueryRetrieveLevel)?.Trim().ToUpperInvariant();
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

    /// <summary>The matching keys of the identifier (non-empty values), with the kind of matching their VR implies.</summary>
    public static ArchiveQuery ToQuery(DicomDataset identifier, QueryLevel level, int limit)
    {
        var keys = new List<QueryKey>();
        var wantsCounts = false;
        foreach (var element in identifier)
        {
            if (element.Tag == DicomTags.QueryRetrieveLevel || element.Tag == DicomTags.SpecificCharacterSet || element.Tag.Group == 0x0002)
            {
                continue;
            }

            wantsCounts |= CountTags.Contains(element.Tag.Value);
            if (element is not DicomValueElement value || (value.Length == 0 && element.Tag != DicomTags.ModalitiesInStudy) || !DicomVRInfo.IsString(value.VR))
            {
                continue;
            }

            var text = value.GetText(identifier.CharacterSet);
            if (element.Tag == DicomTags.ModalitiesInStudy && text.Length == 0)
            {
                // Derived from the series: the index computes it only when the key is present, so ask with universal matching.
                text = "*";
            }

            if (text.Length == 0 || CountTags.Contains(element.Tag.Value))
            {
                continue;
            }

            keys.Add(new QueryKey(element.Tag.Value, text, Kind(value.VR)));
        }

        return new ArchiveQuery(level, keys) { Limit = limit, IncludeCounts = wantsCounts };
    }

    /// <summary>The response identifier: every key the requestor asked for, filled where the index knows the value.</summary>
    public static DicomDataset ToResponse(DicomDataset identifier, QueryMatch match, string retrieveAE)
    {
        var response = new DicomDataset();
        var attributes = match.Attributes;
        var nonAscii = attributes.Values.Any(list => list.Any(v => v.Any(c => c > 0x7F)));
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

            if (CountTags.Contains(tag.Value) && match.Counts is { } counts)
            {
                var count = tag == DicomTags.NumberOfPatientRelatedStudies ? counts.Studies
                    : tag == DicomTags.NumberOfPatientRelatedSeries || tag == DicomTags.NumberOfStudyRelatedSeries ? counts.Series
                    : counts.Instances;
                response.SetString(tag, DicomVR.IS, count.ToString(CultureInfo.InvariantCulture));
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
