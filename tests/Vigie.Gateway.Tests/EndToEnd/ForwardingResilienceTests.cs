using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Forwarding to a PACS that misbehaves (slow, hung, refusing, answering for another object), from a black-box review:
/// what one destination does must not leak to another, nor let out an object that was withheld meanwhile.
/// </summary>
public sealed class ForwardingResilienceTests
{
    private const string MarkerUid = "2.25.7781778177";

    /// <summary>
    /// Regression: an object flagged by `vigie rescan` while its batch was already claimed still went to a slow PACS
    /// (the withheld flag was read only when the batch was claimed).
    /// </summary>
    [Fact]
    public async Task Regression_an_object_withheld_while_its_batch_was_claimed_was_still_forwarded()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-withheld");
        var pacsPort = VigieNode.FreePort();
        // A slow PACS: 4 s per object, so the batch behind the first object is claimed whole and takes over 20 s.
        await using var pacs = RawStoreScp.Start(RawScpMode.Accept, pacsPort);
        pacs.Delay = TimeSpan.FromSeconds(4);
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], cancellationToken: ct);
        var clean = Peers.CtCorpusFiles().Take(6).ToList();
        var marked = await MarkedObjectAsync(clean[0], ct);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            foreach (var file in clean)
            {
                Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(file, ct)).Status);
            }

            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, MarkerUid, DicomUids.ExplicitVRLittleEndian, new MemoryStream(marked), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        // The second batch (objects 2 to 7, the marked one last) is under way: only now is the indicator published.
        await Eventually.WaitForAsync(() => Task.FromResult(pacs.Instances.Count), n => n >= 2, ct);
        var rules = work.Combine("rules");
        Directory.CreateDirectory(rules);
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.ForwardIOC:0:*:{Convert.ToHexStringLower("VIGIE-FWD-IOC-7781"u8)}\n", ct);
        var rescan = await node.VigieAsync("rescan", "--rules", rules);
        Assert.True(rescan.ExitCode == 1, rescan.ToString());

        var status = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.GetProperty("given_up").GetInt64() == 1 && s.GetProperty("waiting").GetInt64() == 0, ct);
        Assert.Equal(1, status.GetProperty("given_up").GetInt64());
        Assert.Contains("withheld: flagged by vigie rescan", status.GetProperty("failures")[0].GetProperty("reason").GetString(), StringComparison.Ordinal);
        await Eventually.WaitForAsync(() => Task.FromResult(pacs.Instances.Count), n => n >= clean.Count, ct);
        Assert.Equal(clean.Count, pacs.Instances.Count);
        Assert.DoesNotContain(MarkerUid, pacs.Instances);
    }

    /// <summary>
    /// Regression: destinations were served in turn, so a PACS that took a C-STORE and never answered held every other
    /// destination until its ResponseTimeout (60 s) aborted it, and then again at each batch.
    /// </summary>
    [Fact]
    public async Task Regression_a_hung_destination_stopped_forwarding_to_every_other()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var stall = RawStoreScp.Start(RawScpMode.Hang, VigieNode.FreePort());
        await using var good = RawStoreScp.Start(RawScpMode.Accept, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"STALL@127.0.0.1:{stall.Port}", "--forward", $"GOOD@127.0.0.1:{good.Port}"],
            cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(5).ToList();
        await node.StoreAsync(files, ct);

        // Well within STALL's ResponseTimeout (60 s): GOOD does not wait for it.
        await Eventually.WaitForAsync(() => Task.FromResult(stall.Instances.Count), n => n >= 1, ct);
        await Eventually.WaitForAsync(() => Task.FromResult(good.Instances.Count), n => n >= files.Count, ct, TimeSpan.FromSeconds(40));
        Assert.Equal(files.Count, good.Instances.Count);
        var stalled = await Eventually.WaitForAsync(() => StatusAsync(node), s => Waiting(s, "STALL") == files.Count, ct);
        Assert.Equal(files.Count, Waiting(stalled, "STALL"));
    }

    /// <summary>
    /// Regression: back-off was kept per object only, so while a PACS refused associations ("temporary congestion"),
    /// each object newly stored opened one at once (100 objects, about 100 attempts in 20 s).
    /// </summary>
    [Fact]
    public async Task Regression_each_new_object_opened_an_association_to_a_destination_that_had_just_refused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var pacs = RawStoreScp.Start(RawScpMode.RejectCongested, VigieNode.FreePort());
        var files = Peers.CtCorpusFiles().Take(10).ToList();
        await using var node = await StoreWhileRefusedAsync(pacs, files, ct);

        var status = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.GetProperty("waiting").GetInt64() == files.Count, ct);
        Assert.Equal(files.Count, status.GetProperty("waiting").GetInt64());
        await Task.Delay(TimeSpan.FromSeconds(3), ct);
        Assert.InRange(pacs.Associations, 1, 2);
    }

    /// <summary>
    /// Regression: a destination's back-off lived only in the forwarder's memory. Objects stored meanwhile waited in the
    /// queue as due now, so `vigie forward status` said nothing of the next attempt for minutes, and a restart sent them
    /// at once to the PACS that had just refused (a new association at each start).
    /// </summary>
    [Fact]
    public async Task Regression_objects_waiting_out_a_destination_back_off_showed_as_due_now_and_a_restart_forgot_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var pacs = RawStoreScp.Start(RawScpMode.RejectCongested, VigieNode.FreePort());
        var files = Peers.CtCorpusFiles().Take(4).ToList();
        await using var node = await StoreWhileRefusedAsync(pacs, files, ct);

        var status = await Eventually.WaitForAsync(() => StatusAsync(node),
            s => s.GetProperty("waiting").GetInt64() == files.Count && s.TryGetProperty("next_attempt_in_seconds", out var next)
                && next.ValueKind == JsonValueKind.Number, ct);
        Assert.InRange(status.GetProperty("next_attempt_in_seconds").GetDouble(), 60, 120);

        await node.StopAsync();
        await node.StartProcessAsync(ct);
        await Task.Delay(TimeSpan.FromSeconds(4), ct);
        Assert.Equal(1, pacs.Associations);
        Assert.Equal(files.Count, (await StatusAsync(node)).GetProperty("waiting").GetInt64());
    }

    /// <summary>
    /// Regression: a C-STORE-RSP with Success naming another Affected SOP Instance UID was taken as delivery of the
    /// object sent (audited as transferred, never sent again), though the PACS never acknowledged it (PS3.7 9.3.1.2).
    /// </summary>
    [Fact]
    public async Task Regression_a_response_acknowledging_another_instance_was_taken_as_delivery()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var pacs = RawStoreScp.Start(RawScpMode.WrongInstance, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:02",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);

        var status = await Eventually.WaitForAsync(() => StatusAsync(node),
            s => pacs.Instances.Count >= 2 && (s.GetProperty("last_error").GetString() ?? "").Contains("answered for another object", StringComparison.Ordinal), ct);
        Assert.Equal(1, status.GetProperty("waiting").GetInt64());
        // Kept in the queue's last error and logged: it says which UID differed, never the UIDs themselves.
        Assert.Contains("another SOP Instance UID than the one sent", status.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("1.2.826.0.1.3680043.8.498.777", status.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("1.2.826.0.1.3680043.8.498.777", node.Output, StringComparison.Ordinal);
        var audit = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110104");
        Assert.Contains("not acknowledged", audit.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("forwarded 1 objects to PACS", audit.StandardOutput, StringComparison.Ordinal);

        // Once the PACS answers for the object sent, it is delivered.
        pacs.Mode = RawScpMode.Accept;
        await Eventually.WaitForAsync(() => StatusAsync(node), s => s.GetProperty("waiting").GetInt64() == 0, ct);
    }

    /// <summary>
    /// Regression: after an outage, the objects stored first waited out their own longer back-off, so a study reached
    /// the PACS newest first and its oldest objects up to MaxRetryDelay later.
    /// </summary>
    [Fact]
    public async Task Regression_after_an_outage_a_study_reached_the_pacs_newest_first()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{port}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:20",
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(6).ToList();
        var uids = new List<string>();
        foreach (var file in files)
        {
            var read = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.SeriesInstanceUID }, ct);
            uids.Add(DicomText.TrimUid(read.Meta.GetString(DicomTags.MediaStorageSOPInstanceUID) ?? read.Dataset.GetString(DicomTags.SOPInstanceUID) ?? ""));
        }

        // The PACS is down: the first half waits long enough for its back-off to grow, then the second half comes.
        await node.StoreAsync(files.Take(3), ct);
        await Task.Delay(TimeSpan.FromSeconds(30), ct);
        await node.StoreAsync(files.Skip(3), ct);
        await using var pacs = RawStoreScp.Start(RawScpMode.Accept, port);

        await Eventually.WaitForAsync(() => Task.FromResult(pacs.Instances.Count), n => n >= files.Count, ct);
        Assert.Equal(uids, pacs.Instances.Take(files.Count));
    }

    private static long Waiting(JsonElement status, string destination) =>
        status.TryGetProperty("by_destination", out var all)
            ? all.EnumerateArray().Where(d => d.GetProperty("destination").GetString() == destination).Select(d => d.GetProperty("waiting").GetInt64()).FirstOrDefault()
            : 0;

    /// <summary>A CT of the corpus under <see cref="MarkerUid"/>, carrying an inert marker a later indicator names.</summary>
    private static async Task<byte[]> MarkedObjectAsync(string source, CancellationToken cancellationToken)
    {
        var file = await DicomReader.ReadFileAsync(source, new DicomReadOptions { LoadLargeValues = true }, cancellationToken);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, MarkerUid);
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetString(new DicomTag(0x0029, 0x1001), DicomVR.LO, "VIGIE-FWD-IOC-7781");
        return DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
    }

    /// <summary>
    /// A node forwarding to <paramref name="pacs"/> with a back-off of minutes: the first file is refused, then the rest
    /// are stored one at a time, as a modality sends a series (each used to be tried at once).
    /// </summary>
    private static async Task<VigieNode> StoreWhileRefusedAsync(RawStoreScp pacs, IReadOnlyList<string> files, CancellationToken ct)
    {
        var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:02:00",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:10:00",
        }, cancellationToken: ct);
        try
        {
            await node.StoreAsync(files.Take(1), ct);
            await Eventually.WaitForAsync(() => Task.FromResult(pacs.Associations), n => n >= 1, ct);
            foreach (var file in files.Skip(1))
            {
                await node.StoreAsync([file], ct);
            }

            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    private static async Task<JsonElement> StatusAsync(VigieNode node)
    {
        var result = await node.VigieAsync("forward", "status", "--json");
        Assert.True(result.ExitCode is 0 or 1, result.ToString());
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }
}
