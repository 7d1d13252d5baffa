using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// Regressions found by a hostile peer written by hand (raw PDUs): each test is named after what went wrong, and sends
/// what showed it.
/// </summary>
public sealed class DataPhaseRegressionTests : IAsyncLifetime
{
    private const string SopInstance = "1.2.826.0.1.3680043.10.1338.88.1";
    private readonly MemoryServiceProvider _provider = new();
    private DicomServer _server = null!;

    public ValueTask InitializeAsync()
    {
        _server = _provider.StartServer(TimeSpan.FromSeconds(5));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Regression_an_empty_data_fragment_ended_a_store_and_a_truncated_object_was_answered_success()
    {
        var ct = TestContext.Current.CancellationToken;
        using var socket = await AssociateAsync(new PresentationContext(1, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]), ct);
        var data = new byte[4000];
        new Random(5).NextBytes(data);
        await socket.SendAsync(AcceptingPeer.CommandPdu(DimseMessage.StoreRequest(1, 1, DicomUids.CTImageStorage, SopInstance)), SocketFlags.None, ct);
        await socket.SendAsync(DataPdu(data.AsSpan(0, 1000), last: false), SocketFlags.None, ct);
        await socket.SendAsync(DataPdu([], last: false), SocketFlags.None, ct);
        await socket.SendAsync(DataPdu(data.AsSpan(1000), last: true), SocketFlags.None, ct);

        var response = await ReadCommandAsync(socket, ct);
        Assert.Equal(DimseStatus.Success, response.Status);
        Assert.Equal(data, _provider.Stored[SopInstance].Data);
    }

    [Fact]
    public async Task Regression_a_find_sent_on_the_verification_context_reached_the_find_service()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = await DicomClient.ConnectAsync(Options("FINDSCU"),
            [new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]), new PresentationContext(3, DicomUids.CTImageStorage,
                [DicomUids.ImplicitVRLittleEndian])], ct);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
        identifier.SetString(DicomTags.PatientID, DicomVR.LO, "");
        await client.Association.SendAsync(DimseMessage.FindRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelFind),
            DicomWriter.Encode(identifier, TransferSyntax.ImplicitVRLittleEndian), ct);
        var find = await client.Association.ReceiveCommandAsync(ct);
        Assert.Equal(DimseStatus.SopClassNotSupported, find!.Status);
        Assert.Equal(1, find.MessageIdBeingRespondedTo);

        // A C-ECHO on a storage context, likewise; the association goes on.
        await client.Association.SendAsync(DimseMessage.EchoRequest(2, 3), ReadOnlyMemory<byte>.Empty, ct);
        Assert.Equal(DimseStatus.SopClassNotSupported, (await client.Association.ReceiveCommandAsync(ct))!.Status);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        await client.ReleaseAsync(ct);
    }

    [Fact]
    public async Task Regression_a_cancelled_get_left_a_pdu_half_written_and_its_cancel_response_had_no_counts()
    {
        var ct = TestContext.Current.CancellationToken;
        for (var i = 0; i < 3; i++)
        {
            _provider.Stored[$"{SopInstance}.{i}"] = (DicomUids.CTImageStorage, DicomUids.ExplicitVRLittleEndian, new byte[300_000]);
        }

        await using var client = await DicomClient.ConnectAsync(Options("GETSCU"),
            [new PresentationContext(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ImplicitVRLittleEndian]),
                new PresentationContext(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian])], ct,
            [new RoleSelection(DicomUids.CTImageStorage, ScuRole: false, ScpRole: true)]);
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.3");
        await client.Association.SendAsync(DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet),
            DicomWriter.Encode(identifier, TransferSyntax.ImplicitVRLittleEndian), ct);

        // The first sub-operation's C-STORE arrives; the cancel goes out while its data set is still coming in.
        var store = await client.Association.ReceiveCommandAsync(ct);
        Assert.Equal(DimseCommand.CStoreRequest, store!.Field);
        await client.Association.SendAsync(DimseMessage.CancelRequest(1, 1), ReadOnlyMemory<byte>.Empty, ct);
        var received = await client.Association.ReadDataSetAsync(1 << 20, ct);
        Assert.Equal(300_000, received.Length);
        await client.Association.SendAsync(DimseMessage.Response(store, DimseStatus.Success), ReadOnlyMemory<byte>.Empty, ct);

        var final = await client.Association.ReceiveCommandAsync(ct);
        while (final!.Status == DimseStatus.Pending)
        {
            final = await client.Association.ReceiveCommandAsync(ct);
        }

        Assert.Equal(DimseStatus.Cancel, final.Status);
        Assert.Equal(1, Count(final, DicomTags.NumberOfCompletedSuboperations));
        Assert.Equal(2, Count(final, DicomTags.NumberOfRemainingSuboperations));
        Assert.Equal(0, Count(final, DicomTags.NumberOfFailedSuboperations));
        await client.ReleaseAsync(ct);
    }

    [Fact]
    public async Task Regression_a_release_asked_during_a_get_stalled_for_the_read_timeout_then_aborted()
    {
        // A requestor that asks to release cannot answer C-STOREs any more (PS3.8 Sta7): the node stopped reading and
        // waited for those answers until its read timeout, then aborted. Now the sub-operations left fail at once, the
        // final C-GET response says so, and the release is answered.
        var ct = TestContext.Current.CancellationToken;
        for (var i = 0; i < 3; i++)
        {
            _provider.Stored[$"{SopInstance}.{i}"] = (DicomUids.CTImageStorage, DicomUids.ExplicitVRLittleEndian, new byte[300_000]);
        }

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "GETSCU" };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ImplicitVRLittleEndian]));
        proposal.PresentationContexts.Add(new PresentationContext(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian]));
        proposal.RoleSelections.Add(new RoleSelection(DicomUids.CTImageStorage, ScuRole: false, ScpRole: true));
        await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);
        Assert.Equal(PduType.AssociateAccept, (await ReadPduAsync(socket, ct)).Type);

        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.3");
        await socket.SendAsync(AcceptingPeer.CommandPdu(DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet)), SocketFlags.None, ct);
        await socket.SendAsync(DataPdu(DicomWriter.Encode(identifier, TransferSyntax.ImplicitVRLittleEndian), last: true), SocketFlags.None, ct);

        // The first sub-operation's C-STORE comes in; the requestor asks to release instead of answering it.
        var first = await ReadPduAsync(socket, ct);
        Assert.Equal(PduType.DataTransfer, first.Type);
        await socket.SendAsync(new byte[] { 0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0 }, SocketFlags.None, ct);

        DimseMessage? final = null;
        while (true)
        {
            var (type, body) = await ReadPduAsync(socket, ct);
            Assert.True(type != PduType.Abort, "the node aborted instead of answering the release");
            if (type == PduType.ReleaseResponse)
            {
                break;
            }

            // A command in one PDV (the node sends its responses so): message control header bit 0.
            if (type == PduType.DataTransfer && (body[5] & 1) != 0)
            {
                var command = await DicomReader.ReadDatasetAsync(body.AsMemory(6), TransferSyntax.ImplicitVRLittleEndian, new DicomReadOptions(), ct);
                var message = new DimseMessage(command, body[4]);
                if (message.Field == DimseCommand.CGetResponse && message.Status != DimseStatus.Pending)
                {
                    final = message;
                }
            }
        }

        Assert.NotNull(final);
        Assert.Equal(0, Count(final, DicomTags.NumberOfCompletedSuboperations));
        Assert.Equal(3, Count(final, DicomTags.NumberOfFailedSuboperations));
        Assert.Equal((ushort)0xA702, final.Status);
    }

    private static async Task<(PduType Type, byte[] Body)> ReadPduAsync(Socket socket, CancellationToken ct)
    {
        var header = new byte[6];
        await ReadExactlyAsync(socket, header, ct);
        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))];
        await ReadExactlyAsync(socket, body, ct);
        return ((PduType)header[0], body);
    }

    [Theory]
    [InlineData(1u)]
    [InlineData(5u)]
    public async Task Regression_a_maximum_pdu_length_under_six_wrapped_into_a_negative_fragment_length(uint maxPduLength)
    {
        var ct = TestContext.Current.CancellationToken;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "TESTSCU", MaxPduLength = maxPduLength };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);
        var answer = new byte[10];
        await ReadExactlyAsync(socket, answer, ct);
        Assert.Equal((byte)PduType.AssociateReject, answer[0]);
        // The end is recorded after the rejection is sent: under load the test read the list before it was.
        await Eventually.WaitForAsync(() => Task.FromResult(_provider.Ended.ToList()), ended => ended.Any(e => e.Detail.Contains("too short", StringComparison.Ordinal)),
            ct, TimeSpan.FromSeconds(10));
        Assert.Contains(_provider.Ended, e => e.Detail.Contains("too short", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Regression_a_peer_made_a_metric_series_per_unknown_command_field()
    {
        var ct = TestContext.Current.CancellationToken;
        var labels = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DicomNetworkTelemetry.Name && instrument.Name == "vigie.dicom.messages")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                labels.Add(tag.Value?.ToString() ?? "");
            }
        });
        listener.Start();

        using var socket = await AssociateAsync(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]), ct);
        var unknown = DimseMessage.EchoRequest(1, 1);
        unknown.Command.SetUInt16(DicomTags.CommandField, 0x4321);
        await socket.SendAsync(AcceptingPeer.CommandPdu(unknown), SocketFlags.None, ct);
        await Eventually.WaitForAsync(() => Task.FromResult(labels.Contains("other")), seen => seen, ct, TimeSpan.FromSeconds(10));
        Assert.Contains("other", labels);
        Assert.DoesNotContain(labels, l => l == "17185" || l == "4321");
    }

    [Fact]
    public async Task Regression_idle_connections_from_one_address_held_every_place_until_ARTIM_and_no_modality_could_associate()
    {
        // 80 sockets opened from one address (127.0.0.2) that never send a byte: beyond 16 they are closed at once, and
        // the sockets kept do not count as associations, so a modality elsewhere (127.0.0.1) still associates.
        var ct = TestContext.Current.CancellationToken;
        var idle = new List<Socket>();
        try
        {
            // The refused ones see the connection closed without a byte; on loopback the reset can even reach a socket
            // before its connect has completed.
            var closed = 0;
            for (var i = 0; i < 80; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
                try
                {
                    await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
                    idle.Add(socket);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
                {
                    socket.Dispose();
                    closed++;
                }
            }

            foreach (var socket in idle)
            {
                socket.ReceiveTimeout = 200;
                try
                {
                    closed += socket.Receive(new byte[1]) == 0 ? 1 : 0;
                }
                catch (SocketException)
                {
                    // Kept open, or reset.
                    closed += socket.Poll(0, SelectMode.SelectRead) ? 1 : 0;
                }
            }

            Assert.True(closed >= 64, $"{closed} of 80 idle connections were closed");
            await using var client = await DicomClient.ConnectAsync(Options("ECHOSCU"), [new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])], ct);
            Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
            await client.ReleaseAsync(ct);
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task Regression_the_accept_sent_the_AE_titles_trimmed_instead_of_echoing_the_request_fields()
    {
        // PS3.8 9.3.3.2: the AC's called and calling AE fields carry the RQ's values unchanged (not tested on receipt,
        // but some peers log or compare them).
        var ct = TestContext.Current.CancellationToken;
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "TESTSCU" };
        proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        var request = PduCodec.EncodeAssociateRequest(proposal);
        var fields = "  VIGIE".PadRight(16) + " TESTSCU".PadRight(16);
        System.Text.Encoding.ASCII.GetBytes(fields).CopyTo(request.AsSpan(10, 32));
        await socket.SendAsync(request, SocketFlags.None, ct);
        var header = new byte[6];
        await ReadExactlyAsync(socket, header, ct);
        Assert.Equal((byte)PduType.AssociateAccept, header[0]);
        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))];
        await ReadExactlyAsync(socket, body, ct);
        Assert.Equal(fields, System.Text.Encoding.ASCII.GetString(body, 4, 32));
    }

    [Fact]
    public async Task Regression_a_blank_calling_AE_title_was_accepted_and_an_abort_before_associating_was_answered()
    {
        var ct = TestContext.Current.CancellationToken;
        _provider.AllowedCallingAEs.Add("");
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
            var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "" };
            proposal.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
            await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);
            var answer = new byte[10];
            await ReadExactlyAsync(socket, answer, ct);
            Assert.Equal((byte)PduType.AssociateReject, answer[0]);
            Assert.Equal(RejectReasons.CallingAENotRecognized, answer[9]);
        }

        // PS3.8 Sta2 + A-ABORT: the node closes the connection and sends nothing.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
            await socket.SendAsync(new byte[] { 0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0 }, SocketFlags.None, ct);
            Assert.Equal(0, await socket.ReceiveAsync(new byte[16], SocketFlags.None, ct));
        }
    }

    [Fact]
    public async Task Regression_a_jwt_user_identity_got_a_positive_response_without_being_checked()
    {
        var ct = TestContext.Current.CancellationToken;
        var jwt = new UserIdentity(UserIdentityType.Jwt, PositiveResponseRequested: true, "eyJhbGciOiJub25lIn0.e30."u8.ToArray(), []);
        await using (var client = await DicomClient.ConnectAsync(Options("ECHOSCU") with { UserIdentity = jwt },
                         [new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])], ct))
        {
            Assert.Null(client.Association.Parameters.UserIdentityResponse);
            await client.ReleaseAsync(ct);
        }

        var password = new UserIdentity(UserIdentityType.UsernameAndPasscode, PositiveResponseRequested: true, "alice"u8.ToArray(), "secret"u8.ToArray());
        await using var checkedClient = await DicomClient.ConnectAsync(Options("ECHOSCU") with { UserIdentity = password },
            [new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])], ct);
        Assert.NotNull(checkedClient.Association.Parameters.UserIdentityResponse);
        await checkedClient.ReleaseAsync(ct);
    }

    private DicomClientOptions Options(string callingAE) => new() { Host = "127.0.0.1", Port = _server.Port, CallingAE = callingAE, CalledAE = "VIGIE" };

    private async Task<Socket> AssociateAsync(PresentationContext context, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, _server.Port, ct);
        var proposal = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "STORESCU" };
        proposal.PresentationContexts.Add(context);
        await socket.SendAsync(PduCodec.EncodeAssociateRequest(proposal), SocketFlags.None, ct);
        var header = new byte[6];
        await ReadExactlyAsync(socket, header, ct);
        Assert.Equal((byte)PduType.AssociateAccept, header[0]);
        await ReadExactlyAsync(socket, new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))], ct);
        return socket;
    }

    private static int? Count(DimseMessage message, DicomTag tag) =>
        message.Command[tag] is DicomValueElement { Length: 2 } value ? BinaryPrimitives.ReadUInt16LittleEndian(value.Span) : null;

    private static byte[] DataPdu(ReadOnlySpan<byte> fragment, bool last)
    {
        var pdu = new byte[12 + fragment.Length];
        PduCodec.WriteDataHeader(pdu, 1, command: false, last, fragment.Length);
        fragment.CopyTo(pdu.AsSpan(12));
        return pdu;
    }

    /// <summary>One P-DATA-TF PDU holding a whole command (as the node sends its responses).</summary>
    private static async Task<DimseMessage> ReadCommandAsync(Socket socket, CancellationToken ct)
    {
        var header = new byte[6];
        await ReadExactlyAsync(socket, header, ct);
        Assert.Equal((byte)PduType.DataTransfer, header[0]);
        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))];
        await ReadExactlyAsync(socket, body, ct);
        var command = await DicomReader.ReadDatasetAsync(body.AsMemory(6), TransferSyntax.ImplicitVRLittleEndian, new DicomReadOptions(), ct);
        return new DimseMessage(command, body[4]);
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
