using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Vigie.Bench.Infrastructure;
using Vigie.Dicom;
using Vigie.Dicom.IO;

namespace Vigie.Bench.Dicom;

/// <summary>
/// Part 10 parse throughput over the whole shared CT corpus (200 files, 105 MB): metadata only (pixel data left in the
/// file as a reference) and full (every value loaded), from the page cache and from memory.
/// </summary>
[Config(typeof(Config))]
[MemoryDiagnoser]
public class ParseBenchmarks
{
    private static readonly DicomReadOptions Metadata = new();
    private static readonly DicomReadOptions Full = new() { LoadLargeValues = true };
    private string[] _files = [];
    private byte[][] _contents = [];

    public static long CorpusBytes { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        _files = Corpus.Files();
        _contents = _files.Select(File.ReadAllBytes).ToArray();
        CorpusBytes = _contents.Sum(c => (long)c.Length);
    }

    [Benchmark(Description = "metadata, files")]
    public async Task<int> MetadataFromFiles()
    {
        var count = 0;
        foreach (var file in _files)
        {
            count += (await DicomReader.ReadFileAsync(file, Metadata, CancellationToken.None)).Dataset.Count;
        }

        return count;
    }

    [Benchmark(Description = "full, files")]
    public async Task<int> FullFromFiles()
    {
        var count = 0;
        foreach (var file in _files)
        {
            count += (await DicomReader.ReadFileAsync(file, Full, CancellationToken.None)).Dataset.Count;
        }

        return count;
    }

    [Benchmark(Description = "metadata, memory")]
    public async Task<int> MetadataFromMemory()
    {
        var count = 0;
        foreach (var content in _contents)
        {
            count += (await DicomReader.ReadFileAsync(new MemoryStream(content, writable: false), Metadata, CancellationToken.None)).Dataset.Count;
        }

        return count;
    }

    [Benchmark(Description = "full, memory")]
    public async Task<int> FullFromMemory()
    {
        var count = 0;
        foreach (var content in _contents)
        {
            count += (await DicomReader.ReadFileAsync(new MemoryStream(content, writable: false), Full, CancellationToken.None)).Dataset.Count;
        }

        return count;
    }

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            AddColumn(new ThroughputColumn(_ => CorpusBytes > 0 ? CorpusBytes : Corpus.Files().Sum(f => new FileInfo(f).Length)));
        }
    }
}
