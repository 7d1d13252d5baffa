using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>
/// Microsoft Office's single-file XML documents (flat OPC, Word 2003 XML, Excel 2003 XML), which Word and Excel open
/// as documents whatever their name says: they were plain XML, clean, until 2026-12-07.
/// </summary>
public sealed class OfficeXmlTests
{
    private const string Package = "http://schemas.microsoft.com/office/2006/xmlPackage";
    private const string Word2003 = "http://schemas.microsoft.com/office/word/2003/wordml";
    private const string Spreadsheet2003 = "urn:schemas-microsoft-com:office:spreadsheet";
    private const string WordMain = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

    private static string FlatOpc(string documentType, string body, string parts = "", string relationships = "") =>
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n<?mso-application progid=\"Word.Document\"?>\n"
        + $"<pkg:package xmlns:pkg=\"{Package}\">"
        + "<pkg:part pkg:name=\"/_rels/.rels\" pkg:contentType=\"application/vnd.openxmlformats-package.relationships+xml\"><pkg:xmlData>"
        + "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" "
        + "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships></pkg:xmlData></pkg:part>"
        + "<pkg:part pkg:name=\"/word/_rels/settings.xml.rels\" pkg:contentType=\"application/vnd.openxmlformats-package.relationships+xml\"><pkg:xmlData>"
        + $"<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">{relationships}</Relationships></pkg:xmlData></pkg:part>"
        + $"<pkg:part pkg:name=\"/word/document.xml\" pkg:contentType=\"{documentType}\"><pkg:xmlData>"
        + $"<w:document xmlns:w=\"{WordMain}\"><w:body><w:p><w:r><w:t>Compte rendu</w:t></w:r></w:p>{body}</w:body></w:document></pkg:xmlData></pkg:part>"
        + parts + "</pkg:package>";

    private const string Docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
    private const string Docm = "application/vnd.ms-word.document.macroEnabled.main+xml";

    private static string BinaryPart(string name, string type, byte[] data) =>
        $"<pkg:part pkg:name=\"{name}\" pkg:contentType=\"{type}\" pkg:compression=\"store\"><pkg:binaryData>{Convert.ToBase64String(data, Base64FormattingOptions.InsertLineBreaks)}</pkg:binaryData></pkg:part>";

    private static string Word2003Document(string body, string rootAttributes = "", string prolog = "") =>
        $"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<?mso-application progid=\"Word.Document\"?>{prolog}\n"
        + $"<w:wordDocument xmlns:w=\"{Word2003}\" {rootAttributes}>{body}<w:body><w:p><w:r><w:t>Compte rendu</w:t></w:r></w:p></w:body></w:wordDocument>";

    [Fact]
    public async Task Regression_a_flat_opc_word_document_with_a_vba_project_was_plain_xml_and_clean()
    {
        var xml = FlatOpc(Docm, "", BinaryPart("/word/vbaProject.bin", "application/vnd.ms-office.vbaProject", VbaSamples.VbaProjectBin()));
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(xml), "compte-rendu.xml");

        Assert.Equal(nameof(ContentType.OfficeXml), verdict.ContentType);
        verdict.IsMalicious();
        Assert.Contains("word/vbaProject.bin", verdict.Has("office.vba-macro", "").Message, StringComparison.Ordinal);
        verdict.Has("office.macro-enabled");
        // The part's bytes are the zipped package's entry: the macro's own findings come from its OLE2 reading.
        verdict.Has("office.vba-autoexec", "word/vbaProject.bin");

        // Declared macro-free, it is disguised; named .doc, Word opens it all the same.
        var disguised = await TestInspection.InspectAsync(
            Encoding.UTF8.GetBytes(FlatOpc(Docx, "", BinaryPart("/word/vbaProject.bin", "application/vnd.ms-office.vbaProject", VbaSamples.VbaProjectBin()))), "cr.doc");
        disguised.Has("office.macro-disguised");
    }

    [Fact]
    public async Task Regression_a_flat_opc_document_with_a_remote_template_or_a_dde_field_was_clean()
    {
        var template = FlatOpc(Docx, "", relationships: "<Relationship Id=\"rId9\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate\" "
            + "Target=\"https://templates.example.invalid/lettre.dotm\" TargetMode=\"External\"/>");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(template), "lettre.xml")).Has("office.remote-template");

        var dde = FlatOpc(Docx, "<w:p><w:fldSimple w:instr=\"DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k echo inert&quot;\"/></w:p>");
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(dde), "lettre.xml");
        verdict.IsMalicious();
        Assert.Contains("word/document.xml", verdict.Has("office.dde").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_a_word_2003_xml_document_with_a_vba_project_in_editdata_mso_was_plain_xml_and_clean()
    {
        // An ActiveMime header and padding, not a working project.
        var activeMime = Encoding.ASCII.GetBytes("ActiveMime").Concat(new byte[] { 0, 0, 1, 0xF0 }).Concat(new byte[64]).ToArray();
        var xml = Word2003Document($"<w:binData w:name=\"editdata.mso\">{Convert.ToBase64String(activeMime)}</w:binData>", "w:macrosPresent=\"yes\"");
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(xml), "courrier.doc");

        Assert.Equal(nameof(ContentType.OfficeXml), verdict.ContentType);
        verdict.IsMalicious();
        Assert.Contains("editdata.mso", verdict.Has("office.vba-macro").Message, StringComparison.Ordinal);
        verdict.Has("office.macro-enabled");

        // Behind a prolog longer than the identifier's head, and with a DDE field of the 2003 vocabulary.
        var padded = Word2003Document("<w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText>DDEAUTO cmd \"/c echo inert\"</w:instrText></w:r>"
            + "<w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p>", prolog: "<!--" + new string('x', 20_000) + "-->");
        var paddedVerdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(padded), "courrier.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), paddedVerdict.ContentType);
        paddedVerdict.Has("office.dde");
    }

    [Fact]
    public async Task Regression_an_excel_2003_xml_workbook_with_a_dde_formula_was_clean()
    {
        var xml = "<?xml version=\"1.0\"?>\n<?mso-application progid=\"Excel.Sheet\"?>\n"
            + "<Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\">"
            + "<Names><NamedRange ss:Name=\"Total\" ss:RefersTo=\"=Feuil1!R1C1:R3C1\"/></Names>"
            + "<Worksheet ss:Name=\"Feuil1\"><Table><Row><Cell><Data ss:Type=\"Number\">1</Data></Cell>"
            + "<Cell ss:Formula=\"=SUM(R[-1]C:R[1]C)\"><Data ss:Type=\"Number\">1</Data></Cell>"
            + "<Cell ss:Formula=\"=cmd|' /c echo inert'!R1C1\"><Data ss:Type=\"Error\">#REF!</Data></Cell></Row></Table></Worksheet></Workbook>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(xml), "resultats.xls");

        Assert.Equal(nameof(ContentType.OfficeXml), verdict.ContentType);
        verdict.IsMalicious();
        Assert.Single(verdict.Findings, f => f.Rule == "office.dde");
    }

    private static string Workbook2003(string ns, string cell) =>
        "<?xml version=\"1.0\"?>\n<?mso-application progid=\"Excel.Sheet\"?>\n"
        + $"<Workbook xmlns=\"{ns}\" xmlns:ss=\"{ns}\"><Worksheet ss:Name=\"S\"><Table><Row>{cell}</Row></Table></Worksheet></Workbook>";

    /// <summary>
    /// Regression (review 31, defect 07): Word 2003 XML and SpreadsheetML whose namespace was written with a character
    /// reference (word&amp;#109;l, the same namespace to every XML parser, Word's and Excel's included) were plain XML,
    /// clean, with a VBA project, a DDEAUTO field or a DDE formula in them. An office root whose start tag holds a
    /// reference is judged by the XML reader.
    /// </summary>
    [Fact]
    public async Task Regression_an_office_xml_namespace_written_with_a_character_reference_was_plain_xml_and_clean()
    {
        var activeMime = Encoding.ASCII.GetBytes("ActiveMime").Concat(new byte[64]).ToArray();
        var word = Word2003Document($"<w:binData w:name=\"editdata.mso\">{Convert.ToBase64String(activeMime)}</w:binData>"
            + "<w:p><w:r><w:fldSimple w:instr=\"DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k echo inert&quot;\"/></w:r></w:p>", "w:macrosPresent=\"yes\"")
            .Replace(Word2003, "http://schemas.microsoft.com/office/word/2003/word&#109;l", StringComparison.Ordinal);
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(word), "courrier.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), verdict.ContentType);
        verdict.IsMalicious();
        verdict.Has("office.vba-macro");
        verdict.Has("office.dde");

        var excel = Workbook2003("urn:schemas-microsoft-com:office:spreadshee&#x74;", "<Cell ss:Formula=\"=cmd|' /c echo inert'!A0\"><Data ss:Type=\"Number\">1</Data></Cell>");
        var excelVerdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(excel), "resultats.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), excelVerdict.ContentType);
        excelVerdict.Has("office.dde");

        // An entity only its DTD declares, which Vigie does not read: not plain XML's clean verdict.
        var entity = Word2003Document("<w:p><w:r><w:t>x</w:t></w:r></w:p>").Replace(Word2003, "http://schemas.microsoft.com/office/word/2003/word&ml;", StringComparison.Ordinal)
            .Replace("?>\n<w:wordDocument", "?>\n<!DOCTYPE w:wordDocument [<!ENTITY ml \"ml\">]>\n<w:wordDocument", StringComparison.Ordinal);
        var entityVerdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(entity), "courrier.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), entityVerdict.ContentType);
        Assert.NotEqual(VerdictKind.Clean, entityVerdict.Kind);

        // A reference in another namespace under the same local name is still plain XML.
        Assert.Equal(nameof(ContentType.Xml), (await TestInspection.InspectAsync("<?xml version=\"1.0\"?><Workbook xmlns=\"urn:example&#58;books\"><Book/></Workbook>"u8.ToArray())).ContentType);
    }

    /// <summary>
    /// Regression (review 31, defect 12): what a .docx or .xlsx says by an external relationship, a remote template
    /// (office.remote-template) or a hyperlink to a program on a share, was clean in Word 2003 XML (w:attachedTemplate,
    /// w:hlink) and SpreadsheetML (ss:HRef). They get the relationships' checks.
    /// </summary>
    [Fact]
    public async Task Regression_a_word_2003_remote_template_or_a_hyperlink_to_a_program_was_clean()
    {
        var template = Word2003Document("<w:docPr><w:attachedTemplate w:val=\"\\\\templates.example.invalid\\share\\lettre.dotm\"/></w:docPr>");
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(template), "lettre.xml");
        Assert.Equal(Severity.High, verdict.Has("office.remote-template").Severity);

        var hlink = Word2003Document("<w:p><w:hlink w:dest=\"file:///\\\\10.0.0.1\\share\\x.exe\"><w:r><w:t>ouvrir</w:t></w:r></w:hlink></w:p>");
        Assert.Equal(Severity.Medium, (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(hlink), "lettre.xml")).Has("office.external-relationship").Severity);

        var cell = Workbook2003(Spreadsheet2003, "<Cell ss:HRef=\"file:///\\\\10.0.0.1\\share\\x.exe\"><Data ss:Type=\"String\">ouvrir</Data></Cell>");
        Assert.Equal(Severity.Medium, (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(cell), "export.xml")).Has("office.external-relationship").Severity);

        // A template on the author's disk and links to ordinary sites stay clean, as in a .docx.
        var ordinary = Word2003Document("<w:docPr><w:attachedTemplate w:val=\"C:\\Users\\secretariat\\Normal.dotm\"/></w:docPr>"
            + "<w:p><w:hlink w:dest=\"https://www.has-sante.fr/\"><w:r><w:t>HAS</w:t></w:r></w:hlink></w:p>");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(ordinary), "lettre.xml")).IsClean();
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(Workbook2003(Spreadsheet2003, "<Cell ss:HRef=\"https://www.has-sante.fr/\"><Data ss:Type=\"String\">HAS</Data></Cell>")), "export.xml")).IsClean();
    }

    [Fact]
    public async Task Office_xml_documents_as_word_and_excel_save_them_stay_clean()
    {
        var png = Convert.FromBase64String("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==");
        var flat = FlatOpc(Docx, "<w:p><w:fldSimple w:instr=\" PAGE \"/></w:p>", BinaryPart("/word/media/image1.png", "image/png", png),
            "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink\" Target=\"https://www.has-sante.fr/\" TargetMode=\"External\"/>");
        var flatVerdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(flat), "lettre.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), flatVerdict.ContentType);
        flatVerdict.IsClean();

        var word = Word2003Document($"<w:binData w:name=\"wordml://03000001.png\">{Convert.ToBase64String(png)}</w:binData>");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(word), "lettre.xml")).IsClean();

        var excel = "<?xml version=\"1.0\"?><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\">"
            + "<Worksheet ss:Name=\"S\"><Table><Row><Cell ss:Formula=\"=IF(R1C1&gt;0,&quot;pos|neg&quot;,&quot;&quot;)\"/></Row></Table></Worksheet></Workbook>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(excel), "export.xml")).IsClean();

        // Other XML with the same local names stays XML.
        Assert.Equal(nameof(ContentType.Xml), (await TestInspection.InspectAsync("<?xml version=\"1.0\"?><package><part/></package>"u8.ToArray())).ContentType);
    }
}
