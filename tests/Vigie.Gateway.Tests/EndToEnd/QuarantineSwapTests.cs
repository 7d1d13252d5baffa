using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

public sealed class QuarantineSwapTests
{
    /// <summary>
    /// Regression (review 22 N1): with the node stopped, a quarantined malicious copy of an image (same SOP Instance UID)
    /// was copied from quarantine/ into objects/ under its object id, and the version and object rows pointed at it (no key
    /// needed): scrub was clean and getscu received the malicious object. Its data key is wrapped for quarantine now: the
    /// archive refuses it, the sub-operation fails with a Security Alert, and scrub names it.
    /// </summary>
    [Fact]
    public async Task Regression_a_quarantined_object_swapped_into_the_archive_was_served_by_c_get()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        const string Sop = "2.25.5930001";
        var file = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles().First(), new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, Sop);
        file.Dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYNQSWAP1");
        var clean = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, SecurityTests.InertPeHeader());
        var malicious = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, Sop, DicomUids.ExplicitVRLittleEndian, new MemoryStream(clean), ct)).Status);
            Assert.Equal(DimseStatus.NotAuthorized,
                (await client.StoreAsync(DicomUids.CTImageStorage, Sop, DicomUids.ExplicitVRLittleEndian, new MemoryStream(malicious), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        await node.StopAsync();
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            string quarantineId, quarantinedObject, oldObject;
            long length;
            await using (var read = connection.CreateCommand())
            {
                read.CommandText = "SELECT quarantine_id, lower(hex(object_id)), length, (SELECT lower(hex(object_id)) FROM archive_versions) FROM archive_quarantine";
                await using var reader = await read.ExecuteReaderAsync(ct);
                Assert.True(await reader.ReadAsync(ct));
                (quarantineId, quarantinedObject, length, oldObject) = (reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetString(3));
            }

            var objects = Path.Combine(node.Data, "objects");
            Directory.CreateDirectory(Path.Combine(objects, quarantinedObject[..3]));
            File.Copy(Path.Combine(node.Data, "quarantine", quarantineId + ".vobj"), Path.Combine(objects, quarantinedObject[..3], quarantinedObject));
            File.Delete(Path.Combine(objects, oldObject[..3], oldObject));
            await using var update = connection.CreateCommand();
            update.CommandText = $"UPDATE archive_versions SET object_id = x'{quarantinedObject}', length = {length}; "
                                 + $"UPDATE archive_objects SET object_id = x'{quarantinedObject}', length = {length} WHERE object_id = x'{oldObject}'";
            await update.ExecuteNonQueryAsync(ct);
        }

        var scrub = await node.VigieAsync("scrub", "--json");
        Assert.True(scrub.ExitCode == 1, scrub.ToString());
        Assert.Contains("Quarantined", scrub.StandardOutput, StringComparison.Ordinal);

        await node.StartProcessAsync(ct);
        using var got = new TempDirectory("vigie-got");
        await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SYNQSWAP1",
            "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Empty(Directory.EnumerateFiles(got.Path));

        await Eventually.WaitForAsync(async () =>
        {
            var alerts = await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details");
            return alerts.ExitCode == 0 && JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray()
                .Any(e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("Quarantined", StringComparison.Ordinal));
        }, found => found, ct, TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Regression (review 25 F1): with the node stopped, deleting the archive_quarantine_binding row and copying one of a
    /// patient's archived object files into quarantine/ made the next start re-wrap the copy and the original in objects/
    /// for quarantine: getscu received 1 of the 2 acknowledged images, and scrub called the clean one quarantined.
    /// </summary>
    [Fact]
    public async Task Regression_a_reset_binding_row_and_a_copied_object_file_stopped_a_clean_image_being_served()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var sources = Peers.CtCorpusFiles().Take(2).ToList();
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            for (var i = 0; i < sources.Count; i++)
            {
                var file = await DicomReader.ReadFileAsync(sources[i], new DicomReadOptions { LoadLargeValues = true }, ct);
                var sop = $"2.25.5930101{i}";
                file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sop);
                file.Dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYNQBIND1");
                var bytes = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
                Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, sop, DicomUids.ExplicitVRLittleEndian, new MemoryStream(bytes), ct)).Status);
            }

            await client.ReleaseAsync(ct);
        }

        await node.StopAsync();
        await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            string first;
            await using (var read = connection.CreateCommand())
            {
                read.CommandText = "SELECT lower(hex(object_id)) FROM archive_versions ORDER BY instance_id LIMIT 1";
                first = (string)(await read.ExecuteScalarAsync(ct))!;
            }

            await using var delete = connection.CreateCommand();
            delete.CommandText = "DELETE FROM archive_quarantine_binding";
            await delete.ExecuteNonQueryAsync(ct);
            Directory.CreateDirectory(Path.Combine(node.Data, "quarantine"));
            File.Copy(Path.Combine(node.Data, "objects", first[..3], first), Path.Combine(node.Data, "quarantine", "0123456789abcdef0123456789abcdef.vobj"));
        }

        await node.StartProcessAsync(ct);
        using var got = new TempDirectory("vigie-got");
        await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SYNQBIND1",
            "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Equal(2, Directory.EnumerateFiles(got.Path).Count());
        await node.StopAsync();

        // The planted file is named for what it is (no record names it); nothing in objects/ is.
        var scrub = await node.VigieAsync("scrub", "--json");
        var findings = JsonDocument.Parse(scrub.StandardOutput).RootElement.GetProperty("findings").EnumerateArray().ToList();
        Assert.DoesNotContain(findings, f => (f.GetProperty("location").GetString() ?? "").StartsWith("objects", StringComparison.Ordinal));
        var planted = Assert.Single(findings, f => (f.GetProperty("location").GetString() ?? "").Contains("0123456789abcdef0123456789abcdef", StringComparison.Ordinal));
        Assert.Equal("foreign", planted.GetProperty("kind").GetString(), ignoreCase: true);
    }
}
