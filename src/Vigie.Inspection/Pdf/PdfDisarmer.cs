using System.Globalization;
using System.IO.Compression;
using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Pdf;

/// <summary>
/// PDF content disarm by full rewrite: the latest revision of every object reachable from the trailer is written
/// anew (object streams unpacked, names and strings in canonical form, layered filters re-encoded once), without
/// JavaScript, automatic and additional actions, launch, form submission and import, remote go-to, embedded files,
/// rich media, XFA, and links to programs or raw IP addresses. Every removal is listed.
/// </summary>
internal sealed class PdfDisarmer(IOptions<InspectionLimits> limits) : IDisarmer
{
    private const long MaxDecoded = 64L * 1024 * 1024;

    private static readonly HashSet<string> DangerousActions = new(StringComparer.Ordinal)
    {
        "JavaScript", "Launch", "SubmitForm", "ImportData", "GoToR", "GoToE", "RichMediaExecute",
    };

    private static readonly (string Key, string Rule, string What)[] RemovedKeys =
    [
        ("OpenAction", Rules.PdfOpenAction, "automatic action on open (/OpenAction)"),
        ("AA", Rules.PdfAdditionalActions, "additional actions (/AA)"),
        ("JS", Rules.PdfJavaScript, "JavaScript (/JS)"),
        ("JavaScript", Rules.PdfJavaScript, "document-level JavaScript (/JavaScript)"),
        ("EmbeddedFiles", Rules.PdfEmbeddedFile, "embedded file list (/EmbeddedFiles)"),
        ("EF", Rules.PdfEmbeddedFile, "embedded file (/EF)"),
        ("RichMediaContent", Rules.PdfRichMedia, "rich media content"),
        ("RichMediaSettings", Rules.PdfRichMedia, "rich media settings"),
        ("XFA", Rules.PdfXfa, "XFA form (/XFA)"),
    ];

    public bool CanDisarm(ContentType type) => type == ContentType.Pdf;

    public async ValueTask<IReadOnlyList<DisarmAction>> DisarmAsync(ContentSource content, Stream output, DisarmOptions options, CancellationToken cancellationToken)
    {
        var maxObjects = limits.Value.MaxEntries;
        var document = PdfDocument.Scan(content, maxObjects, cancellationToken);
        if (document.Trailers.Any(t => t.Has("Encrypt")) || document.Objects.Any(o => o.Dictionary?.GetName("Type") == "XRef" && o.Dictionary.Has("Encrypt")))
        {
            throw new DisarmException("the PDF is encrypted: it cannot be rewritten without its password");
        }

        if (document.Truncated || document.ValuesExhausted)
        {
            throw new DisarmException("the PDF exceeds the parser's limits: a faithful rewrite is not possible");
        }

        var actions = new List<DisarmAction>();
        var trailer = await UnpackAsync(content, document, cancellationToken).ConfigureAwait(false);
        if (trailer.Get("Root") is not PdfReference root || document.Get(root.Number) is null)
        {
            throw new DisarmException("the PDF has no document catalog (/Root)");
        }

        var dangerous = document.Objects
            .Where(o => o.Dictionary is { } d && IsDangerousAction(d, document))
            .Select(o => o.Number)
            .ToHashSet();
        var embedded = document.Objects.Where(o => o.IsStream && o.Dictionary?.GetName("Type") == "EmbeddedFile").Select(o => o.Number).ToHashSet();

        var reachable = Reachable(document, trailer, cancellationToken);
        foreach (var number in reachable)
        {
            var indirect = document.Get(number)!;
            indirect.Value = Neutralise(indirect.Value, indirect, document, dangerous, actions, 0);
        }

        // Removals may have cut references: write only what is still reachable.
        reachable = Reachable(document, trailer, cancellationToken);
        foreach (var number in embedded.Where(n => !reachable.Contains(n)))
        {
            actions.Add(new DisarmAction(Rules.PdfEmbeddedFile, $"removed embedded file stream object {number}", document.Get(number)?.Offset, ""));
        }

        await WriteAsync(content, document, trailer, reachable, output, actions, cancellationToken).ConfigureAwait(false);
        return actions;
    }

    private static bool IsDangerousAction(PdfDictionary dictionary, PdfDocument document)
    {
        var action = dictionary.GetName("S");
        if (action is not null && DangerousActions.Contains(action) || dictionary.Has("JS"))
        {
            return true;
        }

        return action == "URI" && document.Resolve(dictionary.Get("URI")) is PdfString uri && IsDangerousUri(uri.Text);
    }

    private static bool IsDangerousUri(string uri) =>
        UrlChecks.ExecutableExtension(uri) is not null || UrlChecks.Host(uri) is { } host && UrlChecks.IsRawIp(host);

    /// <summary>Decodes object streams into plain objects; returns the merged trailer.</summary>
    private async ValueTask<PdfDictionary> UnpackAsync(ContentSource content, PdfDocument document, CancellationToken cancellationToken)
    {
        long total = 0;
        foreach (var container in document.Objects.Where(o => o.IsStream && o.Dictionary?.GetName("Type") is "ObjStm" or "XRef").ToList())
        {
            var decoded = await DecodeAsync(content, container, document, cancellationToken).ConfigureAwait(false);
            total += decoded.Length;
            if (total > limits.Value.MaxTotalExtracted)
            {
                throw new DisarmException("object streams decode to more than the extraction budget");
            }

            using var source = ContentSource.FromMemory(decoded);
            if (container.Dictionary!.GetName("Type") == "ObjStm")
            {
                document.AddPackedObjects(container, source, cancellationToken);
            }
            else
            {
                document.AddXrefStreamOffsets(container.Dictionary, decoded);
            }
        }

        document.ReadListedOffsets(content, cancellationToken);

        // The last trailer wins; cross-reference streams carry the trailer keys of their revision.
        var trailer = new PdfDictionary([]);
        var sources = document.Trailers.Cast<PdfDictionary>()
            .Concat(document.Objects.Where(o => o.Dictionary?.GetName("Type") == "XRef").Select(o => o.Dictionary!));
        foreach (var dictionary in sources)
        {
            foreach (var key in new[] { "Root", "Info", "ID" })
            {
                if (dictionary.Get(key) is { } value)
                {
                    trailer.Set(key, value);
                }
            }
        }

        return trailer;
    }

    private async ValueTask<byte[]> DecodeAsync(ContentSource content, PdfIndirectObject stream, PdfDocument document, CancellationToken cancellationToken)
    {
        var length = Math.Max(0, Math.Min(stream.StreamLength, content.Length - stream.StreamOffset));
        await using var raw = content.OpenStream(stream.StreamOffset, length);
        var chain = PdfFilters.Create(raw, stream.Dictionary ?? new PdfDictionary([]), document);
        await using (chain.Stream.ConfigureAwait(false))
        {
            if (chain.StoppedAt is not null)
            {
                throw new DisarmException($"stream object {stream.Number} uses the {chain.StoppedAt} filter, which cannot be decoded for rewriting");
            }

            var cap = Math.Min(MaxDecoded, Math.Max(limits.Value.RatioCheckFloor, (long)Math.Min(length * limits.Value.MaxCompressionRatio, long.MaxValue / 2)));
            using var output = new MemoryStream();
            var buffer = new byte[64 * 1024];
            int read;
            while ((read = await chain.Stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (output.Length + read > cap)
                {
                    throw new DisarmException($"stream object {stream.Number} expands beyond the ratio and size limits (decompression bomb)");
                }

                output.Write(buffer, 0, read);
            }

            return output.ToArray();
        }
    }

    private static HashSet<int> Reachable(PdfDocument document, PdfDictionary trailer, CancellationToken cancellationToken)
    {
        var reachable = new HashSet<int>();
        var pending = new Stack<PdfObject>();
        pending.Push(trailer);
        while (pending.Count > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            switch (pending.Pop())
            {
                case PdfReference reference:
                    if (reachable.Add(reference.Number) && document.Get(reference.Number) is { } target)
                    {
                        if (target.Dictionary?.GetName("Type") is "ObjStm" or "XRef")
                        {
                            reachable.Remove(reference.Number);
                            break;
                        }

                        pending.Push(target.Value);
                    }
                    else if (document.Get(reference.Number) is null)
                    {
                        reachable.Remove(reference.Number);
                    }

                    break;
                case PdfDictionary dictionary:
                    foreach (var (_, value) in dictionary.Entries)
                    {
                        pending.Push(value);
                    }

                    break;
                case PdfArray array:
                    foreach (var item in array.Items)
                    {
                        pending.Push(item);
                    }

                    break;
                default:
                    break;
            }
        }

        return reachable;
    }

    private static PdfObject Neutralise(PdfObject value, PdfIndirectObject owner, PdfDocument document, HashSet<int> dangerous, List<DisarmAction> actions, int depth)
    {
        if (depth > PdfParser.MaxDepth)
        {
            return value;
        }

        switch (value)
        {
            case PdfDictionary dictionary:
                foreach (var (key, rule, what) in RemovedKeys)
                {
                    if (dictionary.Remove(key))
                    {
                        actions.Add(new DisarmAction(rule, $"removed {what} from object {owner.Number}", owner.Offset, ""));
                    }
                }

                foreach (var key in new[] { "A", "Next", "PA" })
                {
                    var item = dictionary.Get(key);
                    if (item is PdfReference r && dangerous.Contains(r.Number) || item is PdfDictionary d && IsDangerousAction(d, document))
                    {
                        dictionary.Remove(key);
                        actions.Add(new DisarmAction(RuleFor(item, document), $"removed a {ActionName(item, document)} action (/{key}) from object {owner.Number}", owner.Offset, ""));
                    }
                }

                if (IsDangerousAction(dictionary, document))
                {
                    // An action that is still referenced from somewhere unexpected: make it do nothing.
                    var name = ActionName(dictionary, document);
                    dictionary.Entries.Clear();
                    dictionary.Set("Type", new PdfName("Action"));
                    dictionary.Set("S", new PdfName("GoTo"));
                    dictionary.Set("D", new PdfArray([]));
                    actions.Add(new DisarmAction(RuleFor(dictionary, document), $"neutralised a {name} action in object {owner.Number}", owner.Offset, ""));
                }

                if (dictionary.GetName("Subtype") == "RichMedia")
                {
                    dictionary.Set("Subtype", new PdfName("Square"));
                    dictionary.Set("F", new PdfNumber(2, true));
                    actions.Add(new DisarmAction(Rules.PdfRichMedia, $"turned rich media annotation {owner.Number} into a hidden plain one", owner.Offset, ""));
                }

                if (document.Resolve(dictionary.Get("URI")) is PdfString uri && IsDangerousUri(uri.Text))
                {
                    dictionary.Remove("URI");
                    actions.Add(new DisarmAction(UrlChecks.ExecutableExtension(uri.Text) is not null ? Rules.PdfUriExecutable : Rules.PdfUriIp,
                        $"removed the link '{Inspector.Truncate(uri.Text, 120)}' from object {owner.Number}", owner.Offset, ""));
                }

                var obfuscated = dictionary.Entries.Count(e => e.Key.Escaped);
                if (obfuscated > 0)
                {
                    actions.Add(new DisarmAction(Rules.PdfObfuscatedName, $"rewrote {obfuscated} escaped name(s) of object {owner.Number} in plain form", owner.Offset, ""));
                }

                for (var i = 0; i < dictionary.Entries.Count; i++)
                {
                    var (key, item) = dictionary.Entries[i];
                    dictionary.Entries[i] = new(new PdfName(key.Value), Neutralise(item, owner, document, dangerous, actions, depth + 1));
                }

                return dictionary;
            case PdfArray array:
                // Action dictionaries in arrays (/Next chains) are neutralised in place by the dictionary case.
                for (var i = 0; i < array.Items.Count; i++)
                {
                    array.Items[i] = Neutralise(array.Items[i], owner, document, dangerous, actions, depth + 1);
                }

                return array;
            case PdfName name when name.Escaped:
                return new PdfName(name.Value);
            default:
                return value;
        }
    }

    private static string ActionName(PdfObject? value, PdfDocument document) =>
        (document.Resolve(value) as PdfDictionary)?.GetName("S") ?? "JavaScript";

    private static string RuleFor(PdfObject? value, PdfDocument document) => ActionName(value, document) switch
    {
        "JavaScript" => Rules.PdfJavaScript,
        "Launch" => Rules.PdfLaunch,
        "SubmitForm" => Rules.PdfSubmitForm,
        "ImportData" => Rules.PdfImportData,
        "GoToR" => Rules.PdfGoToRemote,
        "GoToE" => Rules.PdfGoToEmbedded,
        "RichMediaExecute" => Rules.PdfRichMedia,
        "URI" => Rules.PdfUriExecutable,
        _ => Rules.PdfJavaScript,
    };

    private async ValueTask WriteAsync(ContentSource content, PdfDocument document, PdfDictionary trailer, HashSet<int> reachable, Stream output,
        List<DisarmAction> actions, CancellationToken cancellationToken)
    {
        var offsets = new SortedDictionary<int, (long Offset, int Generation)>();
        long position = 0;
        async ValueTask Emit(ReadOnlyMemory<byte> bytes)
        {
            await output.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            position += bytes.Length;
        }

        await Emit(Encoding.Latin1.GetBytes("%PDF-1.7\n%\u00E2\u00E3\u00CF\u00D3\n")).ConfigureAwait(false);
        var text = new StringBuilder();
        foreach (var number in reachable.Order())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var indirect = document.Get(number)!;
            offsets[number] = (position, indirect.Generation);
            text.Clear();
            text.Append(CultureInfo.InvariantCulture, $"{number} {indirect.Generation} obj\n");
            if (!indirect.IsStream)
            {
                PdfSerializer.Write(text, indirect.Value);
                text.Append("\nendobj\n");
                await Emit(Encoding.Latin1.GetBytes(text.ToString())).ConfigureAwait(false);
                continue;
            }

            var dictionary = indirect.Dictionary ?? new PdfDictionary([]);
            var filters = PdfFilters.FilterNames(dictionary, document);
            byte[]? recoded = null;
            if (filters.Count >= 3 || filters.Distinct(StringComparer.Ordinal).Count() < filters.Count)
            {
                recoded = Zlib(await DecodeAsync(content, indirect, document, cancellationToken).ConfigureAwait(false));
                dictionary.Set("Filter", new PdfName("FlateDecode"));
                dictionary.Remove("DecodeParms");
                actions.Add(new DisarmAction(Rules.PdfFilterChain, $"re-encoded stream object {number} once with /FlateDecode instead of {filters.Count} layers", indirect.Offset, ""));
            }

            var rawLength = Math.Max(0, Math.Min(indirect.StreamLength, content.Length - indirect.StreamOffset));
            dictionary.Set("Length", new PdfNumber(recoded?.Length ?? rawLength, true));
            PdfSerializer.Write(text, dictionary);
            text.Append("\nstream\n");
            await Emit(Encoding.Latin1.GetBytes(text.ToString())).ConfigureAwait(false);
            if (recoded is not null)
            {
                await Emit(recoded).ConfigureAwait(false);
            }
            else
            {
                await using var raw = content.OpenStream(indirect.StreamOffset, rawLength);
                var buffer = new byte[64 * 1024];
                int read;
                while ((read = await raw.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    await Emit(buffer.AsMemory(0, read)).ConfigureAwait(false);
                }
            }

            await Emit("\nendstream\nendobj\n"u8.ToArray()).ConfigureAwait(false);
        }

        var size = offsets.Count == 0 ? 1 : offsets.Keys.Max() + 1;
        var xref = new StringBuilder($"xref\n0 {size}\n0000000000 65535 f \n");
        for (var i = 1; i < size; i++)
        {
            xref.Append(offsets.TryGetValue(i, out var entry) ? $"{entry.Offset:D10} {entry.Generation:D5} n \n" : "0000000000 00000 f \n");
        }

        var newTrailer = new PdfDictionary([]);
        newTrailer.Set("Size", new PdfNumber(size, true));
        foreach (var key in new[] { "Root", "Info", "ID" })
        {
            if (trailer.Get(key) is { } value && (value is not PdfReference r || offsets.ContainsKey(r.Number)))
            {
                newTrailer.Set(key, value);
            }
        }

        var startXref = position;
        xref.Append("trailer\n");
        PdfSerializer.Write(xref, newTrailer);
        xref.Append(CultureInfo.InvariantCulture, $"\nstartxref\n{startXref}\n%%EOF\n");
        await Emit(Encoding.Latin1.GetBytes(xref.ToString())).ConfigureAwait(false);
    }

    private static byte[] Zlib(byte[] data)
    {
        using var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(data);
        }

        return output.ToArray();
    }
}
