using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Review 30: a local attacker who can write the index (not the key folder) made the node delete or serve what it must not.</summary>
public sealed class IndexTamperRetentionTests
{
    private static async Task ExecuteOnIndexAsync(VigieNode node, string sql, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<long> ScalarOnIndexAsync(VigieNode node, string sql, CancellationToken ct)
    {
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false");
        await connection.OpenAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Regression (review 30, 06): the maintenance scrub reported "index rows tampered with" (current versions marked
    /// superseded) and, in the same run, retention removed those versions. A run whose scrub finds the index tampered
    /// with now deletes nothing, and says why in the log, the integrity alert and /health.
    /// </summary>
    [Fact]
    public async Task Regression_maintenance_ran_retention_although_its_scrub_found_the_index_tampered_with()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:02",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:02",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "superseded-1s",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__SUPERSEDEDVERSIONS"] = "00:00:01",
            ["VIGIE__ARCHIVE__DELETIONGRACE"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(3), ct);
        await ExecuteOnIndexAsync(node, "UPDATE archive_versions SET superseded_at = 1", ct);

        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("retention and the purge of deleted files skipped", StringComparison.Ordinal),
            ct, TimeSpan.FromSeconds(60));
        await Task.Delay(TimeSpan.FromSeconds(5), ct);
        Assert.Equal(3, await ScalarOnIndexAsync(node, "SELECT COUNT(*) FROM archive_versions", ct));
        Assert.Equal(0, await ScalarOnIndexAsync(node, "SELECT COUNT(*) FROM archive_deletions", ct));
        Assert.DoesNotContain("Retention superseded-1s:", node.Output, StringComparison.Ordinal);
        var (status, description) = await node.HealthCheckAsync("archive-integrity", ct);
        Assert.NotEqual("Healthy", status);
        Assert.Contains("retention and the purge of deleted files skipped", description, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression (review 30, 04): deleting a withheld object's gateway_withheld_by_rules row served it again at the next
    /// C-GET, with `withheld list` saying none was withheld, scrub clean and no trace. Its marker in withheld/ now keeps it
    /// withheld, the list shows it, scrub reports the deletion, and only an audited release serves it again.
    /// </summary>
    [Fact]
    public async Task Regression_a_withheld_flag_deleted_from_the_index_served_the_flagged_object_again()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-withheld-tamper");
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var file = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles()[0], new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.3004001");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetString(new DicomTag(0x0029, 0x1001), DicomVR.LO, "VIGIE-TAMPER-IOC-3004");
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var data = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, "2.25.3004001", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        async Task<int> RetrievedAsync()
        {
            using var got = new TempDirectory("vigie-withheld-get");
            await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-aet", "MODALITY", "-S", "-k", "QueryRetrieveLevel=IMAGE",
                "-k", $"StudyInstanceUID={file.Dataset.GetString(DicomTags.StudyInstanceUID)}", "-k", $"SeriesInstanceUID={file.Dataset.GetString(DicomTags.SeriesInstanceUID)}",
                "-k", "SOPInstanceUID=2.25.3004001", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            return Directory.GetFiles(got.Path).Length;
        }

        var rules = Directory.CreateDirectory(work.Combine("rules")).FullName;
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.TamperIOC:0:*:{Convert.ToHexStringLower("VIGIE-TAMPER-IOC-3004"u8)}\n", ct);
        Assert.Equal(1, (await node.VigieAsync("rescan", "--rules", rules)).ExitCode);
        var id = Assert.Single(JsonDocument.Parse((await node.VigieAsync("withheld", "list", "--json")).StandardOutput).RootElement.EnumerateArray())
            .GetProperty("object").GetString()!;
        Assert.Equal(0, await RetrievedAsync());
        Assert.Equal(0, (await node.VigieAsync("scrub", "--headers-only")).ExitCode);

        await ExecuteOnIndexAsync(node, "DELETE FROM gateway_withheld_by_rules", ct);
        Assert.Equal(0, await RetrievedAsync());
        var listed = Assert.Single(JsonDocument.Parse((await node.VigieAsync("withheld", "list", "--json")).StandardOutput).RootElement.EnumerateArray());
        Assert.Equal(id, listed.GetProperty("object").GetString());
        var scrub = await node.VigieAsync("scrub", "--json");
        Assert.True(scrub.ExitCode == 1, scrub.ToString());
        Assert.Equal(1, JsonDocument.Parse(scrub.StandardOutput).RootElement.GetProperty("index_tampered").GetInt64());
        Assert.Contains("without an audited release", scrub.StandardOutput, StringComparison.Ordinal);

        var released = await node.VigieAsync("withheld", "release", id, "--reason", "INC-3004: checked, harmless");
        Assert.True(released.ExitCode == 0, released.ToString());
        Assert.Equal(1, await RetrievedAsync());
        Assert.Equal(0, (await node.VigieAsync("scrub", "--headers-only")).ExitCode);
        Assert.Contains("INC-3004: checked, harmless",
            (await node.VigieAsync("audit", "show", "--json", "--details", "--patient", file.Dataset.GetString(DicomTags.PatientID)!)).StandardOutput, StringComparison.Ordinal);
    }
}
