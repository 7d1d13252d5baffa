using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

public sealed class IndexTermsRepairTests
{
    /// <summary>
    /// Regression (review 22 N4): a patient's archive_terms rows deleted (node stopped, no key) hid their images from
    /// C-GET by Patient ID, scrub was clean, and nothing rebuilt them. Scrub names the row now, and the node's maintenance
    /// rewrites its terms (an integrity Security Alert says so): the images are found by Patient ID again.
    /// </summary>
    [Fact]
    public async Task Regression_deleted_search_terms_hid_a_patient_from_c_get_and_nothing_rebuilt_them()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:10:00",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:02",
        }, cancellationToken: ct);
        var file = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles().First(), new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.5940001");
        file.Dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYNTERMS1");
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, "2.25.5940001", DicomUids.ExplicitVRLittleEndian,
                new MemoryStream(DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian)), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        await node.StopAsync();
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM archive_terms WHERE level = 0";
            Assert.True(await command.ExecuteNonQueryAsync(ct) > 0);
        }

        var scrub = await node.VigieAsync("scrub", "--json");
        Assert.True(scrub.ExitCode == 1, scrub.ToString());
        Assert.Equal(1, JsonDocument.Parse(scrub.StandardOutput).RootElement.GetProperty("index_tampered").GetInt64());

        await node.StartProcessAsync(ct);
        await Eventually.WaitForAsync(async () =>
        {
            var alerts = await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details");
            return alerts.ExitCode == 0 && JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray()
                .Any(e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("search terms of 1 index rows rewritten", StringComparison.Ordinal));
        }, found => found, ct, TimeSpan.FromSeconds(60));

        using var got = new TempDirectory("vigie-got");
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SYNTERMS1",
            "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Single(Directory.EnumerateFiles(got.Path));
        Assert.DoesNotContain("SYNTERMS1", node.Output, StringComparison.Ordinal);
    }
}
