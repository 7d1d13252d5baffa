using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Dicom.Tests.Samples;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// Whole sessions, mutated: a well-formed byte stream (A-ASSOCIATE-RQ, C-ECHO, a C-STORE in two fragments, a C-FIND,
/// A-RELEASE-RQ) is damaged and sent raw to a running node, then the sender stops writing. Every connection must be
/// closed by the node within its timers, whatever arrived (reject, abort, release), and afterwards the node must have no
/// association left and still serve a clean client. Replay a failure with VIGIE_FUZZ_SEED.
/// </summary>
public sealed class HostileSessionFuzzTests : IAsyncLifetime
{
    private const int Sessions = 1500;

    // PDU and PDV lengths are 32-bit big-endian; a PDU type byte may land where a PDU is expected.
    private static readonly Mutator Mutations = new()
    {
        InterestingLengths = [0, 1, 2, 4, 5, 6, 0x7F, 0xFF, 0x100, 0xFFFF, 0x10000, 0x40000, 0x40001, 0x7FFFFFFF, 0xFFFFFFFF],
        LengthWidths = [4],
        BigEndian = true,
        MaxRounds = 3,
        MaxDuplicate = 256,
        MaxDelete = 64,
        Special = static (data, at, random) => data[at] = (byte)random.Next(9),
    };

    private readonly MemoryServiceProvider _provider = new();
    private DicomServer _server = null!;

    public ValueTask InitializeAsync()
    {
        _server = _provider.StartServer(TimeSpan.FromSeconds(2));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Mutated_sessions_are_all_closed_and_leave_the_node_serving()
    {
        var ct = TestContext.Current.CancellationToken;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("VIGIE_FUZZ_SEED"), out var s) ? s : Environment.TickCount;
        var random = new Random(seed);
        var session = Session();
        var reply = new byte[64 * 1024];
        for (var i = 0; i < Sessions; i++)
        {
            var input = i == 0 ? session : Mutations.Mutate(session, random);
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
            try
            {
                await socket.SendAsync(input, SocketFlags.None, ct);
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // The node may have aborted and closed before reading everything: that is an answer too.
            }

            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(TimeSpan.FromSeconds(15));
            try
            {
                while (await socket.ReceiveAsync(reply, SocketFlags.None, deadline.Token) > 0)
                {
                }
            }
            catch (SocketException)
            {
                // Reset by the node: closed.
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                Assert.Fail($"session {i} (seed {seed}) was still open after 15 s; base64: {Convert.ToBase64String(input)}");
            }
        }

        for (var wait = 0; _server.ActiveAssociations > 0 && wait < 100; wait++)
        {
            await Task.Delay(50, ct);
        }

        Assert.Equal(0, _server.ActiveAssociations);
        var ends = _provider.Ended.Select(e => e.End).ToList();
        Assert.Contains(AssociationEnd.Released, ends);
        Assert.Contains(AssociationEnd.AbortedByVigie, ends);

        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = _server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), ct);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        await client.ReleaseAsync(ct);
    }

    /// <summary>The unmutated session, as a conforming requestor would send it.</summary>
    private static byte[] Session()
    {
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "TESTSCU", MaxPduLength = 65536 };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        proposal.PresentationContexts.Add(new PresentationContext(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]));
        proposal.PresentationContexts.Add(new PresentationContext(5, DicomUids.StudyRootQueryRetrieveInformationModelFind, [DicomUids.ExplicitVRLittleEndian]));
        var stream = new MemoryStream();
        stream.Write(PduCodec.EncodeAssociateRequest(proposal));
        Pdv(stream, 1, DimseMessage.EchoRequest(1, 1).Encode(), command: true, last: true);
        var image = DicomWriter.Encode(DicomSamples.SmallImage(), TransferSyntax.ExplicitVRLittleEndian);
        Pdv(stream, 3, DimseMessage.StoreRequest(2, 3, DicomUids.CTImageStorage, "2.25.1234567890").Encode(), command: true, last: true);
        Pdv(stream, 3, image.AsSpan(0, image.Length / 2), command: false, last: false);
        Pdv(stream, 3, image.AsSpan(image.Length / 2), command: false, last: true);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.PatientID, DicomVR.LO, "SYN0001");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "");
        Pdv(stream, 5, DimseMessage.FindRequest(3, 5, DicomUids.StudyRootQueryRetrieveInformationModelFind).Encode(), command: true, last: true);
        Pdv(stream, 5, DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), command: false, last: true);
        stream.Write(PduCodec.EncodeReleaseRequest());
        return stream.ToArray();
    }

    private static void Pdv(Stream stream, byte contextId, ReadOnlySpan<byte> data, bool command, bool last)
    {
        Span<byte> header = stackalloc byte[12];
        PduCodec.WriteDataHeader(header, contextId, command, last, data.Length);
        stream.Write(header);
        stream.Write(data);
    }
}
