using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

public sealed class IndexTamperTests
{
    /// <summary>
    /// Regression: one SQL UPDATE of archive_studies.patient_id (node stopped, no key needed) filed one patient's study
    /// under another: a C-GET for the second patient then sent the first patient's images, audited under the second
    /// only, and scrub was clean. The moved study no longer opens bound to its parent: nothing of it is sent, the
    /// association goes on, and the log, the trail (a Security Alert naming row ids) and scrub say so.
    /// </summary>
    [Fact]
    public async Task Regression_a_study_relinked_to_another_patient_in_the_index_was_served_under_that_patient()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var original = Peers.CtCorpusFiles()[0];
        byte[] Patient(string patientId, string uid)
        {
            var ds = DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct).AsTask().GetAwaiter().GetResult().Dataset;
            ds.SetString(DicomTags.PatientID, DicomVR.LO, patientId);
            ds.SetString(DicomTags.PatientName, DicomVR.PN, patientId == "SYN-TAMPER-A" ? "SYNTH^ALPHA" : "SYNTH^BRAVO");
            ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, uid + ".1");
            ds.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, uid + ".1.1");
            ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, uid + ".1.1.1");
            return DicomWriter.Encode(ds, TransferSyntax.ExplicitVRLittleEndian);
        }

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            foreach (var (patient, uid) in new[] { ("SYN-TAMPER-A", "2.25.818181"), ("SYN-TAMPER-B", "2.25.828282") })
            {
                var stored = await client.StoreAsync(DicomUids.CTImageStorage, uid + ".1.1.1", DicomUids.ExplicitVRLittleEndian, new MemoryStream(Patient(patient, uid)), ct);
                Assert.Equal(DimseStatus.Success, stored.Status);
            }

            await client.ReleaseAsync(ct);
        }

        await node.StopAsync();
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            // A's study (the first filed) moved under B's patient row.
            command.CommandText = "UPDATE archive_studies SET patient_id = (SELECT MAX(id) FROM archive_patients) WHERE id = (SELECT MIN(id) FROM archive_studies)";
            Assert.Equal(1, await command.ExecuteNonQueryAsync(ct));
        }

        await node.StartProcessAsync(ct);
        using var got = new TempDirectory("vigie-got");
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SYN-TAMPER-B",
            "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        var served = new List<string>();
        foreach (var file in Directory.EnumerateFiles(got.Path))
        {
            served.Add((await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.PatientID)!);
        }

        Assert.Equal(["SYN-TAMPER-B"], served);
        Assert.Contains("fail their check (moved or altered in the database)", node.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("SYN-TAMPER", node.Output, StringComparison.Ordinal);

        var alerts = await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details");
        Assert.True(alerts.ExitCode == 0, alerts.ToString());
        Assert.Contains(JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray(),
            e => e.GetProperty("details").GetProperty("outcome").GetString()!.Contains("do not open bound to their parent", StringComparison.Ordinal));

        var scrub = await node.VigieAsync("scrub", "--json");
        Assert.True(scrub.ExitCode == 1, scrub.ToString());
        Assert.Equal(1, JsonDocument.Parse(scrub.StandardOutput).RootElement.GetProperty("index_tampered").GetInt64());
    }
}
