using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// C-FIND keys and C-GET/C-MOVE unique keys through dcmtk, on objects made from the CT corpus with dcmodify: one patient
/// with two studies (one dated in 2099, one MR), another with one. Regressions found by comparing Vigie with dcmqrscp and
/// Orthanc.
/// </summary>
public sealed class QueryRetrieveKeyTests
{
    private const string Root = "1.2.826.0.1.3680043.10.1338.77";

    [Fact]
    public async Task Find_keys_and_retrieve_unique_keys_follow_ps3_4()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-qr-keys");
        var corpus = Peers.CtCorpusFiles();
        var dcmodify = Peers.Require("dcmodify", "dcmtk");
        var made = new List<string>();

        // (patient, study, date, modality): instances 1 and 2 share study 1.
        (string Patient, int Study, string Date, string Modality)[] objects =
            [("QRK-1", 1, "20200115", "CT"), ("QRK-1", 1, "20200115", "CT"), ("QRK-1", 2, "20990301", "MR"), ("QRK-2", 3, "20210601", "CT")];
        for (var i = 0; i < objects.Length; i++)
        {
            var (patient, study, date, modality) = objects[i];
            var path = work.Combine($"o{i}.dcm");
            File.Copy(corpus[i], path);
            var modify = await Peers.RunAsync(dcmodify, ["-nb", "-m", $"PatientID={patient}", "-m", $"PatientName=QRK^{patient[^1]}",
                "-m", $"StudyInstanceUID={Root}.1.{study}", "-m", $"SeriesInstanceUID={Root}.2.{study}", "-m", $"SOPInstanceUID={Root}.3.{i}",
                "-m", $"StudyDate={date}", "-m", $"Modality={modality}", path], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(modify.ExitCode == 0, modify.ToString());
            made.Add(path);
        }

        await using var moved = await StoreScp.StartAsync("MOVEDEST", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"MOVEDEST@127.0.0.1:{moved.Port}"], cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. made],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(store.ExitCode == 0 && !store.StandardError.Contains("E:", StringComparison.Ordinal), store.ToString());

        var findscu = Peers.Require("findscu", "dcmtk");
        async Task<List<string>> FindAsync(params string[] keys)
        {
            var result = await Peers.RunAsync(findscu, ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", .. keys,
                "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(result.ExitCode == 0, result.ToString());
            // FF00 and FF01 (a key not matched, as BodyPartExamined at STUDY level) alike: dcmtk prints both as pending.
            return [.. (result.StandardOutput + result.StandardError).Split("Find Response:").Where(s => s.TrimStart().Contains("(Pending", StringComparison.Ordinal))];
        }

        // An open-ended range reaches a study dated 2099 (it stopped a year from now).
        Assert.Equal(3, (await FindAsync("-k", "StudyDate=20200101-")).Count);

        // Multiple value matching (PS3.4 C.2.2.2.8): any of the values.
        Assert.Equal(3, (await FindAsync("-k", "ModalitiesInStudy=CT\\MR")).Count);
        Assert.Single(await FindAsync("-k", "ModalitiesInStudy=MR\\PT"));

        // The patient's numbers at STUDY level, not the study's own.
        var patientStudies = await FindAsync("-k", "PatientID=QRK-1", "-k", "NumberOfPatientRelatedStudies", "-k", "NumberOfPatientRelatedInstances",
            "-k", "NumberOfStudyRelatedInstances");
        Assert.Equal(2, patientStudies.Count);
        Assert.All(patientStudies, response =>
        {
            Assert.Contains("(0020,1200) IS [2 ]", response, StringComparison.Ordinal);
            Assert.Contains("(0020,1204) IS [3 ]", response, StringComparison.Ordinal);
        });
        Assert.Contains(patientStudies, r => r.Contains("(0020,1208) IS [2 ]", StringComparison.Ordinal));

        // A series key at STUDY level cannot be matched there: returned empty, not "no study".
        Assert.Equal(3, (await FindAsync("-k", "BodyPartExamined=CHEST")).Count);

        // Bug: US keys (Rows, Columns) were dropped from the matching keys, so Rows=3 matched every image.
        Assert.Empty(await FindAsync("-k", "QueryRetrieveLevel=IMAGE", "-k", $"StudyInstanceUID={Root}.1.1", "-k", $"SeriesInstanceUID={Root}.2.1",
            "-k", "SOPInstanceUID", "-k", "Rows=3"));
        Assert.Equal(2, (await FindAsync("-k", "QueryRetrieveLevel=IMAGE", "-k", $"StudyInstanceUID={Root}.1.1", "-k", $"SeriesInstanceUID={Root}.2.1",
            "-k", "SOPInstanceUID", "-k", "Rows=512")).Count);

        // Bug: a key over 64 KiB (here a list of 2,001 UIDs) was left unread, so C-FIND failed with 0110 and a retrieve
        // said its unique key was missing.
        var longList = string.Join('\\', Enumerable.Range(0, 2_000).Select(i => $"{Root}.9.{i}").Append($"{Root}.1.3"));
        Assert.True(longList.Length > 65_536);
        Assert.Single(await FindAsync("-k", $"StudyInstanceUID={longList}"));
        var gotLong = work.Combine("got-long");
        Directory.CreateDirectory(gotLong);
        var getLong = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={longList}", "-od", gotLong, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(getLong.ExitCode == 0 && Directory.GetFiles(gotLong).Length == 1, getLong.ToString());

        // A retrieve must name what it takes: "*" for the level's unique key, or no unique key, takes nothing.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=*",
            "-od", got, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(Refused(get), get.ToString());
        Assert.Empty(Directory.GetFiles(got));
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "MOVEDEST", "-S", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", "PatientName=*", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(Refused(move), move.ToString());

        // A UID list at the level, with a wildcard above it ignored, still retrieves what it names.
        move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "MOVEDEST", "-S", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", "StudyInstanceUID=*", "-k", $"SOPInstanceUID={Root}.3.0\\{Root}.3.3", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        await moved.WaitForFilesAsync(2, TimeSpan.FromSeconds(30));
        Assert.Equal(2, moved.Files);
    }

    /// <summary>A900, as dcmtk prints it.</summary>
    private static bool Refused(ProcessResult result) =>
        (result.StandardOutput + result.StandardError).Contains("DataSetDoesNotMatchSOPClass", StringComparison.OrdinalIgnoreCase);
}
