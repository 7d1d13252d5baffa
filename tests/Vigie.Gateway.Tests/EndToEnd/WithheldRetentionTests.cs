using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression (confidentiality review, side note): an object retention removed kept its withheld flag; `withheld list`
/// still listed it, and `withheld release` said "released; retrieves serve it again" about an object that was gone.
/// </summary>
public sealed class WithheldRetentionTests
{
    [Fact]
    public async Task Regression_a_withheld_object_removed_by_retention_was_still_listed_and_released()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-withheld-retention");
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:10:00",
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:30",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "studies-1s",
            ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "00:00:01",
        }, cancellationToken: ct);
        var file = await DicomReader.ReadFileAsync(Peers.CtCorpusFiles()[0], new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.5930001");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetString(new DicomTag(0x0029, 0x1001), DicomVR.LO, "VIGIE-RETRO-IOC-5930");
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var data = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, "2.25.5930001", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var rules = Directory.CreateDirectory(work.Combine("rules")).FullName;
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.RetroIOC:0:*:{Convert.ToHexStringLower("VIGIE-RETRO-IOC-5930"u8)}\n", ct);
        Assert.Equal(1, (await node.VigieAsync("rescan", "--rules", rules)).ExitCode);
        var flag = Assert.Single(JsonDocument.Parse((await node.VigieAsync("withheld", "list", "--json")).StandardOutput).RootElement.EnumerateArray());
        var id = flag.GetProperty("object").GetString()!;

        await Eventually.WaitForAsync(async () => (await node.StatsAsync()).GetProperty("instances").GetInt64(), n => n == 0, ct, TimeSpan.FromSeconds(90));
        Assert.Empty(JsonDocument.Parse((await node.VigieAsync("withheld", "list", "--json")).StandardOutput).RootElement.EnumerateArray());
        var release = await node.VigieAsync("withheld", "release", id, "--reason", "INC-78");
        Assert.True(release.ExitCode == 0, release.ToString());
        Assert.Contains("no longer in the archive", release.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("retrieves serve it again", release.StandardOutput, StringComparison.Ordinal);
    }
}
