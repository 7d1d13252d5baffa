using System.Text;
using Vigie.Inspection.Tests.Samples;
using Vigie.Inspection.Tests.Xml;

namespace Vigie.Inspection.Tests.Hl7;

/// <summary>HL7 v2 results and documents carry files in OBX segments of type ED: what the receiving system files is inspected.</summary>
public sealed class Hl7v2Tests
{
    private static byte[] Message(string observation, bool mllp = false)
    {
        var message = string.Join("\r",
            "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20261207120000||ORU^R01|MSG0001|P|2.5",
            "PID|1||123456^^^HOSP||DUPONT^JEANNE",
            "OBR|1||R1|11502-2^Laboratory report^LN",
            "OBX|1|TX|11502-2||Resultat normal||||||F",
            observation) + "\r";
        return Encoding.ASCII.GetBytes(mllp ? "\u000b" + message + "\u001c\r" : message);
    }

    [Fact]
    public async Task Regression_an_hl7_v2_result_whose_pdf_runs_a_script_was_clean_text()
    {
        var pdf = Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf());
        // Split by an escaped line break, as some senders write long values.
        var verdict = await TestInspection.InspectAsync(Message($"OBX|2|ED|PDF^Report^LOCAL||LAB^Application^PDF^Base64^{pdf[..40]}\\.br\\{pdf[40..]}||||||F", mllp: true), "result.hl7");

        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "OBX[1]:Application/PDF");
        verdict.Has("hl7v2.encapsulated-data");
    }

    [Fact]
    public async Task Hex_data_other_delimiters_and_repetitions_are_read()
    {
        var hex = Convert.ToHexString(ExecutableSamples.Pe());
        (await TestInspection.InspectAsync(Message($"OBX|2|ED|BIN||LAB^Application^Octet-stream^Hex^{hex}||||||F"), "m.hl7"))
            .Has("executable.pe", "OBX[1]:Application/Octet-stream");

        var pdf = Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf());
        var other = Encoding.ASCII.GetString(Message($"OBX#2#ED#PDF##LAB$TEXT$PLAIN$Base64$Q29tcHRlIHJlbmR1~LAB$Application$PDF$Base64${pdf}######F"))
            .Replace("MSH|^~\\&|", "MSH#$~\\&#", StringComparison.Ordinal).Replace('|', '#');
        (await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(other), "m.hl7")).Has("pdf.javascript", "OBX[1.2]:Application/PDF");
    }

    [Fact]
    public async Task Ordinary_messages_stay_clean()
    {
        var text = Convert.ToBase64String("Compte rendu normal."u8.ToArray());
        (await TestInspection.InspectAsync(Message($"OBX|2|ED|TXT||LAB^TEXT^PLAIN^Base64^{text}||||||F"), "m.hl7")).IsClean();
        (await TestInspection.InspectAsync(Message("OBX|2|NM|718-7^Hemoglobin^LN||13.2|g/dL|12-16|N|||F"), "m.hl7")).IsClean();
    }

    [Fact]
    public async Task An_encapsulated_segment_longer_than_an_inspection_decodes_in_memory_is_said_not_clean()
    {
        var inspector = TestInspection.Create(limits => limits.InMemoryThreshold = 64 * 1024);
        var large = Convert.ToBase64String(new byte[200_000]);
        var verdict = await inspector.InspectAsync(Message($"OBX|2|ED|BIN||LAB^Application^Octet-stream^Base64^{large}||||||F"), "m.hl7");

        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);
        verdict.Has("inspection.inner-size-limit");
    }

    private static string ScriptedPdfSegment(string data) => $"OBX|2|ED|PDF^Report^LOCAL||LAB^Application^PDF^Base64^{data}||||||F";

    [Fact]
    public async Task Regression_an_hl7_v2_message_after_a_bom_or_blank_lines_was_clean()
    {
        var message = Message(ScriptedPdfSegment(Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf())));
        byte[][] variants =
        [
            [0xEF, 0xBB, 0xBF, .. message],
            [.. Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("\r\n", 10))), .. message],
            [0xEF, 0xBB, 0xBF, .. "\n \t\r\n\u000b"u8, .. message],
        ];
        foreach (var variant in variants)
        {
            var verdict = await TestInspection.InspectAsync(variant, "result.hl7");
            verdict.IsMalicious();
            verdict.Has("pdf.javascript", "OBX[1]:Application/PDF");
        }
    }

    [Fact]
    public async Task Regression_hl7_escapes_in_encapsulated_data_were_skipped_instead_of_unescaped()
    {
        // \X4A564245\ is "JVBE", the first base64 quantum of a PDF: receivers un-escape it before decoding.
        var pdf = Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf());
        var data = $"\\X{Convert.ToHexString(Encoding.ASCII.GetBytes(pdf[..4]))}\\{pdf[4..40]}\\.br\\{pdf[40..]}";
        var verdict = await TestInspection.InspectAsync(Message(ScriptedPdfSegment(data)), "result.hl7");
        verdict.IsMalicious();
        verdict.Has("pdf.javascript", "OBX[1]:Application/PDF");

        // Hex data whose first digits are escaped ("4D" as \X3444\), and "A" data with escaped delimiters.
        var hex = Convert.ToHexString(ExecutableSamples.Pe());
        (await TestInspection.InspectAsync(Message($"OBX|2|ED|BIN||LAB^Application^Octet-stream^Hex^\\X3444\\{hex[2..]}||||||F"), "m.hl7"))
            .Has("executable.pe", "OBX[1]:Application/Octet-stream");
        var text = await TestInspection.InspectAsync(Message("OBX|2|ED|TXT||LAB^TEXT^PLAIN^A^a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\H\\g||||||F"), "m.hl7");
        Assert.Contains("(A, 12 bytes)", text.Has("hl7v2.encapsulated-data").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_an_hl7_v2_message_typed_html_or_unknown_was_not_read()
    {
        var pdf = ScriptedPdfSegment(Convert.ToBase64String(EncapsulatedDataAnalyserTests.ScriptedPdf()));
        // A TX result in HTML makes the message Html; one NUL byte in a note, Unknown: the receiver reads both.
        var html = Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(Message(pdf)).Replace("Resultat normal", "<html><body>Resultat normal</body></html>", StringComparison.Ordinal));
        var nul = Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(Message(pdf)).Replace("OBX|1|TX|11502-2||Resultat normal||||||F", "NTE|1||note\0", StringComparison.Ordinal));
        foreach (var message in new[] { html, nul })
        {
            var verdict = await TestInspection.InspectAsync(message, "result.hl7");
            verdict.IsMalicious();
            verdict.Has("pdf.javascript", "OBX[1]:Application/PDF");
        }
    }
}
