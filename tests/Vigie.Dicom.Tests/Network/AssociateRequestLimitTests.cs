using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// A-ASSOCIATE-RQ size: PS3.8 9.3.2 bounds it only by its 32-bit length, so a router proposing every storage class with
/// every transfer syntax sends one well over 64 KiB.
/// </summary>
public sealed class AssociateRequestLimitTests
{
    private static readonly string[] Syntaxes =
    [
        "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103",
    ];

    [Fact]
    public async Task Regression_a_legal_associate_request_over_64_KiB_was_aborted_as_an_invalid_pdu()
    {
        // 128 contexts of 20 syntaxes (about 71 KB) was answered A-ABORT source 2 reason 6 under a 64 KiB cap.
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider();
        await using var server = provider.StartServer(TimeSpan.FromSeconds(10));
        var request = PduCodec.EncodeAssociateRequest(EverySyntaxProposal());
        Assert.True(request.Length > 70_000);

        using var socket = await ConnectAsync(server.Port, ct);
        await socket.SendAsync(request, SocketFlags.None, ct);
        var (type, body) = await ReadPduAsync(socket, ct);
        Assert.Equal(PduType.AssociateAccept, type);
        var answered = PduCodec.DecodeAssociateAccept(body, EverySyntaxProposal());
        Assert.Equal(128, answered.PresentationContexts.Count(pc => pc.IsAccepted));
        Assert.Equal(DicomUids.ExplicitVRLittleEndian, answered.PresentationContexts.Single(pc => pc.Id == 253).AcceptedTransferSyntax);
    }

    [Fact]
    public async Task Regression_an_associate_request_over_the_limit_was_aborted_instead_of_rejected()
    {
        // Over the configured cap the request is still legal: the peer gets an A-ASSOCIATE-RJ it can act on (permanent,
        // service provider presentation, local limit exceeded), and the audit names the calling AE and the limit.
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider();
        var timers = TimeSpan.FromSeconds(10);
        await using var server = new DicomServer(new DicomServerOptions
        {
            Port = 0,
            Association = new DicomAssociationOptions { ArtimTimeout = timers, IdleTimeout = timers, ReadTimeout = timers, MaxAssociatePduLength = 64 * 1024 },
        }, provider);
        server.Start();

        using var socket = await ConnectAsync(server.Port, ct);
        var request = PduCodec.EncodeAssociateRequest(EverySyntaxProposal());
        await socket.SendAsync(request, SocketFlags.None, ct);
        var (type, body) = await ReadPduAsync(socket, ct);
        Assert.Equal(PduType.AssociateReject, type);
        Assert.Equal((RejectResult.Permanent, RejectSource.ServiceProviderPresentation, RejectReasons.LocalLimitExceeded), PduCodec.DecodeReject(body));

        await Eventually.WaitForAsync(() => Task.FromResult(provider.Ended.Count), n => n > 0, ct, TimeSpan.FromSeconds(10));
        var (end, detail) = Assert.Single(provider.Ended);
        Assert.Equal(AssociationEnd.Rejected, end);
        Assert.Contains($"A-ASSOCIATE-RQ of {request.Length - 6} bytes is over the limit of 65536", detail, StringComparison.Ordinal);

        // The node goes on serving requests within the limit.
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = server.Port, CallingAE = "ECHOSCU", CalledAE = "VIGIE" },
            [new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])], ct);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        await client.ReleaseAsync(ct);
    }

    [Fact]
    public async Task Regression_an_associate_request_announcing_256_MiB_was_waited_for_instead_of_aborted()
    {
        // Only a header announcing 256 MiB: drained (until the read timeout) by the first version of the RJ above, where
        // an abort is due at once (PS3.8 AA-8 for a PDU no peer sends; the hostile peer test).
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider();
        await using var server = provider.StartServer(TimeSpan.FromSeconds(30));
        using var socket = await ConnectAsync(server.Port, ct);
        await socket.SendAsync(new byte[] { 0x01, 0, 0x10, 0, 0, 0, 0, 1 }, SocketFlags.None, ct);
        using var quick = CancellationTokenSource.CreateLinkedTokenSource(ct);
        quick.CancelAfter(TimeSpan.FromSeconds(10));
        var (type, body) = await ReadPduAsync(socket, quick.Token);
        Assert.Equal(PduType.Abort, type);
        Assert.Equal(4, body.Length);
    }

    private static AssociationParameters EverySyntaxProposal()
    {
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "STORESCU", MaxPduLength = 16384 };
        var classes = SopClasses.Storage.Order(StringComparer.Ordinal).Take(20).ToArray();
        for (var i = 0; i < 128; i++)
        {
            proposal.PresentationContexts.Add(new PresentationContext((byte)(2 * i + 1), classes[i % classes.Length], [.. Syntaxes]));
        }

        return proposal;
    }

    private static async Task<Socket> ConnectAsync(int port, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port, ct);
        return socket;
    }

    private static async Task<(PduType Type, byte[] Body)> ReadPduAsync(Socket socket, CancellationToken ct)
    {
        var header = new byte[6];
        await ReadExactlyAsync(socket, header, ct);
        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))];
        await ReadExactlyAsync(socket, body, ct);
        return ((PduType)header[0], body);
    }

    private static async Task ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        for (var read = 0; read < buffer.Length;)
        {
            var n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, ct);
            Assert.True(n > 0, "the node closed the connection");
            read += n;
        }
    }
}
