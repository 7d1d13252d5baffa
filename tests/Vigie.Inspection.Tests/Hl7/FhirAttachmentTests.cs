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

    [Fact]
    public async Task Regression_a_fhir_resource_with_a_utf8_bom_was_clean()
    {
        var json = Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf()));
        byte[] bom = [0xEF, 0xBB, 0xBF, .. json];
        var verdict = await TestInspection.InspectAsync(bom, "document.json");
        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "data[1]:application/pdf");

        var mail = MailSamples.Bytes(MailSamples.WithAttachments(MailSamples.Message(), ("document.json", bom, "application/fhir+json")));
        (await TestInspection.InspectAsync(mail, "message.eml")).IsMalicious();
    }

    [Fact]
    public async Task Regression_a_fhir_resource_with_an_escaped_key_leading_whitespace_or_in_an_array_was_clean()
    {
        var text = Encoding.UTF8.GetString(Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf())));
        // Any JSON reader reads "\u0064ata" as "data"; pretty-printers and concatenations lead with whitespace; an array holds resources.
        string[] variants = [text.Replace("\"data\"", "\"\\u0064ata\"", StringComparison.Ordinal), new string('\n', 100) + text, $"[{text}]", $" [\r\n {text} ]"];
        foreach (var variant in variants)
        {
            var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(variant), "document.json");
            verdict.IsMalicious();
            verdict.Has("pdf.javascript", "data[1]:application/pdf");
        }
    }

    [Fact]
    public async Task Regression_fhir_base64_wrapped_url_safe_or_with_a_stray_character_was_dropped_silently()
    {
        var base64 = Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf());
        var wrapped = string.Join("\n", base64.Chunk(76).Select(line => new string(line)));
        var urlSafe = base64.Replace('+', '-').Replace('/', '_').TrimEnd('=');
        var stray = base64[..40] + "*" + base64[40..];
        foreach (var data in new[] { wrapped, urlSafe, stray })
        {
            var verdict = await TestInspection.InspectAsync(Json(new { resourceType = "Binary", contentType = "application/pdf", data }), "binary.json");
            verdict.IsMalicious();
            verdict.Has("pdf.javascript", "data[1]:application/pdf");
        }

        var skipped = await TestInspection.InspectAsync(Json(new { resourceType = "Binary", contentType = "application/pdf", data = stray }), "binary.json");
        Assert.Contains("1 character(s) outside the base64 alphabet skipped", skipped.Has("fhir.attachment-data").Message, StringComparison.Ordinal);

        // A value of which nothing decodes is said, never dropped.
        var nothing = await TestInspection.InspectAsync("{\"resourceType\":\"Binary\",\"data\":\"!!!! ****\"}"u8.ToArray(), "binary.json");
        Assert.Equal(Severity.Low, nothing.Has("fhir.attachment-data").Severity);
    }

    [Fact]
    public async Task Regression_fhir_json_past_a_malformed_line_or_too_deep_was_clean_unread()
    {
        // NDJSON: each line is read on its own, a bad one does not hide the next; what could not be read is said.
        var ndjson = Encoding.UTF8.GetBytes("{\"resourceType\":\"Patient\",\"id\":\"1\",\"birthDate\":1980-01-01}\n"
            + Encoding.UTF8.GetString(Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf()))) + "\n");
        var verdict = await TestInspection.InspectAsync(ndjson, "DocumentReference.ndjson");
        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "data[1]:application/pdf");
        Assert.Equal(Severity.Medium, verdict.Has("fhir.malformed").Severity);

        // One resource nested deeper than the reader goes: never clean.
        var deep = Encoding.UTF8.GetString(Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf())));
        for (var i = 0; i < 70; i++)
        {
            deep = $"{{\"a\":{deep}}}";
        }

        var nested = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes($"{{\"resourceType\":\"Bundle\",\"x\":{deep}}}"), "bundle.json");
        Assert.NotEqual(VerdictKind.Clean, nested.Kind);
        nested.Has("inspection.depth-limit");

        // JSON that is no FHIR resource stays text when it does not parse.
        (await TestInspection.InspectAsync("{\"data\":\"x\",\"a\":1980-01-01}\n{\"b\":\"\\u0041\",]"u8.ToArray(), "config.json")).IsClean();
    }

    [Fact]
    public async Task Regression_a_fhir_value_over_the_memory_limit_was_decoded_whole()
    {
        // 64 KiB in memory: a value decoding to 120 KB is over it, whatever length the array pool hands out.
        var inspector = TestInspection.Create(limits => limits.InMemoryThreshold = 64 * 1024);
        var verdict = await inspector.InspectAsync(Json(new { resourceType = "Binary", contentType = "application/octet-stream", data = Convert.ToBase64String(new byte[120_000]) }), "large.json");
        var limit = verdict.Has("inspection.inner-size-limit");
        verdict.HasNo("fhir.attachment-data");
        Assert.Contains("string value", limit.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("262144", limit.Message, StringComparison.Ordinal);

        // Whitespace between tokens is no value, however long.
        var padded = Encoding.UTF8.GetBytes("{\"resourceType\":\"DocumentReference\"," + new string(' ', 1024 * 1024) + "\"content\":[{\"attachment\":{\"contentType\":\"application/pdf\",\"data\":"
            + new string('\n', 300_000) + $"\"{Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf())}\"}}}}]}}");
        var spaced = await inspector.InspectAsync(padded, "document.json");
        spaced.IsMalicious();
        spaced.HasNo("inspection.inner-size-limit");
    }

    [Fact]
    public async Task Regression_a_fhir_resource_typed_html_or_unknown_was_not_read()
    {
        // A narrative naming <html> makes it Html; one NUL byte in a value, Unknown: a FHIR parser reads both.
        var resource = new
        {
            resourceType = "DocumentReference",
            status = "current",
            text = new { status = "generated", div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">Imported from the <html> report</div>" },
            content = new[] { new { attachment = new { contentType = "application/pdf", data = Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf()) } } },
        };
        var html = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(resource, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping })), "document.json");
        html.IsMalicious();
        html.Has("pdf.javascript", "data[1]:application/pdf");

        // A NUL byte on a line of its own after the resource makes the file Unknown: the resource is read all the same.
        byte[] nul = [.. Json(DocumentReference(EncapsulatedDataAnalyserTests.ScriptedPdf())), .. "\n\0\n"u8];
        var unknown = await TestInspection.InspectAsync(nul, "document.ndjson");
        unknown.IsMalicious();
        unknown.Has("pdf.javascript", "data[1]:application/pdf");
    }
}
