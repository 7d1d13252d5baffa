using System.IO.Compression;
using System.Security;
using System.Text;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>Writes OOXML packages with System.IO.Compression: parts, content types, relationships.</summary>
internal sealed class OoxmlBuilder
{
    public const string WordMain = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
    public const string WordMacroMain = "application/vnd.ms-word.document.macroEnabled.main+xml";
    public const string ExcelMain = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml";
    public const string ExcelMacroMain = "application/vnd.ms-excel.sheet.macroEnabled.main+xml";
    public const string VbaProjectType = "application/vnd.ms-office.vbaProject";
    public const string RelVba = "http://schemas.microsoft.com/office/2006/relationships/vbaProject";
    public const string RelAttachedTemplate = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate";
    public const string RelOleObject = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject";
    public const string RelHyperlink = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink";
    public const string RelImage = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/image";
    public const string RelSettings = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/settings";

    private readonly Dictionary<string, byte[]> _parts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _overrides = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(string Id, string Type, string Target, bool External)>> _rels = new(StringComparer.Ordinal);

    public OoxmlBuilder Part(string name, string contentType, string xml) => Part(name, contentType, Encoding.UTF8.GetBytes(xml));

    public OoxmlBuilder Part(string name, string? contentType, byte[] bytes)
    {
        _parts[name] = bytes;
        if (contentType is not null)
        {
            _overrides["/" + name] = contentType;
        }

        return this;
    }

    public OoxmlBuilder Relationship(string source, string type, string target, bool external = false)
    {
        if (!_rels.TryGetValue(source, out var list))
        {
            _rels[source] = list = [];
        }

        list.Add(($"rId{list.Count + 1}", type, target, external));
        return this;
    }

    public static OoxmlBuilder Word(string bodyXml = "<w:p><w:r><w:t>Discharge summary (synthetic)</w:t></w:r></w:p>", string mainType = WordMain) =>
        new OoxmlBuilder()
            .Part("word/document.xml", mainType,
                $"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"><w:body>{bodyXml}</w:body></w:document>")
            .Relationship("", "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument", "word/document.xml");

    public static OoxmlBuilder Excel(string sheetXml = "<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>42</t></is></c></row></sheetData>", string mainType = ExcelMain) =>
        new OoxmlBuilder()
            .Part("xl/workbook.xml", mainType,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"><sheets><sheet name=\"S\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>")
            .Part("xl/worksheets/sheet1.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
                $"<?xml version=\"1.0\" encoding=\"UTF-8\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">{sheetXml}</worksheet>")
            .Relationship("", "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument", "xl/workbook.xml")
            .Relationship("xl/workbook.xml", "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet", "worksheets/sheet1.xml");

    public byte[] Build()
    {
        using var output = new MemoryStream();
        using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            var types = new StringBuilder("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">");
            types.Append("<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>");
            types.Append("<Default Extension=\"xml\" ContentType=\"application/xml\"/>");
            foreach (var (name, type) in _overrides)
            {
                types.Append($"<Override PartName=\"{SecurityElement.Escape(name)}\" ContentType=\"{SecurityElement.Escape(type)}\"/>");
            }

            types.Append("</Types>");
            Write(zip, "[Content_Types].xml", Encoding.UTF8.GetBytes(types.ToString()));
            foreach (var (source, rels) in _rels)
            {
                var relsName = source.Length == 0 ? "_rels/.rels" : $"{Path.GetDirectoryName(source)!.Replace('\\', '/')}/_rels/{Path.GetFileName(source)}.rels";
                var xml = new StringBuilder("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">");
                foreach (var (id, type, target, external) in rels)
                {
                    xml.Append($"<Relationship Id=\"{id}\" Type=\"{type}\" Target=\"{SecurityElement.Escape(target)}\"{(external ? " TargetMode=\"External\"" : "")}/>");
                }

                xml.Append("</Relationships>");
                Write(zip, relsName, Encoding.UTF8.GetBytes(xml.ToString()));
            }

            foreach (var (name, bytes) in _parts)
            {
                Write(zip, name, bytes);
            }
        }

        return output.ToArray();
    }

    private static void Write(ZipArchive zip, string name, byte[] bytes)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
        using var stream = entry.Open();
        stream.Write(bytes);
    }
}

internal static class OoxmlSamples
{
    public static byte[] CleanDocx() =>
        OoxmlBuilder.Word("<w:p><w:hyperlink r:id=\"rId2\"><w:r><w:t>hospital site</w:t></w:r></w:hyperlink></w:p><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p>")
            .Relationship("word/document.xml", OoxmlBuilder.RelSettings, "settings.xml")
            .Relationship("word/document.xml", OoxmlBuilder.RelHyperlink, "https://www.hospital.example/care", external: true)
            .Part("word/settings.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml",
                "<w:settings xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>")
            .Build();

    public static byte[] CleanXlsx() => OoxmlBuilder.Excel().Build();
}
