using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.Network;

namespace Vigie.Dicom.Tests.Network;

/// <summary>Vigie as the caller (forwarding, C-MOVE, storage commitment reports) waiting for a response the peer owes.</summary>
public sealed class ClientResponseTests
{
    private static readonly DicomAssociationOptions Timers = new() { ReadTimeout = TimeSpan.FromSeconds(1), IdleTimeout = TimeSpan.FromMinutes(10) };

    /// <summary>
    /// Regression: a peer (a PACS with its database stuck) that takes a request and never answers held the caller for
    /// the idle timeout (5 minutes by default) on every object, and the forwarding queue with it. The wait for a
    /// response is now the read timeout.
    /// </summary>
    [Fact]
    public async Task Regression_a_peer_that_never_answers_held_the_caller_for_the_idle_timeout()
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = Listen();
        var peer = AcceptingPeer.AcceptAsync(listener, ct);
        await using var client = await ConnectAsync(listener, ct);
        using var silent = await peer;
        var elapsed = Stopwatch.StartNew();

        var failure = await Assert.ThrowsAsync<DicomTimeoutException>(() => client.EchoAsync(ct));

        Assert.InRange(elapsed.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(30));
        Assert.True(DicomFailures.IsAssociationLost(failure));
    }

    /// <summary>A peer that sends message after message answering nothing, instead of the response, is cut off after a bounded few.</summary>
    [Fact]
    public async Task A_peer_that_floods_unrelated_responses_is_cut_off()
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = Listen();
        var peer = FloodAsync(listener, answerFirst: false, ct);
        await using var client = await ConnectAsync(listener, ct);

        var failure = await Assert.ThrowsAsync<PduException>(() => client.EchoAsync(ct));

        Assert.Contains($"sent {DicomClient.MaxUnrelatedMessages + 1} messages that answer nothing", failure.Message, StringComparison.Ordinal);
        await client.DisposeAsync();
        (await peer).Dispose();
    }

    /// <summary>Regression: a peer that kept sending data after Vigie asked to release held the release for as long as it went on.</summary>
    [Fact]
    public async Task A_peer_that_floods_instead_of_answering_the_release_is_cut_off()
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = Listen();
        var peer = FloodAsync(listener, answerFirst: true, ct);
        await using var client = await ConnectAsync(listener, ct);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);

        var failure = await Assert.ThrowsAsync<PduException>(async () => await client.ReleaseAsync(ct));

        Assert.Contains("still no A-RELEASE-RP", failure.Message, StringComparison.Ordinal);
        await client.DisposeAsync();
        (await peer).Dispose();
    }

    /// <summary>Accepts, answers Vigie's first request (message 1) when asked, then sends responses to nothing without end.</summary>
    private static Task<Socket> FloodAsync(TcpListener listener, bool answerFirst, CancellationToken ct) => Task.Run(async () =>
    {
        var socket = await AcceptingPeer.AcceptAsync(listener, ct);
        if (answerFirst)
        {
            await socket.SendAsync(AcceptingPeer.CommandPdu(DimseMessage.Response(DimseMessage.EchoRequest(1, 1), DimseStatus.Success)), SocketFlags.None, ct);
        }

        var unrelated = AcceptingPeer.CommandPdu(DimseMessage.Response(DimseMessage.EchoRequest(999, 1), DimseStatus.Success));
        try
        {
            // Without end, faster than any timeout would notice.
            while (true)
            {
                await socket.SendAsync(unrelated, SocketFlags.None, ct);
            }
        }
        catch (SocketException)
        {
            // Cut off.
        }

        return socket;
    }, ct);

    private static TcpListener Listen()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return listener;
    }

    private static Task<DicomClient> ConnectAsync(TcpListener listener, CancellationToken ct) => DicomClient.ConnectAsync(
        new DicomClientOptions { Host = "127.0.0.1", Port = ((IPEndPoint)listener.LocalEndpoint).Port, CalledAE = "PACS", Association = Timers },
        DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), ct);
}
