using System.Text;
using DocumentFormat.OpenXml.Packaging;
using Microsoft.Extensions.DependencyInjection;
using UglyToad.PdfPig;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Disarm;

public sealed class DisarmTests
{
    private static readonly ServiceProvider Services = TestInspection.Services();

    private static async Task<(byte[] Output, DisarmResult Result)> Disarm(byte[] input)
    {
        var service = Services.GetRequiredService<DisarmService>();
        using var source = ContentSource.FromMemory(input);
        using var output = new MemoryStream();
        var result = await service.DisarmAsync(source, output, cancellationToken: TestContext.Current.CancellationToken);
        return (output.ToArray(), result);
    }

    public static TheoryData<string> PdfSamples => new(PdfThreats.Keys);

    private static readonly Dictionary<string, Func<byte[]>> PdfThreats = new()
    {
        ["open-action-js"] = () => { var p = PdfBuilder.Document(); p.CatalogExtra = "/OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >>"; return p.Build(); },
        ["names-js-stream"] = () =>
        {
            var p = PdfBuilder.Document();
            var script = p.AddStream("", Encoding.ASCII.GetBytes("eval('1')"), flate: true);
            var action = p.Add($"<< /S /JavaScript /JS {script} 0 R >>");
            p.CatalogExtra = $"/Names << /JavaScript << /Names [(a) {action} 0 R] >> >>";
            return p.Build();
        },
        ["page-aa-launch"] = () => { var p = PdfBuilder.Document(); p.PageExtra += " /AA << /O << /S /Launch /Win << /F (cmd.exe) >> >> >>"; return p.Build(); },
        ["embedded-exe"] = () =>
        {
            var p = PdfBuilder.Document();
            var file = p.AddStream("/Type /EmbeddedFile", ExecutableSamples.Pe(), flate: true);
            var spec = p.Add($"<< /Type /Filespec /F (a.exe) /EF << /F {file} 0 R >> >>");
            p.CatalogExtra = $"/Names << /EmbeddedFiles << /Names [(a.exe) {spec} 0 R] >> >>";
            return p.Build();
        },
        ["annotations"] = () =>
        {
            var p = PdfBuilder.Document();
            var media = p.Add("<< /Type /Annot /Subtype /RichMedia /Rect [0 0 1 1] /RichMediaContent << >> >>");
            var exe = p.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (http://192.0.2.1/setup.exe) >> >>");
            var submit = p.Add("<< /Type /Annot /Subtype /Widget /Rect [0 0 1 1] /A << /S /SubmitForm /F (https://x.example) >> >>");
            var remote = p.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /GoToR /F (other.pdf) /D [0 /Fit] >> >>");
            var link = p.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (https://www.hospital.example/) >> >>");
            p.PageExtra += $" /Annots [{media} 0 R {exe} 0 R {submit} 0 R {remote} 0 R {link} 0 R]";
            return p.Build();
        },
        ["xfa"] = () =>
        {
            var p = PdfBuilder.Document();
            var xfa = p.AddStream("", Encoding.ASCII.GetBytes("<xdp><script>x</script></xdp>"), flate: true);
            p.CatalogExtra = $"/AcroForm << /Fields [] /XFA {xfa} 0 R >>";
            return p.Build();
        },
        ["obfuscated-objstm"] = () =>
        {
            var p = PdfBuilder.Document();
            var action = p.AddPacked("<< /#53 /J#61vaScript /J#53 (this.print\\(\\)) >>");
            p.CatalogExtra = $"/OpenAction {action} 0 R";
            return p.Build();
        },
        ["filter-chain"] = () =>
        {
            var p = PdfBuilder.Document();
            p.AddStream("/Filter [/ASCIIHexDecode /ASCII85Decode /FlateDecode] /Type /Metadata", PdfEncoders.AsciiHex(PdfEncoders.Ascii85(PdfBuilder.Zlib(Encoding.ASCII.GetBytes("<x/>")))));
            var p2 = p.Build();
            return p2;
        },
    };

    [Theory]
    [MemberData(nameof(PdfSamples))]
    public async Task Disarmed_pdfs_reinspect_clean_and_stay_valid(string sample)
    {
        var input = PdfThreats[sample]();
        if (sample == "filter-chain")
        {
            // Unreachable streams are dropped by the rewrite, so make the layered one part of the document.
            var text = Encoding.Latin1.GetString(input);
            input = Encoding.Latin1.GetBytes(text.Replace("/Type /Catalog /Pages 2 0 R", "/Type /Catalog /Pages 2 0 R /Metadata 6 0 R", StringComparison.Ordinal));
        }

        var before = await TestInspection.InspectAsync(input, "in.pdf");
        Assert.NotEqual(VerdictKind.Clean, before.Kind);

        var (output, result) = await Disarm(input);
        Assert.Equal("Pdf", result.ContentType);
        Assert.NotEmpty(result.Actions);
        var after = await TestInspection.InspectAsync(output, "out.pdf");
        after.IsClean();

        using var pdf = PdfDocument.Open(output);
        Assert.Equal(1, pdf.NumberOfPages);
        Assert.Contains("Synthetic", pdf.GetPage(1).Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Disarm_lists_what_it_removed()
    {
        var (_, result) = await Disarm(PdfThreats["annotations"]());
        var rules = result.Actions.Select(a => a.Rule).ToHashSet();
        Assert.Contains("pdf.rich-media", rules);
        Assert.Contains("pdf.submit-form", rules);
        Assert.Contains("pdf.goto-remote", rules);
        Assert.Contains(result.Actions, a => a.Rule is "pdf.uri-executable" or "pdf.uri-ip");
    }

    [Fact]
    public async Task Encrypted_pdfs_cannot_be_disarmed()
    {
        var pdf = PdfBuilder.Document();
        var encrypt = pdf.Add("<< /Filter /Standard /V 2 /R 3 /Length 128 /P -4 /O <00> /U <00> >>");
        pdf.TrailerExtra = $"/Encrypt {encrypt} 0 R";
        await Assert.ThrowsAsync<DisarmException>(async () => await Disarm(pdf.Build()));
    }

    public static TheoryData<string> OfficeSamples => new(OfficeThreats.Keys);

    private static readonly Dictionary<string, (Func<byte[]> Build, string Name)> OfficeThreats = new()
    {
        ["docm-vba"] = (() => OoxmlBuilder.Word(mainType: OoxmlBuilder.WordMacroMain)
            .Part("word/vbaProject.bin", OoxmlBuilder.VbaProjectType, VbaSamples.VbaProjectBin())
            .Relationship("word/document.xml", OoxmlBuilder.RelVba, "vbaProject.bin").Build(), "report.docm"),
        // Regression: a VBA project stored under another name (an image's) kept its part in the "disarmed" copy.
        ["regression-vba-project-renamed-as-an-image-stayed-in-the-copy"] = (() => OoxmlBuilder.Word(mainType: OoxmlBuilder.WordMacroMain)
            .Part("word/media/image1.png", "image/png", VbaSamples.VbaProjectBin())
            .Relationship("word/document.xml", OoxmlBuilder.RelVba, "media/image1.png").Build(), "report.docm"),
        ["remote-template"] = (() => OoxmlBuilder.Word()
            .Relationship("word/document.xml", OoxmlBuilder.RelSettings, "settings.xml")
            .Part("word/settings.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml",
                "<w:settings xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"><w:attachedTemplate r:id=\"rId1\"/></w:settings>")
            .Relationship("word/settings.xml", OoxmlBuilder.RelAttachedTemplate, "https://templates.example/normal.dotm", external: true).Build(), "letter.docx"),
        ["dde"] = (() => OoxmlBuilder.Word("<w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText> DDEAUTO c:\\\\x.exe</w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"separate\"/></w:r><w:r><w:t>shown</w:t></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p><w:p><w:fldSimple w:instr=\" DDE cmd x \"><w:r><w:t>kept</w:t></w:r></w:fldSimple></w:p>").Build(), "letter.docx"),
        ["external-ole"] = (() => OoxmlBuilder.Word("<w:p><w:r><w:object><o:OLEObject xmlns:o=\"urn:schemas-microsoft-com:office:office\" Type=\"Link\" r:id=\"rId2\"/></w:object></w:r></w:p>")
            .Relationship("word/document.xml", OoxmlBuilder.RelOleObject, @"\\198.51.100.7\share\x.xls", external: true).Build(), "letter.docx"),
        ["xlsx-dde"] = (() => OoxmlBuilder.Excel("<sheetData><row r=\"1\"><c r=\"A1\"><f>cmd|' /C x'!A0</f><v>0</v></c></row></sheetData>")
            .Part("xl/externalLinks/externalLink1.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml",
                "<externalLink xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><ddeLink ddeService=\"cmd\" ddeTopic=\"x\"/></externalLink>")
            .Relationship("xl/workbook.xml", "http://schemas.openxmlformats.org/officeDocument/2006/relationships/externalLink", "externalLinks/externalLink1.xml").Build(), "book.xlsx"),
        ["xlsm-xlm-activex"] = (() => OoxmlBuilder.Excel(mainType: OoxmlBuilder.ExcelMacroMain)
            .Part("xl/macrosheets/sheet1.xml", "application/vnd.ms-excel.macrosheet+xml", "<xm:macrosheet xmlns:xm=\"http://schemas.microsoft.com/office/excel/2006/main\"/>")
            .Part("xl/activeX/activeX1.xml", "application/vnd.ms-office.activeX+xml", "<ax:ocx xmlns:ax=\"http://schemas.microsoft.com/office/2006/activeX\"/>").Build(), "book.xlsm"),
        ["ole-package"] = (() => OoxmlBuilder.Word()
            .Part("word/embeddings/oleObject1.bin", "application/vnd.openxmlformats-officedocument.oleObject", VbaSamples.OleObjectWithPackage("a.exe", ExecutableSamples.Pe()))
            .Relationship("word/document.xml", OoxmlBuilder.RelOleObject, "embeddings/oleObject1.bin").Build(), "letter.docx"),
    };

    [Theory]
    [MemberData(nameof(OfficeSamples))]
    public async Task Disarmed_office_documents_reinspect_clean_and_stay_valid(string sample)
    {
        var (build, name) = OfficeThreats[sample];
        var input = build();
        var before = await TestInspection.InspectAsync(input, name);
        Assert.NotEqual(VerdictKind.Clean, before.Kind);

        var (output, result) = await Disarm(input);
        Assert.Equal("Ooxml", result.ContentType);
        Assert.NotEmpty(result.Actions);
        var plainName = Path.ChangeExtension(name, name.EndsWith('m') ? name[^4..^1] + "x" : Path.GetExtension(name)[1..]);
        var after = await TestInspection.InspectAsync(output, plainName);
        after.IsClean();

        using var stream = new MemoryStream(output);
        if (name.EndsWith(".docx", StringComparison.Ordinal) || name.EndsWith(".docm", StringComparison.Ordinal))
        {
            using var word = WordprocessingDocument.Open(stream, false);
            Assert.NotNull(word.MainDocumentPart?.Document);
        }
        else
        {
            using var excel = SpreadsheetDocument.Open(stream, false);
            Assert.NotNull(excel.WorkbookPart?.Workbook);
        }
    }

    [Fact]
    public async Task Dde_field_results_are_kept_when_the_field_goes()
    {
        var (output, result) = await Disarm(OfficeThreats["dde"].Build());
        Assert.Equal(2, result.Actions.Count(a => a.Rule == "office.dde"));
        using var word = WordprocessingDocument.Open(new MemoryStream(output), false);
        var text = word.MainDocumentPart!.Document!.InnerText;
        Assert.Contains("shown", text, StringComparison.Ordinal);
        Assert.Contains("kept", text, StringComparison.Ordinal);
        Assert.DoesNotContain("DDE", word.MainDocumentPart.Document.OuterXml, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Clean_documents_come_out_unchanged_in_substance()
    {
        var (_, pdf) = await Disarm(PdfBuilder.Document().Build());
        Assert.Empty(pdf.Actions);
        var (docx, office) = await Disarm(OoxmlSamples.CleanDocx());
        Assert.Empty(office.Actions);
        (await TestInspection.InspectAsync(docx, "letter.docx")).IsClean();
    }
}
