using System.Net;
using System.Net.Sockets;

namespace Vigie.Testing;

/// <summary>
/// A loopback port whose peer never behaves: what a PACS behind a firewall, a hung host or a confused device looks
/// like to a node that calls it. Dispose it to free the port (a real peer can then be started on it).
/// </summary>
public sealed class UnansweringPeer : IDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _held = [];
    private readonly CancellationTokenSource _stop = new();

    private UnansweringPeer(Socket listener) => _listener = listener;

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>
    /// Connection attempts get no answer at all, as when a firewall drops them: the listener's accept queue is full,
    /// so the kernel drops the SYNs and the caller's connect waits for its own timeout.
    /// </summary>
    public static async Task<UnansweringPeer> DroppingConnectionsAsync(int port = 0)
    {
        var peer = new UnansweringPeer(Listen(port, backlog: 0));
        // Fill the accept queue until one attempt hangs; from then on every SYN is dropped.
        for (var i = 0; i < 16; i++)
        {
            var filler = new Socket(SocketType.Stream, ProtocolType.Tcp);
            peer._held.Add(filler);
            using var attempt = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            try
            {
                await filler.ConnectAsync(IPAddress.Loopback, peer.Port, attempt.Token);
            }
            catch (OperationCanceledException)
            {
                return peer;
            }
        }

        peer.Dispose();
        throw new InvalidOperationException("the kernel kept accepting connections: cannot simulate a dropping firewall here");
    }

    /// <summary>Accepts connections and reads what comes, but never sends a byte (a hung host, a TLS port that never answers).</summary>
    public static UnansweringPeer Silent() => Serve(answer: null);

    /// <summary>Accepts connections and answers the first bytes it reads with <paramref name="answer"/>, then stays silent.</summary>
    public static UnansweringPeer Answering(byte[] answer) => Serve(answer);

    private static UnansweringPeer Serve(byte[]? answer)
    {
        var peer = new UnansweringPeer(Listen(0, backlog: 16));
        _ = peer.AcceptLoopAsync(answer);
        return peer;
    }

    private static Socket Listen(int port, int backlog)
    {
        var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(backlog);
        return listener;
    }

    private async Task AcceptLoopAsync(byte[]? answer)
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var connection = await _listener.AcceptAsync(_stop.Token);
                lock (_held)
                {
                    _held.Add(connection);
                }

                _ = ReadAsync(connection, answer);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Disposed.
        }
    }

    private async Task ReadAsync(Socket connection, byte[]? answer)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (await connection.ReceiveAsync(buffer, _stop.Token) > 0)
            {
                if (answer is not null)
                {
                    await connection.SendAsync(answer, _stop.Token);
                    answer = null;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The caller gave up, or disposed.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_held)
        {
            foreach (var socket in _held)
            {
                socket.Dispose();
            }
        }

        _stop.Dispose();
    }
}
