using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// `vigie serve` against dcmtk's real tools, on SQLite and on PostgreSQL: echo, the whole CT corpus stored over one
/// association, queries at every level, C-GET, C-MOVE, forwarding to a PACS, then audit verification, scrub and a search
/// of the data folder for any identifier of the corpus.
/// </summary>
public sealed class NodeInteropTests
{
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Dcmtk_peers_store_query_retrieve_and_forward(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles();
        using var work = new TempDirectory("vigie-e2e");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        await using var moveDestination = await StoreScp.StartAsync("MOVEDEST", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(provider,
            ["--forward", $"PACS@127.0.0.1:{pacs.Port}", "--destination", $"MOVEDEST@127.0.0.1:{moveDestination.Port}"], cancellationToken: ct);

        var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());

        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "-pdu", "131072", "127.0.0.1", node.DicomPortText, .. files],
            TimeSpan.FromMinutes(10), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store.ToString());
        var stats = await node.StatsAsync();
        Assert.Equal(200, stats.GetProperty("instances").GetInt64());
        Assert.Equal(4, stats.GetProperty("studies").GetInt64());

        // Queries at each level, in both information models.
        var findscu = Peers.Require("findscu", "dcmtk");
        async Task<string> FindAsync(params string[] keys)
        {
            var result = await Peers.RunAsync(findscu, ["-aec", "VIGIE", .. keys, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(result.ExitCode == 0, result.ToString());
            return result.StandardOutput + result.StandardError;
        }

        static int Matches(string output) => output.Split("Find Response:").Count(s => s.TrimStart().Contains("(Pending)", StringComparison.Ordinal));
        var first = await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        var studyUid = first.Dataset.GetString(DicomTags.StudyInstanceUID)!;
        var seriesUid = first.Dataset.GetString(DicomTags.SeriesInstanceUID)!;
        Assert.Equal(4, Matches(await FindAsync("-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "PatientName")));
        var studies = await FindAsync("-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=SYNTH*", "-k", "StudyInstanceUID", "-k", "StudyDate=20240101-20240102",
            "-k", "ModalitiesInStudy", "-k", "NumberOfStudyRelatedInstances");
        Assert.Equal(2, Matches(studies));
        Assert.Contains("[CT]", studies, StringComparison.Ordinal);
        Assert.Contains("IS [50]", studies, StringComparison.Ordinal);
        Assert.Equal(1, Matches(await FindAsync("-S", "-k", "QueryRetrieveLevel=SERIES", "-k", $"StudyInstanceUID={studyUid}", "-k", "SeriesInstanceUID", "-k", "Modality=CT")));
        Assert.Equal(50, Matches(await FindAsync("-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", $"StudyInstanceUID={studyUid}", "-k", $"SeriesInstanceUID={seriesUid}",
            "-k", "SOPInstanceUID", "-k", "InstanceNumber")));

        // C-GET a series back, byte for byte after the meta group.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=SERIES", "-k", $"StudyInstanceUID={studyUid}",
            "-k", $"SeriesInstanceUID={seriesUid}", "-od", got, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(5), cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(50, Directory.GetFiles(got).Length);
        var original = await File.ReadAllBytesAsync(files[0], ct);
        var retrieved = await File.ReadAllBytesAsync(Directory.GetFiles(got).Single(f => Path.GetFileName(f).EndsWith(first.Dataset.GetString(DicomTags.SOPInstanceUID)!,
            StringComparison.Ordinal)), ct);
        Assert.True(original.AsSpan((int)first.DatasetOffset).SequenceEqual(retrieved.AsSpan(retrieved.Length - (original.Length - (int)first.DatasetOffset))));

        // C-MOVE a study to another node.
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "MOVEDEST", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={studyUid}", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(5), cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        await moveDestination.WaitForFilesAsync(50, TimeSpan.FromSeconds(30));
        Assert.Equal(50, moveDestination.Files);

        // Forwarding to the PACS: every object once.
        await pacs.WaitForFilesAsync(200, TimeSpan.FromMinutes(3));
        Assert.Equal(200, pacs.Files);
        Assert.Equal(200, pacs.StoreRequests);

        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());

        // No identifier of the corpus anywhere under the data folder, in any encoding.
        var identifiers = await CorpusIdentifiers.CollectAsync(files, ct);
        Assert.True(identifiers.Count >= 220, $"{identifiers.Count} identifiers");
        await node.StopAsync();
        Assert.Empty(await CorpusIdentifiers.FindAsync(node.Data, identifiers, ct));
    }

    /// <summary>
    /// Regression: the C-STOREs of a C-MOVE carried a counter (1, 2, 3...) as Move Originator Message ID instead of the
    /// C-MOVE-RQ's Message ID (PS3.7 9.3.1.1), so a destination could not tell which move they served.
    /// </summary>
    [Fact]
    public async Task Regression_move_sub_operations_carried_a_counter_as_the_move_originator_message_id()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        using var work = new TempDirectory("vigie-e2e");
        await using var destination = await StoreScp.StartAsync("MOVEDEST", work.Combine("moved"), "-d");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"MOVEDEST@127.0.0.1:{destination.Port}"], cancellationToken: ct);
        await node.StoreAsync(files, ct);
        var studyUid = (await DicomReader.ReadFileAsync(files[0], null, ct)).Dataset.GetString(DicomTags.StudyInstanceUID)!;

        // Two moves on one association: Message IDs 1 and 2, three sub-operations each.
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "MOVEDEST", "--repeat", "2", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={studyUid}", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        await destination.WaitForFilesAsync(3, TimeSpan.FromSeconds(30));
        var ids = destination.Lines.Where(l => l.Contains("Move Originator ID", StringComparison.Ordinal)).Select(l => l.Split(':')[^1].Trim()).ToList();
        Assert.Equal(["1", "1", "1", "2", "2", "2"], ids);
    }

    [Fact]
    public async Task Several_associations_in_parallel_all_complete()
    {
        var ct = TestContext.Current.CancellationToken;
        var storescu = Peers.Require("storescu", "dcmtk");
        var files = Peers.CtCorpusFiles();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var runs = files.Chunk(50).Select(chunk => Peers.RunAsync(storescu, ["-aec", "VIGIE", "-pdu", "131072", "127.0.0.1", node.DicomPortText, .. chunk],
            TimeSpan.FromMinutes(10), cancellationToken: ct)).ToList();
        foreach (var run in runs)
        {
            var result = await run;
            Assert.True(result.ExitCode == 0 && !result.StandardError.Contains("E:", StringComparison.Ordinal), result.ToString());
        }

        Assert.Equal(200, (await node.StatsAsync()).GetProperty("instances").GetInt64());
    }
}
