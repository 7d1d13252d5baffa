using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>OOXML defects of the PDF/OOXML black-box review of 2026-12-07.</summary>
public sealed class OoxmlReviewTests
{
    private const string ContentTypes = "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
        + "<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/>"
        + "<Override PartName=\"/word/document.xml\" ContentType=\"" + OoxmlBuilder.WordMain + "\"/></Types>";

    private const string PackageRels = "<?xml version=\"1.0\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
        + "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>";

    private const string DdeAutoField = "<w:p><w:fldSimple w:instr=\" DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k echo inert&quot; \"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>";

    private static string Document(string body) =>
        $"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>Compte rendu (synthetic)</w:t></w:r></w:p>{body}</w:body></w:document>";

    private static string Begin => "<w:r><w:fldChar w:fldCharType=\"begin\"/></w:r>";

    private static string Separate => "<w:r><w:fldChar w:fldCharType=\"separate\"/></w:r>";

    private static string End => "<w:r><w:fldChar w:fldCharType=\"end\"/></w:r>";

    private static string Instruction(string text) => $"<w:r><w:instrText xml:space=\"preserve\">{text}</w:instrText></w:r>";

    /// <summary>{ {QUOTE ...} rest }: a field whose instruction starts with a nested field, with the given cached result.</summary>
    private static byte[] NestedField(string quote, string rest, string cached = "DDEAUTO") =>
        OoxmlBuilder.Word("<w:p>" + Begin + Begin + Instruction(quote) + Separate + $"<w:r><w:t>{cached}</w:t></w:r>" + End
            + Instruction(rest) + Separate + "<w:r><w:t>x</w:t></w:r>" + End + "</w:p>").Build();

    [Fact]
    public async Task Regression_ddeauto_spelled_by_a_nested_quote_field_was_clean()
    {
        const string Command = " c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\" ";

        // The 2017 malspam shape: character codes, whatever the cached result says.
        var codes = await TestInspection.InspectAsync(NestedField(" QUOTE 68 68 69 65 85 84 79 ", Command, cached: "x"), "cr.docx");
        Assert.Contains("DDEAUTO", codes.Has("office.dde").Message, StringComparison.Ordinal);
        codes.IsMalicious();

        // Quoted text, a lower-case name, and a QUOTE inside a QUOTE.
        (await TestInspection.InspectAsync(NestedField(" QUOTE \"DDEAUTO\" ", Command), "cr.docx")).Has("office.dde");
        (await TestInspection.InspectAsync(NestedField(" quote 100 100 101 ", "AUTO" + Command), "cr.docx")).Has("office.dde");
        var deep = OoxmlBuilder.Word("<w:p>" + Begin + Begin + Instruction(" QUOTE ") + Begin + Instruction(" QUOTE 68 68 ") + Separate + End
            + Instruction(" 69 65 85 84 79 ") + Separate + End + Instruction(Command) + Separate + End + "</w:p>").Build();
        (await TestInspection.InspectAsync(deep, "cr.docx")).Has("office.dde");

        // Ordinary nested fields stay clean: a QUOTE of a date inside an IF, a page number.
        var ordinary = OoxmlBuilder.Word("<w:p>" + Begin + Instruction(" IF ") + Begin + Instruction(" QUOTE \"1\" ") + Separate + End
            + Instruction(" = 1 \"Page \" \"\" ") + Separate + "<w:r><w:t>Page </w:t></w:r>" + End + "</w:p>").Build();
        (await TestInspection.InspectAsync(ordinary, "cr.docx")).IsClean();

        // Bounded: a QUOTE of 200,000 codes builds no more than an instruction's worth (and names no DDE field), and fields
        // nested 10,000 deep are read without recursion.
        var many = string.Concat(Enumerable.Repeat(" 65", 200_000));
        (await TestInspection.InspectAsync(NestedField(" QUOTE" + many, Command), "cr.docx")).HasNo("office.dde");
        var nested = OoxmlBuilder.Word("<w:p>" + string.Concat(Enumerable.Repeat(Begin + Instruction(" QUOTE "), 10_000)) + Instruction("68 68 69 65 85 84 79")
            + string.Concat(Enumerable.Repeat(End, 10_000)) + "</w:p>").Build();
        (await TestInspection.InspectAsync(nested, "cr.docx")).HasNo("office.dde");
    }

    [Fact]
    public async Task Regression_an_excel_dde_reference_in_a_defined_name_was_clean()
    {
        static byte[] Book(string names) => OoxmlBuilder.Excel("<sheetData><row r=\"1\"><c r=\"A1\"><f>x</f></c></row></sheetData>")
            .Part("xl/workbook.xml", OoxmlBuilder.ExcelMain,
                "<workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\">"
                + $"<sheets><sheet name=\"S\" sheetId=\"1\" r:id=\"rId1\"/></sheets><definedNames>{names}</definedNames></workbook>")
            .Build();

        var verdict = await TestInspection.InspectAsync(Book("<definedName name=\"x\">cmd|' /c echo inert'!A0</definedName>"), "bilan.xlsx");
        Assert.Contains("defined name 'x'", verdict.Has("office.dde").Message, StringComparison.Ordinal);
        verdict.IsMalicious();
        (await TestInspection.InspectAsync(Book("<definedName name=\"y\" localSheetId=\"0\">=MSEXCEL|'\\..\\..\\Windows\\System32\\cmd.exe /c echo inert'!''</definedName>"), "bilan.xlsx")).Has("office.dde");

        // Ordinary names: ranges, a print area, a quoted sheet name with a pipe, a string with one.
        var ordinary = await TestInspection.InspectAsync(Book("<definedName name=\"_xlnm.Print_Area\" localSheetId=\"0\">S!$A$1:$D$40</definedName>"
            + "<definedName name=\"irm\">'IRM|Scanner'!$A$1:$A$9</definedName><definedName name=\"sep\">\"pos|neg\"</definedName>"), "bilan.xlsx");
        ordinary.IsClean();
    }

    [Fact]
    public async Task Regression_a_dde_field_in_the_second_copy_of_a_duplicated_part_was_not_reported()
    {
        static byte[] Package(string first, string second) => new ZipBuilder()
            .Add("[Content_Types].xml", ContentTypes).Add("_rels/.rels", PackageRels)
            .Add("word/document.xml", Document(first)).Add("word/document.xml", Document(second))
            .Build();

        // LibreOffice opens the last copy, other readers the first: each is read as the document it would be.
        var last = await TestInspection.InspectAsync(Package("", DdeAutoField), "cr.docx");
        Assert.Contains("copy 2 of 2", last.Has("office.dde").Message, StringComparison.Ordinal);
        last.Has("zip.duplicate-name");
        last.IsMalicious();
        (await TestInspection.InspectAsync(Package(DdeAutoField, ""), "cr.docx")).Has("office.dde");

        // A duplicated relationship part: its second copy's remote template counts too.
        var rels = new ZipBuilder()
            .Add("[Content_Types].xml", ContentTypes).Add("_rels/.rels", PackageRels).Add("word/document.xml", Document(""))
            .Add("word/_rels/document.xml.rels", "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"/>")
            .Add("word/_rels/document.xml.rels", "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
                + $"<Relationship Id=\"rId9\" Type=\"{OoxmlBuilder.RelAttachedTemplate}\" Target=\"https://templates.example/normal.dotm\" TargetMode=\"External\"/></Relationships>")
            .Build();
        (await TestInspection.InspectAsync(rels, "cr.docx")).Has("office.remote-template");
    }

    [Fact]
    public async Task Regression_a_hyperlink_to_a_private_address_made_a_word_report_suspicious()
    {
        static byte[] Linked(string type, string target) => OoxmlBuilder.Word("<w:p><w:hyperlink r:id=\"rId1\"><w:r><w:t>visionneuse</w:t></w:r></w:hyperlink></w:p>")
            .Relationship("word/document.xml", type, target, external: true).Build();

        // An intranet viewer by address: noted, as pdf.uri-ip and mail.link-ip do.
        foreach (var viewer in new[] { "http://10.1.2.3/viewer?study=1", "https://192.168.10.5:8443/weasis", "http://172.20.0.4/", "http://127.0.0.1:8042/app/explorer.html", "http://[fd00::5]/pacs" })
        {
            var verdict = await TestInspection.InspectAsync(Linked(OoxmlBuilder.RelHyperlink, viewer), "cr.docx");
            verdict.IsClean();
            Assert.Equal(Severity.Info, verdict.Has("office.external-relationship").Severity);
        }

        // A public address, an obfuscated private one, a program, a network path, and content loaded on open keep their severity.
        foreach (var (type, target, rule, severity) in new[]
        {
            (OoxmlBuilder.RelHyperlink, "http://203.0.113.9/viewer", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelHyperlink, "http://0x0a010203/viewer", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelHyperlink, "http://10.1.2.3/update.exe", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelHyperlink, "\\\\10.1.2.3\\share\\cr.docx", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelHyperlink, "file://192.168.1.5/share/cr.docx", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelImage, "http://10.1.2.3/logo.png", "office.external-relationship", Severity.Medium),
            (OoxmlBuilder.RelOleObject, "http://10.1.2.3/a.xls", "office.external-ole-link", Severity.High),
        })
        {
            var verdict = await TestInspection.InspectAsync(Linked(type, target), "cr.docx");
            Assert.True(verdict.Findings.Any(f => f.Rule == rule && f.Severity == severity), $"{target}: expected {rule} {severity} in\n{verdict.Describe()}");
        }
    }
}
