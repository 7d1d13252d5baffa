using System.Text;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Regressions from the second review of the RTF analyser (2026-12-07).</summary>
public sealed class RtfSecondReviewTests
{
    private static Task<Verdict> InspectAsync(string rtf) => TestInspection.InspectAsync(Encoding.ASCII.GetBytes(rtf), "letter.rtf");

    [Theory]
    [InlineData("D{\\*\\zzunknown junk}DEAUTO")]
    [InlineData("DD{\\*\\bkmkstart b1}EAUTO")]
    [InlineData("DDE{\\bkmkend b1}AUTO")]
    [InlineData("DDEA{\\*\\datafield 0011}UTO")]
    [InlineData("D{\\*\\zz {nested text}}DEAUTO")]
    public async Task Rtf_dde_split_by_an_ignorable_or_destination_group_is_found(string command)
    {
        var finding = (await InspectAsync($"{{\\rtf1{{\\field{{\\*\\fldinst {command} c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\"}}{{\\fldrslt x}}}}}}")).Has("rtf.dde");
        Assert.Contains("DDEAUTO c:\\windows\\system32\\cmd.exe", finding.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rtf_dde_plain_nested_group_still_counts_as_instruction_text()
    {
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst D{DE}{\\b AUTO} c:\\\\x.exe}{\\fldrslt x}}}")).Has("rtf.dde");
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst D{\\*\\zz DE}AUTO c:\\\\x.exe}{\\fldrslt x}}}")).HasNo("rtf.dde");
    }

    [Fact]
    public async Task Rtf_dde_in_upr_ud_unicode_text_is_found()
    {
        var finding = (await InspectAsync(
            "{\\rtf1{\\field{\\*\\fldinst {\\upr{QUOTE 1}{\\*\\ud{DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo\"}}}}{\\fldrslt x}}}")).Has("rtf.dde");
        Assert.DoesNotContain("QUOTE", finding.Message, StringComparison.Ordinal);
        // The ANSI group is the one readers drop.
        (await InspectAsync("{\\rtf1{\\field{\\*\\fldinst {\\upr{DDEAUTO c:\\\\x.exe}{\\*\\ud{QUOTE 1}}}}{\\fldrslt x}}}")).HasNo("rtf.dde");
    }
}
