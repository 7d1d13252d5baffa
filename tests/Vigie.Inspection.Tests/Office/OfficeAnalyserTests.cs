using System.Buffers.Binary;
using System.Text;
using Vigie.Inspection.Office;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

public sealed class OfficeAnalyserTests
{
    [Fact]
    public async Task Clean_office_documents_give_nothing_above_info()
    {
        (await TestInspection.InspectAsync(OoxmlSamples.CleanDocx(), "letter.docx")).IsClean();
        (await TestInspection.InspectAsync(OoxmlSamples.CleanXlsx(), "results.xlsx")).IsClean();
        var doc = new Ole2Builder().Stream("WordDocument", Encoding.ASCII.GetBytes(new string('x', 6000) + "\u0013 PAGE \u0014 1 \u0015"))
            .Stream("1Table", new byte[700]).Stream("\u0005SummaryInformation", new byte[200]).Build();
        (await TestInspection.InspectAsync(doc, "letter.doc")).IsClean();
        var harmless = new ZipBuilder().Add("notes.txt", "=SUM(A1:A3)\n-5,+7,@home\n").Build();
        (await TestInspection.InspectAsync(harmless)).IsClean();
        (await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(RtfSamples.Clean), "summary.rtf")).IsClean();
    }

    [Fact]
    public async Task A_docm_with_an_auto_run_macro_is_found_at_every_level()
    {
        var docm = OoxmlBuilder.Word(mainType: OoxmlBuilder.WordMacroMain)
            .Part("word/vbaProject.bin", OoxmlBuilder.VbaProjectType, VbaSamples.VbaProjectBin())
            .Relationship("word/document.xml", OoxmlBuilder.RelVba, "vbaProject.bin")
            .Build();
        var verdict = await TestInspection.InspectAsync(docm, "report.docm");
        verdict.IsMalicious();
        verdict.Has("office.macro-enabled", "");
        verdict.Has("office.vba-macro", "");
        Assert.Contains("Module1", verdict.Has("office.vba-macro", "word/vbaProject.bin").Message);
        Assert.Contains("AutoOpen", verdict.Has("office.vba-autoexec", "word/vbaProject.bin").Message);
        verdict.Has("office.vba-suspicious", "word/vbaProject.bin");
        verdict.HasNo("office.macro-disguised");
    }

    [Fact]
    public async Task Macro_enabled_packages_disguised_as_plain_ones_are_found()
    {
        var hidden = OoxmlBuilder.Word()
            .Part("word/vbaProject.bin", null, VbaSamples.VbaProjectBin(VbaSamples.HarmlessSource))
            .Build();
        (await TestInspection.InspectAsync(hidden, "report.docx")).Has("office.macro-disguised");

        var renamed = OoxmlBuilder.Word(mainType: OoxmlBuilder.WordMacroMain).Build();
        var verdict = await TestInspection.InspectAsync(renamed, "report.docx");
        Assert.Contains(".docx", verdict.Has("office.macro-disguised").Message);
    }

    [Fact]
    public async Task External_relationships_are_found()
    {
        var docx = OoxmlBuilder.Word()
            .Relationship("word/document.xml", OoxmlBuilder.RelSettings, "settings.xml")
            .Part("word/settings.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml", "<w:settings xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>")
            .Relationship("word/settings.xml", OoxmlBuilder.RelAttachedTemplate, "https://templates.example/normal.dotm", external: true)
            .Relationship("word/document.xml", OoxmlBuilder.RelOleObject, @"\\198.51.100.7\share\object.xls", external: true)
            .Relationship("word/document.xml", OoxmlBuilder.RelImage, @"\\files.example\img\logo.png", external: true)
            .Relationship("word/document.xml", OoxmlBuilder.RelHyperlink, "http://203.0.113.9/download/update.exe", external: true)
            .Build();
        var verdict = await TestInspection.InspectAsync(docx, "letter.docx");
        Assert.Contains("templates.example", verdict.Has("office.remote-template").Message);
        verdict.Has("office.external-ole-link");
        Assert.Contains(verdict.Findings, f => f.Rule == "office.external-relationship" && f.Message.Contains("credentials", StringComparison.Ordinal));
        Assert.Contains(verdict.Findings, f => f.Rule == "office.external-relationship" && f.Message.Contains(".exe", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Templates_on_the_authors_disk_are_not_remote()
    {
        var docx = OoxmlBuilder.Word()
            .Relationship("word/document.xml", OoxmlBuilder.RelSettings, "settings.xml")
            .Part("word/settings.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml", "<w:settings xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>")
            .Relationship("word/settings.xml", OoxmlBuilder.RelAttachedTemplate, "file:///C:\\Users\\doc\\AppData\\Roaming\\Microsoft\\Templates\\Normal.dotm", external: true)
            .Build();
        (await TestInspection.InspectAsync(docx, "letter.docx")).IsClean();

        var unc = OoxmlBuilder.Word()
            .Relationship("word/document.xml", OoxmlBuilder.RelSettings, "settings.xml")
            .Part("word/settings.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml", "<w:settings xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>")
            .Relationship("word/settings.xml", OoxmlBuilder.RelAttachedTemplate, "file://203.0.113.5/share/t.dotm", external: true)
            .Build();
        (await TestInspection.InspectAsync(unc, "letter.docx")).Has("office.remote-template");
    }

    [Fact]
    public async Task Dde_fields_are_found_in_word_and_excel_xml()
    {
        var split = OoxmlBuilder.Word("<w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText xml:space=\"preserve\"> DDE</w:instrText></w:r><w:r><w:instrText>AUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\"</w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"separate\"/></w:r><w:r><w:t>x</w:t></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p>").Build();
        Assert.Contains("DDEAUTO", (await TestInspection.InspectAsync(split)).Has("office.dde").Message);

        var simple = OoxmlBuilder.Word("<w:p><w:fldSimple w:instr=\" DDE excel &quot;c:\\\\data.xls&quot; \"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>").Build();
        (await TestInspection.InspectAsync(simple)).Has("office.dde");

        var xlsx = OoxmlBuilder.Excel("<sheetData><row r=\"1\"><c r=\"A1\"><f>cmd|' /C echo inert'!A0</f></c></row></sheetData>")
            .Part("xl/externalLinks/externalLink1.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml",
                "<externalLink xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><ddeLink ddeService=\"cmd\" ddeTopic=\"/c echo inert\"/></externalLink>")
            .Build();
        var verdict = await TestInspection.InspectAsync(xlsx);
        Assert.Contains(verdict.Findings, f => f.Rule == "office.dde" && f.Message.Contains("formula", StringComparison.Ordinal));
        Assert.Contains(verdict.Findings, f => f.Rule == "office.dde" && f.Message.Contains("DDE link", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Dde_commands_in_csv_cells_are_found()
    {
        var csv = Encoding.ASCII.GetBytes("patient,value\nA,12\nB,\"=cmd|' /C echo inert'!A0\"\n");
        (await TestInspection.InspectAsync(csv, "export.csv")).Has("csv.dde-injection");
        (await TestInspection.InspectAsync(Encoding.ASCII.GetBytes("a;b\n1;@SUM(1+1)*cmd|' /C calc'!A0\n"))).Has("csv.dde-injection");
        (await TestInspection.InspectAsync(Encoding.ASCII.GetBytes("a,b\n1,=DDE(\"cmd\";\"/c calc\";\"x\")\n"))).Has("csv.dde-injection");
    }

    [Fact]
    public async Task Xlm_macros_and_activex_are_found()
    {
        var xlsm = OoxmlBuilder.Excel(mainType: OoxmlBuilder.ExcelMacroMain)
            .Part("xl/macrosheets/sheet1.xml", "application/vnd.ms-excel.macrosheet+xml", "<xm:macrosheet xmlns:xm=\"http://schemas.microsoft.com/office/excel/2006/main\"/>")
            .Part("xl/activeX/activeX1.xml", "application/vnd.ms-office.activeX+xml", "<ax:ocx xmlns:ax=\"http://schemas.microsoft.com/office/2006/activeX\" ax:classid=\"{8BD21D40-EC42-11CE-9E0D-00AA006002F3}\"/>")
            .Build();
        var verdict = await TestInspection.InspectAsync(xlsm);
        verdict.Has("office.xlm-macro");
        verdict.Has("office.activex");
        verdict.Has("office.macro-enabled");
    }

    [Fact]
    public async Task Embedded_ole_packages_are_extracted_and_inspected()
    {
        var docx = OoxmlBuilder.Word()
            .Part("word/embeddings/oleObject1.bin", "application/vnd.openxmlformats-officedocument.oleObject", VbaSamples.OleObjectWithPackage("invoice.exe", ExecutableSamples.Pe()))
            .Relationship("word/document.xml", OoxmlBuilder.RelOleObject, "embeddings/oleObject1.bin")
            .Build();
        var verdict = await TestInspection.InspectAsync(docx);
        Assert.Contains("invoice.exe", verdict.Has("office.ole-package", "word/embeddings/oleObject1.bin").Message);
        verdict.Has("executable.pe", "word/embeddings/oleObject1.bin/?Ole10Native:invoice.exe");
    }

    [Fact]
    public async Task Binary_office_files_with_macros_equation_editor_xlm_and_dde_are_found()
    {
        var doc = VbaSamples.AddProject(new Ole2Builder().Stream("WordDocument", new byte[5000]), "Macros").Build();
        var verdict = await TestInspection.InspectAsync(doc, "old.doc");
        verdict.Has("office.vba-macro", "");
        verdict.Has("office.vba-autoexec", "");

        var xls = VbaSamples.AddProject(new Ole2Builder().Stream("Workbook", Biff(macroSheet: false)), "_VBA_PROJECT_CUR", VbaSamples.HarmlessSource).Build();
        verdict = await TestInspection.InspectAsync(xls);
        verdict.Has("office.vba-macro");
        verdict.HasNo("office.vba-autoexec");

        var xlm = new Ole2Builder().Stream("Workbook", Biff(macroSheet: true)).Build();
        (await TestInspection.InspectAsync(xlm)).Has("office.xlm-macro");

        var equation = new Ole2Builder().Stream("ObjectPool/_1/\u0001Ole", new byte[20]).Storage("ObjectPool/_1", new Guid("0002CE02-0000-0000-C000-000000000046")).Build();
        (await TestInspection.InspectAsync(equation)).Has("office.equation-editor");

        var dde = new Ole2Builder().Stream("WordDocument", Encoding.Unicode.GetBytes(new string(' ', 3000) + "\u0013 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo\" \u0014x\u0015")).Build();
        (await TestInspection.InspectAsync(dde)).Has("office.dde");

        var encrypted = new Ole2Builder().Stream("EncryptionInfo", new byte[100]).Stream("EncryptedPackage", new byte[5000]).Build();
        (await TestInspection.InspectAsync(encrypted, "secret.docx")).Has("office.encrypted");
    }

    private static byte[] Biff(bool macroSheet)
    {
        var s = new MemoryStream();
        void Record(ushort type, byte[] data)
        {
            s.Write(BitConverter.GetBytes(type));
            s.Write(BitConverter.GetBytes((ushort)data.Length));
            s.Write(data);
        }

        Record(0x0809, new byte[16]);
        Record(0x0085, [0, 0, 0, 0, 0, (byte)(macroSheet ? 1 : 0), 5, 0, (byte)'S', (byte)'h', (byte)'e', (byte)'e', (byte)'t']);
        Record(0x000A, []);
        s.Write(new byte[5000]);
        return s.ToArray();
    }

    [Fact]
    public async Task Corrupt_compound_files_are_reported_without_crashing()
    {
        var builder = VbaSamples.AddProject(new Ole2Builder().Stream("WordDocument", new byte[9000]), "Macros");
        var bytes = builder.Build();

        // A FAT loop: the WordDocument chain's first sector points to itself.
        var loop = (byte[])bytes.Clone();
        var start = builder.StartSectors["WordDocument"];
        BinaryPrimitives.WriteUInt32LittleEndian(loop.AsSpan((int)builder.FatOffset + (int)start * 4), start);
        var verdict = await TestInspection.InspectAsync(loop);
        Assert.Contains(verdict.Findings, f => f.Rule == "ole2.malformed" && f.Message.Contains("loops", StringComparison.Ordinal));
        verdict.HasNo("inspection.analyser-error");

        // A directory cycle: an entry is its own right sibling.
        var cycle = (byte[])bytes.Clone();
        var id = builder.Ids["Macros"];
        BinaryPrimitives.WriteUInt32LittleEndian(cycle.AsSpan((int)builder.DirectoryOffset + id * 128 + 72), (uint)id);
        verdict = await TestInspection.InspectAsync(cycle);
        Assert.Contains(verdict.Findings, f => f.Rule == "ole2.malformed" && f.Message.Contains("cycle", StringComparison.Ordinal));
        verdict.HasNo("inspection.analyser-error");

        foreach (var cut in new[] { 512, 700, bytes.Length / 2, bytes.Length - 100 })
        {
            verdict = await TestInspection.InspectAsync(bytes[..cut]);
            verdict.HasNo("inspection.analyser-error");
        }
    }

    [Fact]
    public void Vba_compression_round_trips()
    {
        var random = new Random(5);
        foreach (var size in new[] { 0, 1, 17, 4095, 4096, 4097, 20_000 })
        {
            var text = new byte[size];
            for (var i = 0; i < size; i++)
            {
                text[i] = (byte)"Sub AutoOpen() Shell \"x\" End Sub\r\n"[random.Next(0, 5) == 0 ? random.Next(33) : i % 33];
            }

            var round = Vba.Decompress(VbaSamples.Compress(text), 1 << 20, out var error);
            Assert.Null(error);
            Assert.Equal(text, round);
        }

        var modules = Vba.ParseDirectory(Vba.Decompress(VbaSamples.DirStream("Module1", "ThisDocument"), 1 << 20, out _), out var codePage);
        Assert.Equal(["Module1", "ThisDocument"], modules.Select(m => m.Name));
        Assert.Equal(1252, codePage);
    }

    [Fact]
    public async Task Rtf_objects_packages_autoupdate_and_dde_are_found()
    {
        var package = RtfSamples.ObjectRtf("Package", RtfSamples.PackageNative("invoice.exe", ExecutableSamples.Pe()), autoUpdate: true, obfuscate: true);
        var verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(package), "letter.rtf");
        verdict.Has("rtf.risky-object-class");
        verdict.Has("rtf.object-autoupdate");
        verdict.Has("office.ole-package");
        verdict.Has("executable.pe", "invoice.exe");

        var equation = RtfSamples.ObjectRtf("Equation.3", new Ole2Builder().Stream("Equation Native", new byte[100]).Build());
        verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(equation));
        verdict.Has("rtf.risky-object-class");

        var chart = RtfSamples.ObjectRtf("MSGraph.Chart.8", new Ole2Builder().Stream("CONTENTS", new byte[100]).Build());
        verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(chart));
        verdict.Has("rtf.object");
        verdict.HasNo("rtf.risky-object-class");

        var dde = "{\\rtf1{\\field{\\*\\fldinst {\\rtlch DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\"}}{\\fldrslt x}}}";
        (await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(dde))).Has("rtf.dde");
    }

    [Fact]
    public async Task OpenDocument_macros_are_found()
    {
        var odt = new ZipBuilder()
            .Add("mimetype", "application/vnd.oasis.opendocument.text", deflate: false)
            .Add("content.xml", "<office:document-content/>")
            .Add("Basic/Standard/Module1.xml", "<script:module script:name=\"Module1\">Sub Main\nShell(\"x\")\nEnd Sub</script:module>")
            .Build();
        (await TestInspection.InspectAsync(odt)).Has("office.odf-macro");
    }

    [Fact]
    public async Task Html_smuggling_is_found_and_ordinary_scripts_are_not()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        var smuggling = $"<html><body><script>var b = new Blob([Uint8Array.from(atob('{payload}'), c => c.charCodeAt(0))]); var a = document.createElement('a'); a.href = URL.createObjectURL(b); a.download = 'invoice.iso'; a.click();</script></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(smuggling), "page.html")).Has("html.smuggling");

        var dataLink = $"<html><body><a download=\"scan.zip\" href=\"data:application/zip;base64,{payload}\">scan</a></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(dataLink))).Has("html.smuggling");

        // Regression: a line of text, or a long comment, in front of the page made it "text", never looked at; a browser
        // renders it all the same.
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("Invoice\n" + smuggling), "page.html")).Has("html.smuggling");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("<!-- " + new string('x', 10_000) + " -->" + smuggling))).Has("html.smuggling");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(new string('y', 100_000) + "\n" + dataLink))).Has("html.smuggling");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("Please download the attached report, a blob of text about data: none."))).IsClean();
        // Tags the text gate missed, and header-like lines that made the page a "mail" with no MIME part to read.
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("Invoice\n<a\tdownload=\"scan.zip\" href=\"data:application/zip;base64," + payload + "\">x</a>"), "scan.html"))
            .Has("html.smuggling");
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("From: a\nTo: b\nX-Y: " + smuggling), "page.html")).Has("html.smuggling");

        // Text not named a page (a JSX component, a how-to) is suspicious, not malicious: it is a page only if served as one.
        var jsx = "export function Save({ rows }) {\n  const b = new Blob([rows.join('\\n')]);\n  const u = URL.createObjectURL(b);\n"
            + "  return <a href={u} download=\"rows.csv\" onClick={e => e.currentTarget.click()}>save</a>;\n}\n";
        var component = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(jsx), "Save.jsx");
        // It builds the file from its own data, nothing embedded: an export, noted (Medium until 2026-12-07).
        Assert.Equal(Severity.Info, component.Has("html.smuggling").Severity);

        var ordinary = "<!DOCTYPE html><html><head><script>window.onload = function () { document.title = 'Results'; };</script></head><body><a href=\"https://www.hospital.example/\">home</a></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(ordinary))).IsClean();
    }

    [Fact]
    public async Task Regression_a_dde_field_in_a_word_part_not_named_word_was_missed()
    {
        // Word follows the package relationship and the content type, whatever the part's name.
        var renamed = OoxmlBuilder.Word("<w:p><w:r><w:t>Lettre</w:t></w:r></w:p>")
            .Part("doc/notes.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
                "<w:footnotes xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:footnote><w:p><w:fldSimple w:instr=\" DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k echo inert&quot; \"/></w:p></w:footnote></w:footnotes>")
            .Build();
        Assert.Contains("doc/notes.xml", (await TestInspection.InspectAsync(renamed, "lettre.docx")).Has("office.dde").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_an_xlm_macro_sheet_stored_under_another_name_was_missed()
    {
        var workbook = OoxmlBuilder.Excel()
            .Part("xl/worksheets/sheet2.xml", "application/vnd.ms-excel.macrosheet+xml",
                "<xm:macrosheet xmlns:xm=\"http://schemas.microsoft.com/office/excel/2006/main\"><sheetData/></xm:macrosheet>")
            .Build();
        Assert.Contains("xl/worksheets/sheet2.xml", (await TestInspection.InspectAsync(workbook, "bilan.xlsx")).Has("office.xlm-macro").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_every_binary_workbook_was_suspicious_as_macro_enabled()
    {
        const string BinaryMain = "application/vnd.ms-excel.sheet.binary.macroEnabled.main";
        var xlsb = OoxmlBuilder.Excel(mainType: BinaryMain).Build();
        var verdict = await TestInspection.InspectAsync(xlsb, "bilan.xlsb");
        Assert.DoesNotContain(verdict.Findings, f => f.Rule == "office.macro-enabled");

        var withMacros = OoxmlBuilder.Excel(mainType: BinaryMain).Part("xl/vbaProject.bin", OoxmlBuilder.VbaProjectType, [0xCC, 0x61]).Build();
        var flagged = await TestInspection.InspectAsync(withMacros, "bilan.xlsb");
        flagged.Has("office.macro-enabled");
        flagged.Has("office.vba-macro");
    }

    [Fact]
    public async Task Regression_a_link_field_to_a_local_file_was_reported_remote()
    {
        static byte[] Field(string instruction) => OoxmlBuilder.Word($"<w:p><w:fldSimple w:instr=\"{instruction}\"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>").Build();

        var local = await TestInspection.InspectAsync(Field(" LINK Excel.Sheet.12 &quot;C:\\\\Users\\\\drmartin\\\\Documents\\\\Bilan labo.xlsx&quot; Feuil1!L1C1:L5C3 \\a \\f 4 \\h "), "lettre.docx");
        Assert.DoesNotContain(local.Findings, f => f.Rule == "office.external-relationship");
        var picture = await TestInspection.InspectAsync(Field(" INCLUDEPICTURE &quot;C:\\\\Modeles\\\\logo.png&quot; \\* MERGEFORMATINET "), "lettre.docx");
        Assert.DoesNotContain(picture.Findings, f => f.Rule == "office.external-relationship");

        // Network paths, doubled as Word writes them or not, and URLs stay remote.
        (await TestInspection.InspectAsync(Field(" INCLUDEPICTURE &quot;\\\\\\\\fileserver\\\\share\\\\logo.png&quot; "), "lettre.docx")).Has("office.external-relationship");
        (await TestInspection.InspectAsync(Field(" INCLUDEPICTURE &quot;\\\\fileserver\\share\\logo.png&quot; "), "lettre.docx")).Has("office.external-relationship");
        (await TestInspection.InspectAsync(Field(" INCLUDETEXT http://203.0.113.9/a.docx "), "lettre.docx")).Has("office.external-relationship");
    }

    [Fact]
    public async Task Regression_html_smuggling_through_a_file_object_or_a_data_url_set_from_a_script_passed_as_clean()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        var scriptedLink = $"<html><body><script>var a=document.createElement('a');a.href=\"data:application/octet-stream;base64,{payload}\";a.download='resultats.exe';document.body.appendChild(a);a.click();</script></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(scriptedLink), "resultats.html")).IsMalicious();

        var bytes = string.Join(',', ExecutableSamples.Pe().Concat(new byte[300]).Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var file = "<html><body><script>var u=new Uint8Array([" + bytes + "]);var f=new File([u],'resultats.exe',{type:'application/octet-stream'});"
            + "var a=document.createElement('a');a.href=URL.createObjectURL(f);a.setAttribute('download','resultats.exe');document.body.appendChild(a);a.click();</script></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(file), "resultats.html")).IsMalicious();

        // An image shown from a data: URL, with no download, is a page like any other.
        var inline = $"<html><body><img alt=\"logo\" src=\"data:image/png;base64,{payload}\"><script>document.title='CR';</script></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(inline), "cr.html")).IsClean();
    }

    [Fact]
    public async Task Regression_a_worksheet_named_under_word_was_read_as_word_text_only_and_its_dde_formula_unseen()
    {
        var workbook = OoxmlBuilder.Excel()
            .Part("word/s1.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
                "<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData><row r=\"1\"><c r=\"A1\"><f>cmd|' /C echo inert'!A0</f></c></row></sheetData></worksheet>")
            .Build();
        Assert.Contains("word/s1.xml", (await TestInspection.InspectAsync(workbook, "bilan.xlsx")).Has("office.dde").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_a_pipe_in_a_formula_s_string_was_read_as_a_dde_reference()
    {
        var lab = OoxmlBuilder.Excel("<sheetData><row r=\"2\"><c r=\"C2\"><f>IF(ISNUMBER(SEARCH(\"pos|neg\",A2)),Resultats!B2,\"\")</f></c></row></sheetData>").Build();
        Assert.DoesNotContain((await TestInspection.InspectAsync(lab, "labo.xlsx")).Findings, f => f.Rule == "office.dde");
    }

    [Fact]
    public async Task Regression_common_smuggling_idioms_passed_as_clean()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        var bytes = string.Join(',', ExecutableSamples.Pe().Concat(new byte[300]).Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        string[] pages =
        [
            $"<script>Object.assign(document.createElement('a'),{{href:'data:application/octet-stream;base64,{payload}',download:'x.exe'}}).click();</script>",
            "<script>var b=new Blob([new Uint8Array([" + bytes + "])]);var a=document.createElement('a');a.href=URL.createObjectURL(b);a['download']='x.exe';a['click']();</script>",
            "<script>window.open(URL.createObjectURL(new Blob([new Uint8Array([" + bytes + "])],{type:'application/octet-stream'})));</script>",
            "<script>location.assign(URL.createObjectURL(new Blob([new Uint8Array([" + bytes + "])])));</script>",
            $"<script>location.href='data:application/octet-stream;base64,{payload}';</script>",
        ];
        foreach (var page in pages)
        {
            (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("<html><body>" + page + "</body></html>"), "resultats.html")).IsMalicious();
        }

        // A page that opens a window and shows a logo inline delivers no file.
        var portal = $"<html><body><img src=\"data:image/png;base64,{payload}\"><script>function help(){{window.open('https://www.hospital.example/aide');}}</script></body></html>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(portal), "portail.html")).IsClean();
    }

    [Fact]
    public async Task Regression_third_review_smuggling_false_positives_and_data_urls_with_parameters()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        static Task<Verdict> Page(string body) => TestInspection.InspectAsync(Encoding.UTF8.GetBytes("<html><head></head><body>" + body + "</body></html>"), "page.html");

        // Parameters before ";base64," (a name, a charset, a space) still make a data: URL.
        foreach (var mediaType in new[] { "application/octet-stream;name=r.exe", "application/octet-stream;charset=binary", "application/octet-stream; " })
        {
            (await Page($"<a download=\"r.exe\" href=\"data:{mediaType};base64,{payload}\">r</a>")).Has("html.smuggling");
        }

        // Legitimate pages: fetch's blob(), a worker with an unrelated window.open, a JSON flag, a static download link beside
        // an image preview, a saved page's web font, an "Export CSV" button built from the page's own table.
        (await Page("<script>fetch('/api/img').then(r => r.blob()).then(b => { img.src = URL.createObjectURL(b); }); function help(){ window.open('/aide'); }</script>")).IsClean();
        (await Page("<script>var w = new Worker(URL.createObjectURL(new Blob(['onmessage=function(){}']))); location.href = '/login';</script>")).IsClean();
        (await Page("<script>var cfg = {\"download\": false}; var p = URL.createObjectURL(new Blob([file])); img.src = p;</script><a href=\"/guide.pdf\" download>guide</a>")).IsClean();
        (await Page($"<style>@font-face {{ font-family: f; src: url(data:font/woff2;base64,{payload}); }}</style><a href=\"/x.pdf\" download>x</a><script>b.click();</script>")).IsClean();
        var export = await Page("<table id=t><tr><td>1</td></tr></table><script>function csv(){ var b = new Blob([t.innerText], {type:'text/csv'}); "
            + "var a = document.createElement('a'); a.href = URL.createObjectURL(b); a.download = 'export.csv'; a.click(); }</script>");
        export.IsClean();
        Assert.Equal(Severity.Info, export.Has("html.smuggling").Severity);
    }

    [Fact]
    public async Task Regression_third_review_dde_shapes()
    {
        static byte[] Sheet(string formula) => OoxmlBuilder.Excel($"<sheetData><row r=\"1\"><c r=\"A1\"><f>{formula}</f></c></row></sheetData>").Build();

        // A quote inside the quoted topic hid the reference once string literals were emptied.
        (await TestInspection.InspectAsync(Sheet("cmd|' /C &quot;calc'!A0&amp;&quot;x&quot;"), "a.xlsx")).Has("office.dde");
        (await TestInspection.InspectAsync(Sheet("MSEXCEL|'\\..\\..\\Windows\\System32\\cmd.exe /c &quot;calc'!''&amp;&quot;&quot;"), "a.xlsx")).Has("office.dde");
        // A pipe in a quoted sheet name is a name.
        Assert.DoesNotContain((await TestInspection.InspectAsync(Sheet("SUM('IRM|Scanner'!A1:A3)"), "a.xlsx")).Findings, f => f.Rule == "office.dde");
        // A bullet line in a note or a free-text cell is text.
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("Planning :\n- Scanner | IRM : creneaux libres le matin !\n"), "note.txt")).IsClean();
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("patient;remarque\nA;- allergie iode | a verifier !\n"), "liste.csv")).IsClean();
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("a,b\n1,=cmd|' /C calc'!A0\n"), "export.csv")).Has("csv.dde-injection");
    }
}
