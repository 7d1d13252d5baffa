using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Inspection.Dicom;
using static Vigie.Inspection.Tests.Dicom.DicomThreatSamples;

namespace Vigie.Inspection.Tests.Dicom;

public sealed class DicomDisarmerTests
{
    private static async Task<(byte[] Output, IReadOnlyList<DisarmAction> Actions)> DisarmAsync(byte[] input, DisarmOptions? options = null)
    {
        using var content = ContentSource.FromMemory(input);
        using var output = new MemoryStream();
        var actions = await new DicomDisarmer().DisarmAsync(content, output, options ?? new DisarmOptions(), TestContext.Current.CancellationToken);
        return (output.ToArray(), actions);
    }

    private static async Task<Severity> WorstAfterAsync(byte[] bytes)
    {
        var context = new RecordingContext();
        using var content = ContentSource.FromMemory(bytes);
        await new DicomAnalyser().AnalyseAsync(context, content, TestContext.Current.CancellationToken);
        return context.Worst;
    }

    [Fact]
    public async Task Polyglot_preamble_is_zeroed_and_the_copy_inspects_clean()
    {
        var (output, actions) = await DisarmAsync(File(Image(), Preamble(PeHeader())));
        Assert.Contains(actions, a => a.Rule == "dicom.preamble");
        Assert.True(output.AsSpan(0, 128).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(Severity.Info, await WorstAfterAsync(output));
    }

    [Fact]
    public async Task Trailing_data_and_executable_elements_are_removed_and_the_image_kept()
    {
        var ds = Image();
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, PeHeader(300));
        var (output, actions) = await DisarmAsync(Append(File(ds), ElfHeader(100)));
        Assert.Contains(actions, a => a.Rule == "dicom.trailing-data");
        Assert.Contains(actions, a => a.Rule == "dicom.element.executable");
        Assert.Equal(Severity.Info, await WorstAfterAsync(output));
        var copy = await DicomReader.ReadFileAsync(new MemoryStream(output), null, TestContext.Current.CancellationToken);
        Assert.Equal(((DicomValueElement)Image()[DicomTags.PixelData]!).Value.ToArray(), ((DicomValueElement)copy.Dataset[DicomTags.PixelData]!).Value.ToArray());
        Assert.Equal("ACME", copy.Dataset.GetString(new DicomTag(0x0029, 0x0010)));
    }

    [Fact]
    public async Task Private_tags_are_stripped_on_request()
    {
        var ds = Image();
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        ds.SetBytes(new DicomTag(0x0029, 0x1003), DicomVR.OB, new byte[] { 1, 2, 3, 4 });
        var (output, actions) = await DisarmAsync(File(ds), new DisarmOptions { StripDicomPrivateTags = true });
        Assert.Equal(2, actions.Count(a => a.Rule == "dicom.private-tag"));
        var copy = await DicomReader.ReadFileAsync(new MemoryStream(output), null, TestContext.Current.CancellationToken);
        Assert.DoesNotContain(copy.Dataset, e => e.Tag.IsPrivate);
    }

    [Fact]
    public async Task A_clean_file_needs_no_action() => Assert.Empty((await DisarmAsync(File(Image()))).Actions);

    /// <summary>
    /// Regression (review 14): disarm kept (0002,0102) Private Information holding a PE (or a PDF with a script) and
    /// called the copy clean. It now drops it with its creator (0002,0100), and the copy inspects clean; bytes after a
    /// deflated data set's stream are listed as removed.
    /// </summary>
    [Fact]
    public async Task Regression_disarm_kept_a_program_in_the_meta_group_and_called_the_copy_clean()
    {
        var pdf = Ascii("%PDF-1.4\n1 0 obj<</Type/Catalog/OpenAction<</S/JavaScript/JS(app.alert(1))>>>>endobj\ntrailer<</Root 1 0 R>>\n", 0);
        foreach (var payload in new[] { PeHeader(512), pdf })
        {
            using var input = new MemoryStream();
            await DicomWriter.WriteFileAsync(input, new DicomFile(DicomAnalyserTests.MetaWithPrivateInformation(payload), Image(), TransferSyntax.ExplicitVRLittleEndian),
                null, TestContext.Current.CancellationToken);
            var (output, actions) = await DisarmAsync(input.ToArray());
            Assert.Contains(actions, a => a.Description.Contains("(0002,0102)", StringComparison.Ordinal));
            var copy = await DicomReader.ReadFileAsync(new MemoryStream(output), null, TestContext.Current.CancellationToken);
            Assert.Null(copy.Meta[DicomTags.PrivateInformation]);
            Assert.Null(copy.Meta[DicomTags.PrivateInformationCreatorUID]);
            Assert.Equal(Severity.Info, await WorstAfterAsync(output));
            (await TestInspection.InspectAsync(output, "copy.dcm")).IsClean();
        }

        var deflated = Append(File(Image(), syntax: TransferSyntax.DeflatedExplicitVRLittleEndian), PeHeader(512));
        var (clean, removed) = await DisarmAsync(deflated);
        Assert.Contains(removed, a => a.Rule == "dicom.trailing-data" && a.Description.Contains("512 bytes", StringComparison.Ordinal));
        (await TestInspection.InspectAsync(clean, "copy.dcm")).IsClean();
    }
}
