using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Archives;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection;

/// <summary>The verdict for one file of a batch.</summary>
public sealed record FileVerdict(string Path, Verdict Verdict);

/// <summary>
/// The inspection engine. Identifies each object by its bytes, runs every known-bad engine on it and every
/// analyser that understands its type, and recurses into inner objects under the limits of
/// <see cref="InspectionLimits"/>. Limits reached become findings; an analyser that throws becomes an
/// <c>inspection.analyser-error</c> finding and an Error verdict, never a crash. Thread-safe: one instance
/// serves concurrent inspections.
/// </summary>
public sealed class Inspector
{
    private const int MaxNameLength = 200;

    private readonly IContentAnalyser[] _analysers;
    private readonly IKnownBadEngine[] _engines;
    private readonly IOptions<InspectionLimits> _limits;
    private readonly TimeProvider _time;

    public Inspector(IEnumerable<IContentAnalyser> analysers, IEnumerable<IKnownBadEngine> engines, IOptions<InspectionLimits> limits,
        TimeProvider? time = null, InspectionMemory? memory = null)
    {
        _analysers = [.. analysers];
        _engines = [.. engines];
        _limits = limits;
        _time = time ?? TimeProvider.System;
        Memory = memory ?? InspectionMemory.Unbounded();
    }

    /// <summary>The node's inspection memory: what every inspection holds in memory is counted there too.</summary>
    public InspectionMemory Memory { get; }

    public IReadOnlyList<IContentAnalyser> Analysers => _analysers;

    public IReadOnlyList<IKnownBadEngine> Engines => _engines;

    /// <summary>What the bytes are, as the engine sees them.</summary>
    public static ContentType Identify(ContentSource content) => ContentIdentifier.Identify(content);

    /// <summary>Inspects one object. <paramref name="name"/> is the name it arrived with (used only to compare with what the bytes say).</summary>
    public async ValueTask<Verdict> InspectAsync(ContentSource content, string? name = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        var limits = _limits.Value;
        var started = _time.GetTimestamp();
        using var activity = InspectionTelemetry.ActivitySource.StartActivity("inspect");
        using var session = new InspectionSession(limits, content.Length, cancellationToken, Memory);
        var type = ContentType.Unknown;
        try
        {
            type = ContentIdentifier.Identify(content, out var prologUnread);
            activity?.SetTag("vigie.content_type", type.ToString());
            activity?.SetTag("vigie.length", content.Length);
            ReportUnavailableEngines(session);
            var root = new EngineContext(this, session, null, "", 0, type, name is null ? null : SanitiseName(name), content);
            session.TryCountObject(root, "");
            ReportPrologLimit(root, prologUnread);
            await InspectObjectAsync(root, content, session.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (session.TimedOut)
        {
            session.Report(new Finding(Rules.Timeout, Severity.Medium,
                $"inspection stopped after its {limits.Timeout.TotalSeconds:0.#} s budget; the rest was not inspected", null, ""));
        }

        var findings = session.SnapshotFindings();
        var kind = Verdict.KindFor(findings, completed: true);
        if (session.Incomplete && kind != VerdictKind.Malicious)
        {
            kind = VerdictKind.Error;
        }

        var elapsed = _time.GetElapsedTime(started);
        activity?.SetTag("vigie.verdict", kind.ToString());
        InspectionTelemetry.Inspections.Add(1, new KeyValuePair<string, object?>("verdict", kind.ToString()));
        InspectionTelemetry.Bytes.Add(content.Length);
        InspectionTelemetry.Duration.Record(elapsed.TotalSeconds);
        return new Verdict(kind, findings, type.ToString())
        {
            Objects = session.Objects,
            ResourceShortage = kind == VerdictKind.Malicious ? null : session.ResourceShortage,
            ExtractedBytes = session.Extracted,
            Elapsed = elapsed,
            Sha256 = session.Sha256,
        };
    }

    /// <summary>Inspects a file with positional reads (never loaded whole). An unreadable file gives an Error verdict.</summary>
    public async ValueTask<Verdict> InspectFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ContentSource source;
        try
        {
            source = ContentSource.OpenFile(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new Verdict(VerdictKind.Error,
                [new Finding(Rules.AnalyserError, Severity.Medium, $"cannot read the file: {ex.Message}", null, "")], nameof(ContentType.Unknown));
        }

        using (source)
        {
            return await InspectAsync(source, Path.GetFileName(path), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Inspects many files across cores (<see cref="InspectionLimits.BatchParallelism"/>, default one per core),
    /// yielding each verdict as soon as it is ready (completion order, not input order).
    /// </summary>
    public async IAsyncEnumerable<FileVerdict> InspectFilesAsync(IEnumerable<string> paths, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var parallelism = _limits.Value.BatchParallelism > 0 ? _limits.Value.BatchParallelism : Environment.ProcessorCount;
        var channel = Channel.CreateBounded<FileVerdict>(new BoundedChannelOptions(parallelism * 4) { SingleReader = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var producer = Task.Run(async () =>
        {
            try
            {
                await Parallel.ForEachAsync(paths, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = stop.Token },
                    async (path, token) =>
                    {
                        var verdict = await InspectFileAsync(path, token).ConfigureAwait(false);
                        await channel.Writer.WriteAsync(new FileVerdict(path, verdict), token).ConfigureAwait(false);
                    }).ConfigureAwait(false);
                channel.Writer.Complete();
            }
            catch (Exception ex)
            {
                channel.Writer.Complete(ex);
            }
        }, CancellationToken.None);

        try
        {
            await foreach (var item in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                yield return item;
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await producer.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private void ReportUnavailableEngines(InspectionSession session)
    {
        foreach (var engine in _engines)
        {
            bool available;
            string? reason;
            try
            {
                available = engine.IsAvailable(out reason);
            }
            catch (Exception ex)
            {
                available = false;
                reason = ex.Message;
            }

            if (!available)
            {
                session.Incomplete = true;
                session.Report(new Finding(Rules.EngineUnavailable, Severity.Medium,
                    $"{engine.Name} is unavailable: {reason ?? "no reason given"}", null, ""));
            }
        }
    }

    internal async ValueTask InspectChildAsync(EngineContext parent, string name, ContentSource content, CancellationToken cancellationToken,
        ContentType? readAs = null, bool secondReading = false)
    {
        var session = parent.Session;
        var safeName = SanitiseName(name);
        var path = parent.InnerPath.Length == 0 ? safeName : parent.InnerPath + "/" + safeName;
        cancellationToken.ThrowIfCancellationRequested();
        if (session.BombFound)
        {
            return;
        }

        if (parent.Depth + 1 > session.Limits.MaxDepth)
        {
            parent.Report(Rules.DepthLimit, Severity.Medium,
                $"{safeName} is nested deeper than {session.Limits.MaxDepth} levels: not inspected");
            return;
        }

        if (content.Length > session.Limits.MaxInnerSize)
        {
            parent.Report(Rules.InnerSizeLimit, Severity.Medium,
                $"{safeName} is {content.Length} bytes, more than the {session.Limits.MaxInnerSize}-byte limit: not inspected");
            return;
        }

        if (!session.TryCountObject(parent, path))
        {
            return;
        }

        for (var ancestor = parent; ancestor is not null; ancestor = ancestor.Parent)
        {
            // A polyglot read as another format is the same bytes by design; read as a format they were already read
            // as, it would loop.
            if (readAs is { } format && ancestor.ContentType != format)
            {
                continue;
            }

            if (ancestor.Content.Length == content.Length && SameBytes(ancestor.Content, content, cancellationToken))
            {
                session.MarkBomb();
                parent.Report(Rules.RecursiveContent, Severity.High,
                    $"{safeName} is a byte-for-byte copy of its container {(ancestor.InnerPath.Length == 0 ? "(the top-level object)" : ancestor.InnerPath)}: a recursive (quine) archive");
                return;
            }
        }

        parent.MarkInspected(content);

        var prologUnread = false;
        var type = readAs ?? ContentIdentifier.Identify(content, out prologUnread);
        session.NoteInnerObject(type, name);
        var child = new EngineContext(this, session, parent, path, parent.Depth + 1, type, safeName, content) { SecondReading = parent.SecondReading || secondReading };
        ReportPrologLimit(child, prologUnread);
        CheckNameInContainer(child, name, readAs is not null || secondReading);
        await InspectObjectAsync(child, content, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// XML whose first element does not come within the identifier's reach: a reader that reads on (LibreOffice opens a
    /// flat document behind any prolog) may see a document this inspection did not read as one.
    /// </summary>
    private static void ReportPrologLimit(EngineContext context, bool prologUnread)
    {
        if (prologUnread)
        {
            context.Report(Rules.PrologLimit, Severity.Medium,
                $"no element in the first {ContentIdentifier.MaxXmlProlog / (1024 * 1024)} MiB of this XML (comments, processing instructions or whitespace): what it is was not decided, and it was read as {context.ContentType}");
        }
    }

    /// <summary>
    /// A member of a container (a ZIP's ".js", a 7z's ".lnk") is a file its reader opens with a double-click, as an
    /// attachment is: a name that hides its extension is High anywhere, a dangerous extension where the container came
    /// by mail (the malspam's zipped script passed clean until 2026-12-07). A mail's own parts are checked by the mail
    /// analyser; a second reading names no file.
    /// </summary>
    private static void CheckNameInContainer(EngineContext child, string name, bool reading)
    {
        if (reading || child.Parent is not { } parent || parent.ContentType is ContentType.Mime or ContentType.Tnef)
        {
            return;
        }

        foreach (var (rule, message) in NameChecks.DangerousNameReasons(name, delivered: child.InsideMailContainer))
        {
            child.Report(rule, Severity.High, message);
        }
    }

    private async ValueTask InspectObjectAsync(EngineContext context, ContentSource content, CancellationToken cancellationToken)
    {
        InspectionTelemetry.Objects.Add(1, new KeyValuePair<string, object?>("type", context.ContentType.ToString()));
        foreach (var engine in _engines)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await RunGuardedAsync(context, engine.Name, () => engine.ScanAsync(context, content, cancellationToken), cancellationToken).ConfigureAwait(false);
        }

        foreach (var analyser in _analysers)
        {
            // A second reading is the same bytes read as another type: the first one already looked at their head.
            if (!(context.SecondReading ? analyser.CanAnalyse(context.ContentType) : analyser.CanAnalyse(context.ContentType, content)))
            {
                continue;
            }

            cancellationToken.ThrowIfCancellationRequested();
            await RunGuardedAsync(context, analyser.Name, () => analyser.AnalyseAsync(context, content, cancellationToken), cancellationToken).ConfigureAwait(false);
        }

        await InspectAppendedArchiveAsync(context, content, cancellationToken).ConfigureAwait(false);
        await InspectPdfViewAsync(context, content, cancellationToken).ConfigureAwait(false);
        await InspectPageViewAsync(context, content, cancellationToken).ConfigureAwait(false);
        await InspectMailViewAsync(context, content, cancellationToken).ConfigureAwait(false);
    }

    private static async ValueTask RunGuardedAsync(EngineContext context, string name, Func<ValueTask> run, CancellationToken cancellationToken)
    {
        try
        {
            await run().ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            // One analyser failing must not hide what the others see, nor take the process down.
            context.Session.Incomplete = true;
            if (IsResourceShortage(ex))
            {
                context.Session.ResourceShortage ??= $"{name}: {ex.GetType().Name}: {Truncate(ex.Message, 200)}";
            }

            var site = ex.StackTrace?.Split('\n', StringSplitOptions.TrimEntries).FirstOrDefault(l => l.Contains("Vigie.", StringComparison.Ordinal)) ?? ex.TargetSite?.Name;
            context.Report(Rules.AnalyserError, Severity.Medium, $"{name} failed: {ex.GetType().Name}: {Truncate(ex.Message, 300)} ({Truncate(site ?? "", 200)})");
        }
    }

    /// <summary>No room for temporary files (ENOSPC, EDQUOT, Windows' disk full), no descriptors, no memory: the machine's state, not the content's.</summary>
    internal static bool IsResourceShortage(Exception ex) => ex is OutOfMemoryException
        || (ex is IOException && (ex.HResult is 28 or 122 or 24 or 23 || (ex.HResult & 0xFFFF) is 112 or 39));

    /// <summary>
    /// A ZIP appended to something that is not a ZIP (JPEG+ZIP, PDF+ZIP polyglots, a self-extractor's stub): report it
    /// and inspect it. Content of no known type included: behind random bytes, zeros or a bare MZ the archive went
    /// uninspected, and the file was called clean.
    /// </summary>
    private async ValueTask InspectAppendedArchiveAsync(EngineContext context, ContentSource content, CancellationToken cancellationToken)
    {
        // A second reading's archive was judged by the first (a tar's docx member is one of its members).
        if (context.ContentType is ContentType.Zip or ContentType.Ooxml or ContentType.OpenDocument || context.SecondReading
            || content.Length < 22 || ZipReader.FindAppended(content, context.Limits.MaxEntries) is not { } zip)
        {
            return;
        }

        // A tar stores its members as they are: a docx among them is a member (read as one), not a ZIP appended to the tar.
        if (context.ContentType == ContentType.Tar && InsideTarMember(content, zip.Start, context.Limits.MaxEntries))
        {
            return;
        }

        // An analyser that already handed these bytes over (a DICOM file's trailing data, or a value holding the archive)
        // reported and read them.
        if (context.InspectedRanges.Exists(r => r.Offset <= zip.Start && zip.EndRecord + 22 <= r.Offset + r.Length))
        {
            return;
        }

        context.Report(Rules.AppendedArchive, Severity.Medium,
            $"a ZIP archive of {zip.Entries} entries is appended at offset {zip.Start} to this {context.ContentType} content (polyglot)", zip.Start);
        using var slice = content.Slice(zip.Start, content.Length - zip.Start);
        await context.InspectChildAsync("[appended zip]", slice, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// PDF readers open a file whose header lies anywhere in its first kilobyte. A container (a tar, a winmail.dat, an
    /// RTF, a ZIP), an image, a page, a mail or a text with a PDF header there is read as what it is, and then once more
    /// as the PDF a reader would see, so that a polyglot's document is inspected whole, not only the member that happens
    /// to start with the header.
    /// </summary>
    private async ValueTask InspectPdfViewAsync(EngineContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (context.ContentType is ContentType.Pdf or ContentType.Dicom || content.Length < 8)
        {
            return;
        }

        var head = new byte[(int)Math.Min(1024, content.Length)];
        var read = content.ReadAt(0, head);
        var start = head.AsSpan(0, read).IndexOf("%PDF-"u8);
        if (start <= 0 || context.InspectedRanges.Exists(r => r.Offset == start))
        {
            return;
        }

        using var view = content.Slice(start, content.Length - start);
        await InspectChildAsync(context, $"[as a PDF reader opens it, from offset {start}]", view, cancellationToken, secondReading: true).ConfigureAwait(false);
    }

    /// <summary>
    /// A PDF that holds page markup near its start is also a page: a browser renders a ".html" that starts "%PDF-1.4" and
    /// runs its script (such a page was read as a PDF only until 2026-12-07). It is read once more as HTML.
    /// </summary>
    private async ValueTask InspectPageViewAsync(EngineContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (context.ContentType != ContentType.Pdf || context.SecondReading)
        {
            return;
        }

        var head = new byte[(int)Math.Min(64 * 1024, content.Length)];
        var read = content.ReadAt(0, head);
        if (!AsciiSearch.ContainsIgnoreCase(head.AsSpan(0, read), "<script") && !AsciiSearch.ContainsIgnoreCase(head.AsSpan(0, read), "<html"))
        {
            return;
        }

        await InspectChildAsync(context, "[as a browser renders it]", content, cancellationToken, readAs: ContentType.Html, secondReading: true).ConfigureAwait(false);
    }

    /// <summary>
    /// A mail client reads any file that starts with a header block as a mail, whatever else its first bytes make it: a
    /// mail whose first header is named "GIF89a" or "{\rtf1", or whose header block is also a tar header, was read as an
    /// image, an RTF or a tar only, its attachments unseen (until 2026-12-07). Such a file is read once more as a mail.
    /// </summary>
    private async ValueTask InspectMailViewAsync(EngineContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (context.ContentType is ContentType.Mime or ContentType.Tnef || context.SecondReading || content.Length < 8)
        {
            return;
        }

        var head = System.Buffers.ArrayPool<byte>.Shared.Rent((int)Math.Min(ContentIdentifier.HeadLength, content.Length));
        bool mail;
        try
        {
            var read = content.ReadAt(0, head.AsSpan(0, (int)Math.Min(ContentIdentifier.HeadLength, content.Length)));
            mail = ContentIdentifier.ReadsAsMail(content, head.AsSpan(0, read));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(head);
        }

        if (mail)
        {
            await InspectChildAsync(context, "[as a mail client opens it]", content, cancellationToken, readAs: ContentType.Mime, secondReading: true).ConfigureAwait(false);
        }
    }

    /// <summary>Whether <paramref name="offset"/> lies in the data of one of a tar's members, walking its 512-byte headers.</summary>
    internal static bool InsideTarMember(ContentSource tar, long offset, int maxEntries)
    {
        Span<byte> header = stackalloc byte[512];
        long at = 0;
        for (var i = 0; i < maxEntries && at + 512 <= tar.Length && tar.ReadAt(at, header) == 512; i++)
        {
            if (header.IndexOfAnyExcept((byte)0) < 0 || !TryOctal(header.Slice(124, 12), out var size) || size > tar.Length)
            {
                return false;
            }

            var data = at + 512;
            if (offset >= data && offset < data + size)
            {
                return true;
            }

            at = data + ((size + 511) & ~511L);
        }

        return false;
    }

    private static bool TryOctal(ReadOnlySpan<byte> field, out long value)
    {
        value = 0;
        var digits = 0;
        foreach (var b in field)
        {
            if (b is (byte)' ' or 0)
            {
                if (digits > 0)
                {
                    break;
                }

                continue;
            }

            if (b is < (byte)'0' or > (byte)'7' || ++digits > 11)
            {
                return false;
            }

            value = value * 8 + (b - '0');
        }

        return digits > 0;
    }

    /// <summary>Byte for byte, from the start; <paramref name="a"/>'s length decides how far (callers compare lengths first).</summary>
    internal static bool SameBytes(ContentSource a, ContentSource b, CancellationToken cancellationToken)
    {
        var bufferA = new byte[16 * 1024];
        var bufferB = new byte[16 * 1024];
        for (long offset = 0; offset < a.Length; offset += bufferA.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var readA = a.ReadAt(offset, bufferA);
            var readB = b.ReadAt(offset, bufferB);
            if (readA != readB || !bufferA.AsSpan(0, readA).SequenceEqual(bufferB.AsSpan(0, readB)))
            {
                return false;
            }

            if (readA == 0)
            {
                break;
            }
        }

        return true;
    }

    internal static string SanitiseName(string name)
    {
        var result = Printable(name.Length > MaxNameLength ? name[..MaxNameLength] : name);
        return name.Length > MaxNameLength ? result + "…" : result.Length == 0 ? "(unnamed)" : result;
    }

    /// <summary>
    /// A name as a terminal or a report may show it: control characters and bidirectional embeddings, overrides and
    /// isolates as '?' (escape sequences that clear a screen; "report\u202Efdp.exe" shown as "reportexe.pdf").
    /// </summary>
    public static string Printable(string name) =>
        string.Create(name.Length, name, static (span, text) =>
        {
            for (var i = 0; i < text.Length; i++)
            {
                var c = text[i];
                span[i] = char.IsControl(c) || c is >= '\u202A' and <= '\u202E' or >= '\u2066' and <= '\u2069' ? '?' : c;
            }
        });

    internal static string Truncate(string text, int max) => text.Length <= max ? text : text[..max] + "…";
}
