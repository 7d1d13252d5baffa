using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Objects refused for what they say, not for a threat: answered, audited under their sender, and nothing of them filed.</summary>
public sealed class IngestRefusalTests
{
    /// <summary>
    /// Regression: an instance sent again under another patient (or its series under another study) was answered 0000
    /// and filed under the links already indexed: C-FIND kept the old patient while C-GET sent the new content, and
    /// the audit trail named the old patient for what was the new one's data.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_an_instance_resent_under_another_patient_was_filed_under_the_old_one(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        var original = Peers.CtCorpusFiles()[0];
        var file = await DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct);
        var sopInstance = file.Dataset.GetString(DicomTags.SOPInstanceUID)!;
        var patientId = file.Dataset.GetString(DicomTags.PatientID)!;

        byte[] Changed(Action<DicomDataset> change)
        {
            var copy = DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct).AsTask().GetAwaiter().GetResult().Dataset;
            change(copy);
            return DicomWriter.Encode(copy, TransferSyntax.ExplicitVRLittleEndian);
        }

        var otherPatient = Changed(ds => ds.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-OTHER-1"));
        var otherStudy = Changed(ds => ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "2.25.5151515151"));
        var renamed = Changed(ds => ds.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^CORRECTED"));
        var otherInstance = Changed(ds => ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.5252525252"));

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(original, ct)).Status);
            var patient = await client.StoreAsync(DicomUids.CTImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(otherPatient), ct);
            Assert.Equal(DimseStatus.CannotUnderstand, patient.Status);
            Assert.Equal("refused: study is filed under another patient", patient.ErrorComment);
            var study = await client.StoreAsync(DicomUids.CTImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(otherStudy), ct);
            Assert.Equal(DimseStatus.CannotUnderstand, study.Status);
            Assert.Equal("refused: series is filed under another study", study.ErrorComment);
            // A correction that keeps the identifiers is a new version, as before.
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian,
                new MemoryStream(renamed), ct)).Status);
            // Refused for disagreeing with its command: audited too (it was not).
            var mismatch = await client.StoreAsync(DicomUids.CTImageStorage, "2.25.5353535353", DicomUids.ExplicitVRLittleEndian, new MemoryStream(otherInstance), ct);
            Assert.Equal(DimseStatus.DataSetDoesNotMatchSopClass, mismatch.Status);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("patients").GetInt64());
        Assert.Equal(1, stats.GetProperty("studies").GetInt64());
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110104");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var outcomes = JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.GetProperty("details").GetProperty("outcome").GetString() ?? "").ToList();
        Assert.Contains("refused: study is filed under another patient", outcomes);
        Assert.Contains("refused: series is filed under another study", outcomes);
        Assert.Contains("refused: SOP Instance UID of the data set differs from the command", outcomes);
        var history = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--details", "--patient", "SYN-OTHER-1")).StandardOutput).RootElement;
        Assert.Contains(history.EnumerateArray(), e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("another patient", StringComparison.Ordinal));
        Assert.NotEqual("SYN-OTHER-1", patientId);
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>
    /// Regression: two associations sending one new instance under two patients at the same moment both got 0000 (in 4
    /// runs of 10): the check before storing saw neither, the index kept the first links, and C-FIND then named one
    /// patient while C-GET sent the other's data. The second is now refused inside its index transaction.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_two_conflicting_stores_at_the_same_moment_were_both_accepted(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        var original = Peers.CtCorpusFiles()[0];
        const int Trials = 8;
        var options = new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" };
        await using var first = await DicomClient.ConnectAsync(options, DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
        await using var second = await DicomClient.ConnectAsync(options, DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
        for (var trial = 0; trial < Trials; trial++)
        {
            var uid = $"2.25.7070{trial}";
            byte[] Version(string patientId)
            {
                var ds = DicomReader.ReadFileAsync(original, new DicomReadOptions { LoadLargeValues = true }, ct).AsTask().GetAwaiter().GetResult().Dataset;
                ds.SetString(DicomTags.PatientID, DicomVR.LO, patientId);
                ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, uid + ".1");
                ds.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, uid + ".1.1");
                ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, uid + ".1.1.1");
                return DicomWriter.Encode(ds, TransferSyntax.ExplicitVRLittleEndian);
            }

            var (a, b) = (Version($"RACE{trial}A"), Version($"RACE{trial}B"));
            var answers = await Task.WhenAll(
                first.StoreAsync(DicomUids.CTImageStorage, uid + ".1.1.1", DicomUids.ExplicitVRLittleEndian, new MemoryStream(a), ct),
                second.StoreAsync(DicomUids.CTImageStorage, uid + ".1.1.1", DicomUids.ExplicitVRLittleEndian, new MemoryStream(b), ct));
            Assert.True(answers.Count(r => r.Status == DimseStatus.Success) == 1 && answers.Count(r => r.Status == DimseStatus.CannotUnderstand) == 1,
                $"trial {trial}: {string.Join(", ", answers.Select(r => $"{r.Status:X4} {r.ErrorComment}"))}");
        }

        await first.ReleaseAsync(ct);
        await second.ReleaseAsync(ct);
        var stats = await node.StatsAsync();
        Assert.Equal(Trials, stats.GetProperty("instances").GetInt64());
        Assert.Equal(Trials, stats.GetProperty("patients").GetInt64());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>
    /// Regression: the same data set sent by another calling AE (a router re-pushing a study) was filed as a new version
    /// of the instance (forwarded again, counted as a correction), since the stored file's meta group named the sender;
    /// sent back by the first AE, a third version. Sender-independent content is stored once; each receipt is audited
    /// under its sender.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_the_same_data_set_from_another_AE_became_a_new_version(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        var original = Peers.CtCorpusFiles()[0];
        foreach (var sender in new[] { "MOD1", "ROUTER", "MOD1" })
        {
            await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = sender, CalledAE = "VIGIE" },
                DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(original, ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("instance_versions").GetInt64());
        Assert.Equal(1, stats.GetProperty("objects").GetInt64());
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110104");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var receipts = JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()
            .Select(e => e.GetProperty("details").GetProperty("outcome").GetString()).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["already stored", "already stored", "stored"], receipts);
        var byRouter = await node.VigieAsync("audit", "show", "--json", "--event", "110104", "--user", "ROUTER");
        Assert.Single(JsonDocument.Parse(byRouter.StandardOutput).RootElement.EnumerateArray());
    }
}
