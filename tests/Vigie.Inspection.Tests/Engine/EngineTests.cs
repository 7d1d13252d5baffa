using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Vigie.Inspection.Tests.Samples;
using Vigie.Testing;

namespace Vigie.Inspection.Tests.Engine;

public sealed class EngineTests
{
    private sealed class ThrowingAnalyser : IContentAnalyser
    {
        public string Name => "boom-analyser";

        public bool CanAnalyse(ContentType type) => true;

        public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("deliberate failure");
    }

    /// <summary>Fails the way a spill file does on a full temporary folder (ENOSPC).</summary>
    private sealed class DiskFullAnalyser : IContentAnalyser
    {
        public string Name => "spilling-analyser";

        public bool CanAnalyse(ContentType type) => true;

        public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken) =>
            throw new IOException("No space left on device", 28);
    }

    private sealed class StallingAnalyser : IContentAnalyser
    {
        public string Name => "stall";

        public bool CanAnalyse(ContentType type) => true;

        public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken) =>
            await Task.Delay(Timeout.Infinite, cancellationToken);
    }

    private sealed class EchoAnalyser : IContentAnalyser
    {
        public string Name => "echo";

        public bool CanAnalyse(ContentType type) => type == ContentType.Text;

        public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken) =>
            context.InspectChildAsync("copy-of-myself", content, cancellationToken);
    }

    internal sealed class RecordingEngine : IKnownBadEngine
    {
        public List<(string Path, ContentType Type, long Length, bool InMemory)> Scans { get; } = [];

        public bool Available { get; set; } = true;

        public bool Throw { get; set; }

        public string Name => "recording-engine";

        public bool IsAvailable(out string? reason)
        {
            reason = Available ? null : "libtest.so.1 is missing";
            return Available;
        }

        public ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
        {
            if (Throw)
            {
                throw new IOException("engine crashed");
            }

            lock (Scans)
            {
                Scans.Add((context.InnerPath, context.ContentType, content.Length, content.Memory is not null));
            }

            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task An_analyser_exception_becomes_an_error_finding_naming_it_and_the_others_still_run()
    {
        var inspector = TestInspection.Create(extra: s => s.AddSingleton<IContentAnalyser, ThrowingAnalyser>());
        var zip = new ZipBuilder().Add("tool.exe", ExecutableSamples.Pe()).Build();
        var verdict = await inspector.InspectAsync(zip);
        var error = verdict.Has("inspection.analyser-error");
        Assert.Contains("boom-analyser", error.Message);
        verdict.Has("executable.pe", "tool.exe");
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);

        var clean = await inspector.InspectAsync("just text"u8.ToArray());
        Assert.Equal(VerdictKind.Error, clean.Kind);
    }

    /// <summary>
    /// Regression: a full temporary folder made an analyser fail, and the Error verdict quarantined a harmless object
    /// (0124, a security alert). The verdict now says it was a lack of resources, which the gateway answers A700; a
    /// threat found meanwhile still wins.
    /// </summary>
    [Fact]
    public async Task Regression_a_full_temporary_folder_gave_an_error_verdict_like_any_other()
    {
        var inspector = TestInspection.Create(extra: s => s.AddSingleton<IContentAnalyser, DiskFullAnalyser>());
        var clean = await inspector.InspectAsync("just text"u8.ToArray());
        Assert.Equal(VerdictKind.Error, clean.Kind);
        Assert.Contains("No space left on device", clean.ResourceShortage, StringComparison.Ordinal);

        var threat = await inspector.InspectAsync(new ZipBuilder().Add("tool.exe", ExecutableSamples.Pe()).Build());
        Assert.Equal(VerdictKind.Malicious, threat.Kind);
        Assert.Null(threat.ResourceShortage);

        var other = await TestInspection.Create(extra: s => s.AddSingleton<IContentAnalyser, ThrowingAnalyser>()).InspectAsync("just text"u8.ToArray());
        Assert.Null(other.ResourceShortage);
    }

    [Fact]
    public async Task Known_bad_engines_run_on_every_object_and_inner_object()
    {
        var engine = new RecordingEngine();
        var inspector = TestInspection.Create(extra: s => s.AddSingleton<IKnownBadEngine>(engine));
        var inner = new ZipBuilder().Add("note.txt", "hello").Build();
        var zip = new ZipBuilder().Add("a.txt", "one").Add("inner.zip", inner).Build();
        var verdict = await inspector.InspectAsync(zip);
        verdict.IsClean();
        Assert.Equal(["", "a.txt", "inner.zip", "inner.zip/note.txt"], engine.Scans.Select(s => s.Path).Order(StringComparer.Ordinal));
        Assert.Equal(4, verdict.Objects);
    }

    [Fact]
    public async Task An_unavailable_or_failing_engine_makes_the_verdict_an_error_never_clean()
    {
        var unavailable = new RecordingEngine { Available = false };
        var verdict = await TestInspection.Create(extra: s => s.AddSingleton<IKnownBadEngine>(unavailable)).InspectAsync("text"u8.ToArray());
        Assert.Equal(VerdictKind.Error, verdict.Kind);
        Assert.Contains("libtest.so.1", verdict.Has("inspection.engine-unavailable").Message);

        var failing = new RecordingEngine { Throw = true };
        verdict = await TestInspection.Create(extra: s => s.AddSingleton<IKnownBadEngine>(failing)).InspectAsync("text"u8.ToArray());
        Assert.Equal(VerdictKind.Error, verdict.Kind);
        Assert.Contains("recording-engine", verdict.Has("inspection.analyser-error").Message);
    }

    [Fact]
    public async Task Depth_limit_is_a_finding()
    {
        var bytes = new ZipBuilder().Add("deep.txt", "bottom").Build();
        for (var i = 0; i < 12; i++)
        {
            bytes = new ZipBuilder().Add($"level{i}.zip", bytes).Build();
        }

        var verdict = await TestInspection.Create(l => l.MaxDepth = 5).InspectAsync(bytes);
        verdict.Has("inspection.depth-limit");
        verdict.IsSuspicious();
    }

    [Fact]
    public async Task Object_size_and_budget_limits_are_findings()
    {
        var many = new ZipBuilder();
        for (var i = 0; i < 20; i++)
        {
            many.Add($"f{i}.txt", $"file {i}");
        }

        (await TestInspection.Create(l => l.MaxObjects = 5).InspectAsync(many.Build())).Has("inspection.object-limit");

        var big = new ZipBuilder().Add("big.txt", new string('x', 5000)).Build();
        (await TestInspection.Create(l => l.MaxInnerSize = 1000).InspectAsync(big)).Has("inspection.inner-size-limit");

        var several = new ZipBuilder();
        for (var i = 0; i < 10; i++)
        {
            several.Add($"f{i}.txt", new string((char)('a' + i), 2000));
        }

        (await TestInspection.Create(l => l.MaxTotalExtracted = 10_000).InspectAsync(several.Build())).Has("inspection.extraction-limit");
    }

    [Fact]
    public async Task The_wall_clock_budget_ends_in_a_finding_and_caller_cancellation_in_an_exception()
    {
        var inspector = TestInspection.Create(l => l.Timeout = TimeSpan.FromMilliseconds(200), extra: s => s.AddSingleton<IContentAnalyser, StallingAnalyser>());
        var verdict = await inspector.InspectAsync("text"u8.ToArray());
        verdict.Has("inspection.timeout");

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(100);
        var patient = TestInspection.Create(l => l.Timeout = TimeSpan.FromMinutes(5), extra: s => s.AddSingleton<IContentAnalyser, StallingAnalyser>());
        using var source = ContentSource.FromMemory("text"u8.ToArray());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await patient.InspectAsync(source, null, cts.Token));
    }

    [Fact]
    public async Task Large_inner_objects_spill_to_a_temporary_file_that_is_deleted_after()
    {
        using var spill = new TempDirectory();
        var engine = new RecordingEngine();
        var inspector = TestInspection.Create(l =>
        {
            l.InMemoryThreshold = 4096;
            l.SpillDirectory = spill.Path;
        }, extra: s => s.AddSingleton<IKnownBadEngine>(engine));
        var payload = new byte[200_000];
        new Random(7).NextBytes(payload);
        var zip = new ZipBuilder().Add("small.bin", payload[..100]).Add("large.bin", payload).Build();
        var verdict = await inspector.InspectAsync(zip);
        verdict.IsClean();
        Assert.Contains(engine.Scans, s => s.Path == "large.bin" && !s.InMemory && s.Length == payload.Length);
        Assert.Contains(engine.Scans, s => s.Path == "small.bin" && s.InMemory);
        Assert.Empty(Directory.EnumerateFileSystemEntries(spill.Path));
    }

    private sealed class SpillProbeEngine(string directory) : IKnownBadEngine
    {
        public List<(string File, int GrepExit)> Probes { get; } = [];

        public string Name => "spill-probe";

        public bool IsAvailable(out string? reason)
        {
            reason = null;
            return true;
        }

        public async ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
        {
            if (content.Memory is not null)
            {
                return;
            }

            // Read the spill file as another process would (grep exits 1 when the marker is absent).
            foreach (var file in Directory.EnumerateFiles(directory))
            {
                var result = await Peers.RunAsync("/bin/grep", ["-c", "-a", "PATIENT-MARKER", file], TimeSpan.FromSeconds(30), cancellationToken: cancellationToken);
                Probes.Add((file, result.ExitCode));
            }

            // And the content source still reads the clear bytes.
            var head = new byte[14];
            content.ReadAt(0, head);
            Assert.Equal("PATIENT-MARKER"u8.ToArray(), head);
        }
    }

    [Fact]
    public async Task Spill_files_are_encrypted_at_rest()
    {
        using var spill = new TempDirectory();
        var probe = new SpillProbeEngine(spill.Path);
        var inspector = TestInspection.Create(l =>
        {
            l.InMemoryThreshold = 4096;
            l.SpillDirectory = spill.Path;
        }, extra: s => s.AddSingleton<IKnownBadEngine>(probe));
        var payload = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("PATIENT-MARKER ", 20_000)));
        var verdict = await inspector.InspectAsync(new ZipBuilder().Add("record.txt", payload).Build());
        verdict.IsClean();
        Assert.NotEmpty(probe.Probes);
        Assert.All(probe.Probes, p => Assert.Equal(1, p.GrepExit));
        Assert.Empty(Directory.EnumerateFileSystemEntries(spill.Path));
    }

    [Fact]
    public async Task Content_identical_to_a_container_is_a_recursive_quine()
    {
        var inspector = TestInspection.Create(extra: s => s.AddSingleton<IContentAnalyser, EchoAnalyser>());
        var verdict = await inspector.InspectAsync("I contain myself"u8.ToArray());
        verdict.Has("inspection.recursive-content");
        verdict.IsMalicious();
    }

    [Fact]
    public async Task A_zip_appended_to_an_image_is_found_and_inspected()
    {
        var jpeg = new byte[2000];
        jpeg[0] = 0xFF;
        jpeg[1] = 0xD8;
        jpeg[2] = 0xFF;
        var zip = new ZipBuilder().Add("run.exe", ExecutableSamples.Pe()).Build();
        var polyglot = jpeg.Concat(zip).ToArray();
        var verdict = await TestInspection.InspectAsync(polyglot, "photo.jpg");
        Assert.Equal("Jpeg", verdict.ContentType);
        verdict.Has("inspection.appended-archive");
        verdict.Has("executable.pe", "[appended zip]/run.exe");
    }

    /// <summary>Regression: behind bytes of no known type (a self-extractor's bare MZ stub, zeros, random data) the ZIP was never read.</summary>
    [Theory]
    [InlineData("mz")]
    [InlineData("zeros")]
    [InlineData("random")]
    public async Task Regression_a_zip_behind_a_prefix_of_no_known_type_was_not_inspected(string prefix)
    {
        var head = new byte[4096];
        switch (prefix)
        {
            case "mz":
                head[0] = (byte)'M';
                head[1] = (byte)'Z';
                break;
            case "random":
                new Random(7).NextBytes(head);
                head[0] = 0x01;
                break;
            default:
                break;
        }

        var zip = new ZipBuilder().Add("run.exe", ExecutableSamples.Pe()).Build();
        var verdict = await TestInspection.InspectAsync([.. head, .. zip], "setup.bin");
        verdict.Has("inspection.appended-archive");
        verdict.Has("executable.pe", "[appended zip]/run.exe");
    }

    [Fact]
    public async Task Findings_are_capped()
    {
        var many = new ZipBuilder();
        for (var i = 0; i < 50; i++)
        {
            many.Add($"../escape{i}.txt", "x");
        }

        var verdict = await TestInspection.Create(l => l.MaxFindings = 10).InspectAsync(many.Build());
        Assert.Equal(11, verdict.Findings.Count);
        verdict.Has("inspection.finding-limit");
    }

    [Fact]
    public async Task Regression_a_flood_of_mild_findings_pushed_the_grave_one_past_the_cap_and_lowered_the_verdict()
    {
        var padded = new ZipBuilder();
        for (var i = 0; i < 50; i++)
        {
            var index = i;
            padded.Add($"page{i}.txt", "x", tweak: e => e.LocalName = $"other{index}.txt");
        }

        padded.Add("zz/tool.exe", ExecutableSamples.Pe());
        var verdict = await TestInspection.Create(l => l.MaxFindings = 10).InspectAsync(padded.Build());
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);
        verdict.Has("executable.pe");
        verdict.Has("inspection.finding-limit");
        Assert.Equal(11, verdict.Findings.Count);
    }

    [Fact]
    public async Task Batch_mode_inspects_many_files_across_cores_and_reports_unreadable_ones()
    {
        using var dir = new TempDirectory();
        var paths = new List<string>();
        for (var i = 0; i < 24; i++)
        {
            var path = dir.Combine($"f{i}.bin");
            await File.WriteAllBytesAsync(path, i % 3 == 0 ? ExecutableSamples.Pe() : new ZipBuilder().Add("a.txt", $"text {i}").Build(), TestContext.Current.CancellationToken);
            paths.Add(path);
        }

        paths.Add(dir.Combine("missing.bin"));
        var inspector = TestInspection.Create(l => l.BatchParallelism = 2);
        var results = new List<FileVerdict>();
        await foreach (var result in inspector.InspectFilesAsync(paths, TestContext.Current.CancellationToken))
        {
            results.Add(result);
        }

        Assert.Equal(paths.Count, results.Count);
        Assert.Equal(8, results.Count(r => r.Verdict.Kind == VerdictKind.Malicious));
        Assert.Equal(16, results.Count(r => r.Verdict.Kind == VerdictKind.Clean));
        Assert.Equal(VerdictKind.Error, results.Single(r => r.Path.EndsWith("missing.bin", StringComparison.Ordinal)).Verdict.Kind);
    }

    [Fact]
    public async Task Executables_are_findings_at_any_depth()
    {
        foreach (var (bytes, rule) in new[] { (ExecutableSamples.Pe(), "executable.pe"), (ExecutableSamples.Elf(), "executable.elf"), (ExecutableSamples.MachO(), "executable.macho"), (ExecutableSamples.Script(), "executable.script") })
        {
            (await TestInspection.InspectAsync(bytes)).Has(rule, "");
            var nested = new ZipBuilder().Add("inner.zip", new ZipBuilder().Add("dir/file.bin", bytes).Build()).Build();
            (await TestInspection.InspectAsync(nested)).Has(rule, "inner.zip/dir/file.bin");
        }

        (await TestInspection.InspectAsync(ExecutableSamples.BrokenMz())).HasNo("executable.pe");
    }
}
