using System.Diagnostics;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: a C-GET requestor that received a sub-operation's C-STORE and never answered it left the retrieve
/// stuck: after the read timeout the operation ended without a final response or an abort, and the association stayed
/// open until the (much longer) idle timeout. Now Vigie aborts it at the read timeout, and keeps serving others.
/// </summary>
public sealed class GetRequestorTimeoutTests
{
    [Fact]
    public async Task Regression_a_get_requestor_that_never_answers_a_cstore_held_its_association_open()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await StartNodeAsync(ct);
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        var stored = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);

        await using var client = await GetStudyAsync(node, stored, ct);

        // The sub-operation's C-STORE arrives; the requestor takes it and says nothing.
        var store = await client.Association.ReceiveCommandAsync(ct);
        Assert.Equal(DimseCommand.CStoreRequest, store!.Field);
        await client.Association.ReadDataSetAsync(64 << 20, ct);
        var waited = Stopwatch.StartNew();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(60));
        var ended = await Record.ExceptionAsync(async () =>
        {
            while (await client.Association.ReceiveCommandAsync(limit.Token) is not null)
            {
            }
        });
        Assert.False(limit.IsCancellationRequested, $"the association was still open after {waited.Elapsed}");
        Assert.True(ended is null or DicomAssociationAbortedException or IOException, ended?.ToString());

        // The AE is served again: the aborted association gave its place under the per-AE limit back (it used to keep it,
        // because the failed retrieve's exception replaced how the association ended). The requestor sees the abort a
        // moment before the node has closed the association's books: a few seconds, not the minutes of the idle timeout.
        var echo = await Eventually.WaitForAsync(
            () => Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aet", "VIEWER", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText],
                TimeSpan.FromSeconds(30), cancellationToken: ct),
            r => r.ExitCode == 0, ct, TimeSpan.FromSeconds(10));
        Assert.True(echo.ExitCode == 0, echo.ToString());
    }

    /// <summary>
    /// Regression: a C-GET requestor that stopped reading in the middle of a retrieve kept its association, and its place
    /// under the per-AE limit, until the idle timeout (minutes): the A-ABORT Vigie sent sat in a buffer nobody read, and
    /// the connection was not closed.
    /// </summary>
    [Fact]
    public async Task Regression_a_get_requestor_that_stops_reading_held_its_association_open()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await StartNodeAsync(ct);
        var files = Peers.CtCorpusFiles().Take(60).ToList();
        await node.StoreAsync(files, ct);
        var first = await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);

        await using var client = await GetStudyAsync(node, first, ct);

        // The requestor reads nothing more. While its association lives, the per-AE limit turns the same AE away; once
        // Vigie has given up on it, the AE is served again.
        var waited = Stopwatch.StartNew();
        ProcessResult echo;
        do
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aet", "VIEWER", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText],
                TimeSpan.FromSeconds(30), cancellationToken: ct);
        }
        while (echo.ExitCode != 0 && waited.Elapsed < TimeSpan.FromSeconds(60));

        Assert.True(echo.ExitCode == 0, $"the association was still open after {waited.Elapsed}: {echo}");
    }

    /// <summary>
    /// Regression: the receive loop waited for the requestor's next message with the idle timeout even while a C-GET
    /// sub-operation was outstanding, so a requestor still reading a large object (or taking its time to answer, within
    /// the read timeout) was aborted mid-retrieve. The idle timeout now counts from the end of the last operation, and
    /// still ends an association with nothing outstanding.
    /// </summary>
    [Fact]
    public async Task Regression_a_get_longer_than_the_idle_timeout_was_aborted_mid_retrieve()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__ASSOCIATION__READTIMEOUT"] = "00:00:08",
            ["VIGIE__DICOM__SERVER__ASSOCIATION__IDLETIMEOUT"] = "00:00:02",
        }, cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        var stored = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);

        await using var client = await GetStudyAsync(node, stored, ct);
        var store = await client.Association.ReceiveCommandAsync(ct);
        Assert.Equal(DimseCommand.CStoreRequest, store!.Field);
        await client.Association.ReadDataSetAsync(64 << 20, ct);

        // Twice the idle timeout over the object, as a slow link would take, then the answer.
        await Task.Delay(TimeSpan.FromSeconds(4), ct);
        await client.Association.SendAsync(DimseMessage.Response(store, DimseStatus.Success), ReadOnlyMemory<byte>.Empty, ct);
        var final = await client.Association.ReceiveCommandAsync(ct);
        Assert.NotNull(final);
        Assert.Equal(DimseStatus.Success, final.Status);

        // Nothing outstanding any more: the idle timeout ends the association.
        var waited = Stopwatch.StartNew();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(20));
        var ended = await Record.ExceptionAsync(async () => await client.Association.ReceiveCommandAsync(TimeSpan.FromSeconds(20), limit.Token));
        Assert.True(ended is DicomAssociationAbortedException or IOException, ended?.ToString() ?? "no abort");
        Assert.True(waited.Elapsed < TimeSpan.FromSeconds(10), $"aborted after {waited.Elapsed}");
    }

    /// <summary>Opens an association as VIEWER (taking CT images back) and asks for the study of <paramref name="file"/> by C-GET.</summary>
    private static async Task<DicomClient> GetStudyAsync(VigieNode node, DicomFile file, CancellationToken cancellationToken)
    {
        PresentationContext[] contexts =
        [
            new(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian]),
        ];
        var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "VIEWER", CalledAE = "VIGIE" },
            contexts, cancellationToken, [new RoleSelection(DicomUids.CTImageStorage, ScuRole: false, ScpRole: true)]);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, DicomText.TrimUid(file.Dataset.GetString(DicomTags.StudyInstanceUID)!));
        await client.Association.SendAsync(DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet),
            DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), cancellationToken);
        return client;
    }

    /// <summary>A node with a short read timeout, an idle timeout far beyond the test, and one association per calling AE.</summary>
    private static Task<VigieNode> StartNodeAsync(CancellationToken cancellationToken) => VigieNode.StartAsync(environment: new Dictionary<string, string>
    {
        ["VIGIE__DICOM__SERVER__ASSOCIATION__READTIMEOUT"] = "00:00:03",
        ["VIGIE__DICOM__SERVER__ASSOCIATION__IDLETIMEOUT"] = "00:10:00",
        ["VIGIE__DICOM__SERVER__MAXASSOCIATIONSPERCALLINGAE"] = "1",
    }, cancellationToken: cancellationToken);
}
