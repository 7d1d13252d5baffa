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

    /// <summary>
    /// OpenDocument written as one XML file (.fodt, .fods, .fodp, .fodg: an <c>office:document</c> root), which
    /// LibreOffice opens as it opens the zipped form (read as plain XML, its macros unseen, until 2026-12-07).
    /// </summary>
    FlatOpenDocument,

    /// <summary>
    /// Microsoft Office XML that Word and Excel open as a document: a flat OPC package (<c>pkg:package</c>),
    /// WordprocessingML 2003 (<c>w:wordDocument</c>) or SpreadsheetML 2003 (<c>ss:Workbook</c>); plain XML until 2026-12-07.
    /// </summary>
    OfficeXml,
}
