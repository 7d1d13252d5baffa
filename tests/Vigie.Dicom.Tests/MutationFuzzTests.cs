using System.Diagnostics;
using System.Text.Json;
using Vigie.Dicom.IO;
using Vigie.Dicom.Json;
using Vigie.Dicom.Tests.Samples;

namespace Vigie.Dicom.Tests;

/// <summary>
/// Mutation fuzzing of the Part 10 reader (and of what consumes its output: JSON, dump, writer). Each run mutates the
/// seeds 100,000+ times: bit flips, interesting length values, truncation, chunk duplication and deletion. Every input
/// must end in a dataset or a DicomParseException, quickly, with bounded memory. The seed is printed on failure and can
/// be replayed with VIGIE_FUZZ_SEED.
/// </summary>
public sealed class MutationFuzzTests
{
    private const int Iterations = 100_000;

    // 16- and 32-bit little-endian length fields set to interesting values.
    private static readonly Mutator Mutations = new()
    {
        InterestingLengths = [0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
            0x80000000, 0xFFFFFFFE, 0xFFFFFFFF],
        LengthWidths = [2, 4],
        MaxDuplicate = 63,
        MaxDelete = 31,
        Special = MisplacedDelimiter,
    };

    private static readonly DicomReadOptions Options = new()
    {
        MaxInflatedBytes = 16 * 1024 * 1024,
        MaxElements = 100_000,
        LargeValueThreshold = 256,
    };

    [Fact(Timeout = 600_000)]
    public async Task Hundred_thousand_mutated_inputs_never_crash_hang_or_blow_memory()
    {
        var ct = TestContext.Current.CancellationToken;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("VIGIE_FUZZ_SEED"), out var s) ? s : Environment.TickCount;
        var random = new Random(seed);
        var seeds = DicomSamples.Seeds().Concat(PydicomSeeds()).ToList();
        var parsed = 0;
        var rejected = 0;
        var slowest = TimeSpan.Zero;
        var peakMemory = 0L;
        for (var i = 0; i < Iterations; i++)
        {
            var input = Mutations.Mutate(seeds[random.Next(seeds.Count)], random);
            var watch = Stopwatch.StartNew();
            try
            {
                var file = await DicomReader.ReadFileAsync(random.Next(8) == 0 ? new DicomReaderTests.NonSeekable(input) : new MemoryStream(input), Options, ct);
                Consume(file, input);
                parsed++;
            }
            catch (DicomParseException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Reason));
                rejected++;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Assert.Fail($"Input {i} (seed {seed}) threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}\nbase64: {Convert.ToBase64String(input)}");
            }

            if (watch.Elapsed > slowest)
            {
                slowest = watch.Elapsed;
            }

            if ((i & 1023) == 0)
            {
                peakMemory = Math.Max(peakMemory, GC.GetTotalMemory(false));
            }
        }

        TestContext.Current.SendDiagnosticMessage($"fuzz seed {seed}: {parsed} parsed, {rejected} rejected, slowest {slowest.TotalMilliseconds:F1} ms, peak managed heap {peakMemory / 1048576} MB");
        Assert.Equal(Iterations, parsed + rejected);
        Assert.True(slowest < TimeSpan.FromSeconds(5), $"an input took {slowest} (seed {seed})");
        Assert.True(peakMemory < 512L * 1024 * 1024, $"managed heap reached {peakMemory} bytes (seed {seed})");
    }

    /// <summary>Whatever the reader accepts, the formatters and the writer must handle too.</summary>
    private static void Consume(DicomFile file, byte[] source)
    {
        using (var json = new Utf8JsonWriter(Stream.Null))
        {
            DicomJsonWriter.Write(json, file, new DicomJsonOptions { BulkDataUri = (o, l) => $"bulk:{o}:{l}" });
        }

        DicomDumper.Write(TextWriter.Null, file);
        if (!file.TransferSyntax.IsLittleEndian && file.Dataset.Any(e => e is DicomFragmentSequence))
        {
            return;
        }

        try
        {
            DicomWriter.WriteFileAsync(Stream.Null, file, new DicomWriteOptions { BulkSource = new MemoryStream(source) }, CancellationToken.None)
                .AsTask().GetAwaiter().GetResult();
        }
        catch (NotSupportedException)
        {
            // Encapsulated pixel data under a syntax that cannot hold it: refused by design.
        }
    }

    /// <summary>Delimiter and item tags where they do not belong.</summary>
    private static void MisplacedDelimiter(List<byte> data, int at, Random random)
    {
        ReadOnlySpan<byte> tag = random.Next(3) switch
        {
            0 => [0xFE, 0xFF, 0x00, 0xE0],
            1 => [0xFE, 0xFF, 0x0D, 0xE0],
            _ => [0xFE, 0xFF, 0xDD, 0xE0],
        };
        for (var b = 0; b < 4 && at + b < data.Count; b++)
        {
            data[at + b] = tag[b];
        }
    }

    private static IEnumerable<byte[]> PydicomSeeds()
    {
        const string dir = "/usr/lib/python3/dist-packages/pydicom/data";
        if (!Directory.Exists(dir))
        {
            return [];
        }

        return Directory.EnumerateFiles(dir, "*.dcm", SearchOption.AllDirectories)
            .Where(f => new FileInfo(f).Length < 64 * 1024)
            .Order(StringComparer.Ordinal)
            .Take(40)
            .Select(File.ReadAllBytes)
            .ToList();
    }
}
