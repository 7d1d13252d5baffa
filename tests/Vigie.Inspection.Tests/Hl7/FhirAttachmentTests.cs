using System.Text;
using System.Text.Json;
using Vigie.Inspection.Tests.Samples;
using Vigie.Inspection.Tests.Xml;

namespace Vigie.Inspection.Tests.Hl7;

/// <summary>FHIR resources carry documents as base64 attachment data: what a viewer opens is inspected.</summary>
public sealed class FhirAttachmentTests
{
    private static object DocumentReference(byte[] document, string contentType = "application/pdf") => new
    {
        resourceType = "DocumentReference",
        status = "current",
        subject = new { reference = "Patient/example" },
        content = new[] { new { attachment = new { contentType, data = Convert.ToBase64String(document), title = "Compte rendu (synthetic)" } } },
    };

    private static byte[] Json(object value, bool escapeSlashes = false)
    {
        var text = JsonSerializer.Serialize(value);
        return Encoding.UTF8.GetBytes(escapeSlashes ? text.Replace("/", "\\/", StringComparison.Ordinal) : text);
    }

    [Fact]
    public async Task Regression_a_fhir_document_reference_whose_pdf_runs_a_script_was_clean_text()
    {
        var verdict = await TestInspection.InspectAsync(Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf())), "document.json");

        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "data[1]:application/pdf");
        verdict.Has("fhir.attachment-data");
    }

    [Fact]
    public async Task Attachments_are_found_in_bundles_binaries_bulk_exports_and_escaped_json()
    {
        var bundle = new
        {
            resourceType = "Bundle",
            type = "collection",
            entry = new object[]
            {
                new { resource = new { resourceType = "Patient", id = "p1" } },
                new { resource = DocumentReference("Compte rendu normal."u8.ToArray(), "text/plain") },
                new { resource = new { resourceType = "Binary", contentType = "application/octet-stream", data = Convert.ToBase64String(ExecutableSamples.Pe()) } },
            },
        };
        var verdict = await TestInspection.InspectAsync(Json(bundle, escapeSlashes: true), "bundle.json");
        verdict.Has("executable.pe", "data[2]:application/octet-stream");

        var ndjson = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { resourceType = "Patient", id = "p1" }) + "\n"
            + JsonSerializer.Serialize(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf())) + "\n");
        (await TestInspection.InspectAsync(ndjson, "DocumentReference.ndjson")).Has("pdf.javascript", "data[1]:application/pdf");
    }

    [Fact]
    public async Task Regression_a_fhir_xml_document_reference_whose_pdf_runs_a_script_was_clean()
    {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DocumentReference xmlns=\"http://hl7.org/fhir\"><status value=\"current\"/><content><attachment>"
            + $"<contentType value=\"application/pdf\"/><data value=\"{Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf())}\"/></attachment></content></DocumentReference>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(xml), "document.xml");

        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "data[1]:application/pdf");
    }

    [Fact]
    public async Task Fhir_resources_with_ordinary_attachments_and_other_json_stay_clean()
    {
        (await TestInspection.InspectAsync(Json(DocumentReference("Compte rendu normal."u8.ToArray(), "text/plain")), "document.json")).IsClean();
        // A data element that is not base64, and JSON that is no FHIR resource.
        (await TestInspection.InspectAsync("{\"resourceType\":\"Observation\",\"data\":\"not base64 at all!\"}"u8.ToArray(), "o.json")).IsClean();
        (await TestInspection.InspectAsync("{\"data\":\"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\"}"u8.ToArray(), "config.json")).HasNo("fhir.attachment-data");
    }

    [Fact]
    public async Task A_json_value_longer_than_an_inspection_decodes_in_memory_is_said_not_clean()
    {
        var inspector = TestInspection.Create(limits => limits.InMemoryThreshold = 64 * 1024);
        var verdict = await inspector.InspectAsync(Json(DocumentReference(new byte[200_000], "application/octet-stream")), "large.json");

        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);
        verdict.Has("inspection.inner-size-limit");
    }
}
