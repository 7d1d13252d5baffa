using System.Globalization;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Storage commitment (PS3.4 J, IHE RAD-10) with a real requestor: Orthanc playing the modality. A modality deletes
/// its copies of what Vigie commits to, so the report must name exactly the instances Vigie holds, and must reach the
/// modality even when it is off for a while and Vigie restarts meanwhile.
/// </summary>
public sealed class StorageCommitmentTests
{
    private const string ModalityAE = "CT1";

    [Fact]
    public async Task A_modality_is_told_which_instances_Vigie_holds_and_which_it_does_not()
    {
        var ct = TestContext.Current.CancellationToken;
        var modalityPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"{ModalityAE}@127.0.0.1:{modalityPort}"], cancellationToken: ct);
        await using var modality = await OrthancPeer.StartAsync(ModalityAE, modalityPort, node.DicomPort, ct);
        var files = Peers.CtCorpusFiles().Take(4).ToList();
        await node.StoreAsync(files.Take(3), ct);
        var instances = new List<(string SopClass, string SopInstance)>();
        foreach (var file in files)
        {
            instances.Add(await InstanceAsync(file, ct));
        }

        // Three sent, one never sent: the report commits the three and names the fourth as not held (0x0112).
        var partial = await modality.RequestCommitmentAsync(instances, ct);
        var report = await ReportAsync(modality, partial, ct);
        Assert.Equal("Failure", report.GetProperty("Status").GetString());
        Assert.Equal(instances.Take(3).Select(i => i.SopInstance).Order(StringComparer.Ordinal),
            report.GetProperty("Success").EnumerateArray().Select(s => s.GetProperty("SOPInstanceUID").GetString()!).Order(StringComparer.Ordinal));
        var failure = Assert.Single(report.GetProperty("Failures").EnumerateArray());
        Assert.Equal(instances[3].SopInstance, failure.GetProperty("SOPInstanceUID").GetString());
        Assert.Equal(0x0112, failure.GetProperty("FailureReason").GetInt32());

        // A held instance asked about as another kind of object is not committed (0x0119): the modality would delete
        // something Vigie does not hold as it believes. A class that is not for storage gets its own reason (0x0122).
        const string MrImageStorage = "1.2.840.10008.5.1.4.1.1.4";
        var notStorage = (SopClass: DicomUids.Verification, SopInstance: "2.25.1234");
        var conflicting = await modality.RequestCommitmentAsync([instances[0] with { SopClass = MrImageStorage }, instances[1], notStorage], ct);
        var conflict = await ReportAsync(modality, conflicting, ct);
        Assert.Equal("Failure", conflict.GetProperty("Status").GetString());
        Assert.Equal(instances[1].SopInstance, Assert.Single(conflict.GetProperty("Success").EnumerateArray()).GetProperty("SOPInstanceUID").GetString());
        var reasons = conflict.GetProperty("Failures").EnumerateArray()
            .ToDictionary(f => f.GetProperty("SOPInstanceUID").GetString()!, f => f.GetProperty("FailureReason").GetInt32());
        Assert.Equal(new Dictionary<string, int> { [instances[0].SopInstance] = 0x0119, [notStorage.SopInstance] = 0x0122 }, reasons);

        // Only what was sent: all committed.
        var full = await modality.RequestCommitmentAsync(instances.Take(3), ct);
        Assert.Equal("Success", (await ReportAsync(modality, full, ct)).GetProperty("Status").GetString());

        // Each report is audited, and the queued requests (which list UIDs) are sealed in the data folder.
        var audit = await node.VigieAsync("audit", "show", "--json", "--details");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        var descriptions = JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var o) ? o.GetString() : null).ToList();
        Assert.Contains(descriptions, d => d is not null && d.StartsWith("storage commitment reported: 3 instances committed, 1 not committed", StringComparison.Ordinal));
        Assert.Contains(descriptions, d => d is not null && d.StartsWith("storage commitment reported: 3 instances committed, 0 not committed", StringComparison.Ordinal));
        Assert.Empty(await CorpusIdentifiers.FindAsync(node.Data, [instances[3].SopInstance], ct));
    }

    [Fact]
    public async Task A_report_the_modality_cannot_take_yet_waits_and_survives_a_restart()
    {
        var ct = TestContext.Current.CancellationToken;
        var modalityPort = VigieNode.FreePort();
        var wrongPort = VigieNode.FreePort();
        // The modality's address is wrong at first (as after a network change): reports cannot get through.
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = ModalityAE,
            ["VIGIE__GATEWAY__DESTINATIONS__0__HOST"] = "127.0.0.1",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = wrongPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__BACKLOGALERT"] = "00:00:02",
        }, cancellationToken: ct);
        await using var modality = await OrthancPeer.StartAsync(ModalityAE, modalityPort, node.DicomPort, ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);
        var instances = new List<(string SopClass, string SopInstance)>();
        foreach (var file in files)
        {
            instances.Add(await InstanceAsync(file, ct));
        }

        var transaction = await modality.RequestCommitmentAsync(instances, ct);
        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains($"Storage commitment report to {ModalityAE} waits", StringComparison.Ordinal), ct);
        Assert.Equal("Pending", (await modality.CommitmentAsync(transaction, ct)).GetProperty("Status").GetString());
        var stalled = await Eventually.WaitForAsync(() => node.HealthCheckAsync("storage-commitment", ct), h => h.Status == "Degraded", ct);
        Assert.Contains($"1 storage commitment reports wait ({ModalityAE}), the oldest for", stalled.Description, StringComparison.Ordinal);
        Assert.Contains($"cannot report to {ModalityAE} (127.0.0.1:{wrongPort})", stalled.Description, StringComparison.Ordinal);

        // Vigie restarts with the right address: the queued report goes out.
        await node.StopAsync();
        node.SetEnvironment("VIGIE__GATEWAY__DESTINATIONS__0__PORT", modalityPort.ToString(CultureInfo.InvariantCulture));
        await node.StartProcessAsync(ct);
        var report = await ReportAsync(modality, transaction, ct);
        Assert.Equal("Success", report.GetProperty("Status").GetString());
        Assert.Equal(2, report.GetProperty("Success").GetArrayLength());
        Assert.Equal("Healthy", (await Eventually.WaitForAsync(() => node.HealthCheckAsync("storage-commitment", ct), h => h.Status == "Healthy", ct)).Status);
    }

    /// <summary>
    /// Regression: a report the node was trying to send when it stopped (its modality accepting the connection and then
    /// saying nothing) stayed claimed by the stopped process, so after the restart it waited out the claim's 5 min lease.
    /// It failed a clean-clone CI run, when the stop fell inside an attempt.
    /// </summary>
    [Fact]
    public async Task Regression_a_report_claimed_when_the_node_stopped_waited_out_its_lease_after_the_restart()
    {
        var ct = TestContext.Current.CancellationToken;
        var modalityPort = VigieNode.FreePort();
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var silentPort = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = ModalityAE,
            ["VIGIE__GATEWAY__DESTINATIONS__0__HOST"] = "127.0.0.1",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = silentPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__ARTIMTIMEOUT"] = "00:02:00",
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:01",
        }, cancellationToken: ct);
        await using var modality = await OrthancPeer.StartAsync(ModalityAE, modalityPort, node.DicomPort, ct);
        var files = Peers.CtCorpusFiles().Take(1).ToList();
        await node.StoreAsync(files, ct);
        var transaction = await modality.RequestCommitmentAsync([await InstanceAsync(files[0], ct)], ct);

        // The report's attempt is under way, hanging on the silent peer, when the node stops.
        using (var held = await silent.AcceptTcpClientAsync(ct))
        {
            await node.StopAsync();
        }

        node.SetEnvironment("VIGIE__GATEWAY__DESTINATIONS__0__PORT", modalityPort.ToString(CultureInfo.InvariantCulture));
        await node.StartProcessAsync(ct);
        var report = await Eventually.WaitForAsync(() => modality.CommitmentAsync(transaction, ct), r => r.GetProperty("Status").GetString() != "Pending", ct,
            TimeSpan.FromSeconds(45));
        Assert.Equal("Success", report.GetProperty("Status").GetString());
    }

    [Fact]
    public async Task A_request_from_a_modality_without_a_known_address_is_refused_at_once()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await using var modality = await OrthancPeer.StartAsync(ModalityAE, VigieNode.FreePort(), node.DicomPort, ct);
        var instance = await InstanceAsync(Peers.CtCorpusFiles().First(), ct);

        // Answering yes would leave the modality waiting for a report that can never arrive.
        var error = await Assert.ThrowsAsync<Xunit.Sdk.TrueException>(() => modality.RequestCommitmentAsync([instance], ct));
        Assert.Contains("cannot be handled by remote AET", error.Message, StringComparison.Ordinal);
        Assert.Contains($"Storage commitment request from {ModalityAE} refused (0x0110): no address for {ModalityAE}", node.Output, StringComparison.Ordinal);
    }

    private static async Task<JsonElement> ReportAsync(OrthancPeer modality, string transaction, CancellationToken ct) =>
        await Eventually.WaitForAsync(() => modality.CommitmentAsync(transaction, ct), r => r.GetProperty("Status").GetString() != "Pending", ct);

    internal static async Task<(string SopClass, string SopInstance)> InstanceAsync(string file, CancellationToken ct)
    {
        var dicom = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        return (DicomText.TrimUid(dicom.Dataset.GetString(DicomTags.SOPClassUID)!), DicomText.TrimUid(dicom.Dataset.GetString(DicomTags.SOPInstanceUID)!));
    }
}

/// <summary>
/// Malformed or misplaced storage commitment requests (sent with Vigie's own SCU, which can send what Orthanc never
/// would): each gets the PS3.4 status with a reason, and the association goes on.
/// </summary>
public sealed class StorageCommitmentRefusalTests
{
    [Fact]
    public async Task Bad_requests_get_a_status_and_a_reason_and_the_association_goes_on()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"SCU1@127.0.0.1:{VigieNode.FreePort()}"], cancellationToken: ct);
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "SCU1", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StorageCommitmentPushModel, DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), ct);
        var good = Information("2.25.42", ("1.2.3.1", "1.2.840.10008.5.1.4.1.1.2"));

        var garbage = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1,
            new byte[] { 0x08, 0x00, 0x95, 0x11, 0xFF, 0xFF, 0xFF, 0x7F, 0x31 }, ct);
        Assert.Equal(DimseStatus.InvalidArgumentValue, garbage.Status);
        Assert.StartsWith("unreadable action information", garbage.ErrorComment, StringComparison.Ordinal);

        var noItems = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1, Information("2.25.42"), ct);
        Assert.Equal(DimseStatus.InvalidArgumentValue, noItems.Status);
        Assert.Contains("Referenced SOP Sequence", noItems.ErrorComment, StringComparison.Ordinal);

        var wrongAction = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 2, good, ct);
        Assert.Equal(DimseStatus.NoSuchActionType, wrongAction.Status);

        var wrongInstance = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, "1.2.3", 1, good, ct);
        Assert.Equal(DimseStatus.NoSuchObjectInstance, wrongInstance.Status);

        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        Assert.Equal(DimseStatus.Success, (await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1, good, ct)).Status);
        await client.ReleaseAsync(ct);
    }

    [Fact]
    public async Task A_caller_without_the_store_right_cannot_ask_for_commitment()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__ACCESS__DICOMNODES__0__AETITLE"] = "VIEWER",
            ["VIGIE__ACCESS__DICOMNODES__0__NETWORKS__0"] = "127.0.0.1/32",
            ["VIGIE__ACCESS__DICOMNODES__0__RIGHTS"] = "Query",
        }, cancellationToken: ct);
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "VIEWER", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StorageCommitmentPushModel, DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), ct);
        Assert.Null(client.Association.FindAcceptedContext(DicomUids.StorageCommitmentPushModel));
        Assert.NotNull(client.Association.FindAcceptedContext(DicomUids.Verification));
        await client.ReleaseAsync(ct);
    }

    /// <summary>
    /// A modality that takes the SCP role of storage commitment by role selection gets its report on its own
    /// association, at once, without an address in Gateway:Destinations (many wait for it there and run no listener).
    /// </summary>
    [Fact]
    public async Task A_modality_that_takes_the_scp_role_gets_its_report_on_its_own_association()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await node.StoreAsync(files, ct);
        var held = await StorageCommitmentTests.InstanceAsync(files[0], ct);
        await using var client = await ConnectTakingReportsAsync(node, ct);

        var requested = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1,
            Information("2.25.4242", (held.SopInstance, held.SopClass), ("2.25.999", held.SopClass)), ct);
        Assert.Equal(DimseStatus.Success, requested.Status);

        var (report, information) = await ReceiveReportAsync(client, ct);
        Assert.Equal((ushort)2, report.EventTypeId);
        Assert.Equal("2.25.4242", DicomText.TrimUid(information.GetString(DicomTags.TransactionUID)!));
        var committed = Assert.Single(information.GetSequence(DicomTags.ReferencedSOPSequence)!.Items);
        Assert.Equal(held.SopInstance, DicomText.TrimUid(committed.GetString(DicomTags.ReferencedSOPInstanceUID)!));
        var failed = Assert.Single(information.GetSequence(DicomTags.FailedSOPSequence)!.Items);
        Assert.Equal("2.25.999", DicomText.TrimUid(failed.GetString(DicomTags.ReferencedSOPInstanceUID)!));
        await client.Association.SendAsync(DimseMessage.Response(report, DimseStatus.Success), ReadOnlyMemory<byte>.Empty, ct);
        await client.ReleaseAsync(ct);

        var audit = await Eventually.WaitForAsync(() => node.VigieAsync("audit", "show", "--json", "--details"),
            a => a.StandardOutput.Contains("on the requesting association", StringComparison.Ordinal), ct);
        Assert.Contains("storage commitment reported: 1 instances committed, 1 not committed (transaction 2.25.4242, on the requesting association)",
            audit.StandardOutput, StringComparison.Ordinal);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("storage-commitment", ct)).Status);
    }

    /// <summary>
    /// One that takes the role but releases without answering the report does not hold its release for the read
    /// timeout; without an address the report is then given up, audited, and the modality keeps its copies.
    /// </summary>
    [Fact]
    public async Task A_report_left_unanswered_on_the_requesting_association_neither_holds_the_release_nor_vanishes()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__DICOM__SERVER__ASSOCIATION__READTIMEOUT"] = "00:00:30" },
            cancellationToken: ct);
        var file = Peers.CtCorpusFiles().First();
        await node.StoreAsync([file], ct);
        var held = await StorageCommitmentTests.InstanceAsync(file, ct);
        await using var client = await ConnectTakingReportsAsync(node, ct);

        Assert.Equal(DimseStatus.Success, (await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1,
            Information("2.25.4343", (held.SopInstance, held.SopClass)), ct)).Status);
        await ReceiveReportAsync(client, ct);
        var releasing = System.Diagnostics.Stopwatch.StartNew();
        await client.ReleaseAsync(ct);
        Assert.InRange(releasing.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));

        var audit = await Eventually.WaitForAsync(() => node.VigieAsync("audit", "show", "--json", "--details"),
            a => a.StandardOutput.Contains("storage commitment not reported", StringComparison.Ordinal), ct);
        Assert.Contains("storage commitment not reported: SCU2 did not take the report on its association, and has no address in Gateway:Destinations",
            audit.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: an instance whose archived object file was deleted, cut or altered was committed all the same (only its
    /// index row was looked at), even after a retrieve had found it damaged: the modality was told to delete the only
    /// good copy. Such an instance is now in the Failed SOP Sequence with 0110, audited, so the modality sends it again.
    /// </summary>
    [Fact]
    public async Task Regression_commitment_was_reported_for_instances_whose_object_file_was_missing_or_damaged()
    {
        var ct = TestContext.Current.CancellationToken;
        // Without landing slots each object goes straight to objects/, where the test can find it as it is stored.
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__ARCHIVE__LANDINGSLOTS"] = "0" },
            cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(4).ToList();
        var objects = new List<string>();
        foreach (var file in files)
        {
            await node.StoreAsync([file], ct);
            objects.Add(Assert.Single(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).Except(objects)));
        }

        File.Delete(objects[0]);
        await using (var cut = new FileStream(objects[1], FileMode.Open, FileAccess.Write))
        {
            cut.SetLength(cut.Length - 100);
        }

        // A byte in the middle: the size and the sealed trailer are right, only reading it whole tells.
        await using (var altered = new FileStream(objects[2], FileMode.Open, FileAccess.ReadWrite))
        {
            altered.Position = altered.Length / 2;
            var b = altered.ReadByte();
            altered.Position = altered.Length / 2;
            altered.WriteByte((byte)(b ^ 0x5A));
        }

        var instances = new List<(string SopClass, string SopInstance)>();
        foreach (var file in files)
        {
            instances.Add(await StorageCommitmentTests.InstanceAsync(file, ct));
        }

        await using var client = await ConnectTakingReportsAsync(node, ct);
        Assert.Equal(DimseStatus.Success, (await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1,
            Information("2.25.4444", [.. instances.Select(i => (i.SopInstance, i.SopClass))]), ct)).Status);
        var (report, information) = await ReceiveReportAsync(client, ct);
        Assert.Equal((ushort)2, report.EventTypeId);
        var committed = Assert.Single(information.GetSequence(DicomTags.ReferencedSOPSequence)!.Items);
        Assert.Equal(instances[3].SopInstance, DicomText.TrimUid(committed.GetString(DicomTags.ReferencedSOPInstanceUID)!));
        var failed = information.GetSequence(DicomTags.FailedSOPSequence)!.Items
            .ToDictionary(i => DicomText.TrimUid(i.GetString(DicomTags.ReferencedSOPInstanceUID)!), i => i.TryGetInt64(DicomTags.FailureReason, out var reason) ? reason : -1);
        Assert.Equal(instances.Take(3).ToDictionary(i => i.SopInstance, _ => (long)DimseStatus.ProcessingFailure), failed);
        await client.Association.SendAsync(DimseMessage.Response(report, DimseStatus.Success), ReadOnlyMemory<byte>.Empty, ct);
        await client.ReleaseAsync(ct);

        var audit = await Eventually.WaitForAsync(() => node.VigieAsync("audit", "show", "--json", "--details"),
            a => a.StandardOutput.Contains("on the requesting association", StringComparison.Ordinal), ct);
        Assert.Contains("3 stored objects failed their check when asked for storage commitment by SCU2 (transaction 2.25.4444)", audit.StandardOutput,
            StringComparison.Ordinal);
        Assert.Contains("storage commitment reported: 1 instances committed, 3 not committed", audit.StandardOutput, StringComparison.Ordinal);
        Assert.Equal("Degraded", (await node.HealthCheckAsync("data-folder", ct)).Status);
        Assert.DoesNotContain(instances[0].SopInstance, node.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a requestor that gave up the SCU role of storage commitment at role selection (SCU-role 0, SCP-role 1,
    /// confirmed by Vigie) could still invoke N-ACTION, the SCU's operation (PS3.7 D.3.3.4). Now 0211, audited.
    /// </summary>
    [Fact]
    public async Task Regression_an_n_action_was_served_from_a_requestor_that_took_the_scp_role_only()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "SCU3", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StorageCommitmentPushModel], DicomUids.ImplicitVRLittleEndian), ct,
            [new RoleSelection(DicomUids.StorageCommitmentPushModel, ScuRole: false, ScpRole: true)]);
        var context = client.Association.FindAcceptedContext(DicomUids.StorageCommitmentPushModel);
        Assert.NotNull(context);
        Assert.False(context.ScuRole);

        var refused = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1,
            Information("2.25.4545", ("1.2.3.1", "1.2.840.10008.5.1.4.1.1.2")), ct);
        Assert.Equal(DimseStatus.UnrecognizedOperation, refused.Status);
        Assert.Contains("gave up the SCU role", refused.ErrorComment, StringComparison.Ordinal);
        await client.ReleaseAsync(ct);

        var audit = await Eventually.WaitForAsync(() => node.VigieAsync("audit", "show", "--json", "--details"),
            a => a.StandardOutput.Contains("refused (0x0211)", StringComparison.Ordinal), ct);
        Assert.Contains("gave up the SCU role of this context's SOP class at role selection", audit.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("2.25.4545", audit.StandardOutput, StringComparison.Ordinal);
    }

    private static async Task<DicomClient> ConnectTakingReportsAsync(VigieNode node, CancellationToken ct) =>
        await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "SCU2", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StorageCommitmentPushModel], DicomUids.ImplicitVRLittleEndian), ct,
            [new RoleSelection(DicomUids.StorageCommitmentPushModel, ScuRole: true, ScpRole: true)]);

    private static async Task<(DimseMessage Report, DicomDataset Information)> ReceiveReportAsync(DicomClient client, CancellationToken ct)
    {
        var report = await client.Association.ReceiveCommandAsync(ct);
        Assert.NotNull(report);
        Assert.Equal(DimseCommand.NEventReportRequest, report.Field);
        var information = await DicomReader.ReadDatasetAsync(await client.Association.ReadDataSetAsync(1 << 20, ct), TransferSyntax.ImplicitVRLittleEndian,
            new DicomReadOptions(), ct);
        return (report, information);
    }

    private static byte[] Information(string transactionUid, params (string Instance, string SopClass)[] instances)
    {
        var information = new DicomDataset();
        information.SetString(DicomTags.TransactionUID, DicomVR.UI, transactionUid);
        var sequence = new DicomSequence(DicomTags.ReferencedSOPSequence);
        foreach (var (instance, sopClass) in instances)
        {
            var item = new DicomDataset();
            item.SetString(DicomTags.ReferencedSOPClassUID, DicomVR.UI, sopClass);
            item.SetString(DicomTags.ReferencedSOPInstanceUID, DicomVR.UI, instance);
            sequence.Items.Add(item);
        }

        information.AddOrUpdate(sequence);
        return DicomWriter.Encode(information, TransferSyntax.ImplicitVRLittleEndian);
    }
}
