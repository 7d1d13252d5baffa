using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Forwarding to a PACS that misbehaves (slow, hung, refusing, answering for another object), from a black-box review:
/// what one destination does must not leak to another, nor let out an object that was withheld meanwhile.
/// </summary>
public sealed class ForwardingResilienceTests
{
    private const string MarkerUid = "2.25.7781778177";

    /// <summary>
    /// Regression: an object flagged by `vigie rescan` while its batch was already claimed still went to a slow PACS
    /// (the withheld flag was read only when the batch was claimed).
    /// </summary>
    [Fact]
    public async Task Regression_an_object_withheld_while_its_batch_was_claimed_was_still_forwarded()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forward-withheld");
        var pacsPort = VigieNode.FreePort();
        // A slow PACS: 4 s per object, so the batch behind the first object is claimed whole and takes over 20 s.
        await using var pacs = RawStoreScp.Start(RawScpMode.Accept, pacsPort);
        pacs.Delay = TimeSpan.FromSeconds(4);
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacsPort}"], cancellationToken: ct);
        var clean = Peers.CtCorpusFiles().Take(6).ToList();
        var marked = await MarkedObjectAsync(clean[0], ct);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            foreach (var file in clean)
            {
                Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(file, ct)).Status);
            }

            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, MarkerUid, DicomUids.ExplicitVRLittleEndian, new MemoryStream(marked), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        // The second batch (objects 2 to 7, the marked one last) is under way: only now is the indicator published.
        await Eventually.WaitForAsync(() => Task.FromResult(pacs.Instances.Count), n => n >= 2, ct);
        var rules = work.Combine("rules");
        Directory.CreateDirectory(rules);
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.ForwardIOC:0:*:{Convert.ToHexStringLower("VIGIE-FWD-IOC-7781"u8)}\n", ct);
        var rescan = await node.VigieAsync("rescan", "--rules", rules);
        Assert.True(rescan.ExitCode == 1, rescan.ToString());

        var status = await Eventually.WaitForAsync(() => StatusAsync(node), s => s.GetProperty("given_up").GetInt64() == 1 && s.GetProperty("waiting").GetInt64() == 0, ct);
        Assert.Contains("withheld: flagged by vigie rescan", status.GetProperty("failures")[0].GetProperty("reason").GetString(), StringComparison.Ordinal);
        await Eventually.WaitForAsync(() => Task.FromResult(pacs.Instances.Count), n => n >= clean.Count, ct);
        Assert.Equal(clean.Count, pacs.Instances.Count);
        Assert.DoesNotContain(MarkerUid, pacs.Instances);
    }

    /// <summary>
    /// Regression: a C-STORE-RSP with Success naming another Affected SOP Instance UID was taken as delivery of the
    /// object sent (audited as transferred, never sent again), though the PACS never acknowledged it (PS3.7 9.3.1.2).
    /// </summary>
    [Fact]
    public async Task Regression_a_response_acknowledging_another_instance_was_taken_as_delivery()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var pacs = RawStoreScp.Start(RawScpMode.WrongInstance, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}"], environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__FORWARDING__INITIALRETRYDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__FORWARDING__MAXRETRYDELAY"] = "00:00:02",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);

        var status = await Eventually.WaitForAsync(() => StatusAsync(node),
            s => pacs.Instances.Count >= 2 && (s.GetProperty("last_error").GetString() ?? "").Contains("answered for another object", StringComparison.Ordinal), ct);
        Assert.Equal(1, status.GetProperty("waiting").GetInt64());
        Assert.Contains("Instance UID 1.2.826.0.1.3680043.8.498.777 instead of", status.GetProperty("last_error").GetString(), StringComparison.Ordinal);
        var audit = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110104");
        Assert.Contains("not acknowledged", audit.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("forwarded 1 objects to PACS", audit.StandardOutput, StringComparison.Ordinal);

        // Once the PACS answers for the object sent, it is delivered.
        pacs.Mode = RawScpMode.Accept;
        await Eventually.WaitForAsync(() => StatusAsync(node), s => s.GetProperty("waiting").GetInt64() == 0, ct);
    }

    /// <summary>A CT of the corpus under <see cref="MarkerUid"/>, carrying an inert marker a later indicator names.</summary>
    private static async Task<byte[]> MarkedObjectAsync(string source, CancellationToken cancellationToken)
    {
        var file = await DicomReader.ReadFileAsync(source, new DicomReadOptions { LoadLargeValues = true }, cancellationToken);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, MarkerUid);
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetString(new DicomTag(0x0029, 0x1001), DicomVR.LO, "VIGIE-FWD-IOC-7781");
        return DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
    }

    private static async Task<JsonElement> StatusAsync(VigieNode node)
    {
        var result = await node.VigieAsync("forward", "status", "--json");
        Assert.True(result.ExitCode is 0 or 1, result.ToString());
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }
}
