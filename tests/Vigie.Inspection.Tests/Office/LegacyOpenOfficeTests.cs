using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>OpenOffice.org 1.x documents (.sxw, .sxc...), which LibreOffice still opens and whose Basic macros it runs.</summary>
public sealed class LegacyOpenOfficeTests
{
    private const string Content = "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"http://openoffice.org/2000/office\" "
        + "xmlns:script=\"http://openoffice.org/2000/script\" office:class=\"text\">SCRIPTS<office:body/></office:document-content>";

    private static byte[] Sxw(string scripts = "", bool macro = false)
    {
        var zip = new ZipBuilder()
            .Add("mimetype", "application/vnd.sun.xml.writer", deflate: false)
            .Add("content.xml", Content.Replace("SCRIPTS", scripts, StringComparison.Ordinal))
            .Add("META-INF/manifest.xml", "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"http://openoffice.org/2001/manifest\">"
                + "<manifest:file-entry manifest:media-type=\"application/vnd.sun.xml.writer\" manifest:full-path=\"/\"/></manifest:manifest>");
        if (macro)
        {
            zip.Add("Basic/Standard/Module1.xml", "<?xml version=\"1.0\"?><script:module xmlns:script=\"http://openoffice.org/2000/script\" script:name=\"Module1\" "
                + "script:language=\"StarBasic\">Sub Main\n  ' inert test macro\nEnd Sub</script:module>");
        }

        return zip.Build();
    }

    [Fact]
    public async Task Regression_an_openoffice_1_document_with_a_basic_macro_bound_to_its_opening_was_a_clean_zip()
    {
        var events = "<office:events><script:event script:language=\"StarBasic\" script:event-name=\"office:load-finished\" "
            + "script:location=\"document\" script:macro-name=\"Standard.Module1.Main\"/></office:events>";
        var verdict = await TestInspection.InspectAsync(Sxw(events, macro: true), "courrier.sxw");

        Assert.Equal(nameof(ContentType.OpenDocument), verdict.ContentType);
        verdict.IsMalicious();
        verdict.Has("office.odf-macro");
    }

    [Fact]
    public async Task An_openoffice_1_document_without_macros_stays_clean()
    {
        var verdict = await TestInspection.InspectAsync(Sxw(), "lettre.sxw");
        Assert.Equal(nameof(ContentType.OpenDocument), verdict.ContentType);
        verdict.IsClean();
    }
}
