using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;

namespace Vigie.Bench.Archive;

/// <summary>
/// Reading back: a whole object as a verified stream, a 4 KiB range in the middle (decrypts one or two segments), and a
/// scrub of <see cref="ScrubObjects"/> CT-sized objects (every segment decrypted and the content hash checked).
/// </summary>
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 8)]
[MemoryDiagnoser]
[MinColumn]
[MaxColumn]
public class ArchiveReadBenchmarks
{
    private const int ScrubObjects = 200;
    private BenchArchive _archive = null!;
    private ObjectId _id;
    private readonly byte[] _buffer = new byte[128 * 1024];

    [Params(525_592, 16 * 1024 * 1024)]
    public int ObjectSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _archive = new BenchArchive(durable: false);
        _id = _archive.PutAsync(BenchArchive.Content(ObjectSize, 1)).GetAwaiter().GetResult().Id;
    }

    [GlobalCleanup]
    public void Cleanup() => _archive.Dispose();

    [Benchmark]
    public async Task<long> ReadWholeObject()
    {
        await using var reader = await _archive.Store.OpenReadAsync(_id, CancellationToken.None);
        await using var stream = reader.OpenStream();
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(_buffer)) > 0)
        {
            total += read;
        }

        return total;
    }

    [Benchmark]
    public async Task<int> ReadRange4KiB()
    {
        await using var reader = await _archive.Store.OpenReadAsync(_id, CancellationToken.None);
        return await reader.ReadAsync(ObjectSize / 2, _buffer.AsMemory(0, 4096), CancellationToken.None);
    }
}

/// <summary>Scrub of 200 indexed CT-sized objects (105 MB): per-operation time is for the whole store.</summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 5)]
[MinColumn]
[MaxColumn]
public class ArchiveScrubBenchmarks
{
    private const int Objects = 200;
    private const int Size = 525_592;
    private BenchArchive _archive = null!;

    [GlobalSetup]
    public void Setup()
    {
        _archive = new BenchArchive(durable: false);
        for (var i = 0; i < Objects; i++)
        {
            var committed = _archive.PutAsync(BenchArchive.Content(Size, i + 1)).GetAwaiter().GetResult();
            using var connection = _archive.Database.OpenConnectionAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            using var transaction = _archive.Database.BeginWriteAsync(connection, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            _archive.Index.StoreInstanceAsync(connection, transaction, new Vigie.Archive.Index.InstanceIndexEntry(
                new("BENCH", null, Vigie.Archive.Index.AttributeSet.Empty),
                new("1.2.3.4", Vigie.Archive.Index.AttributeSet.Empty),
                new("1.2.3.4.5", Vigie.Archive.Index.AttributeSet.Empty),
                new($"1.2.3.4.5.{i}", "1.2.840.10008.5.1.4.1.1.2", Vigie.Archive.Index.AttributeSet.Empty),
                committed.Id, committed.Length), CancellationToken.None).AsTask().GetAwaiter().GetResult();
            transaction.Commit();
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _archive.Dispose();

    [Benchmark]
    public async Task<long> ScrubStore()
    {
        var report = await _archive.Scrub.RunAsync(new ScrubRequest(), CancellationToken.None);
        if (!report.IsClean || report.Healthy != Objects)
        {
            throw new InvalidOperationException(report.Summary);
        }

        return report.BytesVerified;
    }
}
