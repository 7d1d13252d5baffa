using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>A ZIP that is both an OOXML and an OpenDocument package: Word and LibreOffice each open their own document from it.</summary>
public sealed class HybridPackageTests
{
    private const string Manifest = "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">"
        + "<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"application/vnd.oasis.opendocument.text\"/></manifest:manifest>";

    private const string BasicModule = "<?xml version=\"1.0\"?><script:module xmlns:script=\"http://openoffice.org/2000/script\" script:name=\"Module1\" "
        + "script:language=\"StarBasic\">Sub Main\n  ' inert test macro\nEnd Sub</script:module>";

    [Fact]
    public async Task Regression_an_ooxml_package_that_is_also_opendocument_had_its_basic_macros_unread()
    {
        var docx = OoxmlBuilder.Word()
            .Part("META-INF/manifest.xml", null, Encoding.UTF8.GetBytes(Manifest))
            .Part("Basic/Standard/Module1.xml", null, Encoding.UTF8.GetBytes(BasicModule))
            .Build();

        var verdict = await TestInspection.InspectAsync(docx, "compte-rendu.docx");

        Assert.Equal(nameof(ContentType.Ooxml), verdict.ContentType);
        verdict.Has("office.hybrid-package");
        verdict.Has("office.odf-macro");
        verdict.IsMalicious();
    }

    [Fact]
    public async Task Regression_an_opendocument_package_that_is_also_ooxml_had_its_vba_project_unread()
    {
        var odt = new ZipBuilder()
            .Add("mimetype", "application/vnd.oasis.opendocument.text", deflate: false)
            .Add("META-INF/manifest.xml", Manifest)
            .Add("content.xml", "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\"><office:body/></office:document-content>")
            .Add("[Content_Types].xml", "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
                + "<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.ms-word.document.macroEnabled.main+xml\"/></Types>")
            .Add("word/vbaProject.bin", VbaSamples.VbaProjectBin())
            .Build();

        var verdict = await TestInspection.InspectAsync(odt, "courrier.odt");

        Assert.Equal(nameof(ContentType.OpenDocument), verdict.ContentType);
        verdict.Has("office.hybrid-package");
        verdict.Has("office.vba-macro");
    }

    [Fact]
    public async Task Ordinary_packages_are_not_hybrids()
    {
        (await TestInspection.InspectAsync(OoxmlSamples.CleanDocx(), "lettre.docx")).HasNo("office.hybrid-package");
        var odt = new ZipBuilder()
            .Add("mimetype", "application/vnd.oasis.opendocument.text", deflate: false)
            .Add("META-INF/manifest.xml", Manifest)
            .Add("content.xml", "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\"><office:body/></office:document-content>")
            .Build();
        (await TestInspection.InspectAsync(odt, "lettre.odt")).IsClean();
    }
}
