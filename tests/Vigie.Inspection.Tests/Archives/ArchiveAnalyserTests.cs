using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using SharpCompress.Common;
using SharpCompress.Writers.SevenZip;
using Vigie.Inspection.Tests.Samples;
using Vigie.Testing;

namespace Vigie.Inspection.Tests.Archives;

public sealed class ArchiveAnalyserTests
{
    [Fact]
    public async Task Clean_archives_give_nothing_above_info()
    {
        var zip = new ZipBuilder().Add("notes/day1.txt", "patient stable").Add("notes/day2.txt", "patient discharged").Add("empty/", []).Build();
        (await TestInspection.InspectAsync(zip, "notes.zip")).IsClean();
        (await TestInspection.InspectAsync(Tar(("a.txt", "alpha"), ("dir/b.txt", "beta")), "x.tar")).IsClean();
        (await TestInspection.InspectAsync(Gzip(Tar(("a.txt", "alpha"))), "x.tar.gz")).IsClean();
        (await TestInspection.InspectAsync(SevenZip(("a.txt", Encoding.ASCII.GetBytes("alpha")), ("b.txt", Encoding.ASCII.GetBytes("beta"))), "x.7z")).IsClean();
    }

    [Theory]
    [InlineData("../../etc/cron.d/job")]
    [InlineData("/etc/passwd")]
    [InlineData("C:\\Windows\\System32\\x.dll")]
    [InlineData("\\\\server\\share\\x.txt")]
    [InlineData("ok/..\\..\\x.txt")]
    public async Task Traversal_names_are_found(string name)
    {
        var verdict = await TestInspection.InspectAsync(new ZipBuilder().Add(name, "x").Build());
        verdict.Has("zip.path-traversal");
        verdict.IsMalicious();
    }

    /// <summary>
    /// Regression: only the header names were checked. A Unicode Path extra field (which unzip writes to) or a local
    /// header (which streaming extractors read) naming "../.." passed clean, or as a header mismatch only.
    /// </summary>
    [Fact]
    public async Task Regression_a_traversal_in_the_unicode_path_field_or_the_local_header_passed()
    {
        var unicode = await TestInspection.InspectAsync(new ZipBuilder().Add("benign.txt", "x", tweak: e => e.UnicodePath("../../tmp/evil.txt")).Build());
        Assert.Contains("Unicode Path", unicode.Has("zip.path-traversal").Message, StringComparison.Ordinal);
        unicode.IsMalicious();

        var local = await TestInspection.InspectAsync(new ZipBuilder().Add("readme.txt", "x", tweak: e => e.LocalName = "../evil.tx").Build());
        Assert.Contains("local header", local.Has("zip.path-traversal").Message, StringComparison.Ordinal);

        // unzip takes the last of several fields: the benign first one hid the second.
        var second = await TestInspection.InspectAsync(new ZipBuilder().Add("a.txt", "x", tweak: e =>
        {
            e.UnicodePath("a.txt");
            e.UnicodePath("../evil.txt");
        }).Build());
        second.Has("zip.path-traversal");

        var plain = await TestInspection.InspectAsync(new ZipBuilder().Add("notes.txt", "x", tweak: e => e.UnicodePath("notes.txt")).Build());
        plain.IsClean();
    }

    /// <summary>Regression: past MaxEntries, the first entry not read was reported as a local header hidden from the directory.</summary>
    [Fact]
    public async Task Regression_entries_past_the_limit_were_reported_as_hidden_data()
    {
        var zip = new ZipBuilder();
        for (var i = 0; i < 30; i++)
        {
            zip.Add($"notes/{i}.txt", "x");
        }

        var verdict = await TestInspection.Create(limits: l => l.MaxEntries = 10).InspectAsync(zip.Build(), "many.zip");
        verdict.Has("zip.too-many-entries");
        verdict.HasNo("zip.hidden-data");
    }

    [Fact]
    public async Task Backslashes_alone_are_only_suspicious()
    {
        var verdict = await TestInspection.InspectAsync(new ZipBuilder().Add("dir\\file.txt", "x").Build());
        verdict.Has("zip.suspicious-name");
        verdict.HasNo("zip.path-traversal");
    }

    [Fact]
    public async Task Local_headers_that_disagree_with_the_central_directory_are_found()
    {
        var renamed = new ZipBuilder().Add("invoice.pdf", "x", tweak: e => e.LocalName = "invoice.exe").Build();
        Assert.Contains("invoice.exe", (await TestInspection.InspectAsync(renamed)).Has("zip.header-mismatch").Message);
        var sizes = new ZipBuilder().Add("a.txt", "hello world", deflate: false, tweak: e => e.LocalDeclaredSize = 3).Build();
        (await TestInspection.InspectAsync(sizes)).Has("zip.header-mismatch");
        var method = new ZipBuilder().Add("a.txt", "hello world", tweak: e => e.LocalMethod = 0).Build();
        (await TestInspection.InspectAsync(method)).Has("zip.header-mismatch");
    }

    [Fact]
    public async Task Overlapping_duplicate_hidden_and_encrypted_entries_are_found()
    {
        var overlap = new ZipBuilder().Add("a.txt", "shared data").Add("b.txt", "shared data", tweak: e => e.LocalOffsetOf = 0).Build();
        (await TestInspection.InspectAsync(overlap)).Has("zip.overlapping-entries");

        var duplicate = new ZipBuilder().Add("a.txt", "one").Add("a.txt", "two").Build();
        (await TestInspection.InspectAsync(duplicate)).Has("zip.duplicate-name");

        var hidden = new ZipBuilder().Add("a.txt", "visible", tweak: e => e.HiddenLocalAfter = "payload.exe").Build();
        (await TestInspection.InspectAsync(hidden)).Has("zip.hidden-data");

        var omitted = new ZipBuilder().Add("shown.txt", "x").Add("secret.exe", ExecutableSamples.Pe(), tweak: e => e.OmitFromCentral = true).Build();
        (await TestInspection.InspectAsync(omitted)).Has("zip.hidden-data");

        var encrypted = new ZipBuilder().Add("secret.txt", "x", tweak: e => e.Flags = 1).Build();
        (await TestInspection.InspectAsync(encrypted)).Has("zip.encrypted-entry");
    }

    [Fact]
    public async Task A_zip_without_a_readable_central_directory_is_read_from_its_local_headers()
    {
        var zip = new ZipBuilder().Add("readme.txt", "x").Add("tool.exe", ExecutableSamples.Pe()).Build();
        var cut = zip[..(zip.Length - 40)];
        var verdict = await TestInspection.InspectAsync(cut);
        verdict.Has("zip.malformed");
        verdict.Has("executable.pe", "tool.exe");
    }

    [Fact]
    public async Task Self_extractor_style_prefixes_are_handled()
    {
        var builder = new ZipBuilder { Prefix = Encoding.ASCII.GetBytes(new string('#', 3000)) };
        builder.Add("a.txt", "alpha", tweak: e => e.OffsetsRelativeToPrefix = true);
        var verdict = await TestInspection.InspectAsync(builder.Build());
        verdict.HasNo("zip.malformed");
        Assert.True(verdict.Objects >= 1);
    }

    [Fact]
    public async Task Ratio_bombs_are_found_from_declared_sizes_and_from_actual_output()
    {
        var zeros = ZipBuilder.Deflate(new byte[64 * 1024 * 1024]);
        var honest = new ZipBuilder().Add("zeros.bin", [], tweak: e => { e.RawCompressed = zeros; e.DeclaredSize = 64 * 1024 * 1024; e.Method = 8; }).Build();
        var verdict = await TestInspection.InspectAsync(honest);
        verdict.Has("zip.bomb-ratio");
        Assert.Equal(0, verdict.ExtractedBytes);

        var lying = new ZipBuilder().Add("small.txt", [], tweak: e => { e.RawCompressed = zeros; e.DeclaredSize = zeros.Length; e.Method = 8; }).Build();
        verdict = await TestInspection.InspectAsync(lying);
        verdict.Has("zip.bomb-ratio");
        Assert.True(verdict.ExtractedBytes < 64L * 1024 * 1024, $"{verdict.ExtractedBytes}");

        var gzipBomb = Gzip(new byte[64 * 1024 * 1024], CompressionLevel.SmallestSize);
        (await TestInspection.InspectAsync(gzipBomb)).Has("archive.bomb-ratio");
    }

    [Fact]
    public async Task Overlapping_entries_that_multiply_output_end_in_an_expansion_bomb()
    {
        var kernel = ZipBuilder.Deflate(new byte[8 * 1024 * 1024]);
        var builder = new ZipBuilder().Add("k0", [], tweak: e => { e.RawCompressed = kernel; e.DeclaredSize = 8 * 1024 * 1024; e.Method = 8; });
        for (var i = 1; i < 200; i++)
        {
            builder.Add($"k{i}", [], tweak: e => { e.RawCompressed = kernel; e.DeclaredSize = 8 * 1024 * 1024; e.Method = 8; e.LocalOffsetOf = 0; });
        }

        var verdict = await TestInspection.Create(l => l.MaxCompressionRatio = 5000).InspectAsync(builder.Build());
        verdict.Has("zip.overlapping-entries");
        verdict.Has("inspection.expansion-bomb");
    }

    [Fact]
    public async Task Tar_names_links_and_nested_content_are_checked()
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            var evil = new PaxTarEntry(TarEntryType.RegularFile, "../../root/.bashrc") { DataStream = new MemoryStream("x"u8.ToArray()) };
            writer.WriteEntry(evil);
            writer.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "link") { LinkName = "/etc/shadow" });
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "bin/tool") { DataStream = new MemoryStream(ExecutableSamples.Elf()) });
        }

        var verdict = await TestInspection.InspectAsync(Gzip(tar.ToArray()), "release.tgz");
        Assert.Contains(verdict.Findings, f => f.Rule == "archive.path-traversal" && f.Message.Contains(".bashrc", StringComparison.Ordinal));
        Assert.Contains(verdict.Findings, f => f.Rule == "archive.path-traversal" && f.Message.Contains("/etc/shadow", StringComparison.Ordinal));
        verdict.Has("executable.elf", "release.tar/bin/tool");
    }

    [Fact]
    public async Task Seven_zip_entries_are_inspected()
    {
        var verdict = await TestInspection.InspectAsync(SevenZip(("doc.txt", "x"u8.ToArray()), ("setup.exe", ExecutableSamples.Pe())), "x.7z");
        Assert.Equal("SevenZip", verdict.ContentType);
        verdict.Has("executable.pe", "setup.exe");
    }

    [Fact]
    public async Task Bzip2_and_xz_streams_are_inspected()
    {
        var bz = new MemoryStream();
        using (var compressor = SharpCompress.Compressors.BZip2.BZip2Stream.Create(bz, SharpCompress.Compressors.CompressionMode.Compress, false, true, false))
        {
            compressor.Write(ExecutableSamples.Pe());
        }

        (await TestInspection.InspectAsync(bz.ToArray(), "tool.bz2")).Has("executable.pe", "tool");

        var xz = Peers.Require("xz", "xz-utils");
        using var dir = new TempDirectory();
        var path = dir.Combine("tool");
        await File.WriteAllBytesAsync(path, ExecutableSamples.Pe(), TestContext.Current.CancellationToken);
        var run = await Peers.RunAsync(xz, ["-z", "-k", path], TimeSpan.FromSeconds(30), cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(run.ExitCode == 0, run.ToString());
        (await TestInspection.Default.InspectFileAsync(path + ".xz", TestContext.Current.CancellationToken)).Has("executable.pe", "tool");
    }

    /// <summary>
    /// Regression: only the first stream of an .xz holding several (xz --concatenate, parallel compressors, or a file
    /// simply appended) was decoded, so what followed it was never inspected and the file was called clean.
    /// </summary>
    [Fact]
    public async Task Regression_only_the_first_stream_of_a_multi_stream_xz_was_inspected()
    {
        var ct = TestContext.Current.CancellationToken;
        var xz = Peers.Require("xz", "xz-utils");
        using var dir = new TempDirectory();
        // One executable cut in two, a stream each: decoded whole, the streams make the executable again.
        var first = dir.Combine("head");
        var second = dir.Combine("rest");
        var pe = ExecutableSamples.Pe();
        await File.WriteAllBytesAsync(first, pe[..32], ct);
        await File.WriteAllBytesAsync(second, pe[32..], ct);
        foreach (var path in new[] { first, second })
        {
            var run = await Peers.RunAsync(xz, ["-z", "-k", path], TimeSpan.FromSeconds(30), cancellationToken: ct);
            Assert.True(run.ExitCode == 0, run.ToString());
        }

        // Two streams, with stream padding between them as xz allows.
        byte[] both = [.. await File.ReadAllBytesAsync(first + ".xz", ct), 0, 0, 0, 0, .. await File.ReadAllBytesAsync(second + ".xz", ct)];
        var verdict = await TestInspection.InspectAsync(both, "bundle.xz");
        verdict.Has("executable.pe");

        // Regression: past 1,024 streams, or with bytes after the last one, the file was read as its first stream only,
        // silently, and called clean.
        var empty = dir.Combine("empty");
        await File.WriteAllBytesAsync(empty, [], ct);
        Assert.Equal(0, (await Peers.RunAsync(xz, ["-z", "-k", empty], TimeSpan.FromSeconds(30), cancellationToken: ct)).ExitCode);
        var emptyStream = await File.ReadAllBytesAsync(empty + ".xz", ct);
        var many = new MemoryStream();
        for (var i = 0; i < 1_500; i++)
        {
            many.Write(emptyStream);
        }

        many.Write(both);
        (await TestInspection.InspectAsync(many.ToArray(), "many.xz")).Has("executable.pe");
        var junk = await TestInspection.InspectAsync([.. both, .. "JUNK"u8], "junk.xz");
        Assert.Contains(junk.Findings, f => f.Rule == "archive.malformed" && f.Message.Contains("only its first stream", StringComparison.Ordinal));
    }

    /// <summary>Regression: a gzip or tar file cut short was called clean: the readers hand over what there is without a word.</summary>
    [Fact]
    public async Task Regression_truncated_gzip_and_tar_files_were_called_clean()
    {
        var data = new byte[200_000];
        new Random(3).NextBytes(data);
        var gz = new MemoryStream();
        using (var compressor = new System.IO.Compression.GZipStream(gz, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            compressor.Write(data);
        }

        var whole = gz.ToArray();
        (await TestInspection.InspectAsync(whole, "data.gz")).IsClean();
        var cut = await TestInspection.InspectAsync(whole[..(whole.Length / 2)], "data.gz");
        Assert.Contains("truncated", cut.Has("archive.malformed").Message, StringComparison.Ordinal);

        var tar = new MemoryStream();
        using (var writer = new System.Formats.Tar.TarWriter(tar, System.Formats.Tar.TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "r.bin") { DataStream = new MemoryStream(data) });
        }

        var archive = tar.ToArray();
        (await TestInspection.InspectAsync(archive, "data.tar")).IsClean();
        var cutTar = await TestInspection.InspectAsync(archive[..100_000], "data.tar");
        Assert.Contains("truncated", cutTar.Has("archive.malformed").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Corrupt_archives_are_reported_not_thrown()
    {
        var gz = Gzip(Encoding.ASCII.GetBytes(new string('a', 100_000)));
        (await TestInspection.InspectAsync(gz[..(gz.Length / 2)])).HasNo("inspection.analyser-error");
        var seven = SevenZip(("a.txt", new byte[5000]));
        (await TestInspection.InspectAsync(seven[..(seven.Length / 2)])).HasNo("inspection.analyser-error");
        var tar = Tar(("a.txt", new string('x', 3000)));
        (await TestInspection.InspectAsync(tar[..700])).HasNo("inspection.analyser-error");
    }

    internal static byte[] Gzip(byte[] data, CompressionLevel level = CompressionLevel.Fastest)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, level, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }

    internal static byte[] Tar(params (string Name, string Text)[] files)
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true))
        {
            foreach (var (name, text) in files)
            {
                writer.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(text)) });
            }
        }

        return output.ToArray();
    }

    internal static byte[] SevenZip(params (string Name, byte[] Data)[] files)
    {
        var output = new MemoryStream();
        using (var writer = new SevenZipWriter(output, new SevenZipWriterOptions(CompressionType.LZMA) { LeaveStreamOpen = true }))
        {
            foreach (var (name, data) in files)
            {
                writer.Write(name, new MemoryStream(data), DateTime.UnixEpoch);
            }
        }

        return output.ToArray();
    }
}
