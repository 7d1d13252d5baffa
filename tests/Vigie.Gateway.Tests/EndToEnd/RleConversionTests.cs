using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Objects a modality sends in RLE Lossless reach peers that take only uncompressed syntaxes (a PACS set up for explicit
/// VR, a workstation for implicit VR, dcmtk's getscu by default): Vigie decodes the RLE as it sends, and the pixels
/// arrive exactly as they were before dcmtk's dcmcrle compressed them.
/// </summary>
public sealed class RleConversionTests
{
    [Fact]
    public async Task Rle_objects_are_forwarded_moved_and_got_decoded_for_peers_that_take_only_uncompressed_syntaxes()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-rle");
        var originals = Peers.CtCorpusFiles().Take(2).ToList();
        var compressed = new List<string>();
        foreach (var (original, i) in originals.Select((f, i) => (f, i)))
        {
            var target = work.Combine($"rle{i}.dcm");
            var encode = await Peers.RunAsync(Peers.Require("dcmcrle", "dcmtk"), [original, target], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(encode.ExitCode == 0, encode.ToString());
            Assert.Equal(DicomUids.RLELossless, (await DicomReader.ReadFileAsync(target, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).TransferSyntax.Uid);
            compressed.Add(target);
        }

        var pixels = new Dictionary<string, byte[]>();
        foreach (var original in originals)
        {
            var file = await DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct);
            pixels[Uid(file.Dataset, DicomTags.SOPInstanceUID)] = ((DicomValueElement)file.Dataset[DicomTags.PixelData]!).Span.ToArray();
        }

        await using var pacs = await StoreScp.StartAcceptingOnlyAsync("PACS", work.Combine("pacs"), null, "CTImageStorage", "LittleEndianExplicit");
        await using var workstation = await StoreScp.StartAcceptingOnlyAsync("WORKSTATION", work.Combine("moved"), null, "CTImageStorage", "LittleEndianImplicit");
        await using var node = await VigieNode.StartAsync(
            arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}", "--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "-xr", "127.0.0.1", node.DicomPortText, .. compressed],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store + "\n--- node\n" + node.Output);

        // Forwarding: the PACS takes explicit VR only.
        await pacs.WaitForFilesAsync(2, TimeSpan.FromSeconds(60));
        await AssertReceivedAsync(pacs.Folder, TransferSyntax.ExplicitVRLittleEndian, pixels, ct);

        // C-MOVE to a workstation that takes implicit VR only.
        var study = Uid((await DicomReader.ReadFileAsync(originals[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset, DicomTags.StudyInstanceUID);
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"),
            ["-aec", "VIGIE", "-aem", "WORKSTATION", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}", "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(move.ExitCode == 0 && !move.StandardError.Contains("E:", StringComparison.Ordinal), move.ToString());
        await workstation.WaitForFilesAsync(2, TimeSpan.FromSeconds(30));
        await AssertReceivedAsync(workstation.Folder, TransferSyntax.ImplicitVRLittleEndian, pixels, ct);

        // C-GET: getscu proposes the uncompressed syntaxes only for what it receives.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"),
            ["-aec", "VIGIE", "-S", "-od", got, "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}", "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && !get.StandardError.Contains("E:", StringComparison.Ordinal), get.ToString());
        Assert.Equal(2, Directory.GetFiles(got).Length);
        await AssertReceivedAsync(got, null, pixels, ct);
    }

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
        await using var workstation = await StoreScp.StartAcceptingOnlyAsync("WORKSTATION", work.Combine("moved"), null, "CTImageStorage", "RLELossless");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "-xr", "127.0.0.1", node.DicomPortText, rle],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store.ToString());

        // A destination that takes RLE only gets the object as it was sent, fragments and all.
        var sent = await DicomReader.ReadFileAsync(rle, new DicomReadOptions { LoadLargeValues = true }, ct);
        string[] keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={Uid(sent.Dataset, DicomTags.StudyInstanceUID)}"];
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "WORKSTATION", "-S", .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(move.ExitCode == 0 && !move.StandardError.Contains("E:", StringComparison.Ordinal), move.ToString());
        await workstation.WaitForFilesAsync(1, TimeSpan.FromSeconds(30));
        var received = await DicomReader.ReadFileAsync(Assert.Single(Directory.GetFiles(workstation.Folder)), new DicomReadOptions { LoadLargeValues = true }, ct);
        Assert.Equal(DicomUids.RLELossless, received.TransferSyntax.Uid);
        var fragments = ((DicomFragmentSequence)received.Dataset[DicomTags.PixelData]!).Items.Skip(1).Select(f => f.Value.ToArray());
        var expected = ((DicomFragmentSequence)sent.Dataset[DicomTags.PixelData]!).Items.Skip(1).Select(f => f.Value.ToArray());
        Assert.All(expected, f => Assert.NotEmpty(f));
        Assert.Equal(expected, fragments);

        // A C-GET requestor that lists RLE first, then the uncompressed syntaxes, in one context gets them uncompressed,
        // which every object of the archive can be sent in: the pixels decoded, equal to the original's.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "+xr", "-S", "-od", got, .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && !get.StandardError.Contains("E:", StringComparison.Ordinal), get.ToString());
        var plain = await DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct);
        await AssertReceivedAsync(got, TransferSyntax.ExplicitVRLittleEndian,
            new Dictionary<string, byte[]> { [Uid(plain.Dataset, DicomTags.SOPInstanceUID)] = ((DicomValueElement)plain.Dataset[DicomTags.PixelData]!).Span.ToArray() }, ct);
    }

    private static async Task AssertReceivedAsync(string folder, TransferSyntax? expected, Dictionary<string, byte[]> pixels, CancellationToken ct)
    {
        var received = Directory.GetFiles(folder);
        Assert.Equal(pixels.Count, received.Length);
        foreach (var path in received)
        {
            var file = await DicomReader.ReadFileAsync(path, new DicomReadOptions { LoadLargeValues = true }, ct);
            Assert.False(file.TransferSyntax.IsEncapsulated, $"{path}: {file.TransferSyntax.Name}");
            if (expected is not null)
            {
                Assert.Equal(expected.Uid, file.TransferSyntax.Uid);
            }

            Assert.True(((DicomValueElement)file.Dataset[DicomTags.PixelData]!).Span.SequenceEqual(pixels[Uid(file.Dataset, DicomTags.SOPInstanceUID)]), path);
        }
    }

    private static string Uid(DicomDataset dataset, DicomTag tag) => DicomText.TrimUid(dataset.GetString(tag)!);
}
