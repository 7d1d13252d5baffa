using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>How a <see cref="RawStoreScp"/> misbehaves.</summary>
internal enum RawScpMode
{
    /// <summary>Answers each C-STORE with Success.</summary>
    Accept,

    /// <summary>Takes the C-STORE and never answers (a hung PACS).</summary>
    Hang,

    /// <summary>Answers A-ASSOCIATE-RJ, transient, "temporary congestion" (PS3.8 9.3.4).</summary>
    RejectCongested,

    /// <summary>Answers Success naming another Affected SOP Instance UID.</summary>
    WrongInstance,

    /// <summary>Accepts the association, then reads nothing more (a hung PACS whose receive window fills up).</summary>
    StopReading,
}

/// <summary>
/// A storage SCP on raw sockets speaking just enough of the upper layer (PS3.8) to misbehave as real PACSes do, which
/// a conformant one (storescp, Vigie's own server) cannot: it records the associations asked and the instances received.
/// </summary>
internal sealed class RawStoreScp : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _instances = new();
    private readonly ConcurrentBag<TcpClient> _clients = [];
    private readonly Task _accepting;
    private int _associations;

    private RawStoreScp(RawScpMode mode, int port)
    {
        Mode = mode;
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        Port = port;
        _accepting = AcceptAsync();
    }

    public RawScpMode Mode { get; set; }

    public int Port { get; }

    /// <summary>How long it takes over each C-STORE before answering (a slow PACS).</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>A-ASSOCIATE-RQs received.</summary>
    public int Associations => Volatile.Read(ref _associations);

    /// <summary>The SOP Instance UIDs of the C-STOREs received, in order (answered or not).</summary>
    public IReadOnlyList<string> Instances => [.. _instances];

    public static RawStoreScp Start(RawScpMode mode, int port) => new(mode, port);

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }

            _clients.Add(client);
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        try
        {
            var stream = client.GetStream();
            var command = new MemoryStream();
            while (await ReadPduAsync(stream) is { } pdu)
            {
                switch (pdu.Type)
                {
                    case 0x01:
                        Interlocked.Increment(ref _associations);
                        if (Mode == RawScpMode.RejectCongested)
                        {
                            await stream.WriteAsync(new byte[] { 0x03, 0, 0, 0, 0, 4, 0, 2, 3, 1 }, _stop.Token);
                            return;
                        }

                        await stream.WriteAsync(Accept(pdu.Body), _stop.Token);
                        if (Mode == RawScpMode.StopReading)
                        {
                            await Task.Delay(Timeout.Infinite, _stop.Token);
                        }

                        break;
                    case 0x04:
                        for (var at = 0; at + 6 <= pdu.Body.Length;)
                        {
                            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(pdu.Body.AsSpan(at));
                            var contextId = pdu.Body[at + 4];
                            var header = pdu.Body[at + 5];
                            if ((header & 1) == 1)
                            {
                                command.Write(pdu.Body, at + 6, length - 2);
                                if ((header & 2) == 2 && Read(command.ToArray(), 0x0800) is { } type && BinaryPrimitives.ReadUInt16LittleEndian(type) == 0x0101)
                                {
                                    command.SetLength(0);
                                }
                            }
                            else if ((header & 2) == 2)
                            {
                                // The data set's last fragment: the C-STORE is whole.
                                var request = command.ToArray();
                                command.SetLength(0);
                                var instance = Uid(request, 0x1000);
                                _instances.Enqueue(instance);
                                if (Mode != RawScpMode.Hang)
                                {
                                    await Task.Delay(Delay, _stop.Token);
                                    var answered = Mode == RawScpMode.WrongInstance ? "1.2.826.0.1.3680043.8.498.777" : instance;
                                    await stream.WriteAsync(Response(contextId, Uid(request, 0x0002), BinaryPrimitives.ReadUInt16LittleEndian(Read(request, 0x0110)), answered),
                                        _stop.Token);
                                }
                            }

                            at += 4 + length;
                        }

                        break;
                    case 0x05:
                        await stream.WriteAsync(new byte[] { 0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0 }, _stop.Token);
                        return;
                    default:
                        return;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            client.Dispose();
        }
    }

    private async Task<(byte Type, byte[] Body)?> ReadPduAsync(NetworkStream stream)
    {
        var header = new byte[6];
        try
        {
            await stream.ReadExactlyAsync(header, _stop.Token);
        }
        catch (EndOfStreamException)
        {
            return null;
        }

        var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2))];
        await stream.ReadExactlyAsync(body, _stop.Token);
        return (header[0], body);
    }

    /// <summary>A-ASSOCIATE-AC: the request's fixed fields, each presentation context accepted in its first transfer syntax.</summary>
    private static byte[] Accept(byte[] request)
    {
        var body = new MemoryStream();
        body.Write(request, 0, 68);
        for (var at = 68; at + 4 <= request.Length;)
        {
            var type = request[at];
            var length = BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(at + 2));
            if (type == 0x10)
            {
                body.Write(request, at, 4 + length);
            }
            else if (type == 0x20)
            {
                byte[]? syntax = null;
                for (var sub = at + 8; sub < at + 4 + length;)
                {
                    var subLength = BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(sub + 2));
                    if (request[sub] == 0x40 && syntax is null)
                    {
                        syntax = request.AsSpan(sub, 4 + subLength).ToArray();
                    }

                    sub += 4 + subLength;
                }

                body.Write([0x21, 0, 0, (byte)(4 + syntax!.Length), request[at + 4], 0, 0, 0]);
                body.Write(syntax);
            }

            at += 4 + length;
        }

        body.Write([0x50, 0, 0, 8, 0x51, 0, 0, 4, 0, 0, 0x40, 0]);
        return Pdu(0x02, body.ToArray());
    }

    private static byte[] Response(byte contextId, string sopClass, ushort messageId, string instance)
    {
        var elements = new MemoryStream();
        Element(elements, 0x0002, Encoding.ASCII.GetBytes(Even(sopClass)));
        Element(elements, 0x0100, [0x01, 0x80]);
        Element(elements, 0x0120, BitConverter.GetBytes(messageId));
        Element(elements, 0x0800, [0x01, 0x01]);
        Element(elements, 0x0900, [0, 0]);
        Element(elements, 0x1000, Encoding.ASCII.GetBytes(Even(instance)));
        var command = new MemoryStream();
        Element(command, 0x0000, BitConverter.GetBytes((uint)elements.Length));
        elements.WriteTo(command);
        var pdv = new byte[6 + command.Length];
        BinaryPrimitives.WriteUInt32BigEndian(pdv, (uint)(2 + command.Length));
        pdv[4] = contextId;
        pdv[5] = 0x03;
        command.ToArray().CopyTo(pdv, 6);
        return Pdu(0x04, pdv);
    }

    private static string Even(string uid) => uid.Length % 2 == 0 ? uid : uid + "\0";

    private static void Element(MemoryStream to, ushort element, byte[] value)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(header, 0x0000);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], element);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)value.Length);
        to.Write(header);
        to.Write(value);
    }

    private static byte[] Pdu(byte type, byte[] body)
    {
        var pdu = new byte[6 + body.Length];
        pdu[0] = type;
        BinaryPrimitives.WriteUInt32BigEndian(pdu.AsSpan(2), (uint)body.Length);
        body.CopyTo(pdu, 6);
        return pdu;
    }

    /// <summary>The value of a command element (group 0000, implicit VR little endian), or null.</summary>
    private static byte[]? Read(byte[] command, ushort element)
    {
        for (var at = 0; at + 8 <= command.Length;)
        {
            var tag = BinaryPrimitives.ReadUInt16LittleEndian(command.AsSpan(at + 2));
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(command.AsSpan(at + 4));
            if (tag == element)
            {
                return command.AsSpan(at + 8, length).ToArray();
            }

            at += 8 + length;
        }

        return null;
    }

    private static string Uid(byte[] command, ushort element) => Encoding.ASCII.GetString(Read(command, element) ?? []).TrimEnd('\0', ' ');

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        try
        {
            await _accepting;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }
}
