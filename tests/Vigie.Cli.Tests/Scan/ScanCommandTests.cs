using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Scan;

/// <summary>`vigie scan` as a user runs it: the real executable, generated inert samples, exit codes and JSON Lines.</summary>
public sealed class ScanCommandTests
{
    [Fact]
    public async Task Ct_corpus_is_clean_with_hashes_and_types()
    {
        var files = Peers.CtCorpusFiles();
        var result = await VigieProcess.RunAsync(["scan", "--recursive", "--json", Peers.CtCorpus()], cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(result.ExitCode == 0, result.ToString());
        var reports = Lines(result.StandardOutput).Where(r => r.GetProperty("path").GetString()!.EndsWith(".dcm", StringComparison.Ordinal)).ToList();
        Assert.Equal(files.Count, reports.Count);
        foreach (var report in reports)
        {
            var path = report.GetProperty("path").GetString()!;
            Assert.Equal("clean", report.GetProperty("verdict").GetString());
            Assert.Equal("Dicom", report.GetProperty("type").GetString());
            Assert.All(report.GetProperty("findings").EnumerateArray(), f => Assert.Equal("info", f.GetProperty("severity").GetString()));
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))), report.GetProperty("sha256").GetString());
        }
    }

    [Fact]
    public async Task Threats_are_reported_with_rule_offset_and_inner_path_and_disarmed_copies_come_out_clean()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var samples = Directory.CreateDirectory(folder.Combine("in")).FullName;
        var polyglot = Path.Combine(samples, "polyglot.dcm");
        await File.WriteAllBytesAsync(polyglot, PolyglotFrom(Peers.CtCorpusFiles()[0]), ct);
        await File.WriteAllBytesAsync(Path.Combine(samples, "open-action.pdf"), PdfWithOpenActionJavaScript(), ct);
        await File.WriteAllTextAsync(Path.Combine(samples, "notes.txt"), "Compte rendu : rien à signaler.\n", ct);
        var output = folder.Combine("disarmed");

        var result = await VigieProcess.RunAsync(["scan", "--json", "--disarm", output, samples], cancellationToken: ct);
        Assert.True(result.ExitCode == 1, result.ToString());
        var byName = Lines(result.StandardOutput).ToDictionary(r => Path.GetFileName(r.GetProperty("path").GetString()!));
        Assert.Equal(3, byName.Count);

        var dicom = byName["polyglot.dcm"];
        Assert.Equal("malicious", dicom.GetProperty("verdict").GetString());
        var findings = dicom.GetProperty("findings").EnumerateArray().ToList();
        var preamble = Assert.Single(findings, f => f.GetProperty("rule").GetString() == "dicom.preamble.pe");
        Assert.Equal(0, preamble.GetProperty("offset").GetInt64());
        Assert.Equal("", preamble.GetProperty("inner_path").GetString());
        Assert.Contains(findings, f => f.GetProperty("rule").GetString() == "dicom.trailing-data");
        var disarm = dicom.GetProperty("disarm");
        Assert.Equal("clean", disarm.GetProperty("verdict_after").GetString());
        Assert.Contains(disarm.GetProperty("actions").EnumerateArray(), a => a.GetProperty("description").GetString()!.Contains("preamble", StringComparison.Ordinal));
        var copy = await File.ReadAllBytesAsync(disarm.GetProperty("output").GetString()!, ct);
        Assert.True(copy.AsSpan(0, 128).IndexOfAnyExcept((byte)0) < 0, "the disarmed preamble is not zeroed");
        Assert.Equal("DICM"u8.ToArray(), copy[128..132]);

        var pdf = byName["open-action.pdf"];
        Assert.Equal("malicious", pdf.GetProperty("verdict").GetString());
        Assert.Contains(pdf.GetProperty("findings").EnumerateArray(), f => f.GetProperty("rule").GetString() == "pdf.javascript");
        Assert.Equal("clean", pdf.GetProperty("disarm").GetProperty("verdict_after").GetString());

        var text = byName["notes.txt"];
        Assert.Equal("clean", text.GetProperty("verdict").GetString());
        Assert.True(text.GetProperty("disarm").TryGetProperty("not_written", out _));

        // What disarm wrote scans clean.
        var rescan = await VigieProcess.RunAsync(["scan", "--recursive", output], cancellationToken: ct);
        Assert.True(rescan.ExitCode == 0, rescan.ToString());
        Assert.Contains("2 clean", rescan.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Text_report_names_the_rule_and_summarises()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var file = folder.Combine("report.pdf");
        await File.WriteAllBytesAsync(file, PdfWithOpenActionJavaScript(), ct);
        var result = await VigieProcess.RunAsync(["scan", file], cancellationToken: ct);
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("pdf.javascript", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("1 file(s)", result.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("1 malicious", result.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>Regression: a file name's escape sequences reached the terminal raw in the text report (clearing it, setting its title).</summary>
    [Fact]
    public async Task Regression_control_characters_in_a_file_name_reached_the_terminal()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var file = folder.Combine("a\u001b[2Jb\u202Efdp.exe.pdf");
        await File.WriteAllBytesAsync(file, PdfWithOpenActionJavaScript(), ct);
        var result = await VigieProcess.RunAsync(["scan", folder.Path], cancellationToken: ct);
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.DoesNotContain('\u001b', result.StandardOutput);
        Assert.DoesNotContain('\u202E', result.StandardOutput);
        // The table wraps the name in its column: read the column back.
        var column = string.Concat(result.StandardOutput.Split('\n').Where(l => l.StartsWith('│')).Select(l => l.Split('│')[1].Trim()));
        Assert.Contains("a?[2Jb?fdp.exe.pdf", column, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sub_folders_are_scanned_only_with_recursive()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var nested = Directory.CreateDirectory(folder.Combine("a", "b")).FullName;
        await File.WriteAllBytesAsync(Path.Combine(nested, "deep.pdf"), PdfWithOpenActionJavaScript(), ct);
        await File.WriteAllTextAsync(folder.Combine("top.txt"), "ok\n", ct);

        var flat = await VigieProcess.RunAsync(["scan", "--json", folder.Path], cancellationToken: ct);
        Assert.True(flat.ExitCode == 0, flat.ToString());
        Assert.Single(Lines(flat.StandardOutput));
        // Regression: "all clean" came with no word of the folders left out.
        Assert.Contains("1 sub-folder(s) not scanned: add --recursive (-r)", flat.StandardError, StringComparison.Ordinal);

        var deep = await VigieProcess.RunAsync(["scan", "--json", "-r", folder.Path], cancellationToken: ct);
        Assert.True(deep.ExitCode == 1, deep.ToString());
        Assert.Equal(2, Lines(deep.StandardOutput).Count());
    }

    [Fact]
    public async Task Missing_path_and_missing_rules_folder_exit_2_and_a_threat_outranks_an_error()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var missing = folder.Combine("nowhere");

        var noPath = await VigieProcess.RunAsync(["scan", missing], cancellationToken: ct);
        Assert.Equal(2, noPath.ExitCode);
        Assert.Contains("no such file or folder", noPath.StandardError, StringComparison.Ordinal);

        var noRules = await VigieProcess.RunAsync(["scan", "--rules", missing, folder.Path], cancellationToken: ct);
        Assert.Equal(2, noRules.ExitCode);
        Assert.Contains("rules folder", noRules.StandardError, StringComparison.Ordinal);

        var badArgument = await VigieProcess.RunAsync(["scan"], cancellationToken: ct);
        Assert.Equal(2, badArgument.ExitCode);

        var pdf = folder.Combine("x.pdf");
        await File.WriteAllBytesAsync(pdf, PdfWithOpenActionJavaScript(), ct);
        var both = await VigieProcess.RunAsync(["scan", missing, pdf], cancellationToken: ct);
        Assert.Equal(1, both.ExitCode);
    }

    [Fact]
    public async Task Regression_a_fifo_hung_the_scan_a_device_read_as_empty_and_clean_and_a_missing_path_had_no_json_record()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var tree = Directory.CreateDirectory(folder.Combine("tree")).FullName;
        var mkfifo = await Peers.RunAsync("mkfifo", [Path.Combine(tree, "pipe")], TimeSpan.FromSeconds(10), cancellationToken: ct);
        Assert.True(mkfifo.ExitCode == 0, mkfifo.ToString());
        File.CreateSymbolicLink(Path.Combine(tree, "zero"), "/dev/zero");
        await File.WriteAllBytesAsync(Path.Combine(tree, "x.pdf"), PdfWithOpenActionJavaScript(), ct);

        var scan = await VigieProcess.RunAsync(["scan", "--json", "-r", tree, folder.Combine("nowhere"), "--bogus"], cancellationToken: ct);
        Assert.True(scan.ExitCode == 1, scan.ToString());
        var records = Lines(scan.StandardOutput).ToDictionary(r => Path.GetFileName(r.GetProperty("path").GetString()!), r => r);
        Assert.Equal(["--bogus", "nowhere", "pipe", "x.pdf", "zero"], records.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("malicious", records["x.pdf"].GetProperty("verdict").GetString());
        foreach (var (name, reason) in new[] { ("pipe", "a FIFO"), ("zero", "a character device"), ("nowhere", "no such file"), ("--bogus", "unknown option") })
        {
            Assert.Equal("error", records[name].GetProperty("verdict").GetString());
            Assert.Contains(reason, records[name].GetProperty("findings")[0].GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        var disarmIntoFile = await VigieProcess.RunAsync(["scan", "--disarm", Path.Combine(tree, "x.pdf"), Path.Combine(tree, "x.pdf")], cancellationToken: ct);
        Assert.Equal(2, disarmIntoFile.ExitCode);
        Assert.Contains("is a file, not a folder", disarmIntoFile.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: when the disarmer could not read an object (a DICOM data set cut short), its exception replaced the
    /// whole result: a malicious file was reported as an error, with no findings, and an empty .partial copy stayed.
    /// </summary>
    [Fact]
    public async Task Regression_a_failed_disarm_replaced_the_verdict_by_an_error()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan-disarm");
        var polyglot = PolyglotFrom(Peers.CtCorpusFiles()[0]);
        var cut = folder.Combine("cut.dcm");
        await File.WriteAllBytesAsync(cut, polyglot[..(polyglot.Length / 2)], ct);
        var output = folder.Combine("disarmed");

        var result = await VigieProcess.RunAsync(["scan", "--json", "--disarm", output, cut], cancellationToken: ct);

        Assert.True(result.ExitCode == 1, result.ToString());
        var record = Assert.Single(Lines(result.StandardOutput));
        Assert.Equal("malicious", record.GetProperty("verdict").GetString());
        Assert.Contains(record.GetProperty("findings").EnumerateArray(), f => f.GetProperty("rule").GetString() == "dicom.preamble.pe");
        Assert.StartsWith("no safe copy", record.GetProperty("disarm").GetProperty("not_written").GetString(), StringComparison.Ordinal);
        Assert.Empty(Directory.Exists(output) ? Directory.GetFiles(output, "*", SearchOption.AllDirectories) : []);
    }

    [Fact]
    public async Task Help_lists_the_options()
    {
        var result = await VigieProcess.RunAsync(["scan", "--help"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(0, result.ExitCode);
        foreach (var option in new[] { "--recursive", "--json", "--disarm", "--rules" })
        {
            Assert.Contains(option, result.StandardOutput, StringComparison.Ordinal);
        }
    }

    private static IEnumerable<JsonElement> Lines(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement.Clone());

    /// <summary>A CT image whose preamble is an inert PE header (MZ, e_lfanew, "PE\0\0", i386), with a ZIP marker after the dataset.</summary>
    private static byte[] PolyglotFrom(string ctFile)
    {
        var bytes = File.ReadAllBytes(ctFile);
        Array.Clear(bytes, 0, 128);
        bytes[0] = (byte)'M';
        bytes[1] = (byte)'Z';
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(0x3C), 0x40);
        "PE\0\0"u8.CopyTo(bytes.AsSpan(0x40));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(0x44), 0x014C);
        return [.. bytes, .. "PK\u0003\u0004inert"u8];
    }

    [Fact]
    public async Task Regression_disarm_put_a_dicom_report_whose_pdf_runs_a_script_unchanged_into_the_folder_of_safe_copies()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-scan");
        var dataset = new Vigie.Dicom.DicomDataset();
        dataset.SetString(Vigie.Dicom.DicomTags.SOPClassUID, Vigie.Dicom.DicomVR.UI, Vigie.Dicom.DicomUids.EncapsulatedPDFStorage);
        dataset.SetString(Vigie.Dicom.DicomTags.SOPInstanceUID, Vigie.Dicom.DicomVR.UI, "2.25.7070707");
        dataset.SetString(Vigie.Dicom.DicomTags.MIMETypeOfEncapsulatedDocument, Vigie.Dicom.DicomVR.LO, "application/pdf");
        var pdf = PdfWithOpenActionJavaScript();
        dataset.SetBytes(Vigie.Dicom.DicomTags.EncapsulatedDocument, Vigie.Dicom.DicomVR.OB, pdf.Length % 2 == 0 ? pdf : [.. pdf, 0]);
        var report = folder.Combine("report.dcm");
        await using (var stream = File.Create(report))
        {
            await Vigie.Dicom.IO.DicomWriter.WriteFileAsync(stream, new Vigie.Dicom.DicomFile(new Vigie.Dicom.DicomDataset(), dataset, Vigie.Dicom.TransferSyntax.ExplicitVRLittleEndian), null, ct);
        }

        var output = folder.Combine("safe");
        var result = await VigieProcess.RunAsync(["scan", "--json", "--disarm", output, report], cancellationToken: ct);
        Assert.True(result.ExitCode == 1, result.ToString());
        var disarm = Lines(result.StandardOutput).Single().GetProperty("disarm");
        Assert.Contains("still malicious", disarm.GetProperty("not_written").GetString(), StringComparison.Ordinal);
        Assert.Equal("malicious", disarm.GetProperty("verdict_after").GetString());
        Assert.False(Directory.Exists(output) && Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Any(), "a copy was written");
    }

    private static byte[] PdfWithOpenActionJavaScript() => Encoding.ASCII.GetBytes(
        "%PDF-1.4\n1 0 obj<</Type/Catalog/OpenAction 2 0 R>>endobj\n2 0 obj<</S/JavaScript/JS(app.alert\\(1\\))>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n");
}
