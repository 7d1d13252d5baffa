namespace Vigie.Inspection.Tests.Engine;

/// <summary>
/// Regression: `vigie rescan` and `vigie quarantine list --json` printed names taken from inside an object (a ZIP entry,
/// an attachment, a PDF launch target, often named after the patient) without --reveal-identifiers.
/// </summary>
public sealed class FindingDisclosureTests
{
    [Theory]
    [InlineData("", "")]
    [InlineData("(0042,0011):application/zip/notes/ZZPID970970_DUPONT.txt", "(0042,0011):application/zip/[name]")]
    [InlineData("(0042,0011):application/zip/DUPONT.zip/inner/JEANNE.docm/word/vbaProject.bin", "(0042,0011):application/zip/[name]")]
    [InlineData("(0040,A730)[0].(0042,0011):document/[as a PDF reader opens it, from offset 12]", "(0040,A730)[0].(0042,0011):document/[as a PDF reader opens it, from offset 12]")]
    [InlineData("(7FE0,0010)[frame 2]/trailing-data/polyglot.zip/DUPONT.exe", "(7FE0,0010)[frame 2]/trailing-data/polyglot.zip/[name]")]
    [InlineData("attachment[2]:DUPONT_Jeanne_CR.pdf/object 12 (JavaScript)", "attachment[2]:[name]/object 12 (JavaScript)")]
    [InlineData("part[1]:text/html/data-url[3]/body[0].txt", "part[1]:text/html/data-url[3]/body[0].txt")]
    [InlineData("message[1]:DUPONT/dir.eml/attachment[0]", "message[1]:[name]/attachment[0]")]
    public void Inner_paths_keep_their_structure_and_lose_the_names_from_the_object(string path, string shown) =>
        Assert.Equal(shown, FindingDisclosure.InnerPath(path));

    [Fact]
    public void Regression_rescan_and_quarantine_list_printed_names_from_inside_the_object()
    {
        Assert.Equal("the document launches '[name]' when opened", FindingDisclosure.Message("pdf.launch",
            @"the document launches 'C:\Patients\ZZLAUNCHNAME_ZZPID000180.exe' when opened"));
        Assert.Equal("[name] is nested deeper than 8 levels: not inspected",
            FindingDisclosure.Message("container.depth-limit", "DUPONT.zip is nested deeper than 8 levels: not inspected", "attachment[1]:DUPONT.zip"));
        Assert.Equal("embedded file \"[name]\"", FindingDisclosure.Message("pdf.embedded-file", "embedded file \"ZZPID1.exe\""));
        Assert.Equal("link to a .exe program: https://evil.example/[name]",
            FindingDisclosure.Message("pdf.uri-executable", "link to a .exe program: https://evil.example/DUPONT_JEANNE/setup.exe"));
        Assert.Equal("opens [name] and [name]", FindingDisclosure.Message("pdf.goto-remote", @"opens C:\Patients\DUPONT.pdf and \\server\share\ZZPID1.pdf"));
        // The site's own rule is named: it says nothing of the content.
        Assert.Equal("matches YARA rule 'Marker970'", FindingDisclosure.Message("signature.yara", "matches YARA rule 'Marker970'", "DUPONT.txt"));
        Assert.Equal("pdf.launch: the document launches '[name]'",
            FindingDisclosure.Reason(@"pdf.launch: the document launches 'C:\Patients\ZZLAUNCHNAME_ZZPID000180.exe'"));
        Assert.Equal("signature.pattern: matches known-bad signature 'X' (ndb)", FindingDisclosure.Reason("signature.pattern: matches known-bad signature 'X' (ndb)"));
        Assert.Equal("inspection Suspicious", FindingDisclosure.Reason("inspection Suspicious"));
    }
}
