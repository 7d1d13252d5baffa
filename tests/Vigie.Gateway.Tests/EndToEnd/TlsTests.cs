using System.Globalization;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>DICOM TLS through the real node: whom it trusts, what it says when it refuses, what a probe costs the trail.</summary>
public sealed class TlsTests
{
    /// <summary>
    /// Regression: with ClientCaPath naming the hospital's issuing (intermediate) authority, every client certificate it
    /// issued was refused, sent alone or with the intermediate: the chain was built to a root, and the intermediate was
    /// not taken as an anchor. The same for a destination's ServerCaPath. Another authority's certificate stays refused.
    /// </summary>
    [Fact]
    public async Task Regression_a_certificate_issued_by_an_intermediate_authority_named_in_ClientCaPath_was_refused()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        using var pki = new TempDirectory("vigie-pki-intermediate");
        await TestCertificates.HospitalPkiAsync(pki.Path, ct, ("server", "int", "serverAuth"), ("ct1", "int", "clientAuth"), ("stranger", "other", "clientAuth"));
        var tlsPort = VigieNode.FreePort();
        var port = tlsPort.ToString(CultureInfo.InvariantCulture);
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = port,
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server-chain.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
            ["VIGIE__DICOM__SERVER__TLS__REQUIRECLIENTCERTIFICATE"] = "true",
            ["VIGIE__DICOM__SERVER__TLS__CLIENTCAPATH"] = pki.Combine("int.crt"),
        }, cancellationToken: ct);
        Task<ProcessResult> EchoAsync(string name, string certificate) => Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tls", pki.Combine(name + ".key"),
            pki.Combine(certificate), "+cf", pki.Combine("root.crt"), "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);

        var alone = await EchoAsync("ct1", "ct1.crt");
        Assert.True(alone.ExitCode == 0, alone + "\n--- node\n" + node.Output);
        var chained = await EchoAsync("ct1", "ct1-chain.crt");
        Assert.True(chained.ExitCode == 0, chained.ToString());
        Assert.NotEqual(0, (await EchoAsync("stranger", "stranger.crt")).ExitCode);

        // Vigie as the client (forwarding, C-MOVE): a destination whose ServerCaPath is the issuing authority.
        DicomClientOptions Calling(string serverCa) => new()
        {
            Host = "127.0.0.1", Port = tlsPort, CallingAE = "CT1", CalledAE = "VIGIE", UseTls = true, ServerCaPath = pki.Combine(serverCa),
            ClientCertificatePath = pki.Combine("ct1.crt"), ClientKeyPath = pki.Combine("ct1.key"),
        };
        PresentationContext[] verification = [new(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])];
        await using (var client = await DicomClient.ConnectAsync(Calling("int.crt"), verification, ct))
        {
            Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var untrusted = await Assert.ThrowsAsync<AuthenticationException>(async () => await DicomClient.ConnectAsync(Calling("other.crt"), verification, ct));
        Assert.Contains("does not chain to an authority of ServerCaPath", untrusted.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a PACS requiring a client certificate (dcmtk storescp +tls -rc) refuses Vigie's, when it has none or
    /// one from an authority the PACS does not trust, with a TLS 1.3 alert after the handshake (certificate_required,
    /// unknown_ca). `vigie echo` said "Transport endpoint is not connected", `vigie forward status` and the log "cannot
    /// reach PACS: ... Connection reset by peer", and /health "1 objects waiting": a network fault, not the certificate.
    /// Then /health stayed Healthy until the backlog alert, though only a setting can end that refusal.
    /// </summary>
    [Fact]
    public async Task Regression_a_PACS_refusing_Vigies_client_certificate_was_reported_as_a_network_fault()
    {
        var ct = TestContext.Current.CancellationToken;
        using var pki = new TempDirectory("vigie-pki-client-refused");
        await TestCertificates.HospitalPkiAsync(pki.Path, ct, ("pacs", "root", "serverAuth"), ("vigie", "root", "clientAuth"), ("stranger", "other", "clientAuth"));
        using var work = new TempDirectory("vigie-client-refused");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), "+tls", pki.Combine("pacs.key"), pki.Combine("pacs.crt"),
            "+cf", pki.Combine("root.crt"), "-rc");
        var environment = new Dictionary<string, string>();
        void Destination(int index, string aeTitle, string? certificate, bool forward)
        {
            var at = $"VIGIE__GATEWAY__DESTINATIONS__{index}__";
            environment[at + "AETITLE"] = aeTitle;
            environment[at + "PORT"] = pacs.Port.ToString(CultureInfo.InvariantCulture);
            environment[at + "FORWARD"] = forward ? "true" : "false";
            environment[at + "USETLS"] = "true";
            environment[at + "SERVERCAPATH"] = pki.Combine("root.crt");
            environment[at + "SERVERNAME"] = "localhost";
            if (certificate is not null)
            {
                environment[at + "CLIENTCERTIFICATEPATH"] = pki.Combine(certificate + ".crt");
                environment[at + "CLIENTKEYPATH"] = pki.Combine(certificate + ".key");
            }
        }

        Destination(0, "PACS", null, forward: true);
        Destination(1, "STRANGER", "stranger", forward: false);
        Destination(2, "TRUSTED", "vigie", forward: false);
        await using var node = await VigieNode.StartAsync(environment: environment, cancellationToken: ct);

        var echo = await node.VigieAsync("echo", "--json");
        Assert.True(echo.ExitCode == 1, echo.ToString());
        var outcomes = JsonDocument.Parse(echo.StandardOutput).RootElement.EnumerateArray()
            .ToDictionary(o => o.GetProperty("ae_title").GetString()!, o => o.GetProperty("detail").GetString()!);
        Assert.Equal($"TLS: PACS (127.0.0.1:{pacs.Port}) refused Vigie's TLS client certificate (TLS alert 116 certificate_required): none is configured "
            + "for it; set its ClientCertificatePath and ClientKeyPath (a certificate for clientAuth from an authority the node trusts)", outcomes["PACS"]);
        Assert.Equal($"TLS: STRANGER (127.0.0.1:{pacs.Port}) refused Vigie's TLS client certificate 'CN=stranger' issued by 'CN=Vigie Test Other CA' "
            + "(TLS alert 48 unknown_ca): not trusted by the node: have it trust that authority, or give Vigie a certificate from one it trusts", outcomes["STRANGER"]);
        Assert.Equal("C-ECHO answered", outcomes["TRUSTED"]);

        // Forwarding to the PACS: the queue, the log and /health say why the object waits.
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var expected = $"PACS (127.0.0.1:{pacs.Port}) refused Vigie's TLS client certificate (TLS alert 116 certificate_required): none is configured";
        var lastError = await Eventually.WaitForAsync(async () =>
        {
            var status = await node.VigieAsync("forward", "status", "--json");
            return JsonDocument.Parse(status.StandardOutput).RootElement.GetProperty("last_error").GetString() ?? "";
        }, e => e.StartsWith(expected, StringComparison.Ordinal), ct, TimeSpan.FromSeconds(60));
        Assert.StartsWith(expected, lastError, StringComparison.Ordinal);
        var (health, description) = await node.HealthCheckAsync("forwarding", ct);
        Assert.True(description.Contains(expected, StringComparison.Ordinal), $"{health}: {description}");
        // Degraded at once, not after the backlog alert: retrying will never get it through (Healthy until 2026-12-08).
        Assert.True(health == "Degraded" && description.Contains("PACS refuses: ", StringComparison.Ordinal)
            && description.Contains("a setting to fix", StringComparison.Ordinal), $"{health}: {description}");
        var log = await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains(expected, StringComparison.Ordinal), ct, TimeSpan.FromSeconds(10));
        Assert.Contains(expected, log, StringComparison.Ordinal);
        Assert.DoesNotContain("Transport endpoint is not connected", log, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: on the TLS port every connect-and-close (a port scan, a load balancer's TCP check) wrote its own
    /// Security Alert, "TLS handshake failed: Received an unexpected EOF", while the plain port audits a connection that
    /// sent nothing once a minute per address, with the count of the others.
    /// </summary>
    [Fact]
    public async Task Regression_each_silent_connection_to_the_TLS_port_wrote_its_own_security_alert()
    {
        var ct = TestContext.Current.CancellationToken;
        using var pki = new TempDirectory("vigie-pki-silent");
        await TestCertificates.SelfSignedAsync(pki.Path, "server", 2, "/CN=localhost", ct, "DNS:localhost,IP:127.0.0.1");
        var tlsPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = tlsPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
        }, cancellationToken: ct);

        for (var i = 0; i < 20; i++)
        {
            using var probe = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await probe.ConnectAsync("127.0.0.1", tlsPort, ct);
            probe.Close();
            await Task.Delay(20, ct);
        }

        async Task<string[]> TlsAlertsAsync()
        {
            var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110113", "--limit", "1000");
            Assert.True(shown.ExitCode == 0, shown.ToString());
            return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()
                .Select(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var o) ? o.GetString() ?? "" : "")
                .Where(o => o.Contains("TLS", StringComparison.Ordinal))];
        }

        await Eventually.WaitForAsync(TlsAlertsAsync, a => a.Length > 0, ct, TimeSpan.FromSeconds(20));
        await Task.Delay(1500, ct);
        var alerts = await TlsAlertsAsync();
        var alert = Assert.Single(alerts);
        Assert.Equal("connection that sent nothing (ConnectionLost: closed before a TLS ClientHello)", alert);
    }

    /// <summary>
    /// Regression: every TLS refusal was audited as "The remote certificate was rejected by the provided
    /// RemoteCertificateValidationCallback" (a client that sent none too), or "Authentication failed, see inner
    /// exception" for an old TLS version, and nothing was logged: the operator could not tell whether to install a
    /// certificate on the modality, trust its authority, reissue it for clients or upgrade its TLS.
    /// </summary>
    [Fact]
    public async Task Regression_TLS_refusals_did_not_say_why_and_were_not_logged()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        using var pki = new TempDirectory("vigie-pki-refusals");
        await TestCertificates.HospitalPkiAsync(pki.Path, ct, ("server", "root", "serverAuth"), ("ct1", "root", "clientAuth"), ("webserver", "root", "serverAuth"),
            ("stranger", "other", "clientAuth"));
        var port = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture);
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = port,
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
            ["VIGIE__DICOM__SERVER__TLS__REQUIRECLIENTCERTIFICATE"] = "true",
            ["VIGIE__DICOM__SERVER__TLS__CLIENTCAPATH"] = pki.Combine("root.crt"),
        }, cancellationToken: ct);
        Task<ProcessResult> EchoAsync(params string[] tls) =>
            Peers.RunAsync(echoscu, ["-aec", "VIGIE", .. tls, "+cf", pki.Combine("root.crt"), "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);

        Assert.NotEqual(0, (await EchoAsync("+tla")).ExitCode);
        Assert.NotEqual(0, (await EchoAsync("+tls", pki.Combine("stranger.key"), pki.Combine("stranger.crt"))).ExitCode);
        Assert.NotEqual(0, (await EchoAsync("+tls", pki.Combine("webserver.key"), pki.Combine("webserver.crt"))).ExitCode);
        await Peers.RunAsync("/bin/sh", ["-c", "exec \"$0\" s_client \"$@\" </dev/null", Peers.Require("openssl", "openssl"), "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
            "-connect", $"127.0.0.1:{port}"], TimeSpan.FromMinutes(1), cancellationToken: ct);
        var known = await EchoAsync("+tls", pki.Combine("ct1.key"), pki.Combine("ct1.crt"));
        Assert.True(known.ExitCode == 0, known.ToString());

        var shown = await Eventually.WaitForAsync(() => node.VigieAsync("audit", "show", "--json", "--details", "--event", "110113", "--limit", "1000"),
            r => r.StandardOutput.Contains("TLS version", StringComparison.Ordinal), ct, TimeSpan.FromSeconds(20));
        var outcomes = string.Join('\n', JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var o) ? o.GetString() : ""));
        Assert.Contains("TLS handshake failed: no client certificate was sent", outcomes, StringComparison.Ordinal);
        Assert.Contains("TLS handshake failed: client certificate 'CN=stranger' issued by 'CN=Vigie Test Other CA' does not chain to an authority of ClientCaPath",
            outcomes, StringComparison.Ordinal);
        Assert.Contains("TLS handshake failed: client certificate 'CN=webserver' issued by 'CN=Vigie Test Root CA': not for clients (its Extended Key Usage lacks clientAuth)",
            outcomes, StringComparison.Ordinal);
        Assert.Contains("TLS handshake failed: the client offers no TLS version this node takes (TLS 1.2 or 1.3)", outcomes, StringComparison.Ordinal);
        Assert.DoesNotContain("RemoteCertificateValidationCallback", outcomes, StringComparison.Ordinal);

        // The log names the first, and says no more for a minute from this address.
        Assert.Contains("TLS connection from 127.0.0.1 refused: TLS handshake failed: no client certificate was sent", node.Output, StringComparison.Ordinal);
        Assert.Single(node.Output.Split('\n'), l => l.Contains("TLS connection from", StringComparison.Ordinal));
    }
}
