using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Objects a modality sends in RLE Lossless, retrieved with dcmtk.</summary>
public sealed class RleConversionTests
{
    /// <summary>
    /// Regression: the index kept the transfer syntax guessed from the data set alone (the plaintext copy read at ingest
    /// lacked the meta information Vigie prepends), so every compressed object was recorded as explicit VR little
    /// endian, and C-GET and C-MOVE announced it so while sending its compressed bytes: receivers got unreadable data.
    /// </summary>
    [Fact]
    public async Task Regression_compressed_objects_were_indexed_as_explicit_vr_and_retrieved_under_the_wrong_syntax()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-rle-syntax");
        var original = Peers.CtCorpusFiles()[0];
        var rle = work.Combine("rle.dcm");
        var encode = await Peers.RunAsync(Peers.Require("dcmcrle", "dcmtk"), [original, rle], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(encode.ExitCode == 0, encode.ToString());
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "-xr", "127.0.0.1", node.DicomPortText, rle],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store.ToString());

        // getscu takes RLE when offered: the object comes back as it was sent, fragments and all.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var sent = await DicomReader.ReadFileAsync(rle, new DicomReadOptions { LoadLargeValues = true }, ct);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"),
            ["-aec", "VIGIE", "+xr", "-S", "-od", got, "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={Uid(sent.Dataset, DicomTags.StudyInstanceUID)}",
                "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && !get.StandardError.Contains("E:", StringComparison.Ordinal), get.ToString());
        var received = await DicomReader.ReadFileAsync(Assert.Single(Directory.GetFiles(got)), new DicomReadOptions { LoadLargeValues = true }, ct);
        Assert.Equal(DicomUids.RLELossless, received.TransferSyntax.Uid);
        var fragments = ((DicomFragmentSequence)received.Dataset[DicomTags.PixelData]!).Items.Skip(1).Select(f => f.Value.ToArray());
        var expected = ((DicomFragmentSequence)sent.Dataset[DicomTags.PixelData]!).Items.Skip(1).Select(f => f.Value.ToArray());
        Assert.All(expected, f => Assert.NotEmpty(f));
        Assert.Equal(expected, fragments);
    }

    private static string Uid(DicomDataset dataset, DicomTag tag) => DicomText.TrimUid(dataset.GetString(tag)!);
}
