using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Spectre.Console;
using Vigie.Inspection;

namespace Vigie.Cli.Commands;

/// <summary>
/// `vigie scan PATH... [--recursive] [--json] [--disarm DIR] [--rules DIR]`: inspects files across cores with every
/// analyser and known-bad engine, optionally writing disarmed copies. Exit 0 all clean, 1 a threat, 2 an error.
/// </summary>
internal static class ScanCommand
{
    private const int MaxBufferedFindingsShown = 20;

    public static Command Create()
    {
        var paths = new Argument<string[]>("path") { Description = "Files or folders to scan.", Arity = ArgumentArity.OneOrMore };
        var recursive = new Option<bool>("--recursive", "-r") { Description = "Descend into sub-folders (symbolic links to folders are not followed)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per file (JSON Lines): path, sha256, type, verdict, findings." };
        var disarm = new Option<DirectoryInfo?>("--disarm") { Description = "Write disarmed copies (DICOM, PDF, OOXML) into this folder, each change listed in the report." };
        var stripPrivate = new Option<bool>("--strip-private") { Description = "With --disarm, also remove DICOM private elements." };
        var rules = new Option<DirectoryInfo?>("--rules") { Description = "A folder of known-bad signatures: ClamAV .hdb/.hsb/.ndb/.ldb, YARA .yar/.yara, hash lists (.sha256, .md5)." };
        var all = new Option<bool>("--all") { Description = "List clean files and info findings too (text output)." };
        var parallelism = new Option<int?>("--parallelism", "-j") { Description = "Files scanned at once (default: one per core)." };
        var command = new Command("scan", "Inspect files for threats: DICOM polyglots and hidden content, PDF active content, Office macros, archive bombs, mail attachments, known-bad signatures. "
                                          + "Exit 0 all clean, 1 something suspicious or malicious, 2 an error (a threat found outranks an error).")
        {
            paths, recursive, json, disarm, stripPrivate, rules, all, parallelism,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(new ScanSettings(
            parse.GetRequiredValue(paths), parse.GetValue(recursive), parse.GetValue(json), parse.GetValue(disarm)?.FullName,
            parse.GetValue(stripPrivate), parse.GetValue(rules)?.FullName, parse.GetValue(all), parse.GetValue(parallelism)), cancellationToken));
        return command;
    }

    private sealed record ScanSettings(string[] Paths, bool Recursive, bool Json, string? DisarmFolder, bool StripPrivate, string? RulesFolder, bool All, int? Parallelism);

    /// <summary>A file to scan, or (with <paramref name="Problem"/>) a path that cannot be, reported as an error.</summary>
    private sealed record ScanTarget(string Path, string DisarmRelative, string? Problem = null);

    private sealed record DisarmOutcome(string? Output, IReadOnlyList<DisarmAction> Actions, string? Residual, string? NotWritten);

    private sealed record ScanResult(ScanTarget Target, long Size, string? Sha256, Verdict Verdict, DisarmOutcome? Disarm);

    private static async Task<int> RunAsync(ScanSettings settings, CancellationToken cancellationToken)
    {
        if (settings.RulesFolder is not null && !Directory.Exists(settings.RulesFolder))
        {
            await Console.Error.WriteLineAsync($"vigie scan: the rules folder {settings.RulesFolder} does not exist");
            return ExitCodes.Error;
        }

        if (settings.Parallelism is < 1)
        {
            await Console.Error.WriteLineAsync("vigie scan: --parallelism must be at least 1");
            return ExitCodes.Error;
        }

        var overrides = new Dictionary<string, string?>();
        if (settings.RulesFolder is not null)
        {
            overrides["Inspection:Signatures:RulesDirectory"] = settings.RulesFolder;
        }

        var configuration = VigieConfiguration.Build(new HostSettings(VigieConfiguration.DefaultDataFolder, null, overrides));
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddInspectionConfiguration(configuration);
        services.AddVigieInspection();
        await using var provider = services.BuildServiceProvider();
        Inspector inspector;
        try
        {
            _ = provider.GetRequiredService<IOptions<InspectionLimits>>().Value;
            inspector = provider.GetRequiredService<Inspector>();
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or FormatException or OptionsValidationException)
        {
            // A rules folder that cannot be loaded is an error of the run, not of each file.
            await Console.Error.WriteLineAsync($"vigie scan: cannot load the inspection engines: {e.Message}");
            return ExitCodes.Error;
        }

        if (settings.DisarmFolder is not null && File.Exists(settings.DisarmFolder))
        {
            await Console.Error.WriteLineAsync($"vigie scan: --disarm {settings.DisarmFolder} is a file, not a folder");
            return ExitCodes.Error;
        }

        var disarmer = provider.GetRequiredService<DisarmService>();
        var errors = 0;
        var targets = new List<ScanTarget>();
        var skippedFolders = 0;
        foreach (var path in settings.Paths)
        {
            if (!Collect(path, settings.Recursive, targets, ref skippedFolders))
            {
                // An unknown option lands here as a path (the argument takes any number of them).
                var problem = path.StartsWith('-') ? "unknown option (for a file of that name, write ./" + path + ")" : "no such file or folder";
                await Console.Error.WriteLineAsync($"vigie scan: {Inspector.Printable(path)}: {problem}");
                targets.Add(new ScanTarget(Path.GetFullPath(path), path, problem));
            }
        }

        if (skippedFolders > 0)
        {
            // Not an error (the folders were not asked for), but "all clean" must not read as the whole tree.
            await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"vigie scan: {skippedFolders} sub-folder(s) not scanned: add --recursive (-r) to scan them"));
        }

        var degree = settings.Parallelism ?? (provider.GetRequiredService<IOptions<InspectionLimits>>().Value.BatchParallelism is > 0 and var p ? p : Environment.ProcessorCount);
        var totalBytes = targets.Sum(t => SafeLength(t.Path));
        var summary = new ScanSummary();
        var started = Stopwatch.GetTimestamp();
        var channel = Channel.CreateBounded<ScanResult>(new BoundedChannelOptions(degree * 4) { SingleReader = true });
        var producer = Task.Run(async () =>
        {
            try
            {
                await Parallel.ForEachAsync(targets, new ParallelOptions { MaxDegreeOfParallelism = degree, CancellationToken = cancellationToken }, async (target, token) =>
                {
                    var result = await ScanOneAsync(inspector, disarmer, target, settings, token).ConfigureAwait(false);
                    await channel.Writer.WriteAsync(result, token).ConfigureAwait(false);
                }).ConfigureAwait(false);
                channel.Writer.Complete();
            }
            catch (Exception e)
            {
                channel.Writer.Complete(e);
            }
        }, CancellationToken.None);

        var report = settings.Json ? (IScanReport)new JsonLinesReport() : new TextReport(settings.All);
        var showProgress = !Console.IsErrorRedirected && targets.Count > 1;
        if (showProgress)
        {
            // Spectre is created only for a terminal: its set-up costs a scripted run tens of milliseconds.
            var stderr = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            await stderr.Progress().AutoClear(true).HideCompleted(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask($"scanning {targets.Count} files", maxValue: Math.Max(1, totalBytes));
                    await foreach (var result in channel.Reader.ReadAllAsync(cancellationToken))
                    {
                        summary.Add(result);
                        report.Add(result);
                        task.Increment(result.Size);
                    }
                });
        }
        else
        {
            await foreach (var result in channel.Reader.ReadAllAsync(cancellationToken))
            {
                summary.Add(result);
                report.Add(result);
            }
        }

        await producer;
        var elapsed = Stopwatch.GetElapsedTime(started);
        report.Finish(summary, elapsed);
        errors += summary.Errors;
        return summary.Threats > 0 ? ExitCodes.Findings : errors > 0 ? ExitCodes.Error : ExitCodes.Ok;
    }

    private static long SafeLength(string path)
    {
        try
        {
            return new FileInfo(path).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>
    /// Expands one argument. Disarmed copies keep the path below the folder that was named. A folder that cannot be
    /// listed, and anything that is not a regular file (a FIFO would block the scan, a device reads as empty), become
    /// error entries: skipping them silently would report a tree clean that was not read.
    /// </summary>
    private static bool Collect(string path, bool recursive, List<ScanTarget> targets, ref int skippedFolders)
    {
        if (File.Exists(path))
        {
            targets.Add(FileTarget(Path.GetFullPath(path), Path.GetFileName(path)));
            return true;
        }

        if (!Directory.Exists(path))
        {
            return false;
        }

        var root = Path.GetFullPath(path);
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(root));
        var found = new List<ScanTarget>();
        var folders = new Stack<string>([root]);
        while (folders.TryPop(out var folder))
        {
            List<FileSystemInfo> entries;
            try
            {
                entries = [.. new DirectoryInfo(folder).EnumerateFileSystemInfos("*", new EnumerationOptions { IgnoreInaccessible = false, ReturnSpecialDirectories = false })];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                found.Add(new ScanTarget(folder, Path.Combine(name, Path.GetRelativePath(root, folder)), $"cannot list the folder: {e.Message}"));
                continue;
            }

            foreach (var entry in entries)
            {
                if (entry is DirectoryInfo directory)
                {
                    // Symbolic links to folders are not followed (loops, and trees outside the one named).
                    if (recursive && directory.LinkTarget is null)
                    {
                        folders.Push(directory.FullName);
                    }
                    else if (!recursive)
                    {
                        skippedFolders++;
                    }
                }
                else
                {
                    found.Add(FileTarget(entry.FullName, Path.Combine(name, Path.GetRelativePath(root, entry.FullName))));
                }
            }
        }

        targets.AddRange(found.OrderBy(t => t.Path, StringComparer.Ordinal));
        return true;
    }

    private static ScanTarget FileTarget(string path, string disarmRelative) =>
        UnixFileType.Describe(path) is { } kind ? new ScanTarget(path, disarmRelative, $"not a regular file ({kind}): not read") : new ScanTarget(path, disarmRelative);

    private static async Task<ScanResult> ScanOneAsync(Inspector inspector, DisarmService disarmer, ScanTarget target, ScanSettings settings, CancellationToken cancellationToken)
    {
        if (target.Problem is not null)
        {
            return Failed(target, target.Problem);
        }

        try
        {
            return await ScanFileAsync(inspector, disarmer, target, settings, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // One file's failure is that file's error: the rest of the batch is still scanned and reported.
            return Failed(target, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static ScanResult Failed(ScanTarget target, string reason) => new(target, 0, null, new Verdict(VerdictKind.Error,
        [new Finding("inspection.analyser-error", Severity.Medium, reason, null, "")], nameof(ContentType.Unknown)), null);

    private static async Task<ScanResult> ScanFileAsync(Inspector inspector, DisarmService disarmer, ScanTarget target, ScanSettings settings, CancellationToken cancellationToken)
    {
        ContentSource source;
        try
        {
            source = ContentSource.OpenFile(target.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Failed(target, $"cannot read the file: {e.Message}");
        }

        using (source)
        {
            var verdict = await inspector.InspectAsync(source, Path.GetFileName(target.Path), cancellationToken).ConfigureAwait(false);
            string? sha256;
            try
            {
                // The signature engine hashes the file when a SHA-256 list is loaded; otherwise it is hashed here.
                sha256 = verdict.Sha256 ?? Sha256(source);
            }
            catch (IOException e)
            {
                sha256 = null;
                verdict = verdict with { Kind = VerdictKind.Error, Findings = [.. verdict.Findings, new Finding("inspection.analyser-error", Severity.Medium, $"read failed while hashing: {e.Message}", null, "")] };
            }

            DisarmOutcome? disarm = null;
            if (settings.DisarmFolder is not null)
            {
                disarm = await DisarmAsync(inspector, disarmer, source, target, settings, cancellationToken).ConfigureAwait(false);
            }

            return new ScanResult(target, source.Length, sha256, verdict, disarm);
        }
    }

    private static string Sha256(ContentSource source)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            long offset = 0;
            while (offset < source.Length)
            {
                var read = source.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(buffer.Length, source.Length - offset)));
                if (read <= 0)
                {
                    throw new IOException($"the file ended at {offset} of {source.Length} bytes");
                }

                hash.AppendData(buffer, 0, read);
                offset += read;
            }

            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task<DisarmOutcome> DisarmAsync(Inspector inspector, DisarmService disarmer, ContentSource source, ScanTarget target, ScanSettings settings, CancellationToken cancellationToken)
    {
        if (!disarmer.CanDisarm(source))
        {
            return new DisarmOutcome(null, [], null, "no disarmer for this type: not copied");
        }

        var output = Path.GetFullPath(Path.Combine(settings.DisarmFolder!, target.DisarmRelative));
        if (string.Equals(output, target.Path, StringComparison.Ordinal))
        {
            return new DisarmOutcome(null, [], null, "the copy would overwrite the original: not written");
        }

        var partial = output + ".partial";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(output)!);
            DisarmResult result;
            await using (var stream = new FileStream(partial, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                result = await disarmer.DisarmAsync(source, stream, new DisarmOptions { StripDicomPrivateTags = settings.StripPrivate }, cancellationToken).ConfigureAwait(false);
            }

            // The copy is inspected again before it is put in place: only a clean one goes into the folder of safe copies
            // (a DICOM file whose PDF runs a script was copied unchanged, still malicious, until 2026-12-07).
            Verdict residual;
            using (var copy = ContentSource.OpenFile(partial))
            {
                residual = await inspector.InspectAsync(copy, Path.GetFileName(output), cancellationToken).ConfigureAwait(false);
            }

            if (residual.Kind != VerdictKind.Clean)
            {
                File.Delete(partial);
                var left = residual.Findings.Where(f => f.Severity > Severity.Info).Select(f => f.Rule).Distinct(StringComparer.Ordinal).Take(5);
                return new DisarmOutcome(null, result.Actions, VerdictName(residual.Kind),
                    $"no safe copy: what is left after {result.Actions.Count} change(s) is still {VerdictName(residual.Kind)} ({string.Join(", ", left)}): not written");
            }

            File.Move(partial, output, overwrite: true);
            return new DisarmOutcome(output, result.Actions, VerdictName(residual.Kind), null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A copy that cannot be made (an unreadable object, say) is that copy's problem: the inspection's verdict
            // stands. Before, the disarmer's exception replaced a malicious verdict by an error.
            File.Delete(partial);
            return new DisarmOutcome(null, [], null, e is DisarmException or IOException ? $"no safe copy: {e.Message}" : $"no safe copy: {e.GetType().Name}: {e.Message}");
        }
    }

    internal static string VerdictName(VerdictKind kind) => kind switch
    {
        VerdictKind.Clean => "clean",
        VerdictKind.Suspicious => "suspicious",
        VerdictKind.Malicious => "malicious",
        VerdictKind.Error => "error",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static string SeverityName(Severity severity) => severity switch
    {
        Severity.Info => "info",
        Severity.Low => "low",
        Severity.Medium => "medium",
        Severity.High => "high",
        Severity.Critical => "critical",
        _ => severity.ToString().ToLowerInvariant(),
    };

    private sealed class ScanSummary
    {
        public int Files { get; private set; }

        public long Bytes { get; private set; }

        public int Clean { get; private set; }

        public int Suspicious { get; private set; }

        public int Malicious { get; private set; }

        public int Errors { get; private set; }

        public int Disarmed { get; private set; }

        public int Threats => Suspicious + Malicious;

        public void Add(ScanResult result)
        {
            Files++;
            Bytes += result.Size;
            switch (result.Verdict.Kind)
            {
                case VerdictKind.Clean:
                    Clean++;
                    break;
                case VerdictKind.Suspicious:
                    Suspicious++;
                    break;
                case VerdictKind.Malicious:
                    Malicious++;
                    break;
                case VerdictKind.Error:
                    Errors++;
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(result));
            }

            if (result.Disarm?.Output is not null)
            {
                Disarmed++;
            }
        }
    }

    private interface IScanReport
    {
        void Add(ScanResult result);

        void Finish(ScanSummary summary, TimeSpan elapsed);
    }

    /// <summary>One compact JSON object per line, written as each file completes.</summary>
    private sealed class JsonLinesReport : IScanReport
    {
        private readonly Stream _stdout = Console.OpenStandardOutput();
        private readonly JsonWriterOptions _options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

        public void Add(ScanResult result)
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
            using (var json = new Utf8JsonWriter(buffer, _options))
            {
                json.WriteStartObject();
                json.WriteString("path", result.Target.Path);
                json.WriteNumber("size", result.Size);
                if (result.Sha256 is null)
                {
                    json.WriteNull("sha256");
                }
                else
                {
                    json.WriteString("sha256", result.Sha256);
                }

                json.WriteString("type", result.Verdict.ContentType);
                json.WriteString("verdict", VerdictName(result.Verdict.Kind));
                json.WriteStartArray("findings");
                foreach (var finding in result.Verdict.Findings)
                {
                    json.WriteStartObject();
                    json.WriteString("rule", finding.Rule);
                    json.WriteString("severity", SeverityName(finding.Severity));
                    json.WriteString("message", finding.Message);
                    if (finding.Offset is { } offset)
                    {
                        json.WriteNumber("offset", offset);
                    }
                    else
                    {
                        json.WriteNull("offset");
                    }

                    json.WriteString("inner_path", finding.InnerPath);
                    json.WriteEndObject();
                }

                json.WriteEndArray();
                json.WriteNumber("objects", result.Verdict.Objects);
                json.WriteNumber("elapsed_ms", Math.Round(result.Verdict.Elapsed.TotalMilliseconds, 3));
                if (result.Disarm is { } disarm)
                {
                    json.WriteStartObject("disarm");
                    if (disarm.Output is not null)
                    {
                        json.WriteString("output", disarm.Output);
                        json.WriteString("verdict_after", disarm.Residual);
                    }
                    else
                    {
                        json.WriteString("not_written", disarm.NotWritten);
                        if (disarm.Residual is not null)
                        {
                            json.WriteString("verdict_after", disarm.Residual);
                        }
                    }

                    json.WriteStartArray("actions");
                    foreach (var action in disarm.Actions)
                    {
                        json.WriteStartObject();
                        json.WriteString("rule", action.Rule);
                        json.WriteString("description", action.Description);
                        if (action.Offset is { } offset)
                        {
                            json.WriteNumber("offset", offset);
                        }
                        else
                        {
                            json.WriteNull("offset");
                        }

                        json.WriteString("inner_path", action.InnerPath);
                        json.WriteEndObject();
                    }

                    json.WriteEndArray();
                    json.WriteEndObject();
                }

                json.WriteEndObject();
            }

            _stdout.Write(buffer.WrittenSpan);
            _stdout.WriteByte((byte)'\n');
        }

        public void Finish(ScanSummary summary, TimeSpan elapsed)
        {
            _stdout.Flush();
            _stdout.Dispose();
            Console.Error.WriteLine(SummaryLine(summary, elapsed));
        }
    }

    /// <summary>A table of what was found (and, with --all, of everything), then a summary.</summary>
    private sealed class TextReport(bool all) : IScanReport
    {
        private readonly List<ScanResult> _shown = [];

        public void Add(ScanResult result)
        {
            if (all || result.Verdict.Kind != VerdictKind.Clean || result.Disarm?.Output is not null)
            {
                _shown.Add(result);
            }
        }

        public void Finish(ScanSummary summary, TimeSpan elapsed)
        {
            if (_shown.Count > 0)
            {
                var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
                var table = new Table().Border(TableBorder.Rounded).Expand();
                table.AddColumn("File");
                table.AddColumn("Verdict");
                table.AddColumn("Findings");
                foreach (var result in _shown.OrderBy(r => r.Target.Path, StringComparer.Ordinal))
                {
                    var findings = result.Verdict.Findings.Where(f => all || f.Severity > Severity.Info).ToList();
                    var lines = findings.Take(MaxBufferedFindingsShown).Select(f =>
                        $"[bold]{Markup.Escape(f.Rule)}[/] ({SeverityName(f.Severity)}{(f.Offset is { } o ? $", offset {o.ToString(CultureInfo.InvariantCulture)}" : "")}"
                        + $"{(f.InnerPath.Length > 0 ? $", in {Markup.Escape(f.InnerPath)}" : "")}): {Markup.Escape(f.Message)}").ToList();
                    if (findings.Count > MaxBufferedFindingsShown)
                    {
                        lines.Add($"… and {findings.Count - MaxBufferedFindingsShown} more (use --json)");
                    }

                    if (result.Disarm is { } disarm)
                    {
                        lines.Add(disarm.Output is not null
                            ? $"[green]disarmed[/] → {Markup.Escape(disarm.Output)} ({disarm.Actions.Count} change(s), now {disarm.Residual})"
                            : $"[yellow]not disarmed[/]: {Markup.Escape(disarm.NotWritten ?? "")}");
                        lines.AddRange(disarm.Actions.Take(MaxBufferedFindingsShown).Select(a => $"  · {Markup.Escape(a.Description)}"));
                    }

                    table.AddRow(
                        new Markup(Markup.Escape(Inspector.Printable(result.Target.Path))),
                        new Markup(result.Verdict.Kind switch
                        {
                            VerdictKind.Clean => "[green]clean[/]",
                            VerdictKind.Suspicious => "[yellow]suspicious[/]",
                            VerdictKind.Malicious => "[red bold]malicious[/]",
                            VerdictKind.Error => "[magenta]error[/]",
                            _ => Markup.Escape(result.Verdict.Kind.ToString()),
                        } + $"\n{Markup.Escape(result.Verdict.ContentType)}"),
                        new Markup(lines.Count == 0 ? "-" : string.Join('\n', lines)));
                }

                console.Write(table);
            }

            Console.Out.WriteLine(SummaryLine(summary, elapsed));
        }
    }

    private static string SummaryLine(ScanSummary summary, TimeSpan elapsed)
    {
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-6);
        return FormattableString.Invariant($"{summary.Files} file(s), {summary.Bytes / 1048576.0:F1} MiB in {elapsed.TotalSeconds:F2} s ({summary.Bytes / 1048576.0 / seconds:F0} MiB/s): ")
            + FormattableString.Invariant($"{summary.Clean} clean, {summary.Suspicious} suspicious, {summary.Malicious} malicious, {summary.Errors} error(s)")
            + (summary.Disarmed > 0 ? FormattableString.Invariant($", {summary.Disarmed} disarmed copies") : "");
    }
}

/// <summary>What kind of file system object a path names, from statx(2), whose layout is the same on every architecture.</summary>
internal static class UnixFileType
{
    /// <summary>Null for a regular file (or when the kind cannot be told: opening it then says what is wrong).</summary>
    public static string? Describe(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        var buffer = new byte[256];
        if (Statx(-100 /* AT_FDCWD */, path, 0, 1 /* STATX_TYPE */, buffer) != 0)
        {
            return null;
        }

        return (BitConverter.ToUInt16(buffer, 28) & 0xF000) switch
        {
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => null,
        };
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    [System.Runtime.InteropServices.DefaultDllImportSearchPaths(System.Runtime.InteropServices.DllImportSearchPath.SafeDirectories)]
    private static extern int Statx(int directory, [System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path,
        int flags, uint mask, byte[] buffer);
}
