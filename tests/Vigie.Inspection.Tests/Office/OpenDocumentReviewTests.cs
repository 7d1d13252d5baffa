using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>The review of 2026-12-07: OpenDocument content (content.xml, flat files) was barely read.</summary>
public sealed class OpenDocumentReviewTests
{
    private const string Namespaces =
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
        + "xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" xmlns:draw=\"urn:oasis:names:tc:opendocument:xmlns:drawing:1.0\" "
        + "xmlns:script=\"urn:oasis:names:tc:opendocument:xmlns:script:1.0\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" "
        + "xmlns:svg=\"urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0\" xmlns:ooo=\"http://openoffice.org/2004/office\" "
        + "xmlns:of=\"urn:oasis:names:tc:opendocument:xmlns:of:1.2\"";

    private const string Text = "application/vnd.oasis.opendocument.text";
    private const string Spreadsheet = "application/vnd.oasis.opendocument.spreadsheet";

    private static byte[] Package(string mimeType, string content) => new ZipBuilder()
        .Add("mimetype", mimeType, deflate: false)
        .Add("content.xml", content)
        .Add("META-INF/manifest.xml", "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">"
            + $"<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{mimeType}\"/>"
            + "<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>")
        .Build();

    private static byte[] Odt(string body, string scripts = "") => Package(Text,
        $"<?xml version=\"1.0\"?><office:document-content {Namespaces} office:version=\"1.2\">{scripts}<office:body><office:text>"
        + $"<text:p>Compte rendu</text:p>{body}</office:text></office:body></office:document-content>");

    private static byte[] Ods(string cellFormula, string before = "") => Package(Spreadsheet,
        $"<?xml version=\"1.0\"?><office:document-content {Namespaces} office:version=\"1.2\"><office:body><office:spreadsheet>{before}"
        + "<table:table table:name=\"S\"><table:table-row><table:table-cell office:value-type=\"string\"><text:p>x</text:p></table:table-cell>"
        + $"<table:table-cell table:formula=\"{cellFormula}\" office:value-type=\"float\" office:value=\"0\"/></table:table-row></table:table>"
        + "</office:spreadsheet></office:body></office:document-content>");

    [Fact]
    public async Task Regression_flat_odf_with_a_basic_macro_was_read_as_plain_xml()
    {
        var fodt = $"<?xml version=\"1.0\" encoding=\"UTF-8\"?><office:document {Namespaces} office:version=\"1.3\" office:mimetype=\"{Text}\">"
            + "<office:scripts><office:script script:language=\"ooo:Basic\"><ooo:libraries><ooo:library-embedded ooo:name=\"Standard\">"
            + "<ooo:module ooo:name=\"Module1\"><ooo:source-code>Sub Main\n  Shell(\"calc.exe\")\nEnd Sub</ooo:source-code></ooo:module>"
            + "</ooo:library-embedded></ooo:libraries></office:script></office:scripts>"
            + "<office:body><office:text><text:p>Compte rendu</text:p></office:text></office:body></office:document>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(fodt), "report.fodt");
        Assert.Equal(nameof(ContentType.FlatOpenDocument), verdict.ContentType);
        verdict.IsMalicious();
        Assert.Contains("Module1", verdict.Has("office.odf-macro", "").Message);

        // Bound to the load event with no module of its own, in UTF-16, or behind a root tag padded past the identifier's head.
        var onLoad = $"<office:document {Namespaces}><office:scripts><office:event-listeners><script:event-listener script:language=\"ooo:script\" "
            + "script:event-name=\"dom:load\" xlink:href=\"vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document\"/>"
            + "</office:event-listeners></office:scripts><office:body><office:text/></office:body></office:document>";
        (await TestInspection.InspectAsync(Encoding.Unicode.GetPreamble().Concat(Encoding.Unicode.GetBytes(onLoad)).ToArray(), "r.fodt")).Has("office.odf-macro");
        var padded = onLoad.Replace("<office:document ", "<office:document " + string.Concat(Enumerable.Range(0, 400).Select(i => $"xmlns:p{i}=\"urn:x:{i}\" ")), StringComparison.Ordinal);
        var paddedVerdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(padded), "r.fodt");
        Assert.Equal(nameof(ContentType.FlatOpenDocument), paddedVerdict.ContentType);
        paddedVerdict.Has("office.odf-macro");

        // A flat document as LibreOffice writes it, and other XML, stay clean.
        var plain = $"<?xml version=\"1.0\"?><!-- note --><office:document {Namespaces} office:mimetype=\"{Text}\"><office:scripts/>"
            + "<office:body><office:text><text:p>Voir <text:a xlink:type=\"simple\" xlink:href=\"https://www.has-sante.fr/\">HAS</text:a></text:p>"
            + "<draw:frame><draw:image><office:binary-data>iVBORw0KGgo=</office:binary-data></draw:image></draw:frame></office:text></office:body></office:document>";
        var clean = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(plain), "letter.fodt");
        Assert.Equal(nameof(ContentType.FlatOpenDocument), clean.ContentType);
        clean.IsClean();
        Assert.Equal(nameof(ContentType.Xml), (await TestInspection.InspectAsync("<?xml version=\"1.0\"?><document><office/></document>"u8.ToArray())).ContentType);
    }

    [Fact]
    public async Task Regression_odf_dde_was_not_inspected()
    {
        var function = await TestInspection.InspectAsync(Ods("of:=DDE(&quot;cmd&quot;;&quot;/C calc&quot;;&quot;!A0&quot;)"), "results.ods");
        function.IsMalicious();
        Assert.Contains("DDE(", function.Has("office.dde", "").Message);

        var link = await TestInspection.InspectAsync(Ods("of:=1", "<table:dde-links><table:dde-link><office:dde-source office:dde-application=\"cmd\" "
            + "office:dde-topic=\"/C calc\" office:dde-item=\"A0\" office:automatic-update=\"true\"/></table:dde-link></table:dde-links>"), "results.ods");
        Assert.Contains("'cmd'", link.Has("office.dde", "").Message);

        var field = await TestInspection.InspectAsync(Odt("<text:p><text:dde-connection text:connection-name=\"c\">x</text:dde-connection></text:p>",
            "<text:dde-connection-decls><text:dde-connection-decl office:name=\"c\" office:dde-application=\"cmd\" office:dde-topic=\"/C calc\" "
            + "office:dde-item=\"A0\" office:automatic-update=\"true\"/></text:dde-connection-decls>"), "report.odt");
        Assert.Contains("updated automatically", field.Has("office.dde", "").Message);

        (await TestInspection.InspectAsync(Ods("msoxl:=cmd|&apos; /c calc&apos;!A0"), "results.ods")).Has("office.dde");

        // A string that mentions DDE, another function, a sheet reference: ordinary formulas.
        (await TestInspection.InspectAsync(Ods("of:=CONCATENATE(&quot;DDE(&quot;;[.A1])&amp;ISODDE([$&apos;DDE|x&apos;.B2])"), "results.ods")).IsClean();
        (await TestInspection.InspectAsync(Ods("of:=SUM([.A1:.A3])"), "results.ods")).IsClean();
    }

    [Fact]
    public async Task Regression_odf_script_event_bindings_were_ignored()
    {
        // CVE-2018-16858: a mouse-over runs a Python function of the program's own, reached by a path out of the script folders.
        var cve = await TestInspection.InspectAsync(Odt("<text:p><text:a xlink:type=\"simple\" xlink:href=\"https://www.has-sante.fr/\"><office:event-listeners>"
            + "<script:event-listener script:language=\"ooo:script\" script:event-name=\"dom:mouseover\" xlink:type=\"simple\" "
            + "xlink:href=\"vnd.sun.star.script:../../../program/python-core-3.5.5/lib/pydoc.py$tempfilepager(1, calc.exe )?language=Python&amp;location=share\"/>"
            + "</office:event-listeners>lien</text:a></text:p>"), "report.odt");
        cve.IsMalicious();
        var message = cve.Has("office.odf-macro", "").Message;
        Assert.Contains("dom:mouseover", message);
        Assert.Contains("CVE-2018-16858", message);

        var onLoad = await TestInspection.InspectAsync(Odt("", "<office:scripts><office:event-listeners><script:event-listener script:language=\"ooo:script\" "
            + "script:event-name=\"dom:load\" xlink:href=\"vnd.sun.star.script:Tools.Debug.Main?language=Basic&amp;location=application\"/>"
            + "</office:event-listeners></office:scripts>"), "report.odt");
        onLoad.IsMalicious();
        Assert.Contains("dom:load", onLoad.Has("office.odf-macro").Message);

        // The ODF 1.0 binding and a hyperlink whose target is a macro.
        (await TestInspection.InspectAsync(Odt("", "<office:scripts><office:event-listeners><script:event-listener script:language=\"ooo:StarBasic\" "
            + "script:event-name=\"dom:load\" script:macro-name=\"Standard.Module1.Main\"/></office:event-listeners></office:scripts>"), "report.odt")).IsMalicious();
        (await TestInspection.InspectAsync(Odt("<text:p><text:a xlink:href=\"macro:///Tools.UCB.RemoveSubContent\">x</text:a></text:p>"), "report.odt")).IsMalicious();

        // Empty bindings (LibreOffice writes one per event) and its letter wizard's own macro on office:new stay clean.
        var wizard = await TestInspection.InspectAsync(Odt("", "<office:scripts><office:event-listeners>"
            + "<script:event-listener script:language=\"ooo:script\" script:event-name=\"dom:load\" xlink:href=\"\"/>"
            + "<script:event-listener script:language=\"ooo:StarBasic\" script:event-name=\"office:new\" script:macro-name=\"application:Template.Correspondence.Main\"/>"
            + "</office:event-listeners></office:scripts>"), "letter.ott");
        wizard.IsClean();
    }

    [Fact]
    public async Task Regression_odf_network_content_and_program_links_were_not_reported()
    {
        var image = await TestInspection.InspectAsync(Odt("<text:p><draw:frame svg:width=\"1cm\" svg:height=\"1cm\"><draw:image xlink:href=\"file://203.0.113.9/share/a.png\" "
            + "xlink:type=\"simple\" xlink:show=\"embed\" xlink:actuate=\"onLoad\"/></draw:frame></text:p>"), "report.odt");
        image.IsSuspicious();
        var finding = image.Has("office.external-relationship", "");
        Assert.Equal(Severity.Medium, finding.Severity);
        Assert.Contains("leaks Windows credentials", finding.Message);

        var section = await TestInspection.InspectAsync(Odt("<text:section text:name=\"S\"><text:section-source xlink:href=\"http://203.0.113.9/x.odt\" xlink:type=\"simple\"/></text:section>"), "report.odt");
        Assert.Equal(Severity.Medium, section.Has("office.external-relationship", "").Severity);

        var ole = await TestInspection.InspectAsync(Odt("<text:p><draw:frame><draw:object xlink:href=\"http://203.0.113.9/x.ods\" xlink:type=\"simple\" xlink:show=\"embed\" "
            + "xlink:actuate=\"onLoad\"/></draw:frame></text:p>"), "report.odt");
        ole.IsMalicious();
        Assert.Equal(Severity.High, ole.Has("office.external-ole-link", "").Severity);

        var program = await TestInspection.InspectAsync(Odt("<text:p><text:a xlink:type=\"simple\" xlink:href=\"http://evil.example/a.exe\">x</text:a></text:p>"), "report.odt");
        Assert.Contains(".exe", program.Has("office.external-relationship", "").Message);
        (await TestInspection.InspectAsync(Odt("<text:p><text:a xlink:href=\"http://198.51.100.4/viewer\">x</text:a></text:p>"), "report.odt")).IsSuspicious();

        // Plain https links, an intranet viewer by private address (Info, as pdf.uri-ip), embedded objects and pictures stay clean.
        (await TestInspection.InspectAsync(Odt("<text:p><text:a xlink:href=\"https://www.has-sante.fr/guide.pdf\">HAS</text:a>"
            + "<text:a xlink:href=\"http://10.1.2.3/viewer?study=1\">PACS</text:a><text:a xlink:href=\"#Résultats\">plus bas</text:a></text:p>"
            + "<text:p><draw:frame><draw:image xlink:href=\"Pictures/1.png\"/></draw:frame><draw:frame><draw:object xlink:href=\"./Object 1\"/></draw:frame>"
            + "<draw:frame><draw:image xlink:href=\"file:///C:/Images/logo.png\"/></draw:frame></text:p>"), "report.odt")).IsClean();
    }

    [Fact]
    public async Task Regression_flat_odf_inline_data_was_not_inspected()
    {
        // A zipped package's pictures and objects are entries, inspected as children; a flat file writes them inline in base64.
        var payload = Convert.ToBase64String(ExecutableSamples.Pe());
        var fodt = $"<?xml version=\"1.0\"?><office:document {Namespaces} office:mimetype=\"{Text}\"><office:body><office:text>"
            + $"<text:p><draw:frame><draw:object-ole><office:binary-data>{payload[..40]}\n{payload[40..]}</office:binary-data></draw:object-ole></draw:frame>"
            + "<text:a xlink:href=\"http://evil.example/a.exe\">x</text:a></text:p></office:text></office:body></office:document>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(fodt), "report.fodt");
        verdict.Has("executable.pe", "[binary-data 1]");
        // The element after the inline data is still read.
        verdict.Has("office.external-relationship", "");
    }
}
