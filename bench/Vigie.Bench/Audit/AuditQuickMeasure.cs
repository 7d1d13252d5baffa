using System.Diagnostics;
using System.Globalization;

namespace Vigie.Bench.Audit;

/// <summary>
/// A quick console measurement (no BenchmarkDotNet): appends N entries in group commits, through the channel
/// appender, then verifies the whole log. dotnet run -c Release --project bench/Vigie.Bench -- audit-quick [entries] [channel entries]
/// </summary>
internal static class AuditQuickMeasure
{
    /// <summary>
    /// Both append paths on a throw-away log first, untimed: a server appends for months, so the measure is of code
    /// the JIT has finished optimising (tier 0, then instrumented, then tier 1), as BenchmarkDotNet's warm-up does.
    /// </summary>
    private static async Task WarmUpAsync()
    {
        await using var warm = await BenchLog.CreateAsync();
        var batch = Enumerable.Range(0, 2000).Select(BenchLog.Record).ToList();
        for (var i = 0; i < 40; i++)
        {
            await warm.AppendBatchAsync(batch);
        }

        await Task.WhenAll(Enumerable.Range(0, 64).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < 300; i++)
            {
                await warm.Log.AppendAsync(batch[(p * 300 + i) % batch.Count], CancellationToken.None);
            }
        })));
    }

    public static async Task RunAsync(string[] args)
    {
        if (args[0] == "audit-verify")
        {
            // Verify an existing log kept by an earlier run (VIGIE_BENCH_KEEP=dir), three times.
            await using var existing = await BenchLog.CreateAsync(args[1]);
            existing.Keep = true;
            for (var run = 0; run < 3; run++)
            {
                var started = Stopwatch.StartNew();
                var before = Process.GetCurrentProcess().TotalProcessorTime;
                var result = await existing.Log.VerifyAsync(null, CancellationToken.None);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"verify: {result.EntriesChecked:N0} entries, valid={result.IsValid}, in {started.Elapsed.TotalSeconds:F2} s (process CPU {(Process.GetCurrentProcess().TotalProcessorTime - before).TotalSeconds:F2} s)"));
            }

            return;
        }

        var entries = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1_000_000;
        await WarmUpAsync();
        await using var log = await BenchLog.CreateAsync(Environment.GetEnvironmentVariable("VIGIE_BENCH_KEEP"));
        log.Keep = Environment.GetEnvironmentVariable("VIGIE_BENCH_KEEP") is not null;
        const int batchSize = 2000;
        var batches = Enumerable.Range(0, 4).Select(b => Enumerable.Range(b * batchSize, batchSize).Select(BenchLog.Record).ToList()).ToList();

        BenchLog.AppendMs = BenchLog.CommitMs = 0;
        var watch = Stopwatch.StartNew();
        var appended = 0;
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        for (var b = 0; appended < entries; b++)
        {
            await log.AppendBatchAsync(batches[b % batches.Count]);
            appended += batchSize;
        }

        watch.Stop();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"transactional append, batches of {batchSize}: {appended:N0} entries in {watch.Elapsed.TotalSeconds:F2} s = {appended / watch.Elapsed.TotalSeconds:N0} entries/s (process CPU {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds:F2} s; appending {BenchLog.AppendMs / 1000:F2} s, committing {BenchLog.CommitMs / 1000:F2} s)"));

        // The channel appender with many concurrent producers (each awaits its own durable commit).
        var channelEntries = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 200_000;
        const int producers = 512;
        var records = Enumerable.Range(0, 4096).Select(BenchLog.Record).ToArray();
        watch.Restart();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, producers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < channelEntries)
            {
                await log.Log.AppendAsync(records[i % records.Length], CancellationToken.None);
            }
        })));
        watch.Stop();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"channel appender, {producers} producers: {channelEntries:N0} entries in {watch.Elapsed.TotalSeconds:F2} s = {channelEntries / watch.Elapsed.TotalSeconds:N0} entries/s"));

        var head = await log.Log.SignTreeHeadAsync(CancellationToken.None);
        watch.Restart();
        cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var report = await log.Log.VerifyAsync(null, CancellationToken.None);
        watch.Stop();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"verify: {report.EntriesChecked:N0} entries, {report.TreeHeadsChecked} head(s), valid={report.IsValid}, in {watch.Elapsed.TotalSeconds:F2} s (process CPU {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds:F2} s)"));
        watch.Restart();
        var proof = await log.Log.GetInclusionProofAsync(head!.TreeSize / 3, null, CancellationToken.None);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"inclusion proof at size {head.TreeSize:N0}: {proof.AuditPath.Count} hashes, valid={proof.Verify()}, in {watch.Elapsed.TotalMilliseconds:F1} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"database file: {new FileInfo(log.Database.Path).Length / 1048576.0:F0} MiB"));
    }
}
