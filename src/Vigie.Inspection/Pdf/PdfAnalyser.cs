using System.Text;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Pdf;

/// <summary>
/// PDF active content and obfuscation, from the tolerant scanner in <see cref="PdfDocument"/>: JavaScript,
/// automatic actions, launch, embedded files (extracted and inspected), rich media, XFA, dangerous links, form
/// submission, remote go-to, encryption, escaped names, unusual filter chains and object streams hiding any of it.
/// Every decoding is bounded by the extraction limits; a ratio beyond the limit is a bomb.
/// </summary>
internal sealed class PdfAnalyser(Microsoft.Extensions.Options.IOptions<MailInspectionOptions> mail) : IContentAnalyser
{
    private const int MaxScriptPreview = 80;

    /// <summary>C0 controls and space, which a URL parser strips before a scheme.</summary>
    private static readonly char[] LeadingControls = [.. Enumerable.Range(0, 33).Select(i => (char)i)];
    private const long MaxStructureStream = 64L * 1024 * 1024;

    private static readonly HashSet<string> SensitiveNames = new(StringComparer.Ordinal)
    {
        "JS", "JavaScript", "OpenAction", "AA", "Launch", "EmbeddedFile", "EmbeddedFiles", "EF", "URI", "RichMedia",
        "RichMediaContent", "RichMediaExecute", "XFA", "AcroForm", "S", "Type", "SubmitForm", "ImportData", "GoToR", "GoToE",
        "Filter", "ObjStm", "FlateDecode", "ASCIIHexDecode", "ASCII85Decode", "LZWDecode", "RunLengthDecode", "Names",
        "Action", "Win", "F", "Encrypt", "Filespec",
    };

    private static readonly string[] ScriptIndicators =
    [
        "eval", "unescape", "String.fromCharCode", "app.launchURL", "exportDataObject", "util.printf", "Collab.",
        "getAnnots", "spell.customDictionaryOpen", "media.newPlayer", "app.setTimeOut", "submitForm", "getURL", "app.openDoc",
        "importDataObject", "app.alert", "this.print",
    ];

    private static readonly HashSet<string> AutomaticActionTypes = new(StringComparer.Ordinal)
    {
        "JavaScript", "Launch", "URI", "SubmitForm", "ImportData", "GoToR", "GoToE", "RichMediaExecute", "Rendition", "Sound", "Movie",
    };

    public string Name => "pdf";

    public bool CanAnalyse(ContentType type) => type == ContentType.Pdf;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        // Read out of a DICOM file (its preamble, a header in its first kilobyte, a value), the PDF is interleaved with
        // binary element headers that derail a sequential reading; readers reconstruct it, and so does this reading.
        var document = PdfDocument.Scan(content, context.Limits.MaxEntries, cancellationToken, reconstruct: context.ParentType == ContentType.Dicom);
        var state = new AnalysisState(context, content, document);

        if (document.HeaderOffset > 0)
        {
            context.Report(Rules.PdfHeaderOffset, Severity.Low,
                $"{document.HeaderOffset} bytes precede the %PDF header: readers accept it, and polyglots rely on it", 0);
        }

        // A document that opens without a password is decrypted and read like any other; one that needs a password stays opaque.
        var opaque = false;
        if (PdfEncryption.Declared(document) is { } declared)
        {
            state.Encryption = PdfEncryption.TryOpen(document, declared, out var reason);
            opaque = state.Encryption is null;
            if (state.Encryption is { } encryption)
            {
                context.Report(Rules.PdfEncrypted, Severity.Info,
                    $"the document is protected by an owner password only (it restricts {encryption.Restrictions}): it opens without a password, and was decrypted and inspected");
            }
            else
            {
                context.Report(Rules.PdfEncrypted, Severity.Medium,
                    $"the document is encrypted and {reason}: strings and streams cannot be inspected (object streams and embedded files stay opaque)");
            }
        }

        if (!opaque)
        {
            await UnpackStructureStreamsAsync(state, cancellationToken).ConfigureAwait(false);
        }

        if (state.Encryption is { } opened)
        {
            // After unpacking: objects found through the cross-reference streams are decrypted too; packed ones never were encrypted.
            foreach (var indirect in document.Objects)
            {
                opened.DecryptStrings(indirect);
            }
        }

        if (document.Truncated || document.ValuesExhausted)
        {
            context.Report(Rules.PdfTooManyObjects, Severity.Medium,
                $"the document exceeds the parser's limits ({document.Objects.Count} objects kept, at most {document.MaxObjects}): the rest was not inspected");
        }

        if (document.Objects.Count == 0)
        {
            context.Report(Rules.PdfMalformed, Severity.Low, "no object found after the %PDF header", document.HeaderOffset);
        }

        foreach (var problem in document.Problems.Take(5))
        {
            var hidden = problem.Contains("hidden from a sequential reading", StringComparison.Ordinal);
            context.Report(Rules.PdfMalformed, hidden ? Severity.Medium : Severity.Info, problem);
        }

        CollectFileNames(state);
        foreach (var indirect in document.Objects)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Walk(state, indirect.Value, indirect, 0);
            if (indirect.IsStream)
            {
                CheckStream(state, indirect);
            }
        }

        await DecodeActiveStreamsAsync(state, opaque, cancellationToken).ConfigureAwait(false);

        foreach (var (container, kinds) in state.HiddenInObjectStreams)
        {
            context.Report(Rules.PdfHiddenInObjectStream, Severity.Medium,
                $"object stream {container} packs active content ({string.Join(", ", kinds.Order(StringComparer.Ordinal))}), out of sight of a plain reading",
                document.Get(container)?.Offset);
        }

        CheckMailedLinks(state);
        state.Reporter.Flush();
    }

    /// <summary>
    /// A look-alike of the hospital's domain behind a PDF's link passed a mailed PDF until 2026-12-07: the mail's checks
    /// covered its text and HTML parts only. Raw addresses are left to <see cref="CheckUri"/>, which already reports them.
    /// </summary>
    private void CheckMailedLinks(AnalysisState state)
    {
        if (state.MailedLinks is not { Count: > 0 } uris)
        {
            return;
        }

        var text = string.Join('\n', uris.Select(u => $"href=\"{u.Replace("\"", "%22", StringComparison.Ordinal)}\""));
        var links = 0;
        Mail.MailAnalyser.CheckLinksIn(text, state.Reporter, mail.Value, ref links, Severity.Medium, "this document's links");
    }

    private sealed class AnalysisState(InspectionContext context, ContentSource content, PdfDocument document)
    {
        public InspectionContext Context => context;

        public ContentSource Content => content;

        public PdfDocument Document => document;

        public CappedReporter Reporter { get; } = new(context);

        public Dictionary<int, string> FileNames { get; } = [];

        public HashSet<int> EmbeddedFiles { get; } = [];

        public List<(PdfIndirectObject Owner, PdfObject Script)> Scripts { get; } = [];

        /// <summary>Each XFA form's streams, in the order a reader joins them (the packets of an /XFA array).</summary>
        public List<int[]> XfaForms { get; } = [];

        public Dictionary<int, HashSet<string>> HiddenInObjectStreams { get; } = [];

        /// <summary>
        /// Set when the document came by mail (attached, or in a container attached): its links then get the mail's
        /// look-alike checks, as a reader clicks them from the mail.
        /// </summary>
        public List<string>? MailedLinks { get; } =
            context.ParentType is ContentType.Mime or ContentType.Tnef || context.InsideMailContainer ? [] : null;

        /// <summary>The opened security handler of an encrypted document that needs no password to open.</summary>
        public PdfEncryption? Encryption { get; set; }
    }

    private static async ValueTask UnpackStructureStreamsAsync(AnalysisState state, CancellationToken cancellationToken)
    {
        var document = state.Document;
        var xrefSeen = false;
        foreach (var indirect in document.Objects.Where(o => o.IsStream).ToList())
        {
            var type = indirect.Dictionary?.GetName("Type");
            if (type is not ("ObjStm" or "XRef"))
            {
                continue;
            }

            using var decoded = await DecodeAsync(state, indirect, MaxStructureStream, cancellationToken).ConfigureAwait(false);
            if (decoded is null)
            {
                if (state.Context.BombFound())
                {
                    return;
                }

                continue;
            }

            if (type == "ObjStm")
            {
                document.AddPackedObjects(indirect, decoded, cancellationToken);
            }
            else
            {
                var bytes = new byte[decoded.Length];
                decoded.ReadAt(0, bytes);
                document.AddXrefStreamOffsets(indirect.Dictionary!, bytes);
                xrefSeen = true;
            }
        }

        if (xrefSeen)
        {
            document.ReadListedOffsets(state.Content, cancellationToken);
        }
    }

    /// <summary>Decodes a stream object under the limits; null (with the finding reported) when it cannot be.</summary>
    private static async ValueTask<ContentSource?> DecodeAsync(AnalysisState state, PdfIndirectObject indirect, long? maxSize, CancellationToken cancellationToken)
    {
        var context = state.Context;
        var length = Math.Max(0, Math.Min(indirect.StreamLength, state.Content.Length - indirect.StreamOffset));
        await using var raw = state.Content.OpenStream(indirect.StreamOffset, length);
        var chain = PdfFilters.Create(state.Encryption?.DecryptStream(indirect, raw, state.Document) ?? raw, indirect.Dictionary ?? new PdfDictionary([]), state.Document);
        await using (chain.Stream.ConfigureAwait(false))
        {
            var result = await Extraction.ExtractAsync(context, chain.Stream, Math.Max(1, length), cancellationToken, maxSize).ConfigureAwait(false);
            if (context.ReportExtractionProblem(result, $"stream object {indirect.Number}", Rules.PdfBombRatio, Rules.PdfDecodeError, indirect.Offset))
            {
                result.Content?.Dispose();
                return null;
            }

            if (chain.Error is { } error)
            {
                context.Report(Rules.PdfDecodeError, Severity.Low,
                    $"stream object {indirect.Number} is corrupt ({error}); the {result.Produced} bytes decoded before the error were inspected", indirect.Offset);
            }

            return result.Content;
        }
    }

    private static void CollectFileNames(AnalysisState state)
    {
        foreach (var indirect in state.Document.Objects)
        {
            if (indirect.Dictionary is not { } dictionary)
            {
                continue;
            }

            CollectFileNames(state, dictionary, 0);
        }
    }

    private static void CollectFileNames(AnalysisState state, PdfDictionary dictionary, int depth)
    {
        if (depth > 8)
        {
            return;
        }

        if (state.Document.Resolve(dictionary.Get("EF")) is PdfDictionary ef)
        {
            var name = (state.Document.Resolve(dictionary.Get("UF")) as PdfString)?.Text
                ?? (state.Document.Resolve(dictionary.Get("F")) as PdfString)?.Text;
            foreach (var (_, value) in ef.Entries)
            {
                if (value is PdfReference reference)
                {
                    state.EmbeddedFiles.Add(reference.Number);
                    if (!string.IsNullOrWhiteSpace(name))
                    {
                        state.FileNames.TryAdd(reference.Number, name);
                    }
                }
            }
        }

        foreach (var (_, value) in dictionary.Entries)
        {
            if (value is PdfDictionary nested)
            {
                CollectFileNames(state, nested, depth + 1);
            }
            else if (value is PdfArray array)
            {
                foreach (var item in array.Items.OfType<PdfDictionary>())
                {
                    CollectFileNames(state, item, depth + 1);
                }
            }
        }
    }

    private static void Walk(AnalysisState state, PdfObject value, PdfIndirectObject owner, int depth)
    {
        if (depth > PdfParser.MaxDepth)
        {
            return;
        }

        switch (value)
        {
            case PdfDictionary dictionary:
                CheckDictionary(state, dictionary, owner);
                foreach (var (key, item) in dictionary.Entries)
                {
                    CheckName(state, key, owner);
                    Walk(state, item, owner, depth + 1);
                }

                break;
            case PdfArray array:
                foreach (var item in array.Items)
                {
                    Walk(state, item, owner, depth + 1);
                }

                break;
            case PdfName name:
                CheckName(state, name, owner);
                break;
            default:
                break;
        }
    }

    private static void CheckName(AnalysisState state, PdfName name, PdfIndirectObject owner)
    {
        if (name.Escaped && (SensitiveNames.Contains(name.Value) || name.NeedlesslyEscaped))
        {
            state.Reporter.Report(Rules.PdfObfuscatedName, Severity.Medium,
                $"object {owner.Number}: the name /{name.Raw} is written with #xx escapes and reads /{name.Value}", owner.Offset);
        }
    }

    private static void Active(AnalysisState state, PdfIndirectObject owner, string rule, Severity severity, string message)
    {
        state.Reporter.Report(rule, severity, $"object {owner.Number}{(owner.ContainerNumber is { } c ? $" (in object stream {c})" : "")}: {message}", owner.Offset);
        if (owner.ContainerNumber is { } container)
        {
            if (!state.HiddenInObjectStreams.TryGetValue(container, out var kinds))
            {
                state.HiddenInObjectStreams[container] = kinds = [];
            }

            kinds.Add(rule);
        }
    }

    private static void CheckDictionary(AnalysisState state, PdfDictionary dictionary, PdfIndirectObject owner)
    {
        var document = state.Document;
        var action = dictionary.GetName("S");
        var subtype = dictionary.GetName("Subtype");

        if (dictionary.Get("JS") is { } script)
        {
            state.Scripts.Add((owner, script));
        }
        else if (action == "JavaScript")
        {
            Active(state, owner, Rules.PdfJavaScript, Severity.High, "JavaScript action without a /JS script");
        }

        if (action != "JavaScript" && dictionary.Get("JavaScript") is { } tree && tree != PdfObject.Null)
        {
            Active(state, owner, Rules.PdfJavaScript, Severity.High, "document-level JavaScript (a /JavaScript name tree runs when the document opens)");
        }

        if (dictionary.Get("OpenAction") is { } openAction)
        {
            var resolved = document.Resolve(openAction);
            if (resolved is PdfDictionary openDictionary && (openDictionary.GetName("S") is { } openType && AutomaticActionTypes.Contains(openType) || openDictionary.Has("JS")))
            {
                Active(state, owner, Rules.PdfOpenAction, Severity.High,
                    $"/OpenAction runs a {openDictionary.GetName("S") ?? "JavaScript"} action as soon as the document opens");
            }
        }

        if (dictionary.Get("AA") is { } additional)
        {
            var triggers = document.Resolve(additional) is PdfDictionary aa ? string.Join(" ", aa.Entries.Select(e => "/" + e.Key.Value).Take(8)) : "?";
            Active(state, owner, Rules.PdfAdditionalActions, Severity.Medium, $"additional actions (/AA) run on events {triggers}");
        }

        switch (action)
        {
            case "Launch":
                Active(state, owner, Rules.PdfLaunch, Severity.Critical, $"/Launch action starts a program{Target(document, dictionary)}");
                break;
            case "SubmitForm":
                Active(state, owner, Rules.PdfSubmitForm, Severity.Medium, $"/SubmitForm sends form data{Target(document, dictionary)}");
                break;
            case "ImportData":
                Active(state, owner, Rules.PdfImportData, Severity.Medium, $"/ImportData loads form data from a file{Target(document, dictionary)}");
                break;
            case "GoToR":
                Active(state, owner, Rules.PdfGoToRemote, Severity.Medium, $"/GoToR opens another document{Target(document, dictionary)}");
                break;
            case "GoToE":
                Active(state, owner, Rules.PdfGoToEmbedded, Severity.Medium, "/GoToE opens an embedded document");
                break;
            default:
                break;
        }

        if (subtype == "RichMedia" || action == "RichMediaExecute" || dictionary.Has("RichMediaContent") || dictionary.Has("RichMediaSettings"))
        {
            Active(state, owner, Rules.PdfRichMedia, Severity.High, "rich media (Flash/3D/video content run by the reader)");
        }

        if (dictionary.Get("XFA") is { } xfa)
        {
            Active(state, owner, Rules.PdfXfa, Severity.Medium, "XFA form (XML forms carry their own scripts and are not rendered by most readers)");
            var parts = XfaParts(document, xfa);
            if (parts.Length > 0 && !state.XfaForms.Any(form => form.SequenceEqual(parts)))
            {
                state.XfaForms.Add(parts);
            }
        }

        if (dictionary.GetName("Type") == "EmbeddedFile")
        {
            state.EmbeddedFiles.Add(owner.Number);
        }

        if (document.Resolve(dictionary.Get("URI")) is PdfString uri)
        {
            CheckUri(state, owner, uri.Text);
        }
    }

    /// <summary>The streams of an /XFA value: one stream, or an array (direct or referenced) of packet names and streams.</summary>
    private static int[] XfaParts(PdfDocument document, PdfObject value) => value switch
    {
        PdfReference r when document.Get(r.Number) is { IsStream: true } => [r.Number],
        PdfReference r => document.Resolve(r) is PdfArray a ? [.. a.Items.OfType<PdfReference>().Select(x => x.Number)] : [],
        PdfArray a => [.. a.Items.OfType<PdfReference>().Select(x => x.Number)],
        _ => [],
    };

    private static string Target(PdfDocument document, PdfDictionary action)
    {
        var target = document.Resolve(action.Get("F"));
        if (target is PdfDictionary spec)
        {
            target = document.Resolve(spec.Get("UF")) ?? document.Resolve(spec.Get("F"));
        }

        if (target is null && document.Resolve(action.Get("Win")) is PdfDictionary win)
        {
            target = document.Resolve(win.Get("F"));
        }

        return target is PdfString s ? $" ('{Inspector.Truncate(Printable(s.Text), 120)}')" : "";
    }

    private static void CheckUri(AnalysisState state, PdfIndirectObject owner, string uri)
    {
        var shown = Inspector.Truncate(Printable(uri), 160);
        if (UrlChecks.ExecutableExtension(uri) is { } extension)
        {
            Active(state, owner, Rules.PdfUriExecutable, Severity.High, $"link to a .{extension} program: {shown}");
        }

        // As a browser's URL parser reads it: tabs and line breaks anywhere removed, leading controls and spaces stripped
        // ("java\tscript:" passed until 2026-12-07).
        var normalised = new string([.. uri.Where(c => c is not ('\t' or '\n' or '\r'))]).TrimStart(LeadingControls);
        var scheme = normalised.Split(':', 2)[0];
        if (normalised.Contains(':', StringComparison.Ordinal) && (scheme.Equals("javascript", StringComparison.OrdinalIgnoreCase) || scheme.Equals("vbscript", StringComparison.OrdinalIgnoreCase)))
        {
            // A reader hands the link to the browser, which runs it (it passed as clean until 2026-12-07).
            Active(state, owner, Rules.PdfJavaScript, Severity.Medium, $"link runs a script ({scheme}: URI): {shown}");
        }

        var host = UrlChecks.Host(uri);
        if (host is not null && !UrlChecks.IsRawIp(host) && state.MailedLinks is { } mailed && mailed.Count <= state.Context.Limits.MaxEntries)
        {
            mailed.Add(uri);
        }

        if (host is not null && UrlChecks.IsRawIp(host))
        {
            // Reports link to intranet viewers by address; a phishing link goes to the Internet (both were Medium until 2026-12-06).
            var intranet = UrlChecks.IsPrivateAddress(host);
            state.Reporter.Report(Rules.PdfUriIp, intranet ? Severity.Info : Severity.Medium,
                $"object {owner.Number}: link to a raw IP address{(intranet ? " on a private network" : string.Empty)}: {shown}", owner.Offset);
        }
    }

    private static void CheckStream(AnalysisState state, PdfIndirectObject indirect)
    {
        var filters = PdfFilters.FilterNames(indirect.Dictionary ?? new PdfDictionary([]), state.Document);
        if (filters.Count >= 3 || filters.Distinct(StringComparer.Ordinal).Count() < filters.Count)
        {
            state.Reporter.Report(Rules.PdfFilterChain, Severity.Medium,
                $"stream object {indirect.Number} is encoded {filters.Count} times ({string.Join(" ", filters.Select(f => "/" + f))}): layered encodings hide content from scanners",
                indirect.Offset);
        }
    }

    private static async ValueTask DecodeActiveStreamsAsync(AnalysisState state, bool opaque, CancellationToken cancellationToken)
    {
        var context = state.Context;
        var document = state.Document;
        var decodedScripts = new HashSet<int>();
        foreach (var (owner, script) in state.Scripts)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var resolved = document.Resolve(script);
            byte[]? text = null;
            ContentSource? child = null;
            var where = "";
            if (resolved is PdfString s)
            {
                text = s.Bytes;
                child = ContentSource.FromMemory(text);
            }
            else if (script is PdfReference reference && document.Get(reference.Number) is { IsStream: true } stream)
            {
                where = $" (script in stream object {stream.Number})";
                if (!opaque && decodedScripts.Add(stream.Number))
                {
                    child = await DecodeAsync(state, stream, null, cancellationToken).ConfigureAwait(false);
                    if (child is not null)
                    {
                        text = new byte[(int)Math.Min(child.Length, 1024 * 1024)];
                        child.ReadAt(0, text);
                    }
                }
            }

            using (child)
            {
                var indicators = text is null ? [] : ScriptIndicators.Where(i => AsciiSearch.ContainsIgnoreCase(text, i)).ToList();
                var preview = text is null ? "" : $": \"{Inspector.Truncate(Printable(Encoding.Latin1.GetString(text, 0, Math.Min(text.Length, MaxScriptPreview * 2))), MaxScriptPreview)}\"";
                Active(state, owner, Rules.PdfJavaScript, Severity.High,
                    $"JavaScript{where}{(indicators.Count > 0 ? " using " + string.Join(", ", indicators) : "")}{preview}");
                if (child is not null && child.Length > 0 && !context.BombFound())
                {
                    await context.InspectChildAsync($"object {owner.Number} (JavaScript)", child, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        foreach (var form in state.XfaForms)
        {
            if (opaque)
            {
                break;
            }

            var parts = new List<ContentSource>();
            try
            {
                PdfIndirectObject? first = null;
                foreach (var number in form)
                {
                    if (document.Get(number) is not { IsStream: true } stream
                        || await DecodeAsync(state, stream, null, cancellationToken).ConfigureAwait(false) is not { } decoded)
                    {
                        continue;
                    }

                    first ??= stream;
                    parts.Add(decoded);
                }

                if (first is not null && XfaForm.HasScript(parts, cancellationToken))
                {
                    Active(state, first, Rules.PdfXfa, Severity.High, "the XFA form carries <script> elements");
                }
            }
            finally
            {
                parts.ForEach(part => part.Dispose());
            }
        }

        foreach (var number in state.EmbeddedFiles.Order())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (context.BombFound())
            {
                return;
            }

            if (document.Get(number) is not { IsStream: true } stream)
            {
                continue;
            }

            var name = state.FileNames.TryGetValue(number, out var fileName) ? Path.GetFileName(fileName.Replace('\\', '/')) : $"object {number} (embedded file)";
            var described = $"embedded file '{Inspector.SanitiseName(name)}' ({stream.StreamLength} encoded bytes)";
            using var file = opaque ? null : await DecodeAsync(state, stream, null, cancellationToken).ConfigureAwait(false);
            if (file is null)
            {
                Active(state, stream, Rules.PdfEmbeddedFile, Severity.Medium, described);
                continue;
            }

            var before = context.ConcerningReports;
            await context.InspectChildAsync(name.Length == 0 ? $"object {number}" : name, file, cancellationToken).ConfigureAwait(false);
            // PDF/A-3 reports carry their data (an XML, a CSV) as attachments: one read whole and found clean is noted,
            // not held against the report (it was quarantined until 2026-12-06).
            var clean = before is not null && context.ConcerningReports == before;
            Active(state, stream, Rules.PdfEmbeddedFile, clean ? Severity.Info : Severity.Medium, described + (clean ? ", inspected: nothing found in it" : string.Empty));
        }
    }

    private static string Printable(string text)
    {
        var builder = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            builder.Append(char.IsControl(c) ? ' ' : c);
        }

        return builder.ToString();
    }
}
