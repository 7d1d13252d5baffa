using System.IO.Compression;
using System.Text;
using Vigie.Dicom;
using Vigie.Inspection.Tests.Dicom;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Xml;

public sealed class EncapsulatedDataAnalyserTests
{
    /// <summary>An inert PDF whose /OpenAction runs a script (app.alert only).</summary>
    internal static byte[] ScriptedPdf()
    {
        var pdf = PdfBuilder.Document();
        pdf.CatalogExtra = "/OpenAction << /S /JavaScript /JS (app.alert\\('x'\\)) >>";
        return pdf.Build();
    }

    /// <summary>A CDA R2 document whose body is <paramref name="body"/> (a nonXMLBody or a structuredBody).</summary>
    internal static string Cda(string body) =>
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
        + "<title>Compte rendu (synthetic)</title><component>" + body + "</component></ClinicalDocument>\n";

    internal static string NonXmlBody(byte[] document, string attributes = "mediaType=\"application/pdf\" representation=\"B64\"") =>
        $"<nonXMLBody><text {attributes}>{Convert.ToBase64String(document)}</text></nonXMLBody>";

    /// <summary>An Encapsulated CDA object (PS3.3 A.45.2): the CDA in (0042,0011), MIME type text/XML, padded to an even length.</summary>
    internal static byte[] EncapsulatedCda(string cda, string mimeType = "text/XML", string sopClass = DicomUids.EncapsulatedCDAStorage) =>
        EncapsulatedCda(Encoding.UTF8.GetBytes(cda), mimeType, sopClass);

    /// <summary>As <see cref="EncapsulatedCda(string, string, string)"/>, the CDA already encoded.</summary>
    internal static byte[] EncapsulatedCda(byte[] bytes, string mimeType = "text/XML", string sopClass = DicomUids.EncapsulatedCDAStorage)
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, sopClass);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1717");
        ds.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
        ds.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, mimeType);
        ds.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, bytes.Length % 2 == 0 ? bytes : [.. bytes, 0]);
        return DicomThreatSamples.File(ds);
    }

    private static void HasScript(Verdict verdict, string innerPathEnd)
    {
        verdict.IsMalicious();
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.open-action" && f.InnerPath.EndsWith(innerPathEnd, StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression (review 17, defect 1): a CDA whose nonXMLBody carries, base64-encoded, a PDF that runs a script on
    /// open (the HL7 way to send a PDF report, which CDA viewers decode and show) was clean, as XML and inside an
    /// Encapsulated CDA, whose NUL pad also made the XML a document of no type. Every ED payload is decoded and inspected.
    /// </summary>
    [Fact]
    public async Task Regression_a_base64_pdf_in_a_cda_passed_as_clean()
    {
        var pdf = ScriptedPdf();
        var cda = Cda(NonXmlBody(pdf));
        // Of odd length, so that (0042,0011) ends in its NUL pad.
        cda += Encoding.UTF8.GetByteCount(cda) % 2 == 0 ? "\n" : "";
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(cda), "report.xml"), "text[1]:application/pdf");
        var dicom = await TestInspection.InspectAsync(EncapsulatedCda(cda), "cda.dcm");
        HasScript(dicom, "(0042,0011):text/xml/text[1]:application/pdf");

        // An observationMedia value in a structured body, wrapped at 76 columns, behind a thumbnail, with no XML declaration.
        var wrapped = string.Join("\r\n", Convert.ToBase64String(pdf).Chunk(76).Select(c => new string(c)));
        var media = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><component><structuredBody><component><section>"
            + "<text mediaType=\"text/x-hl7-text+xml\"><paragraph>See the attached report.</paragraph><renderMultiMedia referencedObject=\"m1\"/></text>"
            + "<entry><observationMedia ID=\"m1\" classCode=\"OBS\" moodCode=\"EVN\"><value xsi:type=\"ED\" mediaType=\"application/pdf\" representation=\"B64\">"
            + "<thumbnail mediaType=\"image/png\" representation=\"B64\">iVBORw0KGgo=</thumbnail>\n" + wrapped
            + "</value></observationMedia></entry></section></component></structuredBody></component></ClinicalDocument>";
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(media), "report.xml"), "value[1]:application/pdf");

        // Compressed as HL7 allows (DF: deflate), declared as something else, and cut short by a document that never ends.
        using var packed = new MemoryStream();
        using (var deflate = new DeflateStream(packed, CompressionLevel.Optimal, leaveOpen: true))
        {
            deflate.Write(pdf);
        }

        var compressed = Cda(NonXmlBody(packed.ToArray(), "mediaType=\"image/jpeg\" representation=\"B64\" compression=\"DF\""));
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(compressed), "report.xml"), "text[1]:image/jpeg");
        var unfinished = Cda(NonXmlBody(pdf))[..^"</text></nonXMLBody></component></ClinicalDocument>\n".Length];
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(unfinished), "report.xml"), "text[1]:application/pdf");

        // A clean PDF report in a CDA is clean: decoded and noted (Info), nothing held against it.
        var clean = await TestInspection.InspectAsync(EncapsulatedCda(Cda(NonXmlBody(PdfBuilder.Document().Build()))), "cda.dcm");
        clean.IsClean();
        Assert.Contains("decoded and inspected", clean.Has("xml.encapsulated-data").Message, StringComparison.Ordinal);

        // An Encapsulated PDF object carrying a docx is read by the OOXML analyser through (0042,0011), padded or not.
        var dde = OoxmlBuilder.Word("<w:p><w:fldSimple w:instr=\" DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe &quot;/k echo inert&quot; \"><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>").Build();
        foreach (var docx in new[] { dde, [.. dde, 0x20] })
        {
            var ds = new DicomDataset();
            ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
            ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1718");
            ds.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
            ds.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, docx.Length % 2 == 0 ? docx : [.. docx, 0]);
            var verdict = await TestInspection.InspectAsync(DicomThreatSamples.File(ds), "report.dcm");
            verdict.IsMalicious();
            Assert.StartsWith("(0042,0011):application/vnd.openxmlformats", verdict.Has("office.dde").InnerPath, StringComparison.Ordinal);
        }
    }

    private static string FhirDocumentReference(string rootAttributes, string prefix = "") =>
        $"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{prefix}DocumentReference {rootAttributes}><{prefix}status value=\"current\"/><{prefix}content><{prefix}attachment>"
        + $"<{prefix}contentType value=\"application/pdf\"/><{prefix}data value=\"{Convert.ToBase64String(ScriptedPdf())}\"/></{prefix}attachment></{prefix}content></{prefix}DocumentReference>";

    /// <summary>
    /// Regression (review 31, defect 08): a FHIR DocumentReference whose namespace was written with a character
    /// reference (http://hl7.org/fhi&amp;#114;, the same namespace to any XML parser and FHIR server) carried a PDF
    /// running a script and was clean: the prefilter looked for the namespace's bytes. A reference in a namespace
    /// declaration sends the document to the full read.
    /// </summary>
    [Fact]
    public async Task Regression_a_fhir_xml_namespace_written_with_a_character_reference_was_clean()
    {
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(FhirDocumentReference("xmlns=\"http://hl7.org/fhi&#114;\"")), "document.xml"), "data[1]:application/pdf");
        HasScript(await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(FhirDocumentReference("xmlns:f = 'http&#x3A;//hl7.org/fhir'", "f:")), "document.xml"), "data[1]:application/pdf");

        // Another namespace with a reference is read and found empty.
        var other = await TestInspection.InspectAsync("<?xml version=\"1.0\"?><list xmlns=\"urn:example&#58;list\"><item value=\"1\"/></list>"u8.ToArray(), "list.xml");
        other.IsClean();
        other.HasNo("xml.encapsulated-data");
    }

    /// <summary>
    /// Regression (review 31, defect 09): an Encapsulated CDA carrying a base64 PDF that runs a script was refused in
    /// UTF-8 but stored in UTF-16 without a byte order mark (encoding="UTF-16", which .NET, libxml2 and Xerces detect by
    /// the "&lt;?" of XML 1.0 Appendix F): its NUL bytes made it Unknown, never parsed. Word 2003 XML and FHIR XML the
    /// same. XML is recognised by that opening in UTF-16 and UTF-32, and UTF-16 text by its zero bytes.
    /// </summary>
    [Fact]
    public async Task Regression_a_utf16_cda_without_a_byte_order_mark_was_unknown_and_clean()
    {
        var cda = Cda(NonXmlBody(ScriptedPdf()));
        foreach (var encoding in new Encoding[] { new UnicodeEncoding(false, false), new UnicodeEncoding(true, false), new UTF32Encoding(false, false), new UTF32Encoding(true, false) })
        {
            // .NET reads UTF-32 by its opening when the declaration names no encoding.
            var declared = encoding is UnicodeEncoding ? " encoding=\"UTF-16\"" : "";
            var bytes = encoding.GetBytes(cda.Replace(" encoding=\"UTF-8\"", declared, StringComparison.Ordinal));
            var xml = await TestInspection.InspectAsync(bytes, "report.xml");
            Assert.Equal(nameof(ContentType.Xml), xml.ContentType);
            HasScript(xml, "text[1]:application/pdf");
            HasScript(await TestInspection.InspectAsync(EncapsulatedCda(bytes), "cda.dcm"), "(0042,0011):text/xml/text[1]:application/pdf");
        }

        var fhir = FhirDocumentReference("xmlns=\"http://hl7.org/fhir\"").Replace("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", StringComparison.Ordinal);
        HasScript(await TestInspection.InspectAsync(Encoding.BigEndianUnicode.GetBytes(fhir), "document.xml"), "data[1]:application/pdf");

        var word = "<?xml version=\"1.0\" encoding=\"UTF-16\" standalone=\"yes\"?>\n<w:wordDocument xmlns:w=\"http://schemas.microsoft.com/office/word/2003/wordml\" w:macrosPresent=\"yes\">"
            + "<w:body><w:p><w:r><w:t>Compte rendu</w:t></w:r></w:p></w:body></w:wordDocument>";
        var wordVerdict = await TestInspection.InspectAsync(Encoding.Unicode.GetBytes(word), "courrier.xml");
        Assert.Equal(nameof(ContentType.OfficeXml), wordVerdict.ContentType);
        wordVerdict.Has("office.macro-enabled");

        // UTF-16 text without a mark is text; binary data with zero bytes in it is not.
        Assert.Equal(nameof(ContentType.Text), (await TestInspection.InspectAsync(Encoding.Unicode.GetBytes("Compte rendu : examen normal.\r\n"), "cr.txt")).ContentType);
        var samples = new byte[4096];
        for (var i = 0; i < samples.Length; i += 2)
        {
            samples[i] = (byte)(i * 7);
        }

        Assert.Equal(nameof(ContentType.Unknown), (await TestInspection.InspectAsync(samples, "raw.bin")).ContentType);
    }

    [Fact]
    public async Task Text_encapsulated_data_of_another_media_type_is_read_and_plain_xml_is_left_alone()
    {
        // An HTML page carried as text (escaped) is the page a viewer renders.
        var page = System.Net.WebUtility.HtmlEncode("<html><body><a href=\"data:application/octet-stream;base64,TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAA==\" download=\"r.exe\">x</a></body></html>");
        var html = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(Cda($"<nonXMLBody><text mediaType=\"text/html\">{page}</text></nonXMLBody>")), "report.xml");
        Assert.Contains(html.Findings, f => f.Rule == "html.smuggling" && f.InnerPath.EndsWith("text[1]:text/html", StringComparison.Ordinal));

        // Narrative text, plain text and XML without encapsulated data are not decoded.
        var narrative = Cda("<structuredBody><component><section><text mediaType=\"text/x-hl7-text+xml\"><paragraph>Normal findings.</paragraph></text>"
            + "<entry><observation><value xsi:type=\"ED\" mediaType=\"text/plain\">No comment</value></observation></entry></section></component></structuredBody>");
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(narrative), "report.xml");
        verdict.IsClean();
        verdict.HasNo("xml.encapsulated-data");
        (await TestInspection.InspectAsync("mediaType: application/pdf, representation B64 <not xml"u8.ToArray(), "notes.txt")).IsClean();

        // A compression Vigie does not decode is said, and the bytes are still inspected.
        var unknown = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(Cda(NonXmlBody(ScriptedPdf(), "mediaType=\"application/pdf\" representation=\"B64\" compression=\"Z\""))), "report.xml");
        Assert.Equal(Severity.Medium, unknown.Findings.First(f => f.Rule == "xml.encapsulated-data" && f.Message.Contains("does not decode", StringComparison.Ordinal)).Severity);
    }

    [Fact]
    public async Task Encapsulated_data_is_bounded_by_the_inner_size_limit()
    {
        var inspector = TestInspection.Create(limits => limits.MaxInnerSize = 64 * 1024);
        var large = new byte[200 * 1024];
        new Random(17).NextBytes(large);
        var verdict = await inspector.InspectAsync(Encoding.UTF8.GetBytes(Cda(NonXmlBody(large, "mediaType=\"application/octet-stream\" representation=\"B64\""))), "report.xml");
        Assert.Contains("inner object limit", verdict.Has("inspection.inner-size-limit").Message, StringComparison.Ordinal);
        verdict.HasNo("inspection.analyser-error");
    }
}
