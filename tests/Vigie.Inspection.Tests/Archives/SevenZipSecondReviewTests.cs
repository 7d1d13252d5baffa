using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Archives;

/// <summary>Regressions from the second review of the 7z reading (2026-12-07).</summary>
public sealed class SevenZipSecondReviewTests
{
    [Fact]
    public void SevenZip_header_repair_reads_coder_properties_after_their_length()
    {
        // An AES folder's properties were skipped from the length byte itself, so the next folder was misread and
        // the repair gave up.
        var archive = SevenZipReviewTests.SevenZip(subStreams: false,
            ("f0_doc.txt", SevenZipReviewTests.Noise(16), true), ("f1_evil.exe", ExecutableSamples.Pe(), false));
        using var content = ContentSource.FromMemory(archive);
        Assert.NotNull(Vigie.Inspection.Archives.SevenZipHeaderRepair.TryAddSubStreamsInfo(content, 1 << 20));
        var folders = Assert.IsAssignableFrom<IReadOnlyList<Vigie.Inspection.Archives.SevenZipHeaderRepair.Folder>>(
            Vigie.Inspection.Archives.SevenZipHeaderRepair.TryReadFolders(content));
        Assert.True(folders[0].Encrypted);
        Assert.True(folders[1].Copy);
    }

    [Fact]
    public async Task SevenZip_no_substreams_with_an_encrypted_folder_gives_no_analyser_error_and_the_plain_files_are_inspected()
    {
        var archive = SevenZipReviewTests.SevenZip(subStreams: false,
            ("f0_doc.txt", SevenZipReviewTests.Noise(16), true), ("f1_doc.txt", "compte rendu de consultation\r\n"u8.ToArray(), false),
            ("f2_doc.txt", SevenZipReviewTests.Noise(16), true), ("f3_evil.exe", ExecutableSamples.Pe(), false));
        var verdict = await TestInspection.InspectAsync(archive, "mixed.7z");
        verdict.HasNo("inspection.analyser-error");
        verdict.Has("executable.pe");
        verdict.Has("archive.encrypted-entry");
        Assert.DoesNotContain(verdict.Findings, f => f.Message.Contains("NullReferenceException", StringComparison.Ordinal));
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);
    }

    [Fact]
    public async Task SevenZip_no_substreams_too_large_to_repair_is_read_folder_by_folder()
    {
        var archive = SevenZipReviewTests.SevenZip(subStreams: false,
            ("f0_doc.txt", SevenZipReviewTests.Noise(16), true), ("f1_evil.exe", ExecutableSamples.Pe(), false));
        var verdict = await TestInspection.Create(limits: l => l.InMemoryThreshold = 64).InspectAsync(archive, "big.7z");
        verdict.HasNo("inspection.analyser-error");
        verdict.Has("executable.pe");
        verdict.Has("archive.encrypted-entry");
        Assert.Contains(verdict.Findings, f => f.Rule == "archive.malformed" && f.Message.Contains("folder(s) are read one by one", StringComparison.Ordinal));
    }
}
