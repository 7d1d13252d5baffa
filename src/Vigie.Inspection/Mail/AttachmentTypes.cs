namespace Vigie.Inspection.Mail;

/// <summary>What a file name's extension or a declared MIME type promises, to compare with what the bytes are.</summary>
internal static class AttachmentTypes
{
    private static readonly ContentType[] ZipFamily = [ContentType.Zip, ContentType.Ooxml, ContentType.OpenDocument];
    private static readonly ContentType[] TextFamily = [ContentType.Text, ContentType.Html, ContentType.Xml, ContentType.Mime, ContentType.Script, ContentType.FlatOpenDocument, ContentType.OfficeXml];

    private static readonly Dictionary<string, ContentType[]> ByExtension = new(StringComparer.OrdinalIgnoreCase)
    {
        ["pdf"] = [ContentType.Pdf],
        ["doc"] = [ContentType.Ole2, ContentType.Rtf, ContentType.Html, ContentType.Xml, ContentType.Ooxml, ContentType.OfficeXml],
        ["dot"] = [ContentType.Ole2],
        ["xls"] = [ContentType.Ole2, ContentType.Html, ContentType.Xml, ContentType.Text, ContentType.Ooxml, ContentType.OfficeXml],
        ["ppt"] = [ContentType.Ole2],
        ["msg"] = [ContentType.Ole2],
        ["docx"] = [ContentType.Ooxml],
        ["docm"] = [ContentType.Ooxml],
        ["dotx"] = [ContentType.Ooxml],
        ["dotm"] = [ContentType.Ooxml],
        ["xlsx"] = [ContentType.Ooxml],
        ["xlsm"] = [ContentType.Ooxml],
        ["xltx"] = [ContentType.Ooxml],
        ["pptx"] = [ContentType.Ooxml],
        ["pptm"] = [ContentType.Ooxml],
        ["ppsx"] = [ContentType.Ooxml],
        ["odt"] = [ContentType.OpenDocument],
        ["ods"] = [ContentType.OpenDocument],
        ["odp"] = [ContentType.OpenDocument],
        ["fodt"] = [ContentType.FlatOpenDocument, ContentType.Xml],
        ["fods"] = [ContentType.FlatOpenDocument, ContentType.Xml],
        ["fodp"] = [ContentType.FlatOpenDocument, ContentType.Xml],
        ["fodg"] = [ContentType.FlatOpenDocument, ContentType.Xml],
        ["rtf"] = [ContentType.Rtf],
        ["zip"] = ZipFamily,
        ["gz"] = [ContentType.Gzip],
        ["tgz"] = [ContentType.Gzip],
        ["bz2"] = [ContentType.Bzip2],
        ["xz"] = [ContentType.Xz],
        ["7z"] = [ContentType.SevenZip],
        ["rar"] = [ContentType.Rar],
        ["tar"] = [ContentType.Tar],
        ["jpg"] = [ContentType.Jpeg, ContentType.Png],
        ["jpeg"] = [ContentType.Jpeg, ContentType.Png],
        ["png"] = [ContentType.Png],
        ["gif"] = [ContentType.Gif],
        ["jp2"] = [ContentType.Jpeg2000],
        ["dcm"] = [ContentType.Dicom],
        ["eml"] = [ContentType.Mime, ContentType.Text],
        ["txt"] = TextFamily,
        ["csv"] = TextFamily,
        ["log"] = TextFamily,
        ["htm"] = [ContentType.Html, ContentType.Text, ContentType.Xml],
        ["html"] = [ContentType.Html, ContentType.Text, ContentType.Xml],
        ["xml"] = [ContentType.Xml, ContentType.Html, ContentType.Text, ContentType.FlatOpenDocument, ContentType.OfficeXml],
        ["svg"] = [ContentType.Xml, ContentType.Html, ContentType.Text],
        ["exe"] = [ContentType.Pe],
        ["dll"] = [ContentType.Pe],
    };

    // The legacy Office types are what Windows registers for .csv, .xlsx and .docx too, and hospital information systems
    // export HTML or tab-separated text named .xls or .doc: flagging those was a daily false positive (until 2026-12-07).
    private static readonly Dictionary<string, ContentType[]> ByMimeType = new(StringComparer.OrdinalIgnoreCase)
    {
        ["application/pdf"] = [ContentType.Pdf],
        ["application/msword"] = [ContentType.Ole2, ContentType.Rtf, ContentType.Ooxml, ContentType.Html, ContentType.Xml, ContentType.OfficeXml],
        ["application/vnd.ms-excel"] = [ContentType.Ole2, ContentType.Ooxml, ContentType.Text, ContentType.Html, ContentType.Xml, ContentType.OfficeXml],
        ["application/vnd.ms-powerpoint"] = [ContentType.Ole2, ContentType.Ooxml],
        ["application/vnd.openxmlformats-officedocument.wordprocessingml.document"] = [ContentType.Ooxml],
        ["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] = [ContentType.Ooxml],
        ["application/vnd.openxmlformats-officedocument.presentationml.presentation"] = [ContentType.Ooxml],
        ["application/zip"] = ZipFamily,
        ["application/x-zip-compressed"] = ZipFamily,
        ["application/rtf"] = [ContentType.Rtf],
        ["text/rtf"] = [ContentType.Rtf],
        ["image/jpeg"] = [ContentType.Jpeg],
        ["image/png"] = [ContentType.Png],
        ["image/gif"] = [ContentType.Gif],
        ["application/dicom"] = [ContentType.Dicom],
        ["text/plain"] = TextFamily,
        ["text/csv"] = TextFamily,
        ["text/html"] = [ContentType.Html, ContentType.Text, ContentType.Xml],
        ["message/rfc822"] = [ContentType.Mime, ContentType.Text],
        ["application/gzip"] = [ContentType.Gzip],
        ["application/x-7z-compressed"] = [ContentType.SevenZip],
        ["application/ms-tnef"] = [ContentType.Tnef],
        ["application/vnd.ms-tnef"] = [ContentType.Tnef],
    };

    public static bool IsExecutable(ContentType type) => type is ContentType.Pe or ContentType.Elf or ContentType.MachO;

    /// <summary>The types the extension promises; null when the extension is unknown or absent.</summary>
    public static ContentType[]? ForExtension(string? extension) => extension is null ? null : ByExtension.GetValueOrDefault(extension);

    public static ContentType[]? ForMimeType(string? mimeType) => mimeType is null ? null : ByMimeType.GetValueOrDefault(mimeType);
}
