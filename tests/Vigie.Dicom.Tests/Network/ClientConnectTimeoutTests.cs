using System.Diagnostics;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// Regression: a called node that never answers (a firewall dropping the connection attempt, a hung host that accepts
/// and then says nothing during the TLS handshake) held the caller: the first ended in an untyped cancellation the
/// forwarder did not count as "cannot reach", the second had no deadline at all. Both now fail at the connect timeout
/// with <see cref="DicomTimeoutException"/>, which every outbound sender retries later.
/// </summary>
public sealed class ClientConnectTimeoutTests
{
    private static readonly PresentationContext[] Echo = [new(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])];
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task A_peer_behind_a_firewall_that_drops_the_connection_fails_at_the_connect_timeout()
    {
        var ct = TestContext.Current.CancellationToken;
        using var peer = await UnansweringPeer.DroppingConnectionsAsync();
        var elapsed = Stopwatch.StartNew();

        var e = await Assert.ThrowsAsync<DicomTimeoutException>(() => DicomClient.ConnectAsync(Options(peer.Port), Echo, ct));

        Assert.Equal($"127.0.0.1:{peer.Port} did not accept the connection within {Timeout}", e.Message);
        Assert.True(DicomFailures.IsAssociationLost(e));
        Assert.InRange(elapsed.Elapsed, Timeout * 0.9, TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_peer_that_never_answers_the_tls_handshake_fails_at_the_connect_timeout()
    {
        var ct = TestContext.Current.CancellationToken;
        using var pki = new TempDirectory("vigie-connect-tls");
        using (var certificate = LocalCertificates.SelfSigned())
        {
            LocalCertificates.WritePem(certificate, pki.Combine("server.crt"), pki.Combine("server.key"));
        }

        using var peer = UnansweringPeer.Silent();

        var e = await Assert.ThrowsAsync<DicomTimeoutException>(() => DicomClient.ConnectAsync(
            Options(peer.Port) with { UseTls = true, ServerCaPath = pki.Combine("server.crt"), ServerName = "localhost" }, Echo, ct));

        Assert.Equal($"127.0.0.1:{peer.Port} did not finish the TLS handshake within {Timeout}", e.Message);
    }

    [Fact]
    public async Task The_callers_own_cancellation_stays_a_cancellation()
    {
        using var peer = await UnansweringPeer.DroppingConnectionsAsync();
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        // A C-CANCEL or a shutdown is not a peer failure: it must not be retried or reported as "cannot reach".
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            DicomClient.ConnectAsync(Options(peer.Port) with { ConnectTimeout = TimeSpan.FromSeconds(30) }, Echo, cancel.Token));
    }

    [Fact]
    public async Task A_peer_answering_the_association_request_with_garbage_is_a_protocol_failure()
    {
        var ct = TestContext.Current.CancellationToken;
        // An unknown PDU type 0x09, as a confused device (or something that is not DICOM) might answer.
        using var peer = UnansweringPeer.Answering([0x09, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00]);

        var e = await Assert.ThrowsAsync<PduException>(() => DicomClient.ConnectAsync(Options(peer.Port), Echo, ct));

        Assert.True(DicomFailures.IsAssociationLost(e));
    }

    private static DicomClientOptions Options(int port) => new() { Host = "127.0.0.1", Port = port, CalledAE = "PACS", ConnectTimeout = Timeout };
}
