using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Vigie.Archive.Index;

namespace Vigie.Bench.Archive;

/// <summary>
/// The ingest hot path: stream an object into an encrypted spool (16 KiB fragments), then commit it. <see cref="Objects"/>
/// objects per invocation, shared among "Associations" concurrent writers, so group commit can share directory syncs.
/// Per-operation time is per object: objects/s = 1 / mean, MB/s = ObjectSize / mean.
/// </summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 9)]
[MemoryDiagnoser]
[MinColumn]
[MaxColumn]
public class ArchiveWriteBenchmarks
{
    private const int Objects = 64;
    private BenchArchive _archive = null!;
    private byte[][] _contents = [];
    private long _stamp;

    /// <summary>525,592 bytes: one image of the shared CT corpus.</summary>
    [Params(525_592)]
    public int ObjectSize { get; set; }

    [Params(false, true)]
    public bool Durable { get; set; }

    [Params(1, 8)]
    public int Associations { get; set; }

    [GlobalSetup]
    public void Setup() => _archive = new BenchArchive(Durable);

    [IterationSetup]
    public void Prepare() =>
        _contents = Enumerable.Range(0, Objects).Select(_ => BenchArchive.Content(ObjectSize, Interlocked.Increment(ref _stamp))).ToArray();

    [GlobalCleanup]
    public void Cleanup() => _archive.Dispose();

    /// <summary>Encrypt and hash only (the spool is completed, then discarded): the CPU cost of the format.</summary>
    [Benchmark(OperationsPerInvoke = Objects)]
    public Task SpoolOnly() => RunAsync(async content =>
    {
        await using var spool = await _archive.SpoolAsync(content);
    });

    [Benchmark(OperationsPerInvoke = Objects)]
    public Task SpoolAndCommit() => RunAsync(async content => await _archive.PutAsync(content));

    /// <summary>What the gateway does per C-STORE: spool, commit the blob, then one index transaction (SQLite, synchronous=FULL).</summary>
    [Benchmark(OperationsPerInvoke = Objects)]
    public Task SpoolCommitAndIndex() => RunAsync(async content =>
    {
        var committed = await _archive.PutAsync(content);
        var n = BitConverter.ToInt64(content);
        var entry = new InstanceIndexEntry(
            new PatientEntry($"BENCH{n % 50}", null, AttributeSet.From((DicomTags.PatientName, $"BENCH^PATIENT{n % 50}"))),
            new StudyEntry($"1.2.826.0.1.3680043.10.543.9.{n % 50}", AttributeSet.From((DicomTags.StudyDate, "20240115"))),
            new SeriesEntry($"1.2.826.0.1.3680043.10.543.9.{n % 50}.1", AttributeSet.From((DicomTags.Modality, "CT"))),
            new InstanceEntry($"1.2.826.0.1.3680043.10.543.9.{n % 50}.1.{n}", "1.2.840.10008.5.1.4.1.1.2", AttributeSet.Empty),
            committed.Id, committed.Length);
        await using var connection = await _archive.Database.OpenConnectionAsync(CancellationToken.None);
        await using var transaction = await _archive.Database.BeginWriteAsync(connection, CancellationToken.None);
        await _archive.Index.StoreInstanceAsync(connection, transaction, entry, CancellationToken.None);
        await transaction.CommitAsync(CancellationToken.None);
    });

    /// <summary>Reference: the same bytes written in plain, fdatasync'ed, renamed and the folder synced (when durable). No encryption, no hash.</summary>
    [Benchmark(OperationsPerInvoke = Objects)]
    public Task PlainFileBaseline() => RunAsync(async content =>
    {
        var directory = Path.Combine(_archive.Root, "plain");
        Directory.CreateDirectory(directory);
        var name = Path.Combine(directory, BitConverter.ToInt64(content).ToString(System.Globalization.CultureInfo.InvariantCulture));
        var temporary = name + ".tmp";
        await using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0))
        {
            await stream.WriteAsync(content);
            if (Durable)
            {
                stream.Flush(flushToDisk: true);
            }
        }

        File.Move(temporary, name);
        if (Durable)
        {
            Vigie.Archive.IO.FileSync.SyncDirectory(directory);
        }
    });

    private Task RunAsync(Func<byte[], Task> store) =>
        Task.WhenAll(Enumerable.Range(0, Associations).Select(a => Task.Run(async () =>
        {
            for (var i = a; i < Objects; i += Associations)
            {
                await store(_contents[i]);
            }
        })));
}
