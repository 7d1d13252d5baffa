using System.Globalization;
using Vigie.Archive.Index;
using Vigie.Dicom;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// The attributes kept (sealed) in the index at each level: what C-FIND matches and returns, and what a retrieve needs.
/// Everything else stays only in the encrypted object.
/// </summary>
internal static class IndexedAttributes
{
    public static readonly DicomTag[] Patient =
        [DicomTags.PatientName, DicomTags.PatientID, DicomTags.IssuerOfPatientID, DicomTags.PatientBirthDate, DicomTags.PatientSex, DicomTags.OtherPatientIDs];

    public static readonly DicomTag[] Study =
    [
        DicomTags.StudyInstanceUID, DicomTags.StudyDate, DicomTags.StudyTime, DicomTags.AccessionNumber, DicomTags.StudyID, DicomTags.StudyDescription,
        DicomTags.ReferringPhysicianName,
    ];

    public static readonly DicomTag[] Series =
    [
        DicomTags.SeriesInstanceUID, DicomTags.Modality, DicomTags.SeriesNumber, DicomTags.SeriesDescription, DicomTags.BodyPartExamined,
        DicomTags.SeriesDate, DicomTags.SeriesTime, DicomTags.Laterality,
    ];

    public static readonly DicomTag[] Instance =
    [
        DicomTags.SOPInstanceUID, DicomTags.SOPClassUID, DicomTags.InstanceNumber, DicomTags.Rows, DicomTags.Columns, DicomTags.NumberOfFrames,
        DicomTags.ContentDate, DicomTags.ContentTime, DicomTags.AcquisitionDateTime,
    ];

    /// <summary>Where the original transfer syntax UID is kept, to announce it when the object is retrieved or forwarded.</summary>
    public static readonly DicomTag TransferSyntax = DicomTags.TransferSyntaxUID;

    /// <summary>The index entry of a parsed object; null with a reason when a required UID is missing.</summary>
    public static InstanceIndexEntry? ToEntry(DicomFile file, Archive.Storage.ObjectId objectId, long length, AttributeSet source, out string? problem)
    {
        var ds = file.Dataset;
        var sopInstance = Uid(ds, DicomTags.SOPInstanceUID);
        var sopClass = Uid(ds, DicomTags.SOPClassUID);
        var study = Uid(ds, DicomTags.StudyInstanceUID);
        var series = Uid(ds, DicomTags.SeriesInstanceUID);
        problem = sopInstance is null ? "no SOP Instance UID"
            : sopClass is null ? "no SOP Class UID"
            : study is null ? "no Study Instance UID"
            : series is null ? "no Series Instance UID"
            : null;
        if (problem is not null)
        {
            return null;
        }

        var instance = Collect(ds, Instance).With(TransferSyntax.Value, file.TransferSyntax.Uid);
        return new InstanceIndexEntry(
            new PatientEntry(ds.GetSingleString(DicomTags.PatientID) ?? string.Empty, ds.GetSingleString(DicomTags.IssuerOfPatientID), Collect(ds, Patient)),
            new StudyEntry(study!, Collect(ds, Study)),
            new SeriesEntry(series!, Collect(ds, Series)),
            new InstanceEntry(sopInstance!, sopClass!, instance),
            objectId,
            length,
            source);
    }

    /// <summary>The values of the listed attributes, decoded with the dataset's character set.</summary>
    public static AttributeSet Collect(DicomDataset ds, IEnumerable<DicomTag> tags)
    {
        var values = new List<KeyValuePair<uint, IReadOnlyList<string>>>();
        foreach (var tag in tags)
        {
            if (ds[tag] is not DicomValueElement element)
            {
                continue;
            }

            IReadOnlyList<string> strings = DicomVRInfo.IsString(element.VR) ? element.GetStrings(ds.CharacterSet) : NumberStrings(element);
            values.Add(new(tag.Value, strings));
        }

        return new AttributeSet(values);
    }

    /// <summary>A binary number's values as the index keeps them (and as C-FIND keys must be to match them).</summary>
    internal static string[] NumberStrings(DicomValueElement element) =>
        element.GetNumbers().Select(n => n.ToString(CultureInfo.InvariantCulture)).ToArray();

    private static string? Uid(DicomDataset ds, DicomTag tag) => ds.GetSingleString(tag) is { Length: > 0 } uid ? DicomText.TrimUid(uid) : null;
}
