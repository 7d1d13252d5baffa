namespace Vigie.Inspection;

/// <summary>What content is, decided from its bytes only (never from a name or a declared MIME type).</summary>
public enum ContentType
{
    Unknown,
    Text,
    Dicom,
    Pdf,
    Zip,
    Ooxml,
    OpenDocument,
    Ole2,
    Rtf,
    Mime,
    Gzip,
    Bzip2,
    Xz,
    SevenZip,
    Rar,
    Tar,
    Pe,
    Elf,
    MachO,
    Script,
    Html,
    Xml,
    Jpeg,
    Png,
    Gif,
    Jpeg2000,

    /// <summary>Outlook's Transport Neutral Encapsulation Format (winmail.dat), which wraps attachments.</summary>
    Tnef,
}
