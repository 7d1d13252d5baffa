using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>The events the trail records for stores, retrieves and the operator's runs, against PS3.15 A.5.3 (review 24).</summary>
public sealed class AtnaEventTests
{
    /// <summary>
    /// Regression: a clean `vigie scrub` (and the `vigie rescan` run) was recorded as 110100 Application Activity typed 110132
    /// Use of Restricted Function, with the operator alone; A.5.3.1 gives that event only Application Start or Stop, and
    /// requires the Application participant. Each run is now a Security Alert typed Use of Restricted Function by the
    /// operator, outcome 0 when clean (A.5.3.11: "success implies an informative alert"), as a run with findings was.
    /// </summary>
    [Fact]
    public async Task Regression_a_clean_scrub_was_an_application_activity_of_another_type()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await node.StopAsync();

        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
        var rescan = await node.VigieAsync("rescan");
        Assert.True(rescan.ExitCode == 0, rescan.ToString());

        var entries = await AuditAsync(node, "--details");
        foreach (var activity in entries.Where(e => Text(e, "event_id") == "110100"))
        {
            var types = activity.GetProperty("event_types").EnumerateArray().Select(t => t.GetString()).ToList();
            Assert.True(types is ["Application Start"] or ["Application Stop"], activity.ToString());
            Assert.Contains(activity.GetProperty("participants").EnumerateArray(), p => p.GetProperty("roles").EnumerateArray().Any(r => r.GetString() == "Application"));
        }

        foreach (var (prefix, command) in new[] { ("archive integrity: vigie scrub: ", "scrub"), ("archive re-inspected: ", "rescan") })
        {
            var run = Assert.Single(entries, e => Outcome(e).StartsWith(prefix, StringComparison.Ordinal));
            Assert.True(Text(run, "event_id") == "110113" && Text(run, "outcome") == "success" && Text(run, "action") == "execute", $"{command}: {run}");
            Assert.Equal(["Use of Restricted Function"], run.GetProperty("event_types").EnumerateArray().Select(t => t.GetString()));
            Assert.Equal(Environment.UserName, Text(run, "user"));
        }
    }

    /// <summary>
    /// Regression: the store of an instance Vigie already held (answered 0000, "already stored", nothing written) was
    /// audited 110104 with EventActionCode C, create. PS3.15 A.5.3.4: R when the receiver already holds the copies and
    /// changes nothing, U when it reconciles them (here a new version of the instance), C only when it did not hold them.
    /// </summary>
    [Fact]
    public async Task Regression_a_store_of_an_instance_already_held_was_audited_as_a_creation()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-store-again");
        var file = Peers.CtCorpusFiles()[0];
        var changed = work.Combine("changed.dcm");
        File.Copy(file, changed);
        var modify = await Peers.RunAsync(Peers.Require("dcmodify", "dcmtk"), ["-nb", "-i", "(0008,1030)=Second reading", changed], TimeSpan.FromSeconds(30),
            cancellationToken: ct);
        Assert.True(modify.ExitCode == 0, modify.ToString());

        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync([file], ct);
        await node.StoreAsync([file], ct);
        await node.StoreAsync([changed], ct);

        var stores = (await AuditAsync(node, "--details", "--event", "110104")).OrderBy(e => e.GetProperty("sequence").GetInt64()).ToList();
        Assert.Equal([("create", "stored"), ("read", "already stored"), ("update", "stored as a new version")],
            stores.Select(e => (Text(e, "action"), Outcome(e))));
        Assert.All(stores, e => Assert.Equal("success", Text(e, "outcome")));
    }

    /// <summary>
    /// Regression: a C-GET or C-MOVE that sent everything left only 110102 Begin Transferring, written before the first
    /// sub-operation with the number found; 110104 came only when the retrieve fell short. A completed retrieve now gets
    /// its 110104 (R, outcome 0) with the counts sent, the receiver as Destination and Vigie as Source.
    /// </summary>
    [Fact]
    public async Task Regression_a_completed_retrieve_left_only_its_begin_transferring_record()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-retrieve-done");
        await using var workstation = await StoreScp.StartAsync("WORKSTATION", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);
        var study = await StudyAsync(files[0], ct);

        var got = Directory.CreateDirectory(work.Combine("got")).FullName;
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aet", "WS1", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={study}", "-od", got, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && Directory.EnumerateFiles(got).Count() == 2, get.ToString());
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aet", "VIEWER", "-aec", "VIGIE", "-aem", "WORKSTATION", "-S",
            "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        await workstation.WaitForFilesAsync(2, TimeSpan.FromSeconds(30));

        var transferred = await Eventually.WaitForAsync(() => AuditAsync(node, "--details", "--event", "110104"),
            es => es.Count(e => Outcome(e).StartsWith("C-", StringComparison.Ordinal)) == 2, ct);
        foreach (var (service, requestor, destination) in new[] { ("C-GET", "WS1", "WS1"), ("C-MOVE", "VIEWER", "WORKSTATION") })
        {
            var done = Assert.Single(transferred, e => Outcome(e).StartsWith(service, StringComparison.Ordinal));
            Assert.Equal($"{service} to {destination}: 2 of 2 instances sent", Outcome(done));
            Assert.Equal(("read", "success", requestor), (Text(done, "action"), Text(done, "outcome"), Text(done, "user")));
            var roles = done.GetProperty("participants").EnumerateArray()
                .ToDictionary(p => Text(p, "user"), p => string.Join(',', p.GetProperty("roles").EnumerateArray().Select(r => r.GetString())));
            Assert.Equal("Destination Role ID", roles[destination]);
            Assert.Equal("Source Role ID", roles["VIGIE"]);
            Assert.True(done.TryGetProperty("patient_ref", out var patient) && patient.GetString()!.Length > 0, done.ToString());
        }

        // The begin records stay, one per retrieve.
        Assert.Equal(2, (await AuditAsync(node, "--event", "110102")).Count);
    }

    /// <summary>
    /// A retrieve cut short by the requestor, by C-CANCEL or by aborting its association, is recorded with what was
    /// really sent (the requestor's own count), not as completed and not as begun only.
    /// </summary>
    [Theory]
    [InlineData("cancel")]
    [InlineData("abort")]
    public async Task A_retrieve_cancelled_or_aborted_by_its_requestor_is_recorded_with_what_was_sent(string how)
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files, ct);
        PresentationContext[] contexts =
        [
            new(1, DicomUids.StudyRootQueryRetrieveInformationModelGet, [DicomUids.ExplicitVRLittleEndian]),
            new(3, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian]),
        ];
        var received = 0;
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "VIEWER", CalledAE = "VIGIE" },
                         contexts, ct, [new RoleSelection(DicomUids.CTImageStorage, ScuRole: false, ScpRole: true)]))
        {
            var identifier = new DicomDataset();
            identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
            identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, await StudyAsync(files[0], ct));
            await client.Association.SendAsync(DimseMessage.GetRequest(1, 1, DicomUids.StudyRootQueryRetrieveInformationModelGet),
                DicomWriter.Encode(identifier, TransferSyntax.ExplicitVRLittleEndian), ct);
            while (await client.Association.ReceiveCommandAsync(ct) is { } command)
            {
                if (command.Field == DimseCommand.CStoreRequest)
                {
                    await client.Association.ReadDataSetAsync(64 << 20, ct);
                    await client.Association.SendAsync(DimseMessage.Response(command, DimseStatus.Success), ReadOnlyMemory<byte>.Empty, ct);
                    if (++received == 1)
                    {
                        if (how == "abort")
                        {
                            await client.Association.AbortAsync(AbortSource.ServiceUser, AbortReason.NotSpecified);
                            break;
                        }

                        await client.Association.SendAsync(DimseMessage.CancelRequest(1, 1), ReadOnlyMemory<byte>.Empty, ct);
                    }
                }
                else if (command.Field == DimseCommand.CGetResponse && !DimseStatus.IsPending(command.Status))
                {
                    Assert.Equal(received < 3 ? DimseStatus.Cancel : DimseStatus.Success, command.Status);
                    await client.ReleaseAsync(ct);
                    break;
                }
            }
        }

        var end = Assert.Single(await Eventually.WaitForAsync(() => AuditAsync(node, "--details", "--event", "110104"),
            es => es.Any(e => Outcome(e).StartsWith("C-GET", StringComparison.Ordinal)), ct), e => Outcome(e).StartsWith("C-GET", StringComparison.Ordinal));
        Assert.StartsWith($"C-GET to VIEWER: {received} of 3 instances sent", Outcome(end), StringComparison.Ordinal);
        Assert.Equal("read", Text(end, "action"));
        if (received < 3)
        {
            Assert.Equal("minor_failure", Text(end, "outcome"));
            Assert.Contains(how == "cancel" ? "(cancelled by the requestor (C-CANCEL))" : "(the association ended)", Outcome(end), StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal("success", Text(end, "outcome"));
        }
    }

    private static async Task<string> StudyAsync(string file, CancellationToken ct) =>
        DicomText.TrimUid((await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.StudyInstanceUID)!);

    private static async Task<List<JsonElement>> AuditAsync(VigieNode node, params string[] filters)
    {
        var shown = await node.VigieAsync(["audit", "show", "--json", "--limit", "1000", .. filters]);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().Select(e => e.Clone())];
    }

    private static string Text(JsonElement e, string name) => e.GetProperty(name).GetString() ?? "";

    private static string Outcome(JsonElement e) =>
        e.TryGetProperty("details", out var details) && details.ValueKind == JsonValueKind.Object ? details.GetProperty("outcome").GetString() ?? "" : "";
}
