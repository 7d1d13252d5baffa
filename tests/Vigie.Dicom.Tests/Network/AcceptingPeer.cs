using System.Buffers.Binary;
using System.Net.Sockets;
using Vigie.Dicom.Network;

namespace Vigie.Dicom.Tests.Network;

/// <summary>A raw peer for tests of Vigie as the caller: it accepts whatever is proposed, then does what the test scripts.</summary>
internal static class AcceptingPeer
{
    /// <summary>
    /// Accepts one connection, answers its A-ASSOCIATE-RQ with every context accepted (advertising
    /// <paramref name="maxPduLength"/> when set, 0 meaning no limit), and returns the socket.
    /// </summary>
    public static async Task<Socket> AcceptAsync(TcpListener listener, CancellationToken cancellationToken, uint? maxPduLength = null)
    {
        var socket = await listener.AcceptSocketAsync(cancellationToken);
        var header = new byte[6];
        await socket.ReceiveAsync(header, SocketFlags.None, cancellationToken);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(2))];
        for (var read = 0; read < body.Length;)
        {
            read += await socket.ReceiveAsync(body.AsMemory(read), SocketFlags.None, cancellationToken);
        }

        var request = PduCodec.DecodeAssociateRequest(body);
        PresentationContextNegotiator.Answer(request, _ => true, _ => true);
        request.MaxPduLength = maxPduLength ?? request.MaxPduLength;
        await socket.SendAsync(PduCodec.EncodeAssociateAccept(request), SocketFlags.None, cancellationToken);
        return socket;
    }

    /// <summary>One P-DATA-TF PDU carrying <paramref name="command"/> as a single last command fragment on context 1.</summary>
    public static byte[] CommandPdu(DimseMessage command)
    {
        var encoded = command.Encode();
        var pdu = new byte[12 + encoded.Length];
        PduCodec.WriteDataHeader(pdu, 1, command: true, last: true, encoded.Length);
        encoded.CopyTo(pdu, 12);
        return pdu;
    }
}
