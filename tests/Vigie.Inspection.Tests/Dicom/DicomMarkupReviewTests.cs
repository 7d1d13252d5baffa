using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using static Vigie.Inspection.Tests.Dicom.DicomThreatSamples;

namespace Vigie.Inspection.Tests.Dicom;

/// <summary>Review 18: page markup, shell lines and RTF in the preamble; smuggling pages behind text in a text value.</summary>
public sealed class DicomMarkupReviewTests
{
    /// <summary>An inert HTML-smuggling page: its script builds a Blob from a base64 literal of 12 bytes and clicks a download link.</summary>
    internal const string SmugglingPage = "<html><body><script>var b=atob(\"TVqQAAMAAAAEAAAA\");var a=document.createElement(\"a\");"
        + "a.href=URL.createObjectURL(new Blob([b],{type:\"application/octet-stream\"}));a.download=\"report.exe\";a.click();</script></body></html>";

    private static byte[] Utf16(string text, bool bigEndian) =>
        [.. bigEndian ? new byte[] { 0xFE, 0xFF } : [0xFF, 0xFE], .. (bigEndian ? Encoding.BigEndianUnicode : Encoding.Unicode).GetBytes(text)];

    /// <summary>
    /// Regression (review 18, defect 3): a preamble that a browser renders, a shell runs or Word opens passed as clean
    /// unless it held one of five tags in ASCII or "#!" at offset 0: an element with an event handler (&lt;body
    /// onload&gt;, &lt;img onerror&gt;), a &lt;script&gt; page in UTF-16 behind a BOM, an &lt;iframe srcdoc&gt;, a meta
    /// refresh, an XHTML script in an XML document, shell command lines after a line break, an RTF document with a
    /// DDEAUTO field. Zero, TIFF and vendor-text preambles stay clean.
    /// </summary>
    [Fact]
    public async Task Regression_preamble_markup_shell_lines_and_rtf_beyond_five_ascii_tags_were_clean()
    {
        (byte[] Preamble, string Rule, Severity Severity)[] polyglots =
        [
            (Ascii("<body onload=alert(\"INERT\")>"), "dicom.preamble.html", Severity.High),
            (Ascii("<img src=x onerror=alert(\"INERT\")>"), "dicom.preamble.html", Severity.High),
            (Utf16("<script>alert(\"INERT\")</script>", bigEndian: false), "dicom.preamble.html", Severity.High),
            (Utf16("<img src=x onerror=alert(1)>", bigEndian: true), "dicom.preamble.html", Severity.High),
            ([0xEF, 0xBB, 0xBF, .. Ascii("<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\">")], "dicom.preamble.html", Severity.High),
            (Ascii("<meta http-equiv=\"refresh\" content=\"0;url=http://example.invalid/\">"), "dicom.preamble.html", Severity.High),
            (Ascii("<?xml version=\"1.0\"?><x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script>"), "dicom.preamble.html", Severity.High),
            ([(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0, .. Ascii("<a href=\"http://example.invalid/\">x</a>")], "dicom.preamble.html", Severity.High),
            (Ascii("\n\necho INERT-SHELL;exit 0\n"), "dicom.preamble.script", Severity.Medium),
            (Ascii("\n#!/bin/sh\necho INERT\nexit\n"), "dicom.preamble.script", Severity.Medium),
            (Ascii("true;echo INERT"), "dicom.preamble.script", Severity.Medium),
            (Ascii("{\\rtf1{\\field{\\*\\fldinst DDEAUTO \"INERTAPP\" \"INERTTOPIC\"}{\\fldrslt x}}}"), "dicom.preamble.rtf", Severity.High),
        ];
        foreach (var (preamble, rule, severity) in polyglots)
        {
            var verdict = await TestInspection.InspectAsync(File(Image(8, 8), Preamble(preamble)), "study.dcm");
            Assert.True(verdict.Kind != VerdictKind.Clean, verdict.Describe());
            Assert.Equal(severity, verdict.Has(rule).Severity);
        }

        // Read as what it is to its program: the RTF's DDE field, the page's smuggling script.
        var rtf = await TestInspection.InspectAsync(File(Image(8, 8), Preamble(polyglots[^1].Preamble)), "study.dcm");
        Assert.Equal(Severity.High, rtf.Has("rtf.dde", "polyglot.rtf").Severity);
        var page = await TestInspection.InspectAsync(File(Image(8, 8), Preamble(Ascii("<svg onload=\"top.x=1\">"))), "study.dcm");
        page.Has("dicom.preamble.html");
        Assert.Contains(page.Findings, f => f.Rule == "dicom.preamble.html" && f.Message.Contains("onload", StringComparison.Ordinal));

        byte[][] legitimate =
        [
            new byte[128],
            [(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x0A, 0x3C, 0x41, 3, 0, 1, 0, 0, 0, 0x0A, 0, 0, 0],
            [(byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 1, 0, 0, 3, 0, 0, 0, 1, 0, 0x40, 0, 0],
            Ascii("DICMDICMDICMDICM"),
            Ascii("ACME CT SCANNER 2000 / Rev. 3 (c) ACME Medical <support@example.invalid>"),
        ];
        foreach (var preamble in legitimate)
        {
            (await TestInspection.InspectAsync(File(Image(8, 8), Preamble(preamble)), "study.dcm")).IsClean();
        }
    }

    private static DicomDataset WithText(DicomVR vr, string text)
    {
        var ds = Image(8, 8);
        var bytes = Encoding.ASCII.GetBytes(text.Length % 2 == 0 ? text : text + " ");
        ds.SetBytes(new DicomTag(0x0020, 0x4000), vr, bytes);
        return ds;
    }

    /// <summary>
    /// Regression (review 18, defect 4): an HTML-smuggling page in an LT value was html.smuggling (High) only when it
    /// started the value: behind "Report follows. " or 100 spaces, only the first 64 bytes were looked at and the object
    /// was clean. The whole value is now read, a UT kept as a reference past 64 KiB too; a report or an SR text that
    /// merely mentions "&lt;script&gt;" (and "download") stays clean.
    /// </summary>
    [Fact]
    public async Task Regression_a_smuggling_page_behind_text_in_a_text_value_was_clean()
    {
        foreach (var prefix in new[] { "", "Report follows. ", new string(' ', 100) })
        {
            var verdict = await TestInspection.InspectAsync(File(WithText(DicomVR.LT, prefix + SmugglingPage)), "study.dcm");
            Assert.True(verdict.Kind == VerdictKind.Malicious, verdict.Describe());
            Assert.Equal(Severity.High, verdict.Has("html.smuggling", "(0020,4000)").Severity);
        }

        // Deep in a UT of an SR content item, past the 64 KiB at which values stay references into the file.
        var filler = string.Concat(Enumerable.Repeat("Findings unremarkable. ", 4_000));
        var sr = Image(8, 8);
        var item = new DicomDataset();
        item.SetString(new DicomTag(0x0040, 0xA040), DicomVR.CS, "TEXT");
        item.SetBytes(new DicomTag(0x0040, 0xA160), DicomVR.UT, Encoding.ASCII.GetBytes(filler + SmugglingPage + (SmugglingPage.Length % 2 == 0 ? "" : " ")));
        sr.AddOrUpdate(new DicomSequence(new DicomTag(0x0040, 0xA730)) { Items = { item } });
        var bytes = File(sr);
        var read = await DicomReader.ReadFileAsync(new MemoryStream(bytes), null, TestContext.Current.CancellationToken);
        Assert.True(((DicomValueElement)read.Dataset.GetSequence(new DicomTag(0x0040, 0xA730))!.Items[0][new DicomTag(0x0040, 0xA160)]!).IsBulk);
        var deep = await TestInspection.InspectAsync(bytes, "sr.dcm");
        Assert.True(deep.Kind == VerdictKind.Malicious, deep.Describe());
        Assert.Equal(Severity.High, deep.Has("html.smuggling", "(0040,A730)[0].(0040,A160)").Severity);

        // A private text sent as UN (implicit VR) is read the same way.
        var un = Image(8, 8);
        un.SetString(new DicomTag(0x0011, 0x0010), DicomVR.LO, "ACME");
        un.SetBytes(new DicomTag(0x0011, 0x1010), DicomVR.UN, Encoding.ASCII.GetBytes("Note: " + SmugglingPage + (SmugglingPage.Length % 2 == 0 ? "" : " ")));
        Assert.Equal(VerdictKind.Malicious, (await TestInspection.InspectAsync(File(un), "study.dcm")).Kind);

        // Reports that mention markup, even with a download, are not pages that smuggle anything.
        foreach (var text in new[]
                 {
                     "The viewer showed <script>alert(1)</script> and <html> in the report text; see ticket 42.",
                     "Patient portal: the <a href=\"https://portal.example.invalid/\">download</a> link was given. Blob-like lesion, no <script> seen.",
                 })
        {
            (await TestInspection.InspectAsync(File(WithText(DicomVR.LT, text)), "study.dcm")).IsClean();
            (await TestInspection.InspectAsync(File(WithText(DicomVR.UT, new string('x', 70_000) + " " + text)), "study.dcm")).IsClean();
        }
    }
}
