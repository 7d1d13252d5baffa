using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Microsoft.Extensions.DependencyInjection;
using Vigie.Inspection;

namespace Vigie.Bench.Inspection;

/// <summary>
/// Inspection throughput (MB/s of top-level input) on clean, realistic samples: every analyser of the module,
/// no known-bad engine. Run: dotnet run -c Release --project bench/Vigie.Bench -- --filter '*InspectionBenchmarks*'
/// </summary>
[Config(typeof(ThroughputConfig))]
[MemoryDiagnoser]
public class InspectionBenchmarks
{
    private Inspector _inspector = null!;
    private byte[] _bytes = [];

    [Params("pdf", "docx", "zip", "mail")]
    public string Sample { get; set; } = "pdf";

    [GlobalSetup]
    public void Setup()
    {
        var services = new ServiceCollection().AddVigieInspection().BuildServiceProvider();
        _inspector = services.GetRequiredService<Inspector>();
        _bytes = InspectionSamples.Get(Sample);
    }

    [Benchmark]
    public async Task<VerdictKind> Inspect()
    {
        using var source = ContentSource.FromMemory(_bytes);
        var verdict = await _inspector.InspectAsync(source, Sample);
        return verdict.Kind == VerdictKind.Clean ? verdict.Kind : throw new InvalidOperationException($"{Sample} is not clean: {string.Join("; ", verdict.Findings.Select(f => f.Rule))}");
    }
}

/// <summary>The engine's batch mode over the shared CT corpus (VIGIE_CT_CORPUS): identification and per-file overhead on DICOM.</summary>
[Config(typeof(ThroughputConfig))]
public class InspectionBatchBenchmarks
{
    private Inspector _inspector = null!;
    private List<string> _files = [];

    [GlobalSetup]
    public void Setup()
    {
        var services = new ServiceCollection().AddVigieInspection().BuildServiceProvider();
        _inspector = services.GetRequiredService<Inspector>();
        _files = CorpusFiles();
    }

    internal static List<string> CorpusFiles()
    {
        var dir = Environment.GetEnvironmentVariable("VIGIE_CT_CORPUS")
            ?? throw new InvalidOperationException("VIGIE_CT_CORPUS is not set (see the common brief for gen_ct_corpus.py)");
        return [.. Directory.EnumerateFiles(dir, "*.dcm", SearchOption.AllDirectories).Order(StringComparer.Ordinal)];
    }

    [Benchmark]
    public async Task<int> InspectCorpus()
    {
        var count = 0;
        await foreach (var result in _inspector.InspectFilesAsync(_files))
        {
            count += result.Verdict.Kind == VerdictKind.Error ? 0 : 1;
        }

        return count;
    }
}

internal sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig() => AddColumn(new ThroughputColumn());
}

/// <summary>MB/s of input: the sample's size (or the corpus size) over the mean time.</summary>
internal sealed class ThroughputColumn : IColumn
{
    public string Id => "Throughput";

    public string ColumnName => "MB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Megabytes (10^6) of top-level input inspected per second";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } statistics)
        {
            return "-";
        }

        long bytes;
        if (benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Sample")?.Value is string sample)
        {
            bytes = InspectionSamples.Get(sample).Length;
        }
        else
        {
            try
            {
                bytes = InspectionBatchBenchmarks.CorpusFiles().Sum(f => new FileInfo(f).Length);
            }
            catch (InvalidOperationException)
            {
                return "-";
            }
        }

        var seconds = statistics.Mean / 1e9;
        return (bytes / 1e6 / seconds).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
