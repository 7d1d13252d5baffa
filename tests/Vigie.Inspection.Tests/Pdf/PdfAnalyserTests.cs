using System.Text;
using Vigie.Inspection.Pdf;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Pdf;

public sealed class PdfAnalyserTests
{
    private static Task<Verdict> Inspect(PdfBuilder builder) => TestInspection.InspectAsync(builder.Build(), "doc.pdf");

    [Fact]
    public async Task Clean_documents_give_nothing_above_info()
    {
        (await Inspect(PdfBuilder.Document())).IsClean();

        var withLinks = PdfBuilder.Document();
        var link = withLinks.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI (https://www.hospital.example/results) >> >>");
        withLinks.PageExtra += $" /Annots [{link} 0 R]";
        withLinks.CatalogExtra = "/OpenAction [3 0 R /Fit] /PageMode /UseOutlines";
        withLinks.TrailerExtra = "/Info << /Title (Report) /Producer (Vigie tests) >>";
        var image = withLinks.AddStream("/Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter [/FlateDecode /DCTDecode]",
            PdfBuilder.Zlib([0xFF, 0xD8, 0xFF, 0xD9]));
        _ = image;
        withLinks.Add("<< /Type /Font /Subtype /Type1 /BaseFont /Times#20New#20Roman >>");
        (await Inspect(withLinks)).IsClean();
    }

    [Fact]
    public async Task JavaScript_run_on_open_is_found()
    {
        var pdf = PdfBuilder.Document();
        pdf.CatalogExtra = "/OpenAction << /S /JavaScript /JS (app.alert\\('inert test'\\); eval\\('1'\\)) >>";
        var verdict = await Inspect(pdf);
        verdict.IsMalicious();
        Assert.Contains("eval", verdict.Has("pdf.javascript").Message);
        verdict.Has("pdf.open-action");
        verdict.Has("pdf.javascript").Offset.GetValueOrDefault().ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task JavaScript_in_a_compressed_stream_is_decoded_and_inspected_as_a_child()
    {
        var pdf = PdfBuilder.Document();
        var script = pdf.AddStream("", Encoding.ASCII.GetBytes("var s = unescape('%u0041'); this.exportDataObject({cName: 'x'});"), flate: true);
        var action = pdf.Add($"<< /Type /Action /S /JavaScript /JS {script} 0 R >>");
        pdf.CatalogExtra = $"/Names << /JavaScript << /Names [(start) {action} 0 R] >> >>";
        var verdict = await Inspect(pdf);
        var js = verdict.Findings.Where(f => f.Rule == "pdf.javascript").ToList();
        Assert.Contains(js, f => f.Message.Contains("unescape", StringComparison.Ordinal) && f.Message.Contains("exportDataObject", StringComparison.Ordinal));
        Assert.Contains(js, f => f.Message.Contains("name tree", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Additional_actions_launch_and_navigation_actions_are_found()
    {
        var pdf = PdfBuilder.Document();
        pdf.PageExtra += " /AA << /O << /S /Launch /Win << /F (cmd.exe) /P (/c echo inert) >> >> >>";
        var submit = pdf.Add("<< /S /SubmitForm /F << /FS /URL /F (https://collect.example/form) >> >>");
        var import = pdf.Add("<< /S /ImportData /F (data.fdf) >>");
        var remote = pdf.Add("<< /S /GoToR /F (\\\\\\\\server\\\\share\\\\doc.pdf) /D [0 /Fit] >>");
        var embedded = pdf.Add("<< /S /GoToE /T << /R /C /N (inner.pdf) >> >>");
        _ = (submit, import, remote, embedded);
        var verdict = await Inspect(pdf);
        verdict.Has("pdf.additional-actions");
        var launch = verdict.Has("pdf.launch");
        Assert.Equal(Severity.Critical, launch.Severity);
        Assert.Contains("cmd.exe", launch.Message);
        verdict.Has("pdf.submit-form");
        verdict.Has("pdf.import-data");
        verdict.Has("pdf.goto-remote");
        verdict.Has("pdf.goto-embedded");
    }

    [Fact]
    public async Task Embedded_files_are_extracted_and_inspected()
    {
        var pdf = PdfBuilder.Document();
        var file = pdf.AddStream("/Type /EmbeddedFile /Subtype /application#2Foctet-stream", ExecutableSamples.Pe(), flate: true);
        var spec = pdf.Add($"<< /Type /Filespec /F (invoice.exe) /UF (invoice.exe) /EF << /F {file} 0 R >> >>");
        pdf.CatalogExtra = $"/Names << /EmbeddedFiles << /Names [(invoice.exe) {spec} 0 R] >> >>";
        var verdict = await Inspect(pdf);
        Assert.Contains("invoice.exe", verdict.Has("pdf.embedded-file").Message);
        verdict.Has("executable.pe", "invoice.exe");
    }

    [Fact]
    public async Task Rich_media_xfa_and_dangerous_links_are_found()
    {
        var pdf = PdfBuilder.Document();
        var media = pdf.Add("<< /Type /Annot /Subtype /RichMedia /Rect [0 0 100 100] /RichMediaContent << >> >>");
        var xfa = pdf.AddStream("", Encoding.ASCII.GetBytes("<xdp:xdp><template><script contentType='application/x-javascript'>app.alert(1)</script></template></xdp:xdp>"), flate: true);
        var exe = pdf.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (https://downloads.example/update/setup.exe?v=2) >> >>");
        var ip = pdf.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (http://192.0.2.44/login) >> >>");
        pdf.PageExtra += $" /Annots [{media} 0 R {exe} 0 R {ip} 0 R]";
        pdf.CatalogExtra = $"/AcroForm << /Fields [] /XFA {xfa} 0 R >>";
        var verdict = await Inspect(pdf);
        verdict.Has("pdf.rich-media");
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.xfa" && f.Message.Contains("<script>", StringComparison.Ordinal));
        Assert.Contains("setup.exe", verdict.Has("pdf.uri-executable").Message);
        Assert.Contains("192.0.2.44", verdict.Has("pdf.uri-ip").Message);
    }

    /// <summary>
    /// Regression (a review of legitimate objects): a report linking to an intranet viewer by address, and a PDF/A-3
    /// report carrying its data as a clean XML attachment, were quarantined. Public addresses, obfuscated spellings and
    /// hostile attachments still count.
    /// </summary>
    [Fact]
    public async Task Regression_intranet_links_and_clean_data_attachments_quarantined_reports()
    {
        var pdf = PdfBuilder.Document();
        var viewer = pdf.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (http://10.20.30.40/viewer?study=1) >> >>");
        var xml = pdf.AddStream("/Type /EmbeddedFile /Subtype /text#2Fxml", Encoding.ASCII.GetBytes("<?xml version=\"1.0\"?><report><value>12</value></report>"), flate: true);
        var spec = pdf.Add($"<< /Type /Filespec /F (data.xml) /UF (data.xml) /AFRelationship /Data /EF << /F {xml} 0 R >> >>");
        pdf.PageExtra += $" /Annots [{viewer} 0 R]";
        pdf.CatalogExtra = $"/Names << /EmbeddedFiles << /Names [(data.xml) {spec} 0 R] >> >> /AF [{spec} 0 R]";
        var verdict = await Inspect(pdf);
        verdict.IsClean();
        Assert.Contains("private network", verdict.Has("pdf.uri-ip").Message, StringComparison.Ordinal);
        Assert.Contains("nothing found in it", verdict.Has("pdf.embedded-file").Message, StringComparison.Ordinal);

        var hex = PdfBuilder.Document();
        var obfuscated = hex.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 1 1] /A << /S /URI /URI (http://0x0a.0x14.0x1e.0x28/login) >> >>");
        hex.PageExtra += $" /Annots [{obfuscated} 0 R]";
        Assert.Equal(Severity.Medium, (await Inspect(hex)).Has("pdf.uri-ip").Severity);
    }

    [Fact]
    public async Task Regression_a_link_to_a_javascript_uri_passed_as_clean()
    {
        var pdf = PdfBuilder.Document();
        var link = pdf.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI (javascript:app.alert\\(1\\)) >> >>");
        pdf.PageExtra += $" /Annots [{link} 0 R]";
        Assert.Equal(Severity.Medium, (await Inspect(pdf)).Has("pdf.javascript").Severity);

        // Regression (second review): a tab or line break in the scheme, which URL parsers remove, hid it.
        foreach (var uri in new[] { "java\\tscript:app.alert\\(1\\)", "java\\nscript:app.alert\\(1\\)", "\\001javascript:app.alert\\(1\\)" })
        {
            var evasive = PdfBuilder.Document();
            var evasiveLink = evasive.Add($"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI ({uri}) >> >>");
            evasive.PageExtra += $" /Annots [{evasiveLink} 0 R]";
            Assert.Equal(Severity.Medium, (await Inspect(evasive)).Has("pdf.javascript").Severity);
        }
    }

    [Fact]
    public async Task Encryption_is_reported()
    {
        var pdf = PdfBuilder.Document();
        var encrypt = pdf.Add("<< /Filter /Standard /V 2 /R 3 /Length 128 /P -4 /O <00> /U <00> >>");
        pdf.TrailerExtra = $"/Encrypt {encrypt} 0 R /ID [<01><01>]";
        (await Inspect(pdf)).Has("pdf.encrypted");
    }

    [Fact]
    public async Task Hex_escaped_names_are_decoded_and_reported()
    {
        var pdf = PdfBuilder.Document();
        pdf.CatalogExtra = "/OpenAction << /#53 /J#61vaScript /J#53 (app.alert\\(1\\)) >>";
        var verdict = await Inspect(pdf);
        verdict.Has("pdf.javascript");
        verdict.Has("pdf.open-action");
        Assert.Contains("J#61vaScript", verdict.Has("pdf.obfuscated-name").Message + string.Join(" ", verdict.Findings.Select(f => f.Message)));
    }

    [Theory]
    [InlineData("AHx")]
    [InlineData("A85")]
    [InlineData("LZW")]
    [InlineData("RL")]
    [InlineData("chain")]
    public async Task Every_filter_is_decoded(string filter)
    {
        var script = Encoding.ASCII.GetBytes("var payload = String.fromCharCode(65, 66); eval(payload); // " + new string('x', 3000));
        var (encoded, names) = filter switch
        {
            "AHx" => (PdfEncoders.AsciiHex(script), "/ASCIIHexDecode"),
            "A85" => (PdfEncoders.Ascii85(script), "/ASCII85Decode"),
            "LZW" => (PdfEncoders.Lzw(script), "/LZWDecode"),
            "RL" => (PdfEncoders.RunLength(script), "/RunLengthDecode"),
            _ => (PdfEncoders.AsciiHex(PdfEncoders.Ascii85(PdfBuilder.Zlib(script))), "[/ASCIIHexDecode /ASCII85Decode /FlateDecode]"),
        };
        var pdf = PdfBuilder.Document();
        var stream = pdf.AddStream($"/Filter {names}", encoded);
        pdf.CatalogExtra = $"/OpenAction << /S /JavaScript /JS {stream} 0 R >>";
        var verdict = await Inspect(pdf);
        var js = verdict.Has("pdf.javascript");
        Assert.Contains("String.fromCharCode", js.Message);
        Assert.Contains("eval", js.Message);
        verdict.HasNo("pdf.decode-error");
        if (filter == "chain")
        {
            verdict.Has("pdf.filter-chain");
        }
        else
        {
            verdict.HasNo("pdf.filter-chain");
        }
    }

    [Fact]
    public async Task Filters_round_trip_large_data()
    {
        var data = new byte[300_000];
        new Random(3).NextBytes(data.AsSpan(0, 100_000));
        foreach (var (encoded, filter) in new[] { (PdfEncoders.Lzw(data), "LZWDecode"), (PdfEncoders.RunLength(data), "RunLengthDecode"), (PdfEncoders.Ascii85(data), "ASCII85Decode"), (PdfEncoders.AsciiHex(data), "ASCIIHexDecode") })
        {
            var dictionary = new PdfDictionary([new(new PdfName("Filter"), new PdfName(filter))]);
            var chain = PdfFilters.Create(new MemoryStream(encoded), dictionary, null);
            var output = new MemoryStream();
            await chain.Stream.CopyToAsync(output, TestContext.Current.CancellationToken);
            Assert.True(data.AsSpan().SequenceEqual(output.ToArray()), filter);
        }
    }

    [Fact]
    public async Task Object_streams_hiding_active_content_are_unpacked()
    {
        var pdf = PdfBuilder.Document();
        var action = pdf.AddPacked("<< /S /JavaScript /JS (this.print\\({bUI: false}\\)) >>");
        pdf.AddPacked("<< /Type /Annot /Subtype /Text /Rect [0 0 1 1] /Contents (note) >>");
        pdf.CatalogExtra = $"/OpenAction {action} 0 R";
        var verdict = await Inspect(pdf);
        Assert.Contains("object stream", verdict.Has("pdf.javascript").Message);
        verdict.Has("pdf.hidden-in-object-stream");
        verdict.Has("pdf.open-action");
    }

    [Fact]
    public async Task An_object_hidden_by_a_lying_length_is_read_from_the_cross_reference_table()
    {
        // Object 5's declared /Length swallows object 6, which the xref table still lists: readers see it, so must we.
        var pdf = PdfBuilder.Document();
        var hidden = pdf.NextNumber + 1;
        var inner = $"\nendstream\nendobj\n{hidden} 0 obj\n<< /S /JavaScript /JS (app.alert\\(1\\)) >>\nendobj\n{hidden + 1} 0 obj\n<< /Length 0 >>\nstream\n";
        var bytes = Encoding.Latin1.GetBytes("ABCD" + inner);
        pdf.AddStream("", bytes, declaredLength: bytes.Length);
        pdf.Add("<< /Placeholder 1 >>");
        pdf.Add("<< /Placeholder 2 >>");
        var text = Encoding.Latin1.GetString(pdf.Build());
        var hiddenOffset = text.IndexOf($"\n{hidden} 0 obj", StringComparison.Ordinal) + 1;
        Assert.True(hiddenOffset > 0);
        var xrefStart = text.IndexOf("xref\n", StringComparison.Ordinal);
        var lines = text[xrefStart..].Split('\n').ToList();
        lines[2 + hidden] = $"{hiddenOffset:D10} 00000 n ";
        var patched = Encoding.Latin1.GetBytes(text[..xrefStart] + string.Join('\n', lines));
        var verdict = await TestInspection.InspectAsync(patched);
        verdict.Has("pdf.javascript");
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.malformed" && f.Severity == Severity.Medium);
    }

    [Fact]
    public async Task A_decompression_bomb_in_a_stream_ends_in_a_finding()
    {
        var pdf = PdfBuilder.Document();
        var zeros = new byte[64 * 1024 * 1024];
        var file = pdf.AddStream("/Type /EmbeddedFile", zeros, flate: true);
        pdf.Add($"<< /Type /Filespec /F (zeros.bin) /EF << /F {file} 0 R >> >>");
        var verdict = await Inspect(pdf);
        verdict.Has("pdf.bomb-ratio");
        verdict.IsMalicious();
    }

    [Fact]
    public async Task Data_before_the_header_is_reported()
    {
        var pdf = PdfBuilder.Document();
        pdf.Prefix = Encoding.ASCII.GetBytes("<html><!-- polyglot --></html>\n");
        var verdict = await Inspect(pdf);
        Assert.Equal("Pdf", verdict.ContentType);
        verdict.Has("pdf.header-offset");
    }

    /// <summary>
    /// Regression (review 17, defect 10): an XFA template whose script element carries a prefix bound to the template
    /// namespace (&lt;t:script&gt;, the same element as &lt;script&gt;) was only pdf.xfa Medium. Matched by local name and
    /// namespace now, also when the /XFA array cuts the element between two packets, or names an array by reference; a
    /// script element of another namespace stays a plain XFA form.
    /// </summary>
    [Fact]
    public async Task Regression_a_namespace_prefixed_xfa_script_was_only_medium()
    {
        const string Template = "http://www.xfa.org/schema/xfa-template/3.3/";
        var prefixed = $"<xdp:xdp xmlns:xdp=\"http://ns.adobe.com/xdp/\"><t:template xmlns:t=\"{Template}\"><t:subform><t:event activity=\"initialize\">"
            + "<t:script contentType=\"application/x-javascript\">app.alert(1)</t:script></t:event></t:subform></t:template></xdp:xdp>";

        var single = PdfBuilder.Document();
        var stream = single.AddStream("", Encoding.ASCII.GetBytes(prefixed), flate: true);
        single.CatalogExtra = $"/AcroForm << /Fields [] /XFA {stream} 0 R >>";
        var verdict = await Inspect(single);
        verdict.IsMalicious();
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.xfa" && f.Severity == Severity.High);

        // The packets of an /XFA array are joined before they are read: "<t:scr" in one, "ipt ..." in the next.
        var cut = prefixed.IndexOf("<t:script", StringComparison.Ordinal) + 6;
        var split = PdfBuilder.Document();
        var head = split.AddStream("", Encoding.ASCII.GetBytes(prefixed[..cut]), flate: true);
        var tail = split.AddStream("", Encoding.ASCII.GetBytes(prefixed[cut..]));
        var array = split.Add($"[(preamble) {head} 0 R (template) {tail} 0 R]");
        split.CatalogExtra = $"/AcroForm << /Fields [] /XFA {array} 0 R >>";
        verdict = await Inspect(split);
        verdict.IsMalicious();
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.xfa" && f.Severity == Severity.High);

        // Not well-formed (the prefix never declared): a prefixed script element still counts.
        var undeclared = PdfBuilder.Document();
        stream = undeclared.AddStream("", Encoding.ASCII.GetBytes("<template><x:script>app.alert(1)</x:script></template>"), flate: true);
        undeclared.CatalogExtra = $"/AcroForm << /Fields [] /XFA [(template) {stream} 0 R] >>";
        verdict = await Inspect(undeclared);
        Assert.Contains(verdict.Findings, f => f.Rule == "pdf.xfa" && f.Severity == Severity.High);

        // Another namespace's "script" is not an XFA script: the form stays Medium.
        var other = PdfBuilder.Document();
        stream = other.AddStream("", Encoding.ASCII.GetBytes($"<template xmlns=\"{Template}\" xmlns:m=\"urn:example:meta\"><m:script>note</m:script><subform/></template>"), flate: true);
        other.CatalogExtra = $"/AcroForm << /Fields [] /XFA {stream} 0 R >>";
        verdict = await Inspect(other);
        verdict.IsSuspicious();
        Assert.All(verdict.Findings.Where(f => f.Rule == "pdf.xfa"), f => Assert.Equal(Severity.Medium, f.Severity));
    }

    [Fact]
    public async Task Hostile_structures_never_crash_or_hang()
    {
        var samples = new List<byte[]>
        {
            Encoding.ASCII.GetBytes("%PDF-1.7\n" + new string('[', 200_000)),
            Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj\n" + string.Concat(Enumerable.Repeat("<<", 100_000))),
            Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj\n(" + new string('(', 100_000)),
            Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj\n<< /Length 999999999999 >>\nstream\nabc"),
            Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj\n<< /Type /ObjStm /N 99999999 /First 99999999 /Length 3 >>\nstream\nabc\nendstream\nendobj"),
            Encoding.ASCII.GetBytes("%PDF-1.7\nxref\n0 999999999999\ntrailer\n<< /Root 1 0 R >>"),
            Encoding.ASCII.GetBytes("%PDF-1.7\n" + string.Concat(Enumerable.Repeat("1 0 obj << /A 1 0 R >> endobj\n", 20_000))),
            Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj <</Filter/FlateDecode/DecodeParms<</Predictor 15/Columns 99999999/Colors 32>>/Length 4>>stream\nabcd\nendstream endobj"),
        };
        var random = new Random(11);
        var garbage = new byte[100_000];
        random.NextBytes(garbage);
        samples.Add([.. "%PDF-1.4\n"u8.ToArray(), .. garbage]);
        foreach (var sample in samples)
        {
            var verdict = await TestInspection.InspectAsync(sample);
            verdict.HasNo("inspection.analyser-error");
            verdict.HasNo("inspection.timeout");
        }
    }
}
