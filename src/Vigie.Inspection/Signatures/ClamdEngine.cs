using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Signatures;

/// <summary>
/// clamd as one more known-bad engine (INSTREAM over a unix or TCP socket), for sites that already run ClamAV with
/// their own databases. Only top-level objects are sent: clamd unpacks containers itself. A configured clamd that
/// cannot be reached makes the verdict an error, never a silent clean.
/// </summary>
internal sealed class ClamdEngine(IOptions<SignatureOptions> options) : IKnownBadEngine
{
    private const int ChunkSize = 64 * 1024;
    private const int MaxReply = 4096;

    public string Name => "clamd";

    public bool IsAvailable(out string? reason)
    {
        reason = null;
        return true;
    }

    public async ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var address = options.Value.Clamd;
        if (string.IsNullOrWhiteSpace(address) || context.Depth > 0)
        {
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(options.Value.ClamdTimeoutSeconds));
        var reply = await InstreamAsync(address, content, timeout.Token).ConfigureAwait(false);
        // With AllMatchScan, clamd answers one line per detection.
        foreach (var line in reply.Split(['\0', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            Interpret(context, line);
        }
    }

    /// <summary>Reads clamd's one-line answer: "stream: OK", "stream: NAME FOUND", or "... ERROR".</summary>
    internal static void Interpret(InspectionContext context, string reply)
    {
        var text = reply.StartsWith("stream: ", StringComparison.Ordinal) ? reply["stream: ".Length..] : reply;
        if (text == "OK")
        {
            return;
        }

        if (text.EndsWith(" FOUND", StringComparison.Ordinal))
        {
            var name = text[..^" FOUND".Length].Replace(".UNOFFICIAL", "", StringComparison.Ordinal);
            context.Report(Rules.SignatureClamd, Severity.High, $"matches known-bad signature '{Inspector.Truncate(Inspector.SanitiseName(name), 200)}' (clamd)");
            return;
        }

        // Size limits and other refusals: the object was not (fully) scanned by clamd.
        context.Report(Rules.SignatureIncomplete, Severity.Medium, $"clamd did not scan this object: {Inspector.Truncate(Inspector.SanitiseName(text), 200)}");
    }

    private static async Task<string> InstreamAsync(string address, ContentSource content, CancellationToken cancellationToken)
    {
        using var socket = await ConnectAsync(address, cancellationToken).ConfigureAwait(false);
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize + 4);
        try
        {
            await socket.SendAsync("zINSTREAM\0"u8.ToArray(), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            for (long offset = 0; offset < content.Length;)
            {
                var read = await content.ReadAtAsync(offset, buffer.AsMemory(4, (int)Math.Min(ChunkSize, content.Length - offset)), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                BinaryPrimitives.WriteUInt32BigEndian(buffer, (uint)read);
                if (!await SendAllAsync(socket, buffer.AsMemory(0, read + 4), cancellationToken).ConfigureAwait(false))
                {
                    // clamd closes the stream early when the object exceeds its StreamMaxLength; its reply says so.
                    break;
                }

                offset += read;
            }

            BinaryPrimitives.WriteUInt32BigEndian(buffer, 0);
            await SendAllAsync(socket, buffer.AsMemory(0, 4), cancellationToken).ConfigureAwait(false);
            return await ReadReplyAsync(socket, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task<Socket> ConnectAsync(string address, CancellationToken cancellationToken)
    {
        Socket socket;
        EndPoint endPoint;
        if (address.StartsWith("unix:", StringComparison.Ordinal))
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            endPoint = new UnixDomainSocketEndPoint(address["unix:".Length..]);
        }
        else if (address.StartsWith("tcp:", StringComparison.Ordinal) && address.LastIndexOf(':') is var colon and > 4
                 && int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            endPoint = new DnsEndPoint(address[4..colon], port);
        }
        else
        {
            throw new InvalidOperationException($"clamd address '{address}' is neither unix:/path nor tcp:host:port");
        }

        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task<bool> SendAllAsync(Socket socket, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        try
        {
            while (!data.IsEmpty)
            {
                var sent = await socket.SendAsync(data, SocketFlags.None, cancellationToken).ConfigureAwait(false);
                data = data[sent..];
            }

            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted)
        {
            return false;
        }
    }

    /// <summary>Reads until clamd closes the connection (it does after an INSTREAM answer), at most <see cref="MaxReply"/> bytes.</summary>
    private static async Task<string> ReadReplyAsync(Socket socket, CancellationToken cancellationToken)
    {
        var reply = new byte[MaxReply];
        var length = 0;
        while (length < reply.Length)
        {
            var read = await socket.ReceiveAsync(reply.AsMemory(length), SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            length += read;
        }

        return length == 0 ? throw new IOException("clamd closed the connection without an answer") : Encoding.ASCII.GetString(reply, 0, length);
    }
}
