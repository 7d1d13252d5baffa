using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Two `vigie serve` processes on one PostgreSQL database and one data folder, as a hospital runs them behind a load
/// balancer: each receives half the corpus at the same time, and together they must hold one archive, one audit trail
/// and one forwarding queue.
/// </summary>
public sealed class MultiNodeTests
{
    /// <summary>
    /// Regression: new studies sent through several nodes at once over many associations were sometimes refused:
    /// C000 "series is filed under another study" (the pre-check read the study, missed it, then read the series
    /// another node had just filed under it), or A700 on a PostgreSQL deadlock between one node's audit append and
    /// another's index rows (3 and 4 runs in 11 for a reviewer). Each store must succeed, and leave no orphan.
    /// </summary>
    [Fact]
    public async Task Regression_new_studies_stored_through_two_nodes_over_six_associations_were_refused_C000_or_A700()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-multi-race");
        // Every six files become a new patient, study and series, and each of the six goes out on its own association
        // at the same moment: 33 new studies, each created by several nodes at once.
        var files = new List<string>();
        foreach (var (path, n) in Peers.CtCorpusFiles().Select((path, n) => (path, n)))
        {
            var file = await DicomReader.ReadFileAsync(path, new DicomReadOptions { LoadLargeValues = true }, ct);
            var group = n / 6;
            file.Dataset.SetString(DicomTags.PatientID, DicomVR.LO, $"SYNRACE{group}");
            file.Dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, $"2.25.77{group}1");
            file.Dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, $"2.25.77{group}2");
            var copy = work.Combine($"{n:D3}.dcm");
            await using (var output = File.Create(copy))
            {
                await DicomWriter.WriteFileAsync(output, file, null, ct);
            }

            files.Add(copy);
        }

        var (first, second) = await VigieNode.StartPairAsync(DatabaseProvider.Postgres, [], null, ct);
        await using var firstNode = first;
        await using var secondNode = second;
        var storescu = Peers.Require("storescu", "dcmtk");
        var runs = Enumerable.Range(0, 6).Select(i => Peers.RunAsync(storescu,
            ["-aec", "VIGIE", "127.0.0.1", (i % 2 == 0 ? first : second).DicomPortText, .. files.Where((_, n) => n % 6 == i)], TimeSpan.FromMinutes(10),
            cancellationToken: ct)).ToList();
        foreach (var run in runs)
        {
            var result = await run;
            Assert.True(result.ExitCode == 0 && !result.StandardError.Contains("E:", StringComparison.Ordinal),
                $"{result}\n--- first node\n{first.Output}\n--- second node\n{second.Output}");
        }

        await second.StopAsync();
        await first.StopAsync();
        Assert.Equal(200, (await first.StatsAsync()).GetProperty("instances").GetInt64());
        var scrub = await first.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    [Fact]
    public async Task Two_nodes_on_one_database_and_one_folder_share_the_archive_the_audit_trail_and_the_forwarding_queue()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles();
        using var work = new TempDirectory("vigie-multi");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        string[] forward = ["--forward", $"PACS@127.0.0.1:{pacs.Port}"];
        // Started together on a new folder: they race to create the keys and the schema. A forwarding claim of one second,
        // shorter than a batch of 64 takes, makes each node extend its claims as it sends, and lose to the other node
        // those it extends too late: the PACS must still get every object once.
        var (first, second) = await VigieNode.StartPairAsync(DatabaseProvider.Postgres, forward,
            new Dictionary<string, string> { ["VIGIE__GATEWAY__FORWARDING__LEASE"] = "00:00:01" }, ct);
        await using var firstNode = first;
        await using var secondNode = second;
        // One key file was made, and only the node that made it says so (it asks the administrator to back it up).
        Assert.Equal(1, new[] { first, second }.Count(n => n.Output.Contains("Created new keys", StringComparison.Ordinal)));

        // Studies are split across the nodes: two instances of one series may arrive on different nodes.
        var storescu = Peers.Require("storescu", "dcmtk");
        var halves = new[] { first, second }.Select((node, i) => Peers.RunAsync(storescu,
            ["-aec", "VIGIE", "-pdu", "131072", "127.0.0.1", node.DicomPortText, .. files.Where((_, n) => n % 2 == i)], TimeSpan.FromMinutes(10), cancellationToken: ct)).ToList();
        foreach (var half in halves)
        {
            var result = await half;
            Assert.True(result.ExitCode == 0 && !result.StandardError.Contains("E:", StringComparison.Ordinal), result.ToString());
        }

        // Each node answers for the whole archive, and serves objects the other one received.
        var sample = await DicomReader.ReadFileAsync(files[1], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        var sopInstanceUid = sample.Dataset.GetString(DicomTags.SOPInstanceUID)!;
        foreach (var node in new[] { first, second })
        {
            var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID",
                "-k", "SeriesInstanceUID", "-k", "SOPInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(find.ExitCode == 0, find.ToString());
            Assert.Equal(200, (find.StandardOutput + find.StandardError).Split("Find Response:").Count(s => s.TrimStart().Contains("(Pending)", StringComparison.Ordinal)));
        }

        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", $"StudyInstanceUID={sample.Dataset.GetString(DicomTags.StudyInstanceUID)}", "-k", $"SeriesInstanceUID={sample.Dataset.GetString(DicomTags.SeriesInstanceUID)}",
            "-k", $"SOPInstanceUID={sopInstanceUid}", "-od", got, "127.0.0.1", first.DicomPortText], TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        var original = await File.ReadAllBytesAsync(files[1], ct);
        var retrieved = await File.ReadAllBytesAsync(Assert.Single(Directory.GetFiles(got)), ct);
        var dataset = original.Length - (int)sample.DatasetOffset;
        Assert.True(original.AsSpan((int)sample.DatasetOffset).SequenceEqual(retrieved.AsSpan(retrieved.Length - dataset)));

        // Both nodes drain one queue: the PACS gets every object once.
        await pacs.WaitForFilesAsync(200, TimeSpan.FromMinutes(3));
        await Task.Delay(TimeSpan.FromSeconds(2), ct);
        if (pacs.Files != 200)
        {
            // What the queue and the nodes say of the objects that did not arrive.
            var status = await first.VigieAsync("forward", "status", "--json");
            Assert.Fail($"The PACS has {pacs.Files} of 200 objects.\n{status}\n--- first node\n{first.Output}\n--- second node\n{second.Output}");
        }

        Assert.Equal(200, pacs.StoreRequests);

        await second.StopAsync();
        await first.StopAsync();
        var stats = await first.StatsAsync();
        Assert.Equal(200, stats.GetProperty("instances").GetInt64());
        Assert.Equal(4, stats.GetProperty("studies").GetInt64());

        // One trail: every store of both nodes is in it, and it verifies as one tree.
        var stores = await first.VigieAsync("audit", "show", "--event", "110104", "--json", "--limit", "1000");
        Assert.True(stores.ExitCode == 0, stores.ToString());
        using (var entries = JsonDocument.Parse(stores.StandardOutput))
        {
            Assert.True(entries.RootElement.GetArrayLength() >= 200, stores.StandardOutput[..Math.Min(2000, stores.StandardOutput.Length)]);
        }

        var verify = await first.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await first.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }
}
