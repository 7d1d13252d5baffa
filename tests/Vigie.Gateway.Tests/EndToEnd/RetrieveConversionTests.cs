using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: C-MOVE (and C-GET) sent an object only in the transfer syntax it was stored in, and failed the
/// sub-operation when the receiver took only the other uncompressed one (a workstation that accepts implicit VR only, as
/// every storage SCP must). Now the data set is re-encoded as it is sent, its pixel data unchanged. dcmtk's getscu cannot
/// be made to propose implicit VR only for the images it receives, so the C-GET side has no peer test here. Objects
/// received deflated are inflated the same way for peers that do not take deflate (getscu by default).
/// </summary>
public sealed class RetrieveConversionTests
{
    [Fact]
    public async Task Objects_stored_in_explicit_vr_are_moved_to_a_workstation_that_takes_implicit_vr_only()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-retrieve-implicit");
        await using var workstation = await StoreScp.StartAcceptingOnlyAsync("WORKSTATION", work.Combine("moved"), null, "CTImageStorage", "LittleEndianImplicit");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);
        var first = await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { LoadLargeValues = true }, ct);
        var studyUid = first.Dataset.GetString(DicomTags.StudyInstanceUID)!.TrimEnd('\0', ' ');
        var uids = new List<string>();
        foreach (var file in files)
        {
            var read = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
            uids.Add(read.Dataset.GetString(DicomTags.SOPInstanceUID)!.TrimEnd('\0', ' '));
        }

        string[] Keys(string uid) => ["-k", "QueryRetrieveLevel=IMAGE", "-k", $"StudyInstanceUID={studyUid}", "-k", $"SOPInstanceUID={uid}"];

        // C-MOVE to a workstation configured for implicit VR only.
        foreach (var uid in uids)
        {
            var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "WORKSTATION", "-S", .. Keys(uid), "127.0.0.1", node.DicomPortText],
                TimeSpan.FromMinutes(2), cancellationToken: ct);
            Assert.True(move.ExitCode == 0, move.ToString());
        }

        await workstation.WaitForFilesAsync(2, TimeSpan.FromSeconds(30));
        Assert.Equal(2, workstation.Files);

        var originalPixels = ((DicomValueElement)first.Dataset[DicomTags.PixelData]!).Span.ToArray();
        foreach (var received in Directory.GetFiles(workstation.Folder))
        {
            var file = await DicomReader.ReadFileAsync(received, new DicomReadOptions { LoadLargeValues = true }, ct);
            Assert.True(file.TransferSyntax.Uid == TransferSyntax.ImplicitVRLittleEndian.Uid, received);
            if (file.Dataset.GetString(DicomTags.SOPInstanceUID)!.TrimEnd('\0', ' ') == uids[0])
            {
                Assert.True(((DicomValueElement)file.Dataset[DicomTags.PixelData]!).Span.SequenceEqual(originalPixels));
            }
        }
    }

    [Fact]
    public async Task Objects_received_deflated_are_got_and_moved_inflated_by_peers_that_do_not_take_deflate()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-retrieve-deflated");
        await using var workstation = await StoreScp.StartAcceptingOnlyAsync("WORKSTATION", work.Combine("moved"), null, "CTImageStorage", "LittleEndianImplicit");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var original = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles()[0], new DicomReadOptions { LoadLargeValues = true }, ct);
        // storescu deflates the data set on the way (Deflated Explicit VR Little Endian, PS3.5 A.5).
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-v", "-aec", "VIGIE", "-xd", "127.0.0.1", node.DicomPortText, Peers.CtCorpusFiles()[0]],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store.ToString());
        Assert.Contains("-> Deflated Explicit VR Little Endian", store.StandardError + store.StandardOutput, StringComparison.Ordinal);
        var study = original.Dataset.GetString(DicomTags.StudyInstanceUID)!.TrimEnd('\0', ' ');
        string[] keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}"];

        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-od", got, .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && !get.StandardError.Contains("E:", StringComparison.Ordinal), get.ToString());
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "WORKSTATION", "-S", .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(move.ExitCode == 0 && !move.StandardError.Contains("E:", StringComparison.Ordinal), move.ToString());
        await workstation.WaitForFilesAsync(1, TimeSpan.FromSeconds(30));

        var originalPixels = ((DicomValueElement)original.Dataset[DicomTags.PixelData]!).Span.ToArray();
        foreach (var received in Directory.GetFiles(got).Concat(Directory.GetFiles(workstation.Folder)))
        {
            var file = await DicomReader.ReadFileAsync(received, new DicomReadOptions { LoadLargeValues = true }, ct);
            Assert.False(file.TransferSyntax.IsDeflated, received);
            Assert.True(((DicomValueElement)file.Dataset[DicomTags.PixelData]!).Span.SequenceEqual(originalPixels), received);
        }

        Assert.Equal(2, Directory.GetFiles(got).Length + Directory.GetFiles(workstation.Folder).Length);
    }

    /// <summary>
    /// Regression: a C-GET requestor that lists a compressed syntax (or big endian, or deflate) first for the images it
    /// receives, as `getscu +xy` does, got none of an uncompressed study: the node accepted that first syntax and then
    /// failed every image ("no presentation context"). It now takes the uncompressed syntax the requestor also offers.
    /// </summary>
    [Theory]
    [InlineData("+xy")]
    [InlineData("+xs")]
    [InlineData("+xb")]
    [InlineData("+xd")]
    public async Task Regression_a_get_requestor_preferring_another_syntax_got_none_of_an_uncompressed_study(string preference)
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-retrieve-preference");
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        await node.StoreAsync(files, ct);
        var first = await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        var study = first.Dataset.GetString(DicomTags.StudyInstanceUID)!.TrimEnd('\0', ' ');

        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-v", "-aec", "VIGIE", preference, "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={study}", "-od", got, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(2), cancellationToken: ct);

        Assert.True(Directory.GetFiles(got).Length == 3, get.ToString());
        foreach (var received in Directory.GetFiles(got))
        {
            var file = await DicomReader.ReadFileAsync(received, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
            Assert.Equal(TransferSyntax.ExplicitVRLittleEndian.Uid, file.TransferSyntax.Uid);
        }
    }
}
