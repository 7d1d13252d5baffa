using System.Globalization;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
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

        // Only what was sent: all committed.
        var full = await modality.RequestCommitmentAsync(instances.Take(3), ct);
        Assert.Equal("Success", (await ReportAsync(modality, full, ct)).GetProperty("Status").GetString());

        // Each report is audited, and the queued requests (which list UIDs) are sealed in the data folder.
        var audit = await node.VigieAsync("audit", "show", "--json", "--details");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        var descriptions = JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object && d.TryGetProperty("outcome", out var o) ? o.GetString() : null).ToList();
        Assert.Contains(descriptions, d => d is not null && d.StartsWith("storage commitment reported: 3 instances committed, 1 not held", StringComparison.Ordinal));
        Assert.Contains(descriptions, d => d is not null && d.StartsWith("storage commitment reported: 3 instances committed, 0 not held", StringComparison.Ordinal));
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
        Assert.Contains("1 storage commitment reports wait", stalled.Description, StringComparison.Ordinal);
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

    private static async Task<(string SopClass, string SopInstance)> InstanceAsync(string file, CancellationToken ct)
    {
        var dicom = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        return (DicomText.TrimUid(dicom.Dataset.GetString(DicomTags.SOPClassUID)!), DicomText.TrimUid(dicom.Dataset.GetString(DicomTags.SOPInstanceUID)!));
    }
}
