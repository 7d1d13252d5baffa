using System.Security.Cryptography;
using Vigie.Archive.Scrub;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>The shared synthetic CT corpus through the ingest path: P-DATA-sized fragments, concurrent associations, durable commits.</summary>
public sealed class CtCorpusTests
{
    [Fact]
    public async Task Corpus_images_round_trip_through_spool_commit_and_scrub()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(50).ToList();
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.SegmentSize = 64 * 1024);
        var stored = new System.Collections.Concurrent.ConcurrentBag<(string File, Storage.ObjectId Id)>();
        await Parallel.ForEachAsync(files, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (file, token) =>
        {
            var bytes = await File.ReadAllBytesAsync(file, token);
            var index = files.IndexOf(file);
            // Filed under its own SOP Instance UID, as ingest does: scrub compares it with the object's (since 2026-12-07).
            var meta = await Vigie.Dicom.IO.DicomReader.ReadFileAsync(file, new Vigie.Dicom.DicomReadOptions { StopAtTag = new Vigie.Dicom.DicomTag(0x0003, 0x0000) }, token);
            var entry = Samples.Entry(index / 20, 1, 1, index);
            entry = entry with { Instance = entry.Instance with { SopInstanceUid = meta.Meta.GetString(Vigie.Dicom.DicomTags.MediaStorageSOPInstanceUID)! } };
            var (committed, _) = await archive.IngestAsync(bytes, entry);
            stored.Add((file, committed.Id));
        });

        foreach (var (file, id) in stored)
        {
            var original = await File.ReadAllBytesAsync(file, ct);
            Assert.Equal(SHA256.HashData(original), SHA256.HashData(await archive.ReadAllAsync(id)));
        }

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.True(report.IsClean, report.Summary);
        Assert.Equal(files.Count, report.Healthy);
        Assert.Equal(files.Sum(f => new FileInfo(f).Length), report.BytesVerified);
    }
}
