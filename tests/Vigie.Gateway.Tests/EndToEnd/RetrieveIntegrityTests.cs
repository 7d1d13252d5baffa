using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

public sealed class RetrieveIntegrityTests
{
    /// <summary>
    /// Regression: an object file deleted or truncated under a running node failed its C-GET sub-operation, and nothing
    /// else said so: no log line, no metric, /health Healthy, the audit trail "Success". The damage waited for a scrub.
    /// </summary>
    [Fact]
    public async Task Regression_a_damaged_object_met_by_a_retrieve_was_invisible_to_the_operators()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        var sample = (await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files, ct);
        var stored = await Eventually.WaitForAsync(
            () => Task.FromResult(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).ToList()),
            f => f.Count == 2, ct);
        Assert.Equal(2, stored.Count);
        File.Delete(stored[0]);
        await using (var truncate = new FileStream(stored[1], FileMode.Open, FileAccess.Write))
        {
            truncate.SetLength(1000);
        }

        using var got = new TempDirectory("vigie-got");
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-v", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={sample.GetString(DicomTags.StudyInstanceUID)}", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);

        Assert.Matches(@"Number of Failed Suboperations\s*:\s*2", get.StandardOutput + get.StandardError);
        var health = await node.HealthCheckAsync("data-folder", ct);
        Assert.Equal("Degraded", health.Status);
        Assert.Contains("2 stored objects failed their check when read for a retrieve", health.Description, StringComparison.Ordinal);
        Assert.Contains("failed its check when read for a retrieve (", node.Output, StringComparison.Ordinal);

        // And the security officer's trail (exported to the SIEM) holds an integrity alert per object, once.
        var alerts = await Eventually.WaitForAsync(() => IntegrityAlertsAsync(node, "when read for a retrieve"), a => a.Count >= 2, ct);
        Assert.Equal(2, alerts.Count);
        await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={sample.GetString(DicomTags.StudyInstanceUID)}", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        await Task.Delay(500, ct);
        Assert.Equal(2, (await IntegrityAlertsAsync(node, "when read for a retrieve")).Count);

        // Regression: the alert named neither who asked nor whose images, so it was missing from the patient's history.
        var history = await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--patient", sample.GetString(DicomTags.PatientID)!);
        Assert.True(history.ExitCode == 0, history.ToString());
        var entries = JsonDocument.Parse(history.StandardOutput).RootElement;
        Assert.Equal(2, entries.GetArrayLength());
        Assert.All(entries.EnumerateArray(), e => Assert.Contains(e.GetProperty("participants").EnumerateArray(),
            p => p.GetProperty("requestor").GetBoolean() && p.GetProperty("user").GetString() == "GETSCU"));
    }

    /// <summary>
    /// Regression: a damaged copy replaced by the same image sent again was logged and counted, but the audit trail held
    /// only a successful store: the security officer, and the SIEM through the export, never saw the damage.
    /// </summary>
    [Fact]
    public async Task Regression_a_repair_by_sending_again_was_missing_from_the_audit_trail()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(1).ToList();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files, ct);
        var stored = await Eventually.WaitForAsync(
            () => Task.FromResult(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).ToList()),
            f => f.Count == 1, ct);
        await using (var truncate = new FileStream(Assert.Single(stored), FileMode.Open, FileAccess.Write))
        {
            truncate.SetLength(1000);
        }

        await node.StoreAsync(files, ct);
        var alert = Assert.Single(await IntegrityAlertsAsync(node, "received again, replaced it"));
        Assert.Matches(@"failed its check \(\w+\); the same content, received again, replaced it", alert);

        // Regression: a retrieve meeting an object damaged, then repaired, then damaged again within the hour was silent.
        var sample = (await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset;
        using var got = new TempDirectory("vigie-got");
        async Task GetAsync() => await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={sample.GetString(DicomTags.StudyInstanceUID)}", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        async Task TruncateAsync()
        {
            // A copy sent again lands in a slot first, and reaches objects/ a moment later.
            var stored = await Eventually.WaitForAsync(
                () => Task.FromResult(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).ToList()),
                f => f.Count == 1 && new FileInfo(f[0]).Length > 1000, ct);
            await using var file = new FileStream(Assert.Single(stored), FileMode.Open, FileAccess.Write);
            file.SetLength(1000);
        }

        await TruncateAsync();
        await GetAsync();
        await Eventually.WaitForAsync(() => IntegrityAlertsAsync(node, "when read for a retrieve"), a => a.Count >= 1, ct);
        await node.StoreAsync(files, ct);
        await TruncateAsync();
        await GetAsync();
        var again = await Eventually.WaitForAsync(() => IntegrityAlertsAsync(node, "when read for a retrieve"), a => a.Count >= 2, ct);
        Assert.Equal(2, again.Count);
    }

    private static async Task<List<string>> IntegrityAlertsAsync(VigieNode node, string about)
    {
        var shown = await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.GetProperty("details").GetProperty("outcome").GetString() ?? "")
            .Where(o => o.StartsWith("archive integrity: ", StringComparison.Ordinal) && o.Contains(about, StringComparison.Ordinal))];
    }
}
