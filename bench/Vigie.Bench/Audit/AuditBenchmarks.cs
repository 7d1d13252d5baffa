using BenchmarkDotNet.Attributes;
using Vigie.Audit.Merkle;
using Vigie.Audit.Model;

namespace Vigie.Bench.Audit;

/// <summary>
/// Audit trail throughput on SQLite. Run with: dotnet run -c Release --project bench/Vigie.Bench -- --filter '*Audit*'
/// The quick console measurement is: dotnet run -c Release --project bench/Vigie.Bench -- audit-quick
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class AuditAppendBenchmarks
{
    private BenchLog _log = null!;
    private List<AuditRecord> _records = null!;

    [Params(1000)]
    public int BatchSize { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _log = await BenchLog.CreateAsync();
        _records = Enumerable.Range(0, BatchSize).Select(BenchLog.Record).ToList();
    }

    [GlobalCleanup]
    public async Task CleanupAsync() => await _log.DisposeAsync();

    /// <summary>One group commit of <see cref="BatchSize"/> entries (seal, hash, chain, nodes, state, fsync).</summary>
    [Benchmark(OperationsPerInvoke = 1000)]
    public Task AppendBatchInOneTransaction() => _log.AppendBatchAsync(_records);

    /// <summary>Standalone appender: 1000 concurrent producers, group-committed by the single writer.</summary>
    [Benchmark(OperationsPerInvoke = 1000)]
    public Task AppendThroughTheChannel() =>
        Task.WhenAll(_records.Select(r => _log.Log.AppendAsync(r, CancellationToken.None).AsTask()));
}

[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class AuditVerifyBenchmarks
{
    private BenchLog _log = null!;

    [Params(100_000)]
    public int Entries { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _log = await BenchLog.CreateAsync();
        var batch = Enumerable.Range(0, 2000).Select(BenchLog.Record).ToList();
        for (var i = 0; i < Entries; i += batch.Count)
        {
            await _log.AppendBatchAsync(batch);
        }

        await _log.Log.SignTreeHeadAsync(CancellationToken.None);
    }

    [GlobalCleanup]
    public async Task CleanupAsync() => await _log.DisposeAsync();

    [Benchmark]
    public async Task<bool> VerifyWholeLog() => (await _log.Log.VerifyAsync(null, CancellationToken.None)).IsValid;

    [Benchmark]
    public async Task<bool> InclusionProof() => (await _log.Log.GetInclusionProofAsync(Entries / 3, null, CancellationToken.None)).Verify();
}

[MemoryDiagnoser]
public class MerkleHashBenchmarks
{
    private readonly byte[] _leaf = new byte[300];

    [Benchmark(OperationsPerInvoke = 1024)]
    public byte[] Append1024Leaves()
    {
        var frontier = new MerkleFrontier();
        for (var i = 0; i < 1024; i++)
        {
            frontier.Append(MerkleHash.Leaf(_leaf), null);
        }

        return frontier.Root();
    }
}
