using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Inspection.Dicom;
using Vigie.Inspection.Tests.Samples;
using Vigie.Testing;
using static Vigie.Inspection.Tests.Dicom.DicomThreatSamples;

namespace Vigie.Inspection.Tests.Dicom;

public sealed class DicomAnalyserTests
{
    private static async Task<RecordingContext> AnalyseAsync(byte[] bytes)
    {
        var context = new RecordingContext();
        using var content = ContentSource.FromMemory(bytes);
        await new DicomAnalyser().AnalyseAsync(context, content, TestContext.Current.CancellationToken);
        return context;
    }

    private static void AssertFinding(RecordingContext context, string rule, Severity severity)
    {
        Assert.True(context.Findings.Any(f => f.Rule == rule && f.Severity == severity),
            $"expected {rule} ({severity}); got: {string.Join("; ", context.Findings.Select(f => $"{f.Rule} {f.Severity} {f.Message}"))}");
    }

    /// <summary>
    /// Regression: a data set without preamble whose early element held a PDF was identified as a PDF (header in the
    /// first kilobyte), so the DICOM analyser never ran and an executable in a later element was missed.
    /// </summary>
    [Fact]
    public async Task Regression_a_headerless_data_set_with_an_early_pdf_was_read_as_a_pdf_and_its_executable_missed()
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.SecondaryCaptureImageStorage);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.31337");
        ds.SetString(new DicomTag(0x0009, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, PdfBuilder.Document().Build());
        ds.SetString(new DicomTag(0x0011, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0011, 0x1001), DicomVR.OB, PeHeader(512));
        var headerless = DicomWriter.Encode(ds, TransferSyntax.ImplicitVRLittleEndian);
        var verdict = await TestInspection.Create().InspectAsync(headerless);
        Assert.Equal("Dicom", verdict.ContentType);
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);
    }

    [Fact]
    public async Task A_clean_image_has_no_finding_above_info() =>
        Assert.Equal(Severity.Info, (await AnalyseAsync(File(Image()))).Worst);

    [Fact]
    public async Task Pe_preamble_polyglot_is_critical() =>
        AssertFinding(await AnalyseAsync(File(Image(), Preamble(PeHeader()))), "dicom.preamble.pe", Severity.Critical);

    [Fact]
    public async Task Mz_without_pe_signature_is_only_suspicious()
    {
        var header = PeHeader();
        header[0x40] = (byte)'X';
        AssertFinding(await AnalyseAsync(File(Image(), Preamble(header))), "dicom.preamble.mz", Severity.Medium);
    }

    [Fact]
    public async Task Elf_preamble_polyglot_is_critical() =>
        AssertFinding(await AnalyseAsync(File(Image(), Preamble(ElfHeader()))), "dicom.preamble.elf", Severity.Critical);

    [Fact]
    public async Task Macho_preamble_polyglot_is_critical() =>
        AssertFinding(await AnalyseAsync(File(Image(), Preamble([0xCF, 0xFA, 0xED, 0xFE, 7, 0, 0, 1]))), "dicom.preamble.macho", Severity.Critical);

    [Fact]
    public async Task Script_preamble_is_malicious() =>
        AssertFinding(await AnalyseAsync(File(Image(), Preamble(Ascii("#!/bin/sh\n# VIGIE-TEST-MARKER\n")))), "dicom.preamble.script", Severity.High);

    [Fact]
    public async Task Html_preamble_is_malicious() =>
        AssertFinding(await AnalyseAsync(File(Image(), Preamble(Ascii("<html><!-- VIGIE-TEST-MARKER -->")))), "dicom.preamble.html", Severity.High);

    [Fact]
    public async Task Zip_and_pdf_preambles_are_inspected_as_the_other_format()
    {
        var zip = await AnalyseAsync(File(Image(), Preamble(ZipHeader())));
        AssertFinding(zip, "dicom.preamble.zip", Severity.High);
        Assert.Contains(zip.Children, c => c.Name == "polyglot.zip");
        var pdf = await AnalyseAsync(File(Image(), Preamble(Ascii("%PDF-1.7\n% VIGIE-TEST-MARKER"))));
        AssertFinding(pdf, "dicom.preamble.pdf", Severity.High);
        Assert.Contains(pdf.Children, c => c.Name == "polyglot.pdf");
    }

    /// <summary>
    /// Regression: the inspector took a polyglot's second reading (the same bytes, as a ZIP or a PDF) for a quine
    /// archive: it reported "a recursive (quine) archive", never opened the ZIP or the PDF, and stopped inspecting
    /// the rest of the object as a bomb. The sample's archive (appended, as such polyglots are built) holds the EICAR
    /// test file.
    /// </summary>
    [Fact]
    public async Task Regression_a_polyglot_read_as_its_other_format_was_taken_for_a_recursive_quine()
    {
        var zipped = new ZipBuilder().Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var polyglot = Append(File(Image(), Preamble(ZipHeader())), zipped);

        var verdict = await TestInspection.InspectAsync(polyglot, "study.dcm");

        verdict.HasNo("inspection.recursive-content");
        Assert.Contains(verdict.Findings, f => f.Rule == "signature.hash" && f.InnerPath == "polyglot.zip/inner/eicar.com");
        // The trailing data is that same archive (every entry on the same local header): it is not read a second time.
        Assert.Equal(["polyglot.zip/inner/eicar.com"], verdict.Findings.Where(f => f.Rule == "signature.hash").Select(f => f.InnerPath));
        Assert.Contains("read as polyglot.zip", Assert.Single(verdict.Findings, f => f.Rule == "dicom.trailing-data").Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A polyglot built as a whole-file ZIP (its directory's offsets count from the start of the file, as `zip -A`
    /// writes them): read on its own, the trailing archive points outside itself, a different reading, so it is
    /// opened too rather than taken for the one the preamble opens.
    /// </summary>
    [Fact]
    public async Task A_polyglot_whose_trailing_archive_reads_differently_on_its_own_is_read_both_ways()
    {
        var polyglot = new ZipBuilder { Prefix = File(Image(), Preamble(ZipHeader())) }
            .Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();

        var verdict = await TestInspection.InspectAsync(polyglot, "study.dcm");

        Assert.Contains(verdict.Findings, f => f.Rule == "signature.hash" && f.InnerPath == "polyglot.zip/inner/eicar.com");
        Assert.DoesNotContain("read as polyglot.zip", Assert.Single(verdict.Findings, f => f.Rule == "dicom.trailing-data").Message, StringComparison.Ordinal);
        Assert.Contains(verdict.Findings, f => f.InnerPath.StartsWith("trailing-data", StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression: a ZIP appended to a DICOM file was read twice, once as the dataset's trailing data and once more as an
    /// appended archive, and each of its files was reported once per reading and once per hash the signature list
    /// carried (MD5 and SHA-256 of the same test file): four findings for one file.
    /// </summary>
    [Fact]
    public async Task Regression_a_zip_appended_to_a_dicom_file_was_read_twice_and_its_files_reported_per_hash()
    {
        var zipped = new ZipBuilder().Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();

        var verdict = await TestInspection.InspectAsync(Append(File(Image()), zipped), "study.dcm");

        var found = Assert.Single(verdict.Findings, f => f.Rule == "signature.hash");
        Assert.Equal("trailing-data/inner/eicar.com", found.InnerPath);
        Assert.Contains("Md5 ", found.Message, StringComparison.Ordinal);
        Assert.Contains("Sha256 ", found.Message, StringComparison.Ordinal);
        Assert.Single(verdict.Findings, f => f.Rule == "dicom.trailing-data");
        verdict.HasNo("inspection.appended-archive");
    }

    /// <summary>
    /// Regression: a ZIP held in a private element near the end of the file was read twice, as the element's content and
    /// again as an archive appended to the file (its end-of-directory record is in the file's last 64 KiB), so each of
    /// its files was reported twice. The value was read into memory, so its range in the file went unrecorded.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Regression_a_zip_in_an_element_was_also_reported_as_an_appended_archive(bool elementsAfter)
    {
        var zipped = new ZipBuilder().Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var image = Image();
        image.SetString(new DicomTag(0x0009, 0x0010), DicomVR.LO, "SYNTH CREATOR");
        image.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, zipped);
        image.Remove(DicomTags.PixelData);
        if (elementsAfter)
        {
            image.SetString(new DicomTag(0x0011, 0x0010), DicomVR.LO, "SYNTH CREATOR");
        }

        var verdict = await TestInspection.InspectAsync(File(image), "study.dcm");

        Assert.Equal("(0009,1001)/inner/eicar.com", Assert.Single(verdict.Findings, f => f.Rule == "signature.hash").InnerPath);
        Assert.Single(verdict.Findings, f => f.Rule == "dicom.element.embedded-file");
        verdict.HasNo("inspection.appended-archive");
    }

    /// <summary>An element holding a ZIP does not hide another ZIP appended after the data set.</summary>
    [Fact]
    public async Task A_zip_appended_after_a_zip_holding_element_is_still_reported()
    {
        var zipped = new ZipBuilder().Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var other = new ZipBuilder().Add("other/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var image = Image();
        image.SetString(new DicomTag(0x0009, 0x0010), DicomVR.LO, "SYNTH CREATOR");
        image.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, zipped);
        image.Remove(DicomTags.PixelData);

        var verdict = await TestInspection.InspectAsync(Append(File(image), other), "study.dcm");

        Assert.Equal(["(0009,1001)/inner/eicar.com", "trailing-data/other/eicar.com"],
            verdict.Findings.Where(f => f.Rule == "signature.hash").Select(f => f.InnerPath).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// Regression: bytes after the elements of a deflated data set (a ZIP behind Pixel Data, say) were inflated, ignored
    /// and called clean, so the gateway stored them (0000) while the same bytes not deflated were refused 0124.
    /// </summary>
    [Fact]
    public async Task Regression_data_hidden_after_the_elements_of_a_deflated_data_set_was_called_clean()
    {
        var zipped = new ZipBuilder().Add("inner/eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build();
        var file = File(Image(), syntax: TransferSyntax.DeflatedExplicitVRLittleEndian);
        var datasetOffset = (await DicomReader.ReadFileAsync(new MemoryStream(file), DicomReadOptions.Default, TestContext.Current.CancellationToken)).DatasetOffset;
        var inflated = new MemoryStream();
        using (var inflate = new System.IO.Compression.DeflateStream(new MemoryStream(file, (int)datasetOffset, file.Length - (int)datasetOffset),
                   System.IO.Compression.CompressionMode.Decompress))
        {
            inflate.CopyTo(inflated);
        }

        inflated.Write(zipped);
        var deflated = new MemoryStream();
        using (var deflate = new System.IO.Compression.DeflateStream(deflated, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            deflate.Write(inflated.ToArray());
        }

        var verdict = await TestInspection.InspectAsync([.. file.AsSpan(0, (int)datasetOffset), .. deflated.ToArray()], "study.dcm");

        Assert.Equal(Severity.High, Assert.Single(verdict.Findings, f => f.Rule == "dicom.trailing-data").Severity);
        Assert.Equal("trailing-data(inflated)/inner/eicar.com", Assert.Single(verdict.Findings, f => f.Rule == "signature.hash").InnerPath);
    }

    [Fact]
    public async Task Tiff_dual_personality_preamble_is_info_only()
    {
        var context = await AnalyseAsync(File(Image(), Preamble([(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0])));
        Assert.Equal(Severity.Info, context.Worst);
        Assert.Contains(context.Findings, f => f.Rule == "dicom.preamble.tiff");
    }

    [Fact]
    public async Task Executable_appended_after_the_dataset_is_found_with_its_offset()
    {
        var file = File(Image());
        var context = await AnalyseAsync(Append(file, PeHeader(256)));
        AssertFinding(context, "dicom.trailing-data", Severity.Critical);
        Assert.Equal(file.Length, context.Findings.Single(f => f.Rule == "dicom.trailing-data").Offset);
        Assert.Contains(context.Children, c => c.Name == "trailing-data" && c.Length == 256);
    }

    [Fact]
    public async Task Zip_appended_after_the_dataset_is_high()
    {
        AssertFinding(await AnalyseAsync(Append(File(Image()), ZipHeader())), "dicom.trailing-data", Severity.High);
    }

    [Fact]
    public async Task Executable_in_a_private_element_is_critical()
    {
        var ds = Image();
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME 1.0");
        ds.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, PeHeader(512));
        var context = await AnalyseAsync(File(ds));
        AssertFinding(context, "dicom.element.executable", Severity.Critical);
        Assert.Contains("(0029,1001)", context.Findings.Single(f => f.Rule == "dicom.element.executable").Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Since 2026-12-07 text values past the reader's loaded budget (64 MiB) stay in the object as references, like
    /// binary ones: an executable in such a value is still found, read by its range.
    /// </summary>
    [Fact]
    public async Task An_executable_in_a_text_value_past_the_loaded_budget_is_still_found()
    {
        var filler = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("LOREM IPSUM ", 5_417)))[..65_000];
        var text = new DicomTag(0x0020, 0x4000);
        var ds = Image();
        var sequence = new DicomSequence(new DicomTag(0x0040, 0xA730));
        for (var i = 0; i <= 1_100; i++)
        {
            var item = new DicomDataset();
            item.SetBytes(text, DicomVR.LT, i < 1_100 ? filler : PeHeader(filler.Length));
            sequence.Items.Add(item);
        }

        ds.AddOrUpdate(sequence);
        var bytes = File(ds);
        var read = await DicomReader.ReadFileAsync(new MemoryStream(bytes), null, TestContext.Current.CancellationToken);
        Assert.True(((DicomValueElement)read.Dataset.GetSequence(sequence.Tag)!.Items[^1][text]!).IsBulk);

        var context = await AnalyseAsync(bytes);
        AssertFinding(context, "dicom.element.executable", Severity.Critical);
        Assert.Contains("(0040,A730)[1100].(0020,4000)", context.Findings.Single(f => f.Rule == "dicom.element.executable").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Elf_in_an_UN_element_inside_a_sequence_is_critical()
    {
        var ds = Image();
        var sequence = new DicomSequence(DicomTags.ReferencedImageSequence);
        var item = new DicomDataset();
        item.SetBytes(new DicomTag(0x0011, 0x1010), DicomVR.UN, ElfHeader(200));
        item.SetString(new DicomTag(0x0011, 0x0010), DicomVR.LO, "ACME");
        sequence.Items.Add(item);
        ds.AddOrUpdate(sequence);
        var context = await AnalyseAsync(File(ds));
        AssertFinding(context, "dicom.element.executable", Severity.Critical);
        Assert.Contains("(0008,1140)[0].(0011,1010)", context.Findings.Single(f => f.Rule == "dicom.element.executable").Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression (a review of legitimate objects): vendor files kept in private elements (a zipped XML protocol, a
    /// gzipped protocol block ending with the value's pad byte, a PDF report) quarantined the image as Suspicious, and
    /// the gzip one was also called malformed for its pad byte. A clean file is now noted only; a hostile one is not.
    /// </summary>
    [Fact]
    public async Task Regression_clean_vendor_files_in_private_elements_quarantined_the_image()
    {
        var protocol = System.Text.Encoding.ASCII.GetBytes("<protocol><step name=\"T1 SE\" tr=\"500\" te=\"15\"/></protocol>\n");
        byte[] gzipped;
        var text = protocol;
        do
        {
            using var buffer = new MemoryStream();
            using (var gzip = new System.IO.Compression.GZipStream(buffer, System.IO.Compression.CompressionLevel.Optimal))
            {
                gzip.Write(text);
            }

            gzipped = buffer.ToArray();
            text = [.. text, (byte)' '];
        }
        while (gzipped.Length % 2 == 0); // odd, so that the written value ends with its NUL pad byte
        var pdf = Ascii("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
            + "trailer << /Root 1 0 R >>\n%%EOF\n", 160);
        var zipped = new ZipBuilder().Add("protocol.xml", System.Text.Encoding.ASCII.GetString(protocol)).Build();
        foreach (var payload in new[] { zipped, gzipped, pdf })
        {
            var image = Image();
            image.SetString(new DicomTag(0x0025, 0x0010), DicomVR.LO, "SYNTH VENDOR");
            image.SetBytes(new DicomTag(0x0025, 0x101B), DicomVR.OB, payload);
            var verdict = await TestInspection.InspectAsync(File(image), "study.dcm");
            verdict.IsClean();
            Assert.Contains("nothing found in it", verdict.Has("dicom.element.embedded-file").Message, StringComparison.Ordinal);
        }

        var hostile = Image();
        hostile.SetString(new DicomTag(0x0025, 0x0010), DicomVR.LO, "SYNTH VENDOR");
        hostile.SetBytes(new DicomTag(0x0025, 0x101B), DicomVR.OB,
            new ZipBuilder().Add("eicar.com", System.Text.Encoding.ASCII.GetString(Signatures.SignatureSamples.Eicar())).Build());
        var caught = await TestInspection.InspectAsync(File(hostile), "study.dcm");
        caught.IsMalicious();
        Assert.Equal(Severity.Medium, caught.Has("dicom.element.embedded-file").Severity);

        // Second review: what the first fix let through as clean. A script in the archive, a program in its comment,
        // a second gzip member, an HTML page.
        static byte[] Gzip(byte[] data)
        {
            using var buffer = new MemoryStream();
            using (var gzip = new System.IO.Compression.GZipStream(buffer, System.IO.Compression.CompressionLevel.Optimal))
            {
                gzip.Write(data);
            }

            return buffer.ToArray();
        }

        var withComment = new ZipBuilder().Add("protocol.xml", "<protocol/>").Build();
        withComment[^2] = 8; // the end record's comment length, then the comment: a PE header's signature
        var commented = withComment.Concat("PE\0\0MARKER"u8.ToArray()).ToArray();
        foreach (var payload in new[]
                 {
                     new ZipBuilder().Add("invoice.js", "var shell = 'VIGIE-TEST-MARKER';").Build(),
                     commented,
                     Gzip(protocol).Concat(Gzip(ExecutableSamples.Pe())).ToArray(),
                     Ascii("<html><body><script>document.title='VIGIE-TEST-MARKER'</script></body></html>", 96),
                 })
        {
            var image = Image();
            image.SetString(new DicomTag(0x0025, 0x0010), DicomVR.LO, "SYNTH VENDOR");
            image.SetBytes(new DicomTag(0x0025, 0x101B), DicomVR.OB, payload);
            var verdict = await TestInspection.InspectAsync(File(image), "study.dcm");
            Assert.True(verdict.Kind != VerdictKind.Clean, verdict.Describe());
            Assert.Equal(Severity.Medium, verdict.Has("dicom.element.embedded-file").Severity);
        }
    }

    /// <summary>
    /// Regression (a review of legitimate objects): native pixel values that spell a file's magic by chance (two 16-bit
    /// pixels 19280 and 1027 are "PK\x03\x04"; 8-bit pixels 37 80 68 70 45 49 46 are "%PDF-1.") made the image Malicious.
    /// </summary>
    [Fact]
    public async Task Regression_pixel_values_spelling_a_zip_or_pdf_magic_made_the_image_malicious()
    {
        var mr = Image(64, 64);
        var pixels = Enumerable.Range(0, 64 * 64 * 2).Select(i => (byte)(i * 7 % 200)).ToArray();
        ((ReadOnlySpan<byte>)[0x50, 0x4B, 0x03, 0x04, 0xC8, 0x00, 0x10, 0x02]).CopyTo(pixels);
        mr.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels);
        (await TestInspection.InspectAsync(File(mr), "mr.dcm")).IsClean();

        var us = Image(64, 64);
        us.SetUInt16(DicomTags.BitsAllocated, 8);
        us.SetUInt16(DicomTags.BitsStored, 8);
        us.SetUInt16(DicomTags.HighBit, 7);
        var bytes = Enumerable.Range(0, 64 * 64).Select(i => (byte)(i * 5 % 250)).ToArray();
        "%PDF-1.7"u8.CopyTo(bytes.AsSpan(300));
        us.SetBytes(DicomTags.PixelData, DicomVR.OB, bytes);
        (await TestInspection.InspectAsync(File(us), "us.dcm")).IsClean();

        // Second review: a PDF whose first object comes after a 9000-byte comment line, and a gzip stream, at a frame's start.
        var hidden = Image(128, 128);
        var frame = new byte[128 * 128 * 2];
        var pdf = System.Text.Encoding.ASCII.GetBytes("%PDF-1.4\n%" + new string('c', 9000) + "\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >> >> endobj\n%%EOF\n");
        pdf.CopyTo(frame, 0);
        hidden.SetBytes(DicomTags.PixelData, DicomVR.OW, frame);
        (await TestInspection.InspectAsync(File(hidden), "hidden.dcm")).IsMalicious();
        var gzipped = Image(64, 64);
        var gzipFrame = new byte[64 * 64 * 2];
        using (var buffer = new MemoryStream())
        {
            using (var gzip = new System.IO.Compression.GZipStream(buffer, System.IO.Compression.CompressionLevel.Optimal))
            {
                gzip.Write(ExecutableSamples.Pe());
            }

            buffer.ToArray().CopyTo(gzipFrame, 0);
        }

        gzipped.SetBytes(DicomTags.PixelData, DicomVR.OW, gzipFrame);
        (await TestInspection.InspectAsync(File(gzipped), "gzipped.dcm")).IsMalicious();

        // A real file at a frame's start is still caught.
        var real = Image(64, 64);
        var zip = new ZipBuilder().Add("payload.txt", "VIGIE-TEST-MARKER").Build();
        var withZip = new byte[64 * 64 * 2];
        zip.CopyTo(withZip, 0);
        real.SetBytes(DicomTags.PixelData, DicomVR.OW, withZip);
        (await TestInspection.InspectAsync(File(real), "real.dcm")).IsMalicious();
    }

    [Fact]
    public async Task Archive_in_an_OB_element_is_handed_to_the_archive_analysers()
    {
        var ds = Image();
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0029, 0x1002), DicomVR.OB, ZipHeader());
        var context = await AnalyseAsync(File(ds));
        AssertFinding(context, "dicom.element.embedded-file", Severity.Medium);
        Assert.Contains(context.Children, c => c.Name == "(0029,1002)" && c.Head[0] == 'P');
    }

    [Fact]
    public async Task Encapsulated_pdf_is_extracted_and_a_disguised_executable_is_caught()
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.778");
        ds.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "application/pdf");
        ds.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, Ascii("%PDF-1.4\n1 0 obj << /OpenAction << /JS (app.alert\\(1\\)) >> >> endobj\n%%EOF\n", 96));
        var pdf = await AnalyseAsync(File(ds));
        Assert.Contains(pdf.Children, c => c.Name == "(0042,0011):application/pdf" && c.Head[0] == '%');
        ds.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, PeHeader(256));
        AssertFinding(await AnalyseAsync(File(ds)), "dicom.document.executable", Severity.Critical);
    }

    [Fact]
    public async Task Executable_appended_inside_native_pixel_data_is_critical()
    {
        var ds = Image(8, 8);
        var pixels = ((DicomValueElement)ds[DicomTags.PixelData]!).Value.ToArray();
        ds.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels.Concat(PeHeader(256)).ToArray());
        AssertFinding(await AnalyseAsync(File(ds)), "dicom.pixel-data.appended-file", Severity.Critical);
    }

    [Fact]
    public async Task Executable_as_a_compressed_fragment_is_critical()
    {
        var ds = Image(8, 8);
        ds.Remove(DicomTags.PixelData);
        var fragments = new DicomFragmentSequence(DicomTags.PixelData, DicomVR.OB);
        fragments.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, null, 0, -1));
        fragments.Items.Add(new DicomFragment(PeHeader(256), null, 256, -1));
        ds.AddOrUpdate(fragments);
        AssertFinding(await AnalyseAsync(File(ds, syntax: TransferSyntax.Lookup(DicomUids.JPEGBaseline8Bit))), "dicom.pixel-data.embedded-file", Severity.Critical);
    }

    /// <summary>
    /// Regression: the first item of encapsulated pixel data (the Basic Offset Table) was never looked at, so a PE, an
    /// ELF or a PDF put there was stored and forwarded; items 1 and later were checked.
    /// </summary>
    [Fact]
    public async Task Regression_a_file_in_the_basic_offset_table_was_never_inspected()
    {
        AssertFinding(await AnalyseAsync(Encapsulated(PeHeader(256), [0xFF, 0xD8, 0xFF, 0xD9])), "dicom.pixel-data.embedded-file", Severity.Critical);

        var valid = await AnalyseAsync(Encapsulated([0, 0, 0, 0, 12, 0, 0, 0], [0xFF, 0xD8, 0xFF, 0xD9], [0xFF, 0xD8, 0xFF, 0xD9]));
        Assert.Equal(Severity.Info, valid.Worst);
        AssertFinding(await AnalyseAsync(Encapsulated([7, 0, 0, 0], [0xFF, 0xD8, 0xFF, 0xD9])), "dicom.pixel-data.invalid-offset-table", Severity.Info);
        AssertFinding(await AnalyseAsync(Encapsulated([77, 0, 0, 0], [0xFF, 0xD8, 0xFF, 0xD9])), "dicom.pixel-data.invalid-offset-table", Severity.Low);
        AssertFinding(await AnalyseAsync(Encapsulated([0, 0, 0, 0, 1], [0xFF, 0xD8, 0xFF, 0xD9])), "dicom.pixel-data.invalid-offset-table", Severity.Low);
    }

    /// <summary>
    /// Regression: a private sequence kept as bytes (an explicit UN of defined length, or an element an implicit VR data
    /// set does not name) was not looked inside, so a PE or a PDF in its items was stored and forwarded.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Regression_a_private_sequence_kept_as_UN_hid_what_its_items_hold(bool implicitVR)
    {
        // One item holding (7FD1,1002) = an inert PE header, encoded as PS3.5 6.2.2 says: implicit VR little endian.
        var payload = PeHeader(256);
        var element = new byte[8 + payload.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(element, 0x7FD1);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(element.AsSpan(2), 0x1002);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(element.AsSpan(4), (uint)payload.Length);
        payload.CopyTo(element, 8);
        var item = new byte[8 + element.Length];
        new byte[] { 0xFE, 0xFF, 0x00, 0xE0 }.CopyTo(item, 0);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(item.AsSpan(4), (uint)element.Length);
        element.CopyTo(item, 8);

        var ds = Image(8, 8);
        ds.SetString(new DicomTag(0x7FD1, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x7FD1, 0x1001), DicomVR.UN, item);
        var syntax = implicitVR ? TransferSyntax.ImplicitVRLittleEndian : TransferSyntax.ExplicitVRLittleEndian;
        AssertFinding(await AnalyseAsync(File(ds, syntax: syntax)), "dicom.element.executable", Severity.Critical);
    }

    /// <summary>
    /// Regression: an OB of undefined length outside Pixel Data (the Encapsulated Document, a private element) was read
    /// as fragments and never looked at: an Encapsulated PDF whose document was a PE was stored, and dcmtk peers could
    /// not even receive it when it was forwarded.
    /// </summary>
    [Fact]
    public async Task Regression_an_encapsulated_value_outside_pixel_data_was_never_inspected()
    {
        var ds = Image(8, 8);
        ds.SetString(new DicomTag(0x7FD1, 0x0010), DicomVR.LO, "ACME");
        var fragments = new DicomFragmentSequence(new DicomTag(0x7FD1, 0x1003), DicomVR.OB);
        fragments.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, null, 0, -1));
        fragments.Items.Add(new DicomFragment(PeHeader(256), null, 256, -1));
        ds.AddOrUpdate(fragments);
        var context = await AnalyseAsync(File(ds, syntax: TransferSyntax.Lookup(DicomUids.JPEGBaseline8Bit)));
        AssertFinding(context, "dicom.structure.encapsulated-outside-pixel-data", Severity.Medium);
        AssertFinding(context, "dicom.pixel-data.embedded-file", Severity.Critical);
    }

    /// <summary>Regression: a frame of native pixel data that starts with an executable was not flagged (only bytes past the image were).</summary>
    [Fact]
    public async Task Regression_an_executable_in_place_of_a_native_frame_was_not_flagged()
    {
        var ds = Image(8, 8);
        ds.SetString(DicomTags.NumberOfFrames, DicomVR.IS, "3");
        var pixels = new byte[3 * 8 * 8 * 2];
        PeHeader(128).CopyTo(pixels, 128);
        ds.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels);
        AssertFinding(await AnalyseAsync(File(ds)), "dicom.pixel-data.embedded-file", Severity.Critical);
    }

    /// <summary>Regression: a data set that ended inside an item it never closed was only noted (Info), stored, and then jammed forwarding for good.</summary>
    [Fact]
    public async Task Regression_a_data_set_ending_inside_an_item_was_accepted()
    {
        var bytes = File(Image(8, 8));
        // An undefined-length private sequence and item, opened at the end and never closed.
        byte[] open = [0xE1, 0x7F, 0x10, 0x00, (byte)'L', (byte)'O', 4, 0, (byte)'A', (byte)'C', (byte)'M', (byte)'E',
            0xE1, 0x7F, 0x01, 0x10, (byte)'S', (byte)'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
        AssertFinding(await AnalyseAsync(Append(bytes, open)), "dicom.structure.ended-inside-item", Severity.Low);
    }

    /// <summary>
    /// Regression: a PDF that did not start at the first byte of an element or fragment (behind a JPEG header, or 64
    /// zero bytes) was not recognised, although PDF readers find a header anywhere in the first kilobyte.
    /// </summary>
    [Fact]
    public async Task Regression_a_pdf_behind_a_few_bytes_in_an_element_or_fragment_was_not_recognised()
    {
        var pdf = Ascii("%PDF-1.4\n1 0 obj << /OpenAction << /JS (app.alert\\(1\\)) >> >> endobj\n%%EOF\n", 96);
        byte[] jpegThenPdf = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, (byte)'J', (byte)'F', (byte)'I', (byte)'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, .. pdf];
        var fragment = await AnalyseAsync(Encapsulated([], jpegThenPdf));
        AssertFinding(fragment, "dicom.pixel-data.embedded-file", Severity.High);
        Assert.Contains(fragment.Children, c => c.Name.Contains("fragment 1", StringComparison.Ordinal));

        var ds = Image(8, 8);
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, new byte[64].Concat(pdf).ToArray());
        AssertFinding(await AnalyseAsync(File(ds)), "dicom.element.embedded-file", Severity.Medium);
    }

    /// <summary>
    /// Regressions found by a second review: native pixel data inside an item (an icon) was never looked at; nor the
    /// pixel data of an image without usable Rows or with frames too small; a PDF behind a TIFF or MZ header was
    /// missed, as was one starting at bytes 1020 to 1023; gzip and HTML fragments passed; and a 4 KiB PE in a
    /// Study Description (LO) or a URL (UR) was never looked at.
    /// </summary>
    [Fact]
    public async Task Regression_content_in_places_the_first_fixes_did_not_reach()
    {
        var icon = Image(8, 8);
        var item = new DicomDataset();
        item.SetBytes(DicomTags.PixelData, DicomVR.OW, PeHeader(256));
        icon.AddOrUpdate(new DicomSequence(new DicomTag(0x0088, 0x0200)) { Items = { item } });
        AssertFinding(await AnalyseAsync(File(icon)), "dicom.element.executable", Severity.Critical);

        var noRows = Image(8, 8);
        noRows.Remove(DicomTags.Rows);
        noRows.SetBytes(DicomTags.PixelData, DicomVR.OW, PeHeader(4096));
        AssertFinding(await AnalyseAsync(File(noRows)), "dicom.pixel-data.embedded-file", Severity.Critical);

        var pdf = Ascii("%PDF-1.4\n1 0 obj << /OpenAction << /JS (app.alert\\(1\\)) >> >> endobj\n%%EOF\n", 96);
        foreach (var prefix in new[] { Ascii("II*\0", 32), Ascii("MZ", 32), new byte[1021] })
        {
            var ds = Image(8, 8);
            ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
            ds.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, prefix.Concat(pdf).ToArray());
            AssertFinding(await AnalyseAsync(File(ds)), "dicom.element.embedded-file", Severity.Medium);
        }

        AssertFinding(await AnalyseAsync(Encapsulated([], [0x1F, 0x8B, 0x08, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4])), "dicom.pixel-data.embedded-file", Severity.High);
        AssertFinding(await AnalyseAsync(Encapsulated([], Ascii("<script>/* VIGIE-TEST-MARKER */</script>"))), "dicom.pixel-data.embedded-file", Severity.High);

        var text = Image(8, 8);
        text.SetBytes(DicomTags.StudyDescription, DicomVR.LO, PeHeader(4096));
        AssertFinding(await AnalyseAsync(File(text)), "dicom.element.executable", Severity.Critical);
        var url = Image(8, 8);
        url.SetBytes(new DicomTag(0x0008, 0x1190), DicomVR.UR, ElfHeader(128));
        AssertFinding(await AnalyseAsync(File(url)), "dicom.element.executable", Severity.Critical);
    }

    /// <summary>
    /// Regressions (false positives of the first fixes): a native frame whose first two pixels read "#!" was refused as
    /// a script, and a Basic Offset Table left zeroed by a device got a valid image refused.
    /// </summary>
    [Fact]
    public async Task Regression_a_hash_bang_frame_or_a_zeroed_offset_table_refused_a_valid_image()
    {
        var ds = Image(8, 8);
        ds.SetString(DicomTags.NumberOfFrames, DicomVR.IS, "2");
        var pixels = new byte[2 * 8 * 8 * 2];
        pixels[0] = (byte)'#';
        pixels[1] = (byte)'!';
        pixels[128] = (byte)'#';
        pixels[129] = (byte)'!';
        ds.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels);
        Assert.Equal(Severity.Info, (await AnalyseAsync(File(ds))).Worst);

        byte[] jpeg = [0xFF, 0xD8, 0xFF, 0xD9];
        Assert.Equal(Severity.Info, (await AnalyseAsync(Encapsulated(new byte[8], jpeg, jpeg))).Worst);
        AssertFinding(await AnalyseAsync(Encapsulated([0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F], jpeg, jpeg)), "dicom.pixel-data.invalid-offset-table", Severity.Low);
    }

    /// <summary>
    /// Regression: a big-endian value over 64 KiB was checked as its wire bytes, not as the value readers decode (and
    /// Vigie forwards, re-encoded in little endian): a PE there passed, while the same PE in a 4 KiB value was caught.
    /// </summary>
    [Fact]
    public async Task Regression_a_large_big_endian_value_was_checked_unswapped()
    {
        var decoded = new byte[100_000];
        PeHeader(256).CopyTo(decoded, 0);
        var wire = decoded.ToArray();
        for (var i = 0; i < wire.Length; i += 2)
        {
            (wire[i], wire[i + 1]) = (wire[i + 1], wire[i]);
        }

        // Vigie writes no big endian: meta (explicit little endian) and data set (explicit big endian) by hand.
        using var file = new MemoryStream();
        file.Write(new byte[128]);
        file.Write("DICM"u8);
        var syntax = Ascii("1.2.840.10008.1.2.2\0", 20);
        file.Write([0x02, 0x00, 0x10, 0x00, (byte)'U', (byte)'I', 20, 0]);
        file.Write(syntax);
        void Element(ushort group, ushort element, string vr, byte[] value)
        {
            Span<byte> header = stackalloc byte[12];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(header, group);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(header[2..], element);
            header[4] = (byte)vr[0];
            header[5] = (byte)vr[1];
            if (vr == "OW")
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header[8..], (uint)value.Length);
                file.Write(header);
            }
            else
            {
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(header[6..], (ushort)value.Length);
                file.Write(header[..8]);
            }

            file.Write(value);
        }

        Element(0x0008, 0x0016, "UI", Ascii(DicomUids.CTImageStorage + "\0", DicomUids.CTImageStorage.Length + 1));
        Element(0x0029, 0x0010, "LO", Ascii("ACME", 4));
        Element(0x0029, 0x1001, "OW", wire);
        AssertFinding(await AnalyseAsync(file.ToArray()), "dicom.element.executable", Severity.Critical);
    }

    private static byte[] Encapsulated(params byte[][] items)
    {
        var ds = Image(8, 8);
        ds.Remove(DicomTags.PixelData);
        var fragments = new DicomFragmentSequence(DicomTags.PixelData, DicomVR.OB);
        foreach (var item in items)
        {
            fragments.Items.Add(new DicomFragment(item, null, item.Length, -1));
        }

        ds.AddOrUpdate(fragments);
        return File(ds, syntax: TransferSyntax.Lookup(DicomUids.JPEGBaseline8Bit));
    }

    [Fact]
    public async Task Meta_header_naming_another_sop_class_is_suspicious()
    {
        var bytes = File(Image());
        var text = System.Text.Encoding.ASCII.GetString(bytes);
        var first = text.IndexOf(DicomUids.CTImageStorage, StringComparison.Ordinal);
        bytes[first + DicomUids.CTImageStorage.Length - 1] = (byte)'4';
        AssertFinding(await AnalyseAsync(bytes), "dicom.meta.sop-class-mismatch", Severity.Medium);
    }

    [Fact]
    public async Task Sequence_nesting_bomb_is_high()
    {
        var ds = Image();
        var item = ds;
        for (var i = 0; i < 100; i++)
        {
            var sequence = new DicomSequence(DicomTags.ContentSequence);
            var inner = new DicomDataset();
            sequence.Items.Add(inner);
            item.AddOrUpdate(sequence);
            item = inner;
        }

        AssertFinding(await AnalyseAsync(File(ds)), "dicom.structure.depth-limit-exceeded", Severity.High);
    }

    [Fact]
    public async Task Truncated_file_is_a_low_structural_finding()
    {
        var bytes = File(Image(32, 32));
        AssertFinding(await AnalyseAsync(bytes[..^100]), "dicom.structure.length-exceeds-remaining", Severity.Low);
    }

    [Fact]
    public async Task Clean_references_give_no_finding_above_info()
    {
        var ct = TestContext.Current.CancellationToken;
        const string dir = "/usr/lib/python3/dist-packages/pydicom/data";
        Peers.Require(dir, "python3-pydicom");
        // Malformed on purpose in pydicom's set (truncated, inconsistent meta): their findings are correct.
        var malformed = new HashSet<string>(StringComparer.Ordinal) { "MR_truncated.dcm", "rtplan_truncated.dcm", "SC_rgb_jpeg.dcm", "no_meta.dcm" };
        var files = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Where(f => !malformed.Contains(Path.GetFileName(f)))
            .Where(f => IsDicom(f))
            .Concat(Peers.CtCorpusFiles())
            .ToList();
        Assert.True(files.Count > 350);
        var problems = new List<string>();
        foreach (var file in files)
        {
            var context = await AnalyseAsync(await System.IO.File.ReadAllBytesAsync(file, ct));
            problems.AddRange(context.Findings.Where(f => f.Severity > Severity.Info).Select(f => $"{file}: {f.Rule} {f.Severity} {f.Message}"));
        }

        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    private static bool IsDicom(string path)
    {
        try
        {
            DicomReader.ReadFileAsync(path, new DicomReadOptions { StopAtTag = DicomTags.PatientName }, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            return true;
        }
        catch (DicomParseException)
        {
            return false;
        }
    }

    /// <summary>PDF objects with an auto-run script and no header of their own: a reader opens them from a header elsewhere in the file.</summary>
    private static byte[] PdfObjectsWithoutHeader()
    {
        var body = System.Text.Encoding.ASCII.GetBytes("\n1 0 obj\n<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[]/Count 0>>\nendobj\n"
            + "3 0 obj\n<</S/JavaScript/JS(app.alert\\(\"VIGIE-TEST-MARKER\"\\))>>\nendobj\ntrailer\n<</Root 1 0 R/Size 4>>\n%%EOF\n");
        return body.Length % 2 == 0 ? body : [.. body, (byte)'\n'];
    }

    private static DicomDataset WithPdfObjectsInAPrivateElement(DicomDataset ds)
    {
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME 1.0");
        ds.SetBytes(new DicomTag(0x0029, 0x1010), DicomVR.OB, PdfObjectsWithoutHeader());
        return ds;
    }

    private static void HasActivePdf(Verdict verdict, string innerPathStart) =>
        Assert.True(verdict.Findings.Any(f => f.Rule.StartsWith("pdf.", StringComparison.Ordinal) && f.Severity >= Severity.High
            && f.InnerPath.StartsWith(innerPathStart, StringComparison.Ordinal)), $"expected active PDF content under {innerPathStart} in\n{verdict.Describe()}");

    /// <summary>
    /// Regression (review 14): a PDF header a few bytes into the preamble (behind junk, a NUL, a TIFF or an MZ header),
    /// its objects with an /OpenAction script in a private element, was not read as the PDF a reader opens: only offset 0
    /// was classified, and the file scanned clean (at most Info or Medium). Nor was HTML after leading whitespace.
    /// </summary>
    [Fact]
    public async Task Regression_a_pdf_or_a_page_a_few_bytes_into_the_preamble_was_clean()
    {
        byte[][] pdfPreambles =
        [
            Ascii("JUNKJUNK%PDF-1.4\n"), [0, .. Ascii("%PDF-1.4\n")], [(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0, 0, 0, .. Ascii("%PDF-1.4\n")],
            [(byte)'M', (byte)'Z', 0x90, 0, .. Ascii("%PDF-1.4\n")],
        ];
        foreach (var preamble in pdfPreambles)
        {
            var verdict = await TestInspection.InspectAsync(File(WithPdfObjectsInAPrivateElement(Image(8, 8)), Preamble(preamble)), "study.dcm");
            Assert.True(verdict.Kind == VerdictKind.Malicious, verdict.Describe());
            Assert.Equal(Severity.High, verdict.Has("dicom.preamble.pdf").Severity);
            HasActivePdf(verdict, "polyglot.pdf");
        }

        foreach (var page in new[] { "   \n<html><script>/* VIGIE-TEST-MARKER */</script></html>", "\t\r\n<script>/* VIGIE-TEST-MARKER */</script>", "JUNK<svg onload=x>" })
        {
            var verdict = await TestInspection.InspectAsync(File(Image(8, 8), Preamble(Ascii(page))), "study.dcm");
            Assert.True(verdict.Kind == VerdictKind.Malicious, verdict.Describe());
            Assert.Equal(Severity.High, verdict.Has("dicom.preamble.html").Severity);
        }

        // A dual-personality TIFF preamble stays clean.
        (await TestInspection.InspectAsync(File(WithPdfObjectsInAPrivateElement(Image(8, 8)), Preamble([(byte)'I', (byte)'I', 42, 0, 8, 0, 0, 0])), "study.dcm")).IsClean();
    }

    /// <summary>
    /// Regression (review 14): a Manufacturer (LO) of "%PDF-1.4" puts a PDF header in the file's first kilobyte, and the
    /// PDF's objects (an /OpenAction script) sat in a private OB further on. A PDF reader opens such a file and runs the
    /// script; Vigie never read the DICOM file so (a short LO was not even looked at), scanned it clean and stored it.
    /// A header in the meta information or in the data set's first kilobyte of a headerless data set counts the same;
    /// a benign encapsulated PDF there stays clean.
    /// </summary>
    [Fact]
    public async Task Regression_a_pdf_header_in_a_short_element_in_the_first_kilobyte_was_clean()
    {
        var ds = WithPdfObjectsInAPrivateElement(Image(8, 8));
        ds.SetString(DicomTags.Manufacturer, DicomVR.LO, "%PDF-1.4");
        var file = File(ds);
        Assert.InRange(file.AsSpan().IndexOf("%PDF-"u8), 132, 1023);
        var verdict = await TestInspection.InspectAsync(file, "study.dcm");
        Assert.True(verdict.Kind == VerdictKind.Malicious, verdict.Describe());
        HasActivePdf(verdict, "[as a PDF reader opens it, from offset");
        Assert.Contains(verdict.Findings, f => f.Rule == "dicom.element.embedded-file" && f.Message.Contains("(0008,0070)", StringComparison.Ordinal));

        var headerless = await TestInspection.InspectAsync(DicomWriter.Encode(ds, TransferSyntax.ExplicitVRLittleEndian), "dataset");
        Assert.True(headerless.Kind == VerdictKind.Malicious, headerless.Describe());

        // The header alone, no objects: a PDF in a value where none belongs is still not clean.
        var bare = Image(8, 8);
        bare.SetString(DicomTags.Manufacturer, DicomVR.LO, "%PDF-1.4");
        Assert.NotEqual(VerdictKind.Clean, (await TestInspection.InspectAsync(File(bare), "study.dcm")).Kind);

        // A benign encapsulated PDF whose header lies in the first kilobyte is read twice and found clean twice.
        var report = new DicomDataset();
        report.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
        report.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1414");
        report.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
        report.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "application/pdf");
        var pdf = PdfBuilder.Document().Build();
        report.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, pdf.Length % 2 == 0 ? pdf : [.. pdf, 0]);
        var benign = File(report);
        Assert.InRange(benign.AsSpan().IndexOf("%PDF-"u8), 132, 1023);
        (await TestInspection.InspectAsync(benign, "report.dcm")).IsClean();
    }

    private static byte[] FileWithMeta(DicomDataset meta, DicomDataset ds)
    {
        using var stream = new MemoryStream();
        DicomWriter.WriteFileAsync(stream, new DicomFile(meta, ds, TransferSyntax.ExplicitVRLittleEndian), null, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return stream.ToArray();
    }

    internal static DicomDataset MetaWithPrivateInformation(byte[] payload)
    {
        var meta = new DicomDataset();
        meta.SetString(DicomTags.PrivateInformationCreatorUID, DicomVR.UI, "2.25.5");
        meta.SetBytes(DicomTags.PrivateInformation, DicomVR.OB, payload.Length % 2 == 0 ? payload : [.. payload, 0]);
        return meta;
    }

    /// <summary>
    /// Regression (review 14): the File Meta Information group was never walked. A PE in (0002,0102) Private Information
    /// scanned clean, as did a PDF with an auto-run script there (about 250 bytes into the file, so a PDF reader opens
    /// it). A C-STORE data set that starts with group 0002 elements is stored behind Vigie's own meta group and read
    /// as part of it: a PE there was answered 0000.
    /// </summary>
    [Fact]
    public async Task Regression_the_file_meta_group_was_never_inspected()
    {
        var pe = await TestInspection.InspectAsync(FileWithMeta(MetaWithPrivateInformation(PeHeader(512)), Image(8, 8)), "study.dcm");
        Assert.True(pe.Kind == VerdictKind.Malicious, pe.Describe());
        Assert.Contains(pe.Findings, f => f.Rule == "dicom.element.executable" && f.Severity == Severity.Critical && f.Message.Contains("(0002,0102)", StringComparison.Ordinal));

        var pdf = Ascii("%PDF-1.4\n1 0 obj<</Type/Catalog/OpenAction<</S/JavaScript/JS(app.alert(1))>>>>endobj\ntrailer<</Root 1 0 R>>\n", 0);
        var withPdf = await TestInspection.InspectAsync(FileWithMeta(MetaWithPrivateInformation(pdf), Image(8, 8)), "study.dcm");
        Assert.True(withPdf.Kind == VerdictKind.Malicious, withPdf.Describe());
        Assert.Contains(withPdf.Findings, f => f.Rule == "dicom.element.embedded-file" && f.Message.Contains("(0002,0102)", StringComparison.Ordinal));

        // As the gateway stores a C-STORE data set that carries (0002,0100) and (0002,0102): its own header, then the data set.
        var stored = File(Image(8, 8));
        var datasetOffset = (await DicomReader.ReadFileAsync(new MemoryStream(stored), null, TestContext.Current.CancellationToken)).DatasetOffset;
        var sent = Image(8, 8);
        foreach (var element in MetaWithPrivateInformation(PeHeader(512)))
        {
            sent.AddOrUpdate(element);
        }

        var fromTheWire = await TestInspection.InspectAsync([.. stored.AsSpan(0, (int)datasetOffset), .. DicomWriter.Encode(sent, TransferSyntax.ExplicitVRLittleEndian)]);
        Assert.True(fromTheWire.Kind == VerdictKind.Malicious, fromTheWire.Describe());
        Assert.Contains(fromTheWire.Findings, f => f.Rule == "dicom.element.executable" && f.Message.Contains("(0002,0102)", StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression (review 14): in a Deflated Explicit VR Little Endian file, bytes after the end of the raw deflate
    /// stream (a PE, an ELF, a PDF with an auto-run script) were never looked at: scan said clean and C-STORE 0000,
    /// while the same bytes after a non-deflated data set are Critical trailing data. The even-length pad byte is not
    /// trailing data; the stream's end is found exactly whether it lies near the file's end or far from it.
    /// </summary>
    [Fact]
    public async Task Regression_bytes_after_a_deflated_data_sets_stream_were_never_inspected()
    {
        var noisy = Image(128, 128);
        var pixels = new byte[128 * 128 * 2];
        new Random(14).NextBytes(pixels);
        noisy.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels);
        foreach (var image in new[] { Image(8, 8), noisy })
        {
            var file = File(image, syntax: TransferSyntax.DeflatedExplicitVRLittleEndian);
            (await TestInspection.InspectAsync(file, "study.dcm")).IsClean();
            (await TestInspection.InspectAsync(Append(file, [0]), "study.dcm")).IsClean();
            // Checksum trailers some writers leave (pydicom's image_dfl.dcm ends with a gzip one), checked against the stream.
            var datasetOffset = (int)(await DicomReader.ReadFileAsync(new MemoryStream(file), null, TestContext.Current.CancellationToken)).DatasetOffset;
            using var inflated = new MemoryStream();
            await using (var inflate = new System.IO.Compression.DeflateStream(new MemoryStream(file, datasetOffset, file.Length - datasetOffset), System.IO.Compression.CompressionMode.Decompress))
            {
                await inflate.CopyToAsync(inflated, TestContext.Current.CancellationToken);
            }

            var gzipTrailer = new byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(gzipTrailer.AsSpan(4), (uint)inflated.Length);
            (await TestInspection.InspectAsync(Append(file, gzipTrailer), "study.dcm")).IsClean();
            uint a = 1, b = 0;
            foreach (var value in inflated.ToArray())
            {
                a = (a + value) % 65521;
                b = (b + a) % 65521;
            }

            var zlibTrailer = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(zlibTrailer, (b << 16) | a);
            (await TestInspection.InspectAsync(Append(file, zlibTrailer), "study.dcm")).IsClean();
            gzipTrailer[4] ^= 1;
            Assert.Equal(Severity.Medium, (await TestInspection.InspectAsync(Append(file, gzipTrailer), "study.dcm")).Has("dicom.trailing-data").Severity);
            foreach (var (tail, severity) in new[] { (PeHeader(512), Severity.Critical), (PeHeader(100_000), Severity.Critical), (ElfHeader(256), Severity.Critical) })
            {
                var verdict = await TestInspection.InspectAsync(Append(file, tail), "study.dcm");
                var trailing = verdict.Has("dicom.trailing-data");
                Assert.Equal(severity, trailing.Severity);
                Assert.Equal(file.Length, trailing.Offset);
                Assert.Contains(verdict.Findings, f => f.Rule.StartsWith("executable.", StringComparison.Ordinal) && f.InnerPath == "trailing-data");
            }

            var pdf = await TestInspection.InspectAsync(Append(file, Ascii("%PDF-1.4\n1 0 obj\n<</Type/Catalog/OpenAction 2 0 R>>\nendobj\n2 0 obj\n<</S/JavaScript/JS(app.alert\\(1\\))>>\nendobj\ntrailer\n<</Root 1 0 R>>\n%%EOF\n", 0)), "study.dcm");
            Assert.True(pdf.Kind == VerdictKind.Malicious, pdf.Describe());
            Assert.Equal(Severity.High, pdf.Has("dicom.trailing-data").Severity);
            HasActivePdf(pdf, "trailing-data");
        }
    }
}
