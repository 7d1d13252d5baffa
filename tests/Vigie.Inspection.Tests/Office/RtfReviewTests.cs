using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Regressions from the first review of the RTF analyser (2026-12-07).</summary>
public sealed class RtfReviewTests
{
    private static Task<Verdict> InspectAsync(string rtf) => TestInspection.InspectAsync(Encoding.ASCII.GetBytes(rtf), "letter.rtf");

    [Fact]
    public async Task Dde_field_spelt_with_a_unicode_escape_is_found()
    {
        var finding = (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst \\u68?DEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\"}{\\fldrslt x}}}")).Has("rtf.dde");
        Assert.Contains("DDEAUTO c:\\windows\\system32\\cmd.exe", finding.Message, StringComparison.Ordinal);
        // \ucN fallbacks of two characters, one of them an escape, and a negative \uN elsewhere in the text.
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst \\uc2\\u68\\'3f?\\u68 xDE\\u-4031??AUTO c:\\\\x.exe}{\\fldrslt x}}}")).HasNo("inspection.analyser-error");
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst \\uc2\\u68\\'3f?\\u68 x?EAUTO c:\\\\x.exe}{\\fldrslt x}}}")).Has("rtf.dde");
        // The fallback alone is not read: "\u88?DE" is "XDE", no DDE field.
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst \\u88DDE c:\\\\x.exe}{\\fldrslt x}}}")).HasNo("rtf.dde");
    }

    [Fact]
    public async Task Ignorable_group_inside_objdata_gives_no_hex_digits()
    {
        var rtf = RtfSamples.ObjectRtf("Package", RtfSamples.PackageNative("invoice.exe", ExecutableSamples.Pe()));
        var start = rtf.IndexOf("\\objdata ", StringComparison.Ordinal) + "\\objdata ".Length + 16;
        var verdict = await InspectAsync(rtf.Insert(start, "{\\*\\vigiex 4142}{\\*\\other {\\nested 43}}"));
        verdict.Has("office.ole-package");
        verdict.Has("executable.pe");

        // Destination groups without \* (an information group's title, a bookmark) are skipped as well.
        verdict = await InspectAsync(rtf.Insert(start, "{\\title 4142}{\\bkmkstart 43}"));
        verdict.Has("office.ole-package");
        verdict.Has("executable.pe");

        // A plain nested group keeps its digits (readers keep them too); an empty group with an unknown word changes nothing.
        var split = rtf.Insert(start + 2, "}").Insert(start, "{").Insert(start, "{\\vigieunknown}");
        verdict = await InspectAsync(split);
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Objclass_split_by_an_empty_group_reads_as_one_name()
    {
        var rtf = "{\\rtf1{\\object\\objemb{\\*\\objclass Equ{}ation.3}\\objw10\\objh10{\\*\\objdata 0102}}}";
        var finding = (await InspectAsync(rtf)).Has("rtf.risky-object-class");
        Assert.Contains("'Equation.3'", finding.Message, StringComparison.Ordinal);
    }
}
