using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Association policy and misbehaving peers, against the real node.</summary>
public sealed class PolicyAndHostilePeerTests
{
    private static readonly Dictionary<string, string> ShortTimers = new()
    {
        ["VIGIE__DICOM__SERVER__ASSOCIATION__ARTIMTIMEOUT"] = "00:00:03",
        ["VIGIE__DICOM__SERVER__ASSOCIATION__IDLETIMEOUT"] = "00:00:03",
        ["VIGIE__DICOM__SERVER__ASSOCIATION__READTIMEOUT"] = "00:00:03",
    };

    [Fact]
    public async Task Unknown_AE_wrong_address_wrong_called_AE_and_no_transfer_syntax_are_rejected()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        await using var node = await VigieNode.StartAsync(arguments: ["--allow", "ECHOSCU@127.0.0.1", "--allow", "FARAWAY@10.9.9.0/24"], cancellationToken: ct);
        async Task<ProcessResult> EchoAsync(string calling, string called = "VIGIE") =>
            await Peers.RunAsync(echoscu, ["-aet", calling, "-aec", called, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);

        Assert.Equal(0, (await EchoAsync("ECHOSCU")).ExitCode);
        var unknown = await EchoAsync("INTRUDER");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("Calling AE Title Not Recognized", unknown.StandardError + unknown.StandardOutput, StringComparison.OrdinalIgnoreCase);
        var wrongAddress = await EchoAsync("FARAWAY");
        Assert.NotEqual(0, wrongAddress.ExitCode);
        Assert.Contains("Calling AE Title Not Recognized", wrongAddress.StandardError + wrongAddress.StandardOutput, StringComparison.OrdinalIgnoreCase);
        var wrongCalled = await EchoAsync("ECHOSCU", "NOT-VIGIE");
        Assert.Contains("Called AE Title Not Recognized", wrongCalled.StandardError + wrongCalled.StandardOutput, StringComparison.OrdinalIgnoreCase);

        // A proposal whose only transfer syntax Vigie does not know: the context is refused with its reason.
        await using (var client = await DicomClient.ConnectAsync(
                         new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "ECHOSCU", CalledAE = "VIGIE" },
                         [new PresentationContext(1, DicomUids.CTImageStorage, ["1.2.3.4.5.6.7.8"]), new PresentationContext(3, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])], ct))
        {
            Assert.Equal(PresentationContextResult.TransferSyntaxesNotSupported, client.Association.Parameters.PresentationContexts[0].Result);
            Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
            await client.ReleaseAsync(ct);
        }

        // The reasons are in the audit trail, the address one included.
        var audit = await node.VigieAsync("audit", "show", "--json", "--limit", "50", "--details");
        Assert.Contains("not allowed from 127.0.0.1", audit.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("not in the allow-list", audit.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("called AE title", audit.StandardOutput, StringComparison.Ordinal);
        // Regression: the node's log said nothing of a refused caller; the administrator reads it first.
        Assert.Matches(@"Association from \S+ at 127\.0\.0\.1 refused: ", node.Output);

        // Bug: associations were coded 110114 User Authentication with type 110126 Node Authentication, a Security
        // Alert's type; accepted, refused or failed, all looked alike to a SIEM filtering on codes.
        var entries = JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Where(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var outcome) && outcome.GetString() is { } o && (o.StartsWith("association accepted", StringComparison.Ordinal)
                || o.Contains("not allowed from", StringComparison.Ordinal) || o.Contains("not in the allow-list", StringComparison.Ordinal) || o.Contains("called AE title", StringComparison.Ordinal)))
            .ToList();
        Assert.Equal(5, entries.Count);
        foreach (var entry in entries)
        {
            var accepted = entry.GetProperty("outcome").GetString() == "success";
            Assert.Equal(accepted ? "110114" : "110113", entry.GetProperty("event_id").GetString());
            Assert.Equal(accepted ? "Login" : "Node Authentication", Assert.Single(entry.GetProperty("event_types").EnumerateArray()).GetString());
        }
    }

    /// <summary>
    /// Regression: an allow rule given as a flag was written over the configuration's first rule key by key. Over a rule
    /// for the PACS from two networks, `--allow CT1@10.1.2.3/32` let CT1 in from the PACS's second network (here, this
    /// machine) and shut the PACS out. Flags now add rules.
    /// </summary>
    [Fact]
    public async Task Regression_an_allow_flag_merged_into_the_configurations_first_rule()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        await using var node = await VigieNode.StartAsync(arguments: ["--allow", "CT1@10.1.2.3/32"], environment: new Dictionary<string, string>
        {
            ["VIGIE__ACCESS__DICOMNODES__0__AETITLE"] = "PACS",
            ["VIGIE__ACCESS__DICOMNODES__0__NETWORKS__0"] = "10.1.9.0/24",
            ["VIGIE__ACCESS__DICOMNODES__0__NETWORKS__1"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__0__RIGHTS"] = "Store",
        }, cancellationToken: ct);
        async Task<ProcessResult> EchoAsync(string calling) =>
            await Peers.RunAsync(echoscu, ["-aet", calling, "-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);

        var ct1 = await EchoAsync("CT1");
        Assert.Contains("Calling AE Title Not Recognized", ct1.StandardError + ct1.StandardOutput, StringComparison.OrdinalIgnoreCase);
        var pacs = await EchoAsync("PACS");
        Assert.True(pacs.ExitCode == 0, pacs.ToString());
    }

    /// <summary>
    /// Regression: a storage context is accepted to a caller with the Retrieve right only so that its C-GET results can
    /// come back, but the requestor's SCU role was echoed as proposed, and its C-STORE on that context was stored.
    /// </summary>
    [Fact]
    public async Task Regression_a_retrieve_only_caller_stored_on_a_context_accepted_for_its_get_results()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__ACCESS__DICOMNODES__0__AETITLE"] = "RETRONLY",
            ["VIGIE__ACCESS__DICOMNODES__0__NETWORKS__0"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__0__RIGHTS"] = "Retrieve",
        }, cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await using var client = await DicomClient.ConnectAsync(
            new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "RETRONLY", CalledAE = "VIGIE" },
            [new PresentationContext(1, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian])], ct,
            [new RoleSelection(DicomUids.CTImageStorage, ScuRole: true, ScpRole: true)]);
        var context = client.Association.Parameters.PresentationContexts[0];
        Assert.True(context.IsAccepted);
        Assert.False(context.ScuRole);
        Assert.Equal(DimseStatus.SopClassNotSupported, (await client.StoreFileAsync(file, ct)).Status);
        await client.ReleaseAsync(ct);
        Assert.Equal(0, (await node.StatsAsync()).GetProperty("instances").GetInt64());
    }

    /// <summary>
    /// Regression: each bare TCP connect and close, sending nothing, made one Security Alert (2,000 in 14 s from one
    /// client), so a flood swelled the trail and the SIEM without bound. Those are now audited once a minute per
    /// address, with a count; anything a peer does send is still audited each time (the test above).
    /// </summary>
    [Fact]
    public async Task Regression_every_bare_connection_that_sent_nothing_made_its_own_audit_entry()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: ShortTimers, cancellationToken: ct);
        for (var i = 0; i < 40; i++)
        {
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, node.DicomPort, ct);
            }
            catch (SocketException)
            {
                // Past 16 connections of one address the node closes the newest at once, and on a busy machine the reset
                // can reach the client before its connect completes (the clean-clone CI saw it once): closed is the point.
            }
        }

        // The node may not have seen the last closes yet and still hold this address at its limit, closing the echo's
        // connection at once (the clean-clone CI saw it once): the echo is retried until those closes are seen.
        var echo = await Eventually.WaitForAsync(
            () => Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct),
            e => e.ExitCode == 0, ct, TimeSpan.FromSeconds(30));
        Assert.True(echo.ExitCode == 0, echo.ToString());
        await Task.Delay(TimeSpan.FromSeconds(2), ct);
        await node.StopAsync();
        var audit = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--limit", "1000", "--details")).StandardOutput).RootElement;
        var bare = audit.EnumerateArray().Count(e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("sent nothing", StringComparison.Ordinal));
        // One a minute per address: two when the connections straddle the minute (one entry each was the bug: 40).
        Assert.InRange(bare, 1, 2);
    }

    [Fact]
    public async Task Misbehaving_peers_are_aborted_while_a_parallel_store_completes()
    {
        var ct = TestContext.Current.CancellationToken;
        var storescu = Peers.Require("storescu", "dcmtk");
        var files = Peers.CtCorpusFiles();
        await using var node = await VigieNode.StartAsync(environment: ShortTimers, cancellationToken: ct);
        var store = Peers.RunAsync(storescu, ["-aec", "VIGIE", "-pdu", "131072", "127.0.0.1", node.DicomPortText, .. files], TimeSpan.FromMinutes(10), cancellationToken: ct);

        var outcomes = await Task.WhenAll(
            HostileAsync(node, "garbage", async s => await s.WriteAsync("GET / HTTP/1.1\r\nHost: vigie\r\n\r\n"u8.ToArray(), ct)),
            HostileAsync(node, "unknown PDU type", async s => await s.WriteAsync(new byte[] { 0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4 }, ct)),
            HostileAsync(node, "oversized PDU", async s => await s.WriteAsync(new byte[] { 0x01, 0, 0x10, 0, 0, 0, 0, 1 }, ct)),
            HostileAsync(node, "truncated PDU", async s =>
            {
                var request = AssociateRequest();
                await s.WriteAsync(request.AsMemory(0, request.Length / 2), ct);
                s.Socket.Shutdown(SocketShutdown.Send);
            }, expectAbort: false),
            HostileAsync(node, "slow sender", async s =>
            {
                var request = AssociateRequest();
                for (var i = 0; i < 12 && i < request.Length; i++)
                {
                    await s.WriteAsync(request.AsMemory(i, 1), ct);
                    await Task.Delay(500, ct);
                }
            }, expectAbort: false), // ARTIM expires before a whole request: closed without a PDU (PS3.8 AA-2; an A-ABORT before 2026-12-07)
            HostileAsync(node, "never releases", async s =>
            {
                await s.WriteAsync(AssociateRequest(), ct);
                var accept = new byte[6];
                await s.ReadExactlyAsync(accept, ct);
                Assert.Equal((byte)PduType.AssociateAccept, accept[0]);
                var body = new byte[BinaryPrimitives.ReadUInt32BigEndian(accept.AsSpan(2))];
                await s.ReadExactlyAsync(body, ct);
            }));

        foreach (var (name, aborted, elapsed) in outcomes)
        {
            Assert.True(aborted, $"{name}: no A-ABORT within {elapsed}");
        }

        var result = await store;
        Assert.True(result.ExitCode == 0 && !result.StandardError.Contains("E:", StringComparison.Ordinal), result.ToString());
        Assert.Equal(200, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // Each misbehaviour left a security alert naming what happened.
        var audit = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--limit", "100", "--details")).StandardOutput).RootElement;
        var descriptions = audit.EnumerateArray().Select(e => e.GetProperty("details").GetProperty("outcome").GetString() ?? "").ToList();
        Assert.True(descriptions.Count >= 6, string.Join('\n', descriptions));
        Assert.Contains(descriptions, d => d.Contains("unknown PDU type", StringComparison.Ordinal));
        Assert.Contains(descriptions, d => d.Contains("timeout", StringComparison.Ordinal));
        Assert.Contains(descriptions, d => d.Contains("in the middle of a PDU", StringComparison.Ordinal));
        using var http = new HttpClient();
        Assert.True((await http.GetAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct)).IsSuccessStatusCode);
    }

    private static async Task<(string Name, bool Aborted, TimeSpan Elapsed)> HostileAsync(VigieNode node, string name, Func<NetworkStream, Task> behave,
        bool expectAbort = true)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, node.DicomPort);
        var stream = client.GetStream();
        try
        {
            await behave(stream);
        }
        catch (IOException)
        {
            // The node may close first: that is the point.
        }

        // Read until the node closes the connection; an A-ABORT PDU (type 7) must come first unless the peer left mid-PDU.
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                received.AddRange(buffer.AsSpan(0, read).ToArray());
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }

        var aborted = expectAbort ? received.Count >= 10 && ContainsAbort(received) : !timeout.IsCancellationRequested;
        return (name, aborted, watch.Elapsed);
    }

    private static bool ContainsAbort(List<byte> pdus)
    {
        var offset = 0;
        while (offset + 6 <= pdus.Count)
        {
            if (pdus[offset] == (byte)PduType.Abort)
            {
                return true;
            }

            offset += 6 + (int)BinaryPrimitives.ReadUInt32BigEndian(pdus.GetRange(offset + 2, 4).ToArray());
        }

        return false;
    }

    private static byte[] AssociateRequest()
    {
        var request = new AssociationParameters { CallingAE = "HOSTILE", CalledAE = "VIGIE" };
        request.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        return PduCodec.EncodeAssociateRequest(request);
    }
}
