namespace Vigie.Archive.Index;

/// <summary>The DICOM tags the index itself looks at (group &lt;&lt; 16 | element). Everything else is carried sealed.</summary>
public static class DicomTags
{
    public const uint SopClassUid = 0x0008_0016;
    public const uint SopInstanceUid = 0x0008_0018;
    public const uint StudyDate = 0x0008_0020;
    public const uint SeriesDate = 0x0008_0021;
    public const uint StudyTime = 0x0008_0030;
    public const uint AccessionNumber = 0x0008_0050;
    public const uint Modality = 0x0008_0060;
    public const uint ModalitiesInStudy = 0x0008_0061;
    public const uint ReferringPhysicianName = 0x0008_0090;
    public const uint StudyDescription = 0x0008_1030;
    public const uint SeriesDescription = 0x0008_103E;
    public const uint PatientName = 0x0010_0010;
    public const uint PatientId = 0x0010_0020;
    public const uint IssuerOfPatientId = 0x0010_0021;
    public const uint PatientBirthDate = 0x0010_0030;
    public const uint PatientSex = 0x0010_0040;
    public const uint StudyInstanceUid = 0x0020_000D;
    public const uint SeriesInstanceUid = 0x0020_000E;
    public const uint StudyId = 0x0020_0010;
    public const uint SeriesNumber = 0x0020_0011;
    public const uint InstanceNumber = 0x0020_0013;
}
