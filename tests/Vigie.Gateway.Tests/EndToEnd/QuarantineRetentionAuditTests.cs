using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: a quarantined object removed by the retention policy was audited without its patient (a quarantined
/// object has no index row naming one), so the removal was missing from the patient's history, where its quarantine is.
/// </summary>
public sealed class QuarantineRetentionAuditTests
{
    [Fact]
    public async Task Regression_a_quarantined_object_removed_by_retention_was_not_in_its_patients_history()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:10:00",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:10",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "quarantine-1s",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__QUARANTINE"] = "00:00:01",
        }, cancellationToken: ct);

        var file = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles().First(), new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.5920001");
        file.Dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYNQRET1");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, SecurityTests.InertPeHeader());
        var malicious = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var refused = await client.StoreAsync(DicomUids.CTImageStorage, "2.25.5920001", DicomUids.ExplicitVRLittleEndian, new MemoryStream(malicious), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            await client.ReleaseAsync(ct);
        }

        await Eventually.WaitForAsync(async () => (await node.StatsAsync()).GetProperty("quarantined").GetInt64(), n => n == 0, ct, TimeSpan.FromSeconds(60));
        var history = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", "SYNQRET1", "--event", "110103");
        Assert.True(history.ExitCode == 0, history.ToString());
        var removal = Assert.Single(JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray(),
            e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("QuarantineRemoved", StringComparison.Ordinal));
        Assert.Contains(file.Dataset.GetString(DicomTags.StudyInstanceUID)!, removal.GetRawText(), StringComparison.Ordinal);
        Assert.Equal(0, (await node.VigieAsync("audit", "verify")).ExitCode);
    }
}

/// <summary>
/// Regression: a study removed by the retention policy was audited as DICOM Study Deleted (110105) with its keyed hash
/// and object hashes only: no Study Instance UID, no Patient object (PS3.15 A.5.3.8 makes both mandatory), so a SIEM
/// could not tell which study of which patient was destroyed.
/// </summary>
public sealed class StudyRetentionAuditTests
{
    [Fact]
    public async Task Regression_retention_study_deleted_named_neither_the_study_nor_the_patient()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:10:00",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:10",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "studies-1s",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__MAXSHARE"] = "1",
        }, cancellationToken: ct);
        var first = Peers.CtCorpusFiles().First();
        var file = await DicomReader.ReadFileAsync(first, new DicomReadOptions(), ct);
        await node.StoreAsync([first], ct);

        await Eventually.WaitForAsync(async () => (await node.StatsAsync()).GetProperty("studies").GetInt64(), n => n == 0, ct, TimeSpan.FromSeconds(60));
        var deleted = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110105");
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        var entry = Assert.Single(JsonDocument.Parse(deleted.StandardOutput).RootElement.EnumerateArray()).GetRawText();
        Assert.Contains(file.Dataset.GetString(DicomTags.StudyInstanceUID)!, entry, StringComparison.Ordinal);
        Assert.Contains("\"type\": \"Study Instance UID\"", entry, StringComparison.Ordinal);
        Assert.Contains(file.Dataset.GetString(DicomTags.PatientID)!, entry, StringComparison.Ordinal);
        Assert.Equal(0, (await node.VigieAsync("audit", "verify")).ExitCode);
    }
}
