using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// A peer that keeps sending requests but never reads the answers: the node's socket buffers fill, its send then waits,
/// and the send timeout (the read timeout) must end that association while other associations go on storing.
/// </summary>
public sealed class StalledReaderTests : IAsyncLifetime
{
    private readonly MemoryServiceProvider _provider = new();
    private DicomServer _server = null!;

    public ValueTask InitializeAsync()
    {
        _server = _provider.StartServer(TimeSpan.FromSeconds(2));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_peer_that_never_reads_its_answers_is_dropped_while_a_parallel_store_completes()
    {
        var ct = TestContext.Current.CancellationToken;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "TESTSCU" };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);

        // Requests without end, never reading an answer (the A-ASSOCIATE-AC included).
        var pdu = AcceptingPeer.CommandPdu(DimseMessage.EchoRequest(1, 1));
        var burst = new byte[pdu.Length * 1000];
        for (var i = 0; i < 1000; i++)
        {
            pdu.CopyTo(burst, i * pdu.Length);
        }

        using var flood = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sender = Task.Run(async () =>
        {
            try
            {
                while (!flood.IsCancellationRequested)
                {
                    await socket.SendAsync(burst, SocketFlags.None, flood.Token);
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                // Dropped by the node, or the test is over.
            }
        }, ct);

        // Meanwhile another peer stores, and the node must answer it while the stalled one waits on its send.
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = _server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), ct))
        {
            for (var i = 0; i < 20; i++)
            {
                Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
            }

            await client.ReleaseAsync(ct);
        }

        for (var wait = 0; !_provider.Ended.Any(e => e.End is AssociationEnd.ConnectionLost or AssociationEnd.AbortedByVigie) && wait < 300; wait++)
        {
            await Task.Delay(100, ct);
        }

        await flood.CancelAsync();
        await sender;
        Assert.Contains(_provider.Ended, e => e.End is AssociationEnd.ConnectionLost or AssociationEnd.AbortedByVigie);
        Assert.Contains(_provider.Ended, e => e.End == AssociationEnd.Released);
    }

    /// <summary>
    /// Regression: a C-GET requestor that stopped reading while a large object was being sent back left Vigie's
    /// asynchronous send waiting for ever (only small sends had a timeout), and the association lived on until the node
    /// stopped. A send that makes no progress for the read timeout now resets the connection, and the end is reported.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Regression_a_get_requestor_that_stops_reading_a_large_object_held_the_send_for_ever(bool tls)
    {
        var ct = TestContext.Current.CancellationToken;
        // The idle timer must not be what ends it.
        var timers = new DicomAssociationOptions { ArtimTimeout = TimeSpan.FromSeconds(2), ReadTimeout = TimeSpan.FromSeconds(2), IdleTimeout = TimeSpan.FromMinutes(10) };
        using var pki = new TempDirectory("vigie-stalled-tls");
        var serverOptions = new DicomServerOptions { Port = 0, Association = timers };
        if (tls)
        {
            // Over TLS the stalled write sits in SslStream, above the socket that is reset.
            using var certificate = LocalCertificates.SelfSigned();
            LocalCertificates.WritePem(certificate, pki.Combine("server.crt"), pki.Combine("server.key"));
            serverOptions = new DicomServerOptions
            {
                Port = -1, TlsPort = TestPorts.Free(), Association = timers,
                Tls = new DicomTlsOptions { CertificatePath = pki.Combine("server.crt"), KeyPath = pki.Combine("server.key") },
            };
        }

        await using var server = new DicomServer(serverOptions, _provider);
        server.Start();
        // Far more than both sockets' buffers hold.
        _provider.Stored["2.25.77"] = (DicomUids.CTImageStorage, DicomUids.ExplicitVRLittleEndian, new byte[48 << 20]);
        PresentationContext[] contexts =
        [
            new(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]),
        ];
        var clientOptions = new DicomClientOptions { Host = "127.0.0.1", Port = tls ? server.TlsPort : server.Port, CallingAE = "GETSCU", CalledAE = "VIGIE" };
        if (tls)
        {
            clientOptions = clientOptions with { UseTls = true, ServerCaPath = pki.Combine("server.crt"), ServerName = "localhost" };
        }

        await using var client = await DicomClient.ConnectAsync(clientOptions, contexts, ct, [new RoleSelection(DicomUids.CTImageStorage, ScuRole: false, ScpRole: true)]);
        var get = DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "2.25.1");
        await client.Association.SendAsync(get, DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), ct);

        // The requestor reads nothing more.
        for (var wait = 0; _provider.Ended.IsEmpty && wait < 300; wait++)
        {
            await Task.Delay(100, ct);
        }

        var (end, detail) = Assert.Single(_provider.Ended);
        Assert.Equal(AssociationEnd.AbortedByVigie, end);
        Assert.Contains("read nothing", detail, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a peer Vigie sends to (the PACS it forwards to, a move destination) that accepts the association and
    /// then stops reading held the store for ever, and with it the forwarding queue. It now fails at the read timeout,
    /// a transient failure the queue retries.
    /// </summary>
    [Fact]
    public async Task Regression_a_store_to_a_peer_that_stops_reading_waited_for_ever()
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        // Accepts whatever is proposed, then reads nothing more while keeping the connection open.
        var peer = AcceptingPeer.AcceptAsync(listener, ct);

        var timers = new DicomAssociationOptions { ReadTimeout = TimeSpan.FromSeconds(2) };
        await using var client = await DicomClient.ConnectAsync(
            new DicomClientOptions { Host = "127.0.0.1", Port = ((IPEndPoint)listener.LocalEndpoint).Port, CalledAE = "PACS", Association = timers },
            DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
        using var stalled = await peer;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(60));

        var failure = await Assert.ThrowsAsync<DicomTimeoutException>(() =>
            client.StoreAsync(DicomUids.CTImageStorage, "2.25.78", DicomUids.ExplicitVRLittleEndian, new MemoryStream(new byte[48 << 20]), limit.Token));
        Assert.Contains("read nothing", failure.Message, StringComparison.Ordinal);
        Assert.True(DicomFailures.IsAssociationLost(failure));
    }

    /// <summary>
    /// Regression: a C-FIND requestor that stopped reading its matches had its send time out, but the failure stayed in
    /// the query's own task: the association lived on, its receive loop waiting out the idle timeout. Now the connection
    /// is reset and the end reported with its reason.
    /// </summary>
    [Fact]
    public async Task Regression_a_find_requestor_that_stops_reading_its_matches_kept_its_association()
    {
        var ct = TestContext.Current.CancellationToken;
        _provider.SyntheticMatches = 20_000;
        var timers = new DicomAssociationOptions { ArtimTimeout = TimeSpan.FromSeconds(2), ReadTimeout = TimeSpan.FromSeconds(2), IdleTimeout = TimeSpan.FromMinutes(10) };
        await using var server = new DicomServer(new DicomServerOptions { Port = 0, Association = timers }, _provider);
        server.Start();
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = server.Port, CallingAE = "FINDSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StudyRootQueryRetrieveInformationModelFind], DicomUids.ExplicitVRLittleEndian), ct);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
        await client.Association.SendAsync(DimseMessage.FindRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelFind),
            DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), ct);

        // The requestor reads nothing more.
        for (var wait = 0; _provider.Ended.IsEmpty && wait < 300; wait++)
        {
            await Task.Delay(100, ct);
        }

        var (end, detail) = Assert.Single(_provider.Ended);
        Assert.Equal(AssociationEnd.AbortedByVigie, end);
        Assert.Contains("read nothing", detail, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a C-FIND requestor that stopped reading when all its matches already sat in the kernel's send buffer
    /// left Vigie no send to time out: the association waited for the next message until the idle timer (5 minutes),
    /// and the end blamed the requestor for not sending. The kernel now ends a connection whose sent data stays
    /// unacknowledged past the read timeout (TCP_USER_TIMEOUT), and the end says so.
    /// </summary>
    [Fact]
    public async Task Regression_a_find_requestor_that_stops_reading_answers_already_sent_waited_for_the_idle_timer()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "TCP_USER_TIMEOUT is Linux's");
        var ct = TestContext.Current.CancellationToken;
        // Three matches of 4 KiB: more than the requestor's window, less than Vigie's send buffer, so every send completes.
        _provider.SyntheticMatches = 3;
        var timers = new DicomAssociationOptions { ArtimTimeout = TimeSpan.FromSeconds(2), ReadTimeout = TimeSpan.FromSeconds(2), IdleTimeout = TimeSpan.FromMinutes(10) };
        await using var server = new DicomServer(new DicomServerOptions { Port = 0, Association = timers }, _provider);
        server.Start();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 1024 };
        await socket.ConnectAsync(IPAddress.Loopback, server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "FINDSCU" };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.StudyRootQueryRetrieveInformationModelFind, [DicomUids.ImplicitVRLittleEndian]));
        await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
        var data = DicomWriter.Encode(identifier, TransferSyntax.ImplicitVRLittleEndian);
        var dataPdu = new byte[12 + data.Length];
        PduCodec.WriteDataHeader(dataPdu, 1, command: false, last: true, data.Length);
        data.CopyTo(dataPdu.AsMemory(12));
        await socket.SendAsync(AcceptingPeer.CommandPdu(DimseMessage.FindRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelFind)), SocketFlags.None, ct);
        await socket.SendAsync(dataPdu, SocketFlags.None, ct);

        // The requestor reads nothing, the A-ASSOCIATE-AC included.
        for (var wait = 0; _provider.Ended.IsEmpty && wait < 300; wait++)
        {
            await Task.Delay(100, ct);
        }

        var (end, detail) = Assert.Single(_provider.Ended);
        Assert.Equal(AssociationEnd.AbortedByVigie, end);
        Assert.Contains("acknowledged nothing Vigie sent", detail, StringComparison.Ordinal);
    }
}
