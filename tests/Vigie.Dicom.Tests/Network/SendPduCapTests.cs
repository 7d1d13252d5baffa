using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.Network;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// A destination that advertises more than it can take (or no limit at all) gets PDUs no larger than
/// <see cref="DicomAssociationOptions.MaxSendPduLength"/>.
/// </summary>
public sealed class SendPduCapTests
{
    [Theory]
    [InlineData(0u, 0u, 1024u * 1024)]
    [InlineData(0u, 16384u, 16384u)]
    [InlineData(65536u, 16384u, 16384u)]
    [InlineData(8192u, 16384u, 8192u)]
    public async Task PDUs_sent_are_as_large_as_the_least_of_what_the_peer_advertises_and_the_cap(uint advertised, uint cap, uint largestAllowed)
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var peer = ReceiveOneStoreAsync(listener, advertised, ct);
        await using var client = await DicomClient.ConnectAsync(
            new DicomClientOptions
            {
                Host = "127.0.0.1", Port = ((IPEndPoint)listener.LocalEndpoint).Port, CalledAE = "PACS",
                Association = new DicomAssociationOptions { MaxSendPduLength = cap },
            },
            DicomClient.Propose([DicomUids.SecondaryCaptureImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
        var dataSet = new byte[300_000];

        var result = await client.StoreAsync(DicomUids.SecondaryCaptureImageStorage, "1.2.3.4", DicomUids.ExplicitVRLittleEndian, new MemoryStream(dataSet), ct);

        Assert.Equal(DimseStatus.Success, result.Status);
        var (largest, received) = await peer;
        Assert.Equal(dataSet.Length, received);
        Assert.Equal(Math.Min(largestAllowed, (uint)dataSet.Length + 6), largest);
    }

    /// <summary>Accepts, reads one C-STORE and answers it. Returns the largest P-DATA-TF PDU and the data set bytes seen.</summary>
    private static Task<(uint Largest, int DataSetBytes)> ReceiveOneStoreAsync(TcpListener listener, uint advertised, CancellationToken ct) => Task.Run(async () =>
    {
        using var socket = await AcceptingPeer.AcceptAsync(listener, ct, advertised);
        uint largest = 0;
        var dataSetBytes = 0;
        // The client's first message, on the first context proposed.
        var request = DimseMessage.StoreRequest(1, 1, DicomUids.SecondaryCaptureImageStorage, "1.2.3.4");
        var header = new byte[6];
        while (true)
        {
            await ReadExactlyAsync(socket, header, ct);
            var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2));
            var body = new byte[length];
            await ReadExactlyAsync(socket, body, ct);
            largest = Math.Max(largest, length);
            for (var offset = 0; offset < body.Length;)
            {
                var itemLength = BinaryPrimitives.ReadInt32BigEndian(body.AsSpan(offset));
                var control = body[offset + 5];
                var value = body.AsMemory(offset + 6, itemLength - 2);
                offset += 4 + itemLength;
                if ((control & 1) != 0)
                {
                    continue;
                }

                dataSetBytes += value.Length;
                if ((control & 2) != 0)
                {
                    await socket.SendAsync(AcceptingPeer.CommandPdu(DimseMessage.Response(request, DimseStatus.Success)), SocketFlags.None, ct);
                    return (largest, dataSetBytes);
                }
            }
        }
    }, ct);

    private static async Task ReadExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        for (var read = 0; read < buffer.Length;)
        {
            var n = await socket.ReceiveAsync(buffer[read..], SocketFlags.None, ct);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            read += n;
        }
    }
}
