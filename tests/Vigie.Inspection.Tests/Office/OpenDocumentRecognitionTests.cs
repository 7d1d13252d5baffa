using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Review 21: OpenDocument was recognised by where its root or mimetype entry sits, not as LibreOffice recognises it.</summary>
public sealed class OpenDocumentRecognitionTests
{
    private const string Namespaces =
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
        + "xmlns:script=\"urn:oasis:names:tc:opendocument:xmlns:script:1.0\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" "
        + "xmlns:ooo=\"http://openoffice.org/2004/office\"";

    private const string Text = "application/vnd.oasis.opendocument.text";

    /// <summary>A flat text document with an embedded Basic module bound to the load event (an inert marker, no payload).</summary>
    private static readonly string Fodt = $"<office:document {Namespaces} office:version=\"1.3\" office:mimetype=\"{Text}\"><office:scripts>"
        + "<office:script script:language=\"ooo:Basic\"><ooo:libraries><ooo:library-embedded ooo:name=\"Standard\"><ooo:module ooo:name=\"Module1\">"
        + "<ooo:source-code>Sub Main\n  MsgBox \"VIGIE-INERT-MARKER\"\nEnd Sub</ooo:source-code></ooo:module></ooo:library-embedded></ooo:libraries></office:script>"
        + "<office:event-listeners><script:event-listener script:language=\"ooo:script\" script:event-name=\"dom:load\" "
        + "xlink:href=\"vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document\"/></office:event-listeners></office:scripts>"
        + "<office:body><office:text><text:p>Compte rendu (synthetic)</text:p></office:text></office:body></office:document>";

    private const string Declaration = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

    [Fact]
    public async Task Regression_flat_odf_behind_a_long_prolog_was_read_as_plain_xml()
    {
        string[] prologs =
        [
            Declaration + "<?vigie-review " + new string('B', 9000) + "?>\n",
            Declaration + new string('\n', 20_000),
            Declaration + "<!-- " + new string('c', 16_000) + " -->",
            new string(' ', 20_000),
            Declaration + "<!DOCTYPE office:document [<!-- " + new string('d', 12_000) + " -->]>",
        ];
        foreach (var prolog in prologs)
        {
            var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(prolog + Fodt), "report.fodt");
            Assert.Equal(nameof(ContentType.FlatOpenDocument), verdict.ContentType);
            verdict.IsMalicious();
            Assert.Contains("Module1", verdict.Has("office.odf-macro", "").Message);
        }

        // UTF-16, whose head holds half as many characters.
        var utf16 = Encoding.Unicode.GetPreamble().Concat(Encoding.Unicode.GetBytes("<?xml version=\"1.0\" encoding=\"UTF-16\"?><!-- " + new string('c', 9000) + " -->" + Fodt)).ToArray();
        (await TestInspection.InspectAsync(utf16, "report.fodt")).Has("office.odf-macro");

        // Other XML behind the same prolog keeps its type: a CDA stays XML and clean, an XHTML page is a page.
        var cda = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(Declaration + new string('\n', 20_000)
            + "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>Compte rendu (synthetic)</title></ClinicalDocument>"));
        Assert.Equal(nameof(ContentType.Xml), cda.ContentType);
        cda.IsClean();
        var xhtml = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes("<!-- " + new string('c', 16_000) + " --><html xmlns=\"http://www.w3.org/1999/xhtml\"><body><p>x</p></body></html>"));
        Assert.Equal(nameof(ContentType.Html), xhtml.ContentType);
        xhtml.IsClean();
        // Text after a blank head is still text.
        Assert.Equal(nameof(ContentType.Text), (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(new string('\n', 10_000) + "Compte rendu, rien d'autre.\n"))).ContentType);
    }

    [Fact]
    public async Task Regression_a_prolog_longer_than_the_identifier_reads_left_xml_clean()
    {
        // Past 16 MiB of prolog the first element is not looked for: that is said, not called clean.
        var prolog = Encoding.UTF8.GetBytes(Declaration).Concat(Enumerable.Repeat((byte)'\n', 17 * 1024 * 1024)).ToArray();
        var verdict = await TestInspection.InspectAsync([.. prolog, .. Encoding.UTF8.GetBytes(Fodt)], "report.fodt");
        Assert.False(verdict.Kind == VerdictKind.Clean, verdict.Describe());
        Assert.Equal(Severity.Medium, verdict.Has("inspection.prolog-limit", "").Severity);
    }

    private static string Manifest(string mediaType) =>
        "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">"
        + $"<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"{mediaType}\"/>"
        + "<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>";

    /// <summary>The CVE-2018-16858 shape: a mouse-over and the load event bound to a script reached by a path out of the script folders (inert).</summary>
    private static readonly string CveContent = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        + $"<office:document-content {Namespaces} office:version=\"1.3\"><office:body><office:text><text:p>"
        + "<text:a xlink:type=\"simple\" xlink:href=\"https://example.org/\"><office:event-listeners><script:event-listener script:language=\"ooo:script\" "
        + "script:event-name=\"dom:mouseover\" xlink:href=\"vnd.sun.star.script:../../../program/python-core/lib/pydoc.py$tempfilepager(1, VIGIE-INERT-MARKER )?language=Python&amp;location=share\"/>"
        + "</office:event-listeners>Compte rendu</text:a></text:p></office:text></office:body></office:document-content>";

    private static readonly string CleanContent = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        + $"<office:document-content {Namespaces} office:version=\"1.3\"><office:body><office:text><text:p>Compte rendu (synthetic)</text:p></office:text></office:body></office:document-content>";

    private static byte[] Package(string content, params string[] order)
    {
        var zip = new ZipBuilder();
        foreach (var entry in order)
        {
            _ = entry switch
            {
                "mimetype" => zip.Add("mimetype", Text, deflate: false),
                "mimetype-deflated" => zip.Add("mimetype", Text, deflate: true),
                "META-INF/manifest.xml" => zip.Add(entry, Manifest(Text)),
                "content.xml" => zip.Add(entry, content),
                _ => zip.Add(entry, "<?xml version=\"1.0\"?><script:module xmlns:script=\"http://openoffice.org/2000/script\" script:name=\"Module1\">Sub Main\nEnd Sub</script:module>"),
            };
        }

        return zip.Build();
    }

    [Fact]
    public async Task Regression_odf_package_without_a_canonical_mimetype_entry_was_a_plain_zip()
    {
        var shapes = new Dictionary<string, (string[] Order, string Problem)>
        {
            ["missing"] = (["META-INF/manifest.xml", "content.xml"], "has no 'mimetype' entry"),
            ["last"] = (["content.xml", "META-INF/manifest.xml", "mimetype"], "is entry 3 of 3, not the first"),
            ["deflated"] = (["mimetype-deflated", "META-INF/manifest.xml", "content.xml"], "is compressed"),
            ["content only"] = (["content.xml"], "has no 'mimetype' entry"),
        };
        foreach (var (shape, (order, problem)) in shapes)
        {
            var verdict = await TestInspection.InspectAsync(Package(CveContent, order), "report.odt");
            Assert.True(verdict.ContentType == nameof(ContentType.OpenDocument), $"{shape}: {verdict.Describe()}");
            verdict.IsMalicious();
            Assert.Contains("CVE-2018-16858", verdict.Has("office.odf-macro", "").Message);
            var malformation = verdict.Has("office.odf-mimetype", "");
            Assert.Equal(Severity.Info, malformation.Severity);
            Assert.Contains(problem, malformation.Message);
        }

        // A Basic module in a package LibreOffice recognises by its manifest.
        (await TestInspection.InspectAsync(Package(CleanContent, "META-INF/manifest.xml", "content.xml", "Basic/Standard/Module1.xml"), "r.odt")).Has("office.odf-macro");

        // The same document without anything active stays clean; the canonical form gets no malformation.
        var clean = await TestInspection.InspectAsync(Package(CleanContent, "META-INF/manifest.xml", "content.xml"), "r.odt");
        Assert.Equal(nameof(ContentType.OpenDocument), clean.ContentType);
        clean.IsClean();
        (await TestInspection.InspectAsync(Package(CleanContent, "mimetype", "META-INF/manifest.xml", "content.xml"), "r.odt")).HasNo("office.odf-mimetype");

        // A ZIP that LibreOffice opens as no document (no manifest, no office content) stays a ZIP, Basic-like entries or not.
        var plain = await TestInspection.InspectAsync(new ZipBuilder().Add("Basic/Standard/Module1.xml", "<module>Sub Main\nEnd Sub</module>").Add("notes.txt", "x").Build(), "backup.zip");
        Assert.Equal(nameof(ContentType.Zip), plain.ContentType);
    }
}
