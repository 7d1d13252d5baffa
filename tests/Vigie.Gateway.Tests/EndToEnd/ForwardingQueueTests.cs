using System.Globalization;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// A PACS that refuses what Vigie forwards, or is down, is a PACS administrator's first-week problem: the images are
/// stored but not where the clinicians look. The node must say so (/health, `vigie forward status`, the log, the audit
/// trail), and once the PACS is fixed, `vigie forward retry` must deliver what was given up on, exactly once.
/// </summary>
public sealed class ForwardingQueueTests
{
    // A PACS configured for MR only: CT objects have no presentation context.
    private const string MrOnly = "MRImageStorage";

    private static readonly string[] Uncompressed = ["LocalEndianExplicit", "OppositeEndianExplicit", "LittleEndianImplicit"];

    /// <summary>
    /// Regression: with the PACS down, retention removed due studies whose objects were still waiting in the forward
    /// queue; once the PACS was back, the queue gave up on them ("no such object file") and the PACS never got them.
    /// </summary>
    [Fact]
    public async Task Regression_retention_removed_objects_still_waiting_for_the_pacs()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-hold");
        var pacsPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:02",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "short",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__MAXSHARE"] = "1",
            ["VIGIE__ARCHIVE__DELETIONGRACE"] = "00:00:00",
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);

        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("kept 1 due studies", StringComparison.Ordinal), ct);
        Assert.Equal(2, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // The PACS comes back: it gets both, and only then can retention remove the study.
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), pacsPort);
        await pacs.WaitForFilesAsync(2, TimeSpan.FromMinutes(1));
        Assert.Equal(2, pacs.Files);
        await Eventually.WaitForAsync(() => node.StatsAsync(), s => s.GetProperty("instances").GetInt64() == 0, ct);

        // Audited as a study deletion, the study named by its keyed hash (the audit named neither the study nor the count listed).
        var deleted = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110105");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Contains("retention policy 'short': StudyRemoved, study #", deleted.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: after a long outage the back-off reaches minutes, and the status said "stalled, cannot reach" with no
    /// word of when the next attempt comes, while the PACS, back up, waited for it (20 minutes in the upgrade review).
    /// </summary>
    [Fact]
    public async Task Regression_the_status_did_not_say_when_the_next_attempt_comes()
    {
        var ct = TestContext.Current.CancellationToken;
        var pacsPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:10:00",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:10:00",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var waiting = await Eventually.WaitForAsync(() => StatusAsync(node),
            s => s.Json.TryGetProperty("next_attempt_in_seconds", out _), ct);
        Assert.InRange(waiting.Json.GetProperty("next_attempt_in_seconds").GetDouble(), 60, 600);
        var text = await node.VigieAsync("forward", "status");
        Assert.Contains("; next attempt in ", text.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Objects_the_PACS_refuses_are_reported_and_delivered_once_retried()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-queue");
        var pacsPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__BACKLOGALERT"] = "00:00:02",
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        using var http = new HttpClient();

        // The PACS is down: the objects wait, and once past the alert age the node says so.
        await node.StoreAsync(files, ct);
        var stalled = await Eventually.WaitForAsync(() => node.HealthCheckAsync("forwarding", ct), h => h.Status == "Degraded", ct);
        Assert.Equal("Degraded", stalled.Status);
        Assert.Contains("3 objects wait, the oldest for", stalled.Description, StringComparison.Ordinal);
        Assert.Contains("cannot reach PACS", stalled.Description, StringComparison.Ordinal);
        var waiting = await StatusAsync(node);
        Assert.Equal(1, waiting.ExitCode);
        Assert.Equal(3, waiting.Json.GetProperty("waiting").GetInt64());
        Assert.True(waiting.Json.GetProperty("stalled").GetBoolean());

        // It comes back configured for MR only: the CT objects are given up on, not retried forever, and reported.
        await using (var mrOnly = await StoreScp.StartAcceptingOnlyAsync("PACS", work.Combine("pacs-mr"), pacsPort, MrOnly, Uncompressed))
        {
            // Both counts: the third object may still be on its way to given up.
            var refused = await Eventually.WaitForAsync(() => StatusAsync(node),
                s => s.Json.GetProperty("given_up").GetInt64() == 3 && s.Json.GetProperty("waiting").GetInt64() == 0, ct);
            Assert.Equal(1, refused.ExitCode);
            Assert.Equal(0, refused.Json.GetProperty("waiting").GetInt64());
            var failures = refused.Json.GetProperty("failures").EnumerateArray().ToList();
            Assert.Equal(3, failures.Count);
            Assert.All(failures, f =>
            {
                Assert.Equal("PACS", f.GetProperty("destination").GetString());
                Assert.Contains("does not accept SOP class 1.2.840.10008.5.1.4.1.1.2", f.GetProperty("reason").GetString(), StringComparison.Ordinal);
            });
            Assert.Equal(0, mrOnly.Files);
        }

        // Prometheus sees it too (the queue is read every 15 s, not at each scrape).
        var metrics = await Eventually.WaitForAsync(() => http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/metrics"), ct),
            m => m.Split('\n').Any(l => l.StartsWith("vigie_gateway_forward_given_up", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal)), ct);
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("vigie_gateway_forward_given_up", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));

        var health = await node.HealthCheckAsync("forwarding", ct);
        Assert.Equal("Degraded", health.Status);
        Assert.Contains("3 objects given up on", health.Description, StringComparison.Ordinal);
        Assert.Contains("Forwarding of queue entry", node.Output, StringComparison.Ordinal);

        // The audit trail has each failed transfer, under the patient, so the patient's record shows it too.
        var patientId = await PatientIdAsync(files[0], ct);
        var audit = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", patientId);
        Assert.True(audit.ExitCode == 0, audit.ToString());
        var notForwarded = JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Where(e => e.GetProperty("outcome").GetString() == "serious_failure").ToList();
        Assert.Equal(3, notForwarded.Count);
        Assert.All(notForwarded, e => Assert.StartsWith("not forwarded: PACS does not accept", e.GetProperty("details").GetProperty("outcome").GetString(),
            StringComparison.Ordinal));

        // Fixed: a retry delivers each object once, and everything turns healthy again.
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), pacsPort);
        var unknown = await node.VigieAsync("forward", "retry", "--id", "999999");
        Assert.True(unknown.ExitCode == 2, unknown.ToString());
        // Regression: a destination that matches nothing given up on (here miscased) said "0 objects put back", exit 0.
        var miscased = await node.VigieAsync("forward", "retry", "--all", "--destination", "pacs");
        Assert.True(miscased.ExitCode == 2, miscased.ToString());
        Assert.Contains("no object given up on is for pacs; those given up on are for PACS", miscased.StandardError, StringComparison.Ordinal);
        var retry = await node.VigieAsync("forward", "retry", "--all", "--json");
        Assert.True(retry.ExitCode == 0, retry.ToString());
        Assert.Equal(3, JsonDocument.Parse(retry.StandardOutput).RootElement.GetProperty("changed").GetArrayLength());
        await pacs.WaitForFilesAsync(3, TimeSpan.FromSeconds(30));
        Assert.Equal(3, pacs.Files);
        var clean = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.ExitCode == 0, ct);
        Assert.Equal(0, clean.Json.GetProperty("given_up").GetInt64());
        Assert.Equal("Healthy", (await node.HealthCheckAsync("forwarding", ct)).Status);
        Assert.Equal(3, pacs.StoreRequests);

        // Each delivery is audited per study, under its patient: the patient's record shows the images went to the PACS.
        var delivered = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", patientId);
        var forwarded = JsonDocument.Parse(delivered.StandardOutput).RootElement.EnumerateArray()
            .Where(e => e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith("forwarded ", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(forwarded);
        Assert.Equal(3, forwarded.Sum(e => int.Parse(e.GetProperty("details").GetProperty("outcome").GetString()!.Split(' ')[1], CultureInfo.InvariantCulture)));
        Assert.All(forwarded, e => Assert.Equal("VIGIE", e.GetProperty("user").GetString()));

        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    /// <summary>
    /// Regression: a PACS behind a firewall that drops connection attempts (a host down behind a filtering router)
    /// made each forwarding round fail with an untyped cancellation. The node logged it as its own error, never said
    /// "cannot reach PACS", and left the batch claimed for the whole lease (5 minutes) after the PACS came back.
    /// </summary>
    [Fact]
    public async Task Regression_a_pacs_that_drops_connection_attempts_held_the_queue_for_the_whole_lease()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-firewall");
        var pacsPort = VigieNode.FreePort();
        var firewall = await UnansweringPeer.DroppingConnectionsAsync(pacsPort);
        // Declared in the configuration, as a site sets a destination's timeout (`vigie forward status` reads it too).
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "PACS",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = pacsPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__FORWARD"] = "true",
            ["VIGIE__GATEWAY__DESTINATIONS__0__CONNECTTIMEOUT"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__BACKLOGALERT"] = "00:00:02",
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);

        var stalled = await Eventually.WaitForAsync(() => node.HealthCheckAsync("forwarding", ct),
            h => h.Status == "Degraded" && h.Description.Contains("cannot reach PACS", StringComparison.Ordinal), ct);
        Assert.Contains($"cannot reach PACS: 127.0.0.1:{pacsPort} did not accept the connection within 00:00:01", stalled.Description, StringComparison.Ordinal);
        Assert.DoesNotContain("Forwarding round failed", node.Output, StringComparison.Ordinal);

        // The firewall opens: what waited goes within the retry delay, not after the lease.
        firewall.Dispose();
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), pacsPort);
        await pacs.WaitForFilesAsync(2, TimeSpan.FromSeconds(30));
        Assert.Equal(2, pacs.Files);
        var clean = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.ExitCode == 0, ct);
        Assert.Equal(0, clean.Json.GetProperty("waiting").GetInt64());
        Assert.Equal(2, pacs.StoreRequests);
    }

    /// <summary>
    /// Regression: the forwarder called the PACS as "VIGIE" whatever the node's AE title (`--ae`), so a PACS that had
    /// registered the gateway under its title refused every object as from an unknown calling AE.
    /// </summary>
    [Fact]
    public async Task Regression_the_pacs_was_called_as_VIGIE_whatever_the_nodes_AE_title()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-ae");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), "-d");
        await using var node = await VigieNode.StartAsync(arguments: ["--ae", "GATEWAY1", "--forward", $"PACS@127.0.0.1:{pacs.Port}"], cancellationToken: ct);

        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct, calledAE: "GATEWAY1");
        await pacs.WaitForFilesAsync(1, TimeSpan.FromSeconds(30));

        Assert.Equal(["GATEWAY1"], pacs.CallingAETitles.Distinct());
    }

    [Fact]
    public async Task Objects_given_up_on_can_be_dismissed()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-dismiss");
        await using var mrOnly = await StoreScp.StartAcceptingOnlyAsync("PACS", work.Combine("pacs-mr"), null, MrOnly, Uncompressed);
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, ["--forward", $"PACS@127.0.0.1:{mrOnly.Port}"], null, ct);
        // Maintenance every second, keeping finished queue messages for no time: dismissed ones are purged, given-up ones not.
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__INTERVAL", "00:00:01");
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY", "00:00:01");
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__FINISHEDMESSAGERETENTION", "00:00:00.001");
        await node.StartProcessAsync(ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        var refused = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.Json.GetProperty("given_up").GetInt64() == 2, ct);
        var first = refused.Json.GetProperty("failures")[0].GetProperty("id").GetInt64().ToString(CultureInfo.InvariantCulture);

        var dismissOne = await node.VigieAsync("forward", "dismiss", "--id", first);
        Assert.True(dismissOne.ExitCode == 0, dismissOne.ToString());
        Assert.Equal(1, (await StatusAsync(node)).Json.GetProperty("given_up").GetInt64());
        var wrongDestination = await node.VigieAsync("forward", "dismiss", "--all", "--destination", "OTHER", "--json");
        Assert.True(wrongDestination.ExitCode == 2, wrongDestination.ToString());
        Assert.Contains("no object given up on is for OTHER; those given up on are for PACS", wrongDestination.StandardError, StringComparison.Ordinal);
        var dismissAll = await node.VigieAsync("forward", "dismiss", "--all", "--destination", "PACS");
        Assert.True(dismissAll.ExitCode == 0, dismissAll.ToString());
        Assert.Equal(0, (await StatusAsync(node)).ExitCode);
        // A dismissed object is not put back by a later retry.
        var retry = await node.VigieAsync("forward", "retry", "--all", "--json");
        Assert.Equal(0, JsonDocument.Parse(retry.StandardOutput).RootElement.GetProperty("changed").GetArrayLength());
        var usage = await node.VigieAsync("forward", "retry");
        Assert.True(usage.ExitCode == 2, usage.ToString());
        static int Purged(string output) => System.Text.RegularExpressions.Regex.Matches(output, "Purged ([0-9]+) finished queue messages")
            .Sum(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => Purged(o) >= 2, ct);
        Assert.True(Purged(node.Output) == 2, node.Output);
    }

    /// <summary>
    /// Regression: one presentation context was proposed per SOP class, listing every transfer syntax of the batch. The
    /// PACS accepts one syntax per context, so in a batch where the same SOP class came in two syntaxes (two modalities,
    /// one sending implicit VR, the other explicit), the objects in the other syntax were given up on.
    /// </summary>
    [Fact]
    public async Task Objects_of_one_sop_class_in_two_transfer_syntaxes_are_all_forwarded()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-syntaxes");
        var pacsPort = VigieNode.FreePort();
        // The PACS is down while both arrive, so that they leave in one batch.
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(4).ToList();
        var storescu = Peers.Require("storescu", "dcmtk");
        var implicitVr = await Peers.RunAsync(storescu, ["-xi", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText, files[0], files[1]], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(implicitVr.ExitCode == 0, implicitVr.ToString());
        await node.StoreAsync(files.Skip(2), ct);

        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), pacsPort);
        await pacs.WaitForFilesAsync(4, TimeSpan.FromSeconds(60));
        var status = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.Json.GetProperty("waiting").GetInt64() == 0, ct);
        Assert.Equal(0, status.Json.GetProperty("given_up").GetInt64());
        Assert.Equal(4, pacs.Files);
    }

    /// <summary>
    /// Regression: once the last forwarding destination was removed from the configuration, the objects still queued
    /// for it were given up on ("no longer configured") but /health said "no forwarding destination", Healthy, so
    /// nobody was told that they never reached a PACS.
    /// </summary>
    [Fact]
    public async Task Regression_objects_given_up_for_a_removed_destination_were_hidden_by_the_health_check()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "OLDPACS",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__FORWARD"] = "true",
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await Eventually.WaitForAsync(() => StatusAsync(node), s => s.Json.GetProperty("last_error").ValueKind == JsonValueKind.String, ct);

        // The old PACS is decommissioned: still known as a C-MOVE destination, no longer forwarded to.
        await node.StopAsync();
        node.SetEnvironment("VIGIE__GATEWAY__DESTINATIONS__0__FORWARD", "false");
        await node.StartProcessAsync(ct);

        var health = await Eventually.WaitForAsync(() => node.HealthCheckAsync("forwarding", ct), h => h.Status == "Degraded", ct);
        Assert.Equal("2 objects given up on (OLDPACS: 2; vigie forward status)", health.Description);
        var status = await StatusAsync(node);
        Assert.Equal(1, status.ExitCode);
        Assert.All(status.Json.GetProperty("failures").EnumerateArray(),
            f => Assert.Equal("destination OLDPACS is no longer configured", f.GetProperty("reason").GetString()));
    }

    /// <summary>
    /// With two forwarding destinations, the status, the health check and the metrics say which one is behind: the
    /// archive that is down, not the PACS that took everything.
    /// </summary>
    [Fact]
    public async Task With_two_destinations_the_one_behind_is_named()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-two");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        var archivePort = VigieNode.FreePort();
        string[] targets = ["--forward", $"PACS@127.0.0.1:{pacs.Port}", "--forward", $"ARCHIVE@127.0.0.1:{archivePort}"];
        await using var node = await VigieNode.StartAsync(arguments: targets, environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__BACKLOGALERT"] = "00:00:02",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await pacs.WaitForFilesAsync(2, TimeSpan.FromSeconds(60));

        var stalled = await Eventually.WaitForAsync(() => node.HealthCheckAsync("forwarding", ct), h => h.Status == "Degraded", ct);
        Assert.StartsWith("ARCHIVE: 2 objects wait, the oldest for", stalled.Description, StringComparison.Ordinal);
        Assert.Contains("cannot reach ARCHIVE", stalled.Description, StringComparison.Ordinal);
        Assert.DoesNotContain("PACS", stalled.Description, StringComparison.Ordinal);
        var status = await StatusAsync(node, targets[2..]);
        Assert.Equal(2, status.Json.GetProperty("waiting").GetInt64());
        var behind = Assert.Single(status.Json.GetProperty("by_destination").EnumerateArray());
        Assert.Equal("ARCHIVE", behind.GetProperty("destination").GetString());
        Assert.Equal(2, behind.GetProperty("waiting").GetInt64());
        Assert.True(behind.GetProperty("stalled").GetBoolean());
        Assert.Contains("cannot reach ARCHIVE", behind.GetProperty("last_error").GetString(), StringComparison.Ordinal);

        // Prometheus: one series per destination, the PACS at 0 (the queue is read every 15 s, not at each scrape).
        using var http = new HttpClient();
        var metrics = await Eventually.WaitForAsync(() => http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/metrics"), ct),
            m => m.Split('\n').Any(l => l.StartsWith("vigie_gateway_forward_waiting", StringComparison.Ordinal) && l.Contains("destination=\"ARCHIVE\"", StringComparison.Ordinal)
                && l.EndsWith(" 2", StringComparison.Ordinal)), ct);
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("vigie_gateway_forward_waiting", StringComparison.Ordinal)
            && l.Contains("destination=\"PACS\"", StringComparison.Ordinal) && l.EndsWith(" 0", StringComparison.Ordinal));
    }

    /// <summary>
    /// A PACS that takes implicit VR little endian only (the one syntax every storage SCP must accept) still gets the
    /// objects received in explicit VR: they are re-encoded as they are sent, their pixel data unchanged.
    /// </summary>
    [Fact]
    public async Task Objects_received_in_explicit_vr_reach_a_pacs_that_takes_implicit_vr_only()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-implicit");
        await using var pacs = await StoreScp.StartAcceptingOnlyAsync("PACS", work.Combine("pacs"), null, "CTImageStorage", "LittleEndianImplicit");
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}"], cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        await node.StoreAsync(files, ct);

        await pacs.WaitForFilesAsync(3, TimeSpan.FromSeconds(60));
        Assert.Equal(3, pacs.Files);
        Assert.Equal(0, (await StatusAsync(node)).Json.GetProperty("given_up").GetInt64());
        foreach (var original in files)
        {
            var sent = await DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct);
            var uid = sent.Dataset.GetString(DicomTags.SOPInstanceUID)!.TrimEnd('\0', ' ');
            var receivedPath = Directory.EnumerateFiles(pacs.Folder).Single(f => Path.GetFileName(f).EndsWith(uid, StringComparison.Ordinal));
            var received = await DicomReader.ReadFileAsync(receivedPath, new DicomReadOptions { LoadLargeValues = true }, ct);
            Assert.Equal(TransferSyntax.ImplicitVRLittleEndian.Uid, received.TransferSyntax.Uid);
            Assert.True(((DicomValueElement)received.Dataset[DicomTags.PixelData]!).Span.SequenceEqual(((DicomValueElement)sent.Dataset[DicomTags.PixelData]!).Span));
            Assert.Equal(sent.Dataset.GetString(DicomTags.PatientID), received.Dataset.GetString(DicomTags.PatientID));
        }

        // A target given to serve as a flag is not in the configuration: status names it when given the same flag.
        Assert.Equal(0, (await StatusAsync(node)).Json.GetProperty("destinations").GetArrayLength());
        var named = await StatusAsync(node, "--forward", $"PACS@127.0.0.1:{pacs.Port}");
        Assert.Equal("PACS", named.Json.GetProperty("destinations")[0].GetProperty("ae_title").GetString());
    }

    private static async Task<string> PatientIdAsync(string file, CancellationToken ct)
    {
        var dicom = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        return dicom.Dataset.GetString(DicomTags.PatientID)!;
    }

    private static async Task<(int ExitCode, JsonElement Json)> StatusAsync(VigieNode node, params string[] flags)
    {
        var result = await node.VigieAsync(["forward", "status", "--json", .. flags]);
        Assert.True(result.ExitCode is 0 or 1, result.ToString());
        return (result.ExitCode, JsonDocument.Parse(result.StandardOutput).RootElement);
    }

}
