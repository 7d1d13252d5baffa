using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>SCP/SCU role selection (PS3.7 D.3.3.4) on storage contexts, as pynetdicom and viewers use it.</summary>
public sealed class RoleSelectionTests
{
    /// <summary>
    /// Regression: a storage context proposing both roles (a workstation that stores and retrieves on one association)
    /// was answered as if for C-GET results only, and a context offering only deflate or big endian, which Vigie stores,
    /// was refused. Such a context gets the first uncompressed syntax the requestor proposes (both ways work in it), else
    /// the first Vigie stores; taking a compressed first one failed the C-GET of every uncompressed object (second review).
    /// </summary>
    [Fact]
    public async Task Regression_a_context_proposing_both_roles_refused_deflate_and_big_endian()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        PresentationContext[] contexts =
        [
            new(1, DicomUids.CTImageStorage, [DicomUids.JPEG2000Lossless, DicomUids.ImplicitVRLittleEndian, DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.SecondaryCaptureImageStorage, [DicomUids.DeflatedExplicitVRLittleEndian]),
            new(5, DicomUids.MRImageStorage, [DicomUids.ExplicitVRBigEndian]),
            new(7, DicomUids.EnhancedCTImageStorage, [DicomUids.JPEG2000Lossless, DicomUids.ExplicitVRLittleEndian]),
        ];
        await using var client = await DicomClient.ConnectAsync(
            new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "WORKSTATION", CalledAE = "VIGIE" }, contexts, ct,
            [
                new RoleSelection(DicomUids.CTImageStorage, ScuRole: true, ScpRole: true),
                new RoleSelection(DicomUids.SecondaryCaptureImageStorage, ScuRole: true, ScpRole: true),
                new RoleSelection(DicomUids.MRImageStorage, ScuRole: true, ScpRole: true),
                new RoleSelection(DicomUids.EnhancedCTImageStorage, ScuRole: false, ScpRole: true),
            ]);
        Assert.Equal(DicomUids.ImplicitVRLittleEndian, client.Association.AcceptedContext(1)?.AcceptedTransferSyntax);
        Assert.Equal(DicomUids.DeflatedExplicitVRLittleEndian, client.Association.AcceptedContext(3)?.AcceptedTransferSyntax);
        Assert.Equal(DicomUids.ExplicitVRBigEndian, client.Association.AcceptedContext(5)?.AcceptedTransferSyntax);
        // C-GET results alone: still the syntax every stored object can go in.
        Assert.Equal(DicomUids.ExplicitVRLittleEndian, client.Association.AcceptedContext(7)?.AcceptedTransferSyntax);
    }

    /// <summary>
    /// Regression (second review of the role fix): the roles of a SOP class went to its first accepted context only, so a
    /// requestor proposing CT in a JPEG context and an uncompressed one got none of an uncompressed study by C-GET.
    /// </summary>
    [Fact]
    public async Task Regression_roles_went_to_the_first_context_of_a_class_only()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var stored = await StoreOneAsync(node, ct);
        PresentationContext[] contexts =
        [
            new(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.CTImageStorage, [DicomUids.JPEGBaseline8Bit]),
            new(5, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]),
        ];
        await using var client = await ViewerAsync(node, contexts, ct, [new RoleSelection(DicomUids.CTImageStorage, ScuRole: true, ScpRole: true)]);
        var final = await GetStudyAsync(client, stored, answerStores: true, ct);
        Assert.Equal(DimseStatus.Success, final.Status);
    }

    /// <summary>
    /// Regression: a C-GET whose requestor never took the SCP role for the class had its sub-operations sent all the
    /// same, on the context that was the requestor's to send on; a receiver that refused them (0122) was blamed.
    /// Now the sub-operation fails at Vigie, saying why, and nothing is sent.
    /// </summary>
    [Fact]
    public async Task Regression_a_get_without_the_scp_role_sent_its_images_anyway_and_blamed_the_receiver()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var stored = await StoreOneAsync(node, ct);

        PresentationContext[] contexts =
        [
            new(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]),
        ];
        await using var client = await ViewerAsync(node, contexts, ct, []);
        Assert.NotNull(client.Association.AcceptedContext(3));
        var response = await GetStudyAsync(client, stored, answerStores: false, ct);
        Assert.Equal(0xA702, response.Status);
        Assert.Contains("did not take the SCP role", response.ErrorComment, StringComparison.Ordinal);
    }

    /// <summary>Stores the corpus's first file; returns it as read (header).</summary>
    private static async Task<DicomFile> StoreOneAsync(VigieNode node, CancellationToken ct)
    {
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        return await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
    }

    private static Task<DicomClient> ViewerAsync(VigieNode node, PresentationContext[] contexts, CancellationToken ct, RoleSelection[] roles) =>
        DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "VIEWER", CalledAE = "VIGIE" }, contexts, ct, roles);

    /// <summary>Asks by C-GET for the study of <paramref name="stored"/>; returns the final response (a C-STORE is answered, or fails the test).</summary>
    private static async Task<DimseMessage> GetStudyAsync(DicomClient client, DicomFile stored, bool answerStores, CancellationToken ct)
    {
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, DicomText.TrimUid(stored.Dataset.GetString(DicomTags.StudyInstanceUID)!));
        await client.Association.SendAsync(DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet),
            DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), ct);
        while (true)
        {
            var message = (await client.Association.ReceiveCommandAsync(ct))!;
            if (message.HasDataSet)
            {
                await client.Association.ReadDataSetAsync(64 << 20, ct);
            }

            if (message.Field == DimseCommand.CStoreRequest)
            {
                Assert.True(answerStores, "a C-STORE came where none may");
                await client.Association.SendAsync(DimseMessage.Response(message, DimseStatus.Success, dataSet: false), ReadOnlyMemory<byte>.Empty, ct);
            }
            else if (!DimseStatus.IsPending(message.Status))
            {
                Assert.Equal(DimseCommand.CGetResponse, message.Field);
                return message;
            }
        }
    }
}
