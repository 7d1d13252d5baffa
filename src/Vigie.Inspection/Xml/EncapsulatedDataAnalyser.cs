using System.Buffers;
using System.Text;
using System.Xml;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Xml;

/// <summary>
/// HL7 v3 encapsulated data (the ED type) in an XML document: an element with a <c>representation</c> or
/// <c>mediaType</c> attribute (a CDA's <c>nonXMLBody/text</c>, an <c>observationMedia/value</c>, a thumbnail). Viewers
/// decode it and show the document it carries (a scanned report as a PDF), so each one is decoded, base64 by the
/// decoder mail parts go through and then inflated when <c>compression</c> says so, under the extraction limits, and
/// inspected as a child <c>name[N]:mediaType</c>. Before 2026-12-07 such a payload was never decoded: a PDF running a
/// script in an Encapsulated CDA was stored as clean. FHIR resources in XML too: the <c>data</c> of an Attachment or a
/// Binary (a <c>value</c> attribute), inspected as <c>data[N]:contentType</c> (since 2026-12-07; JSON: <see cref="Hl7.FhirAttachmentAnalyser"/>).
/// </summary>
internal sealed class EncapsulatedDataAnalyser : IContentAnalyser
{
    /// <summary>Payloads read from one document; the engine's object limit bounds them too.</summary>
    private const int MaxPayloads = 256;

    private const int CharChunk = 16 * 1024;

    public string Name => "xml-data";

    /// <summary>Html too: a comment naming &lt;html&gt; near the top makes an XML document "Html" by its bytes.</summary>
    public bool CanAnalyse(ContentType type) => type is ContentType.Xml or ContentType.Text or ContentType.Html;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (!MayHoldEncapsulatedData(content, cancellationToken))
        {
            return;
        }

        var open = new List<Payload>();
        var payloads = 0;
        string? fhirType = null;
        var chars = ArrayPool<char>.Shared.Rent(CharChunk);
        try
        {
            using var reader = XmlReader.Create(content.OpenStream(), UntrustedXml.Document);
            try
            {
                for (var nodes = 0L; reader.Read(); nodes++)
                {
                    if ((nodes & 0xFFF) == 0)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                    }

                    if (reader.NodeType == XmlNodeType.Element && reader.NamespaceURI == FhirNamespace)
                    {
                        // FHIR in XML: an Attachment's or a Binary's data is a value attribute, after its contentType.
                        if (reader.LocalName == "contentType")
                        {
                            fhirType = Inspector.Truncate(Inspector.Printable(reader.GetAttribute("value") ?? ""), 60);
                        }
                        else if (reader.LocalName == "data" && reader.GetAttribute("value") is { Length: > 0 } value)
                        {
                            if (++payloads > MaxPayloads)
                            {
                                context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxPayloads} encapsulated data elements: the rest were not decoded");
                                return;
                            }

                            var attachment = new Payload(context, new Encapsulated(true, string.IsNullOrEmpty(fhirType) ? "unknown" : fhirType, null), $"data[{payloads}]", reader.Depth);
                            open.Add(attachment);
                            for (var at = 0; at < value.Length; at += CharChunk)
                            {
                                await attachment.AppendAsync(value.AsMemory(at, Math.Min(CharChunk, value.Length - at)), cancellationToken).ConfigureAwait(false);
                            }

                            open.Remove(attachment);
                            await FinishAsync(context, attachment, cancellationToken).ConfigureAwait(false);
                            fhirType = null;
                            continue;
                        }
                    }

                    switch (reader.NodeType)
                    {
                        case XmlNodeType.Element when Describe(reader) is { } found:
                            if (++payloads > MaxPayloads)
                            {
                                context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxPayloads} encapsulated data elements: the rest were not decoded");
                                return;
                            }

                            var payload = new Payload(context, found, $"{Inspector.SanitiseName(reader.LocalName)}[{payloads}]", reader.Depth);
                            if (reader.IsEmptyElement)
                            {
                                await FinishAsync(context, payload, cancellationToken).ConfigureAwait(false);
                            }
                            else
                            {
                                open.Add(payload);
                            }

                            break;
                        case XmlNodeType.Text or XmlNodeType.CDATA or XmlNodeType.SignificantWhitespace
                            when open.Count > 0 && open[^1].Depth == reader.Depth - 1:
                            // Only the element's own text: a thumbnail or reference inside it is read on its own.
                            var current = open[^1];
                            int read;
                            while ((read = reader.ReadValueChunk(chars, 0, CharChunk)) > 0)
                            {
                                await current.AppendAsync(chars.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                            }

                            break;
                        case XmlNodeType.EndElement when open.Count > 0 && open[^1].Depth == reader.Depth:
                            var done = open[^1];
                            open.RemoveAt(open.Count - 1);
                            await FinishAsync(context, done, cancellationToken).ConfigureAwait(false);
                            break;
                    }
                }
            }
            catch (XmlException)
            {
                // Not XML, or not well-formed past this point: what was decoded of an unfinished payload is still read.
            }

            for (var i = open.Count - 1; i >= 0; i--)
            {
                var unfinished = open[i];
                open.RemoveAt(i);
                await FinishAsync(context, unfinished, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
            open.ForEach(payload => payload.Dispose());
        }
    }

    /// <summary>What an ED element says of its content; null for an element that is not one, or is plain narrative text.</summary>
    private static Encapsulated? Describe(XmlReader reader)
    {
        if (!reader.HasAttributes)
        {
            return null;
        }

        var representation = reader.GetAttribute("representation")?.Trim();
        var mediaType = reader.GetAttribute("mediaType")?.Trim();
        if (representation is null && mediaType is null)
        {
            return null;
        }

        var base64 = representation is not null && representation.Equals("B64", StringComparison.OrdinalIgnoreCase);
        var media = string.IsNullOrEmpty(mediaType) ? "text/plain" : mediaType;
        // Text that is only text (the default), and a section's structured narrative, whose markup is read in place.
        if (!base64 && (media.Equals("text/plain", StringComparison.OrdinalIgnoreCase) || media.Equals("text/x-hl7-ft", StringComparison.OrdinalIgnoreCase)
            || media.Equals("text/x-hl7-text+xml", StringComparison.OrdinalIgnoreCase)))
        {
            return null;
        }

        return new Encapsulated(base64, Inspector.Truncate(Inspector.Printable(media), 60), reader.GetAttribute("compression")?.Trim());
    }

    private static async ValueTask FinishAsync(InspectionContext context, Payload payload, CancellationToken cancellationToken)
    {
        using (payload)
        {
            var what = $"{payload.Label}:{payload.Found.MediaType}";
            if (payload.Status == ExtractionStatus.BudgetExhausted || context.BombFound())
            {
                return;
            }

            using var decoded = payload.Detach();
            if (decoded.Length == 0)
            {
                return;
            }

            var compression = payload.Found.Compression;
            context.Report(Rules.XmlEncapsulatedData, Severity.Info,
                $"{what}: encapsulated data ({(payload.Found.Base64 ? "base64" : "text")}{(string.IsNullOrEmpty(compression) ? "" : $", compression {Inspector.Truncate(Inspector.Printable(compression), 8)}")}, {decoded.Length} bytes) decoded and inspected");
            if (string.IsNullOrEmpty(compression) || compression is "GZ" or "BZ" or "Z7")
            {
                // gzip, bzip2 and 7z say what they are by their bytes, and their own analysers open them.
                await context.InspectChildAsync(what, decoded, cancellationToken).ConfigureAwait(false);
                return;
            }

            if (compression is not ("DF" or "ZL"))
            {
                context.Report(Rules.XmlEncapsulatedData, Severity.Medium,
                    $"{what}: compressed with '{Inspector.Truncate(Inspector.Printable(compression), 8)}', which Vigie does not decode: inspected as it is");
                await context.InspectChildAsync(what, decoded, cancellationToken).ConfigureAwait(false);
                return;
            }

            ExtractionResult result;
            await using (var inflating = new Pdf.ZlibOrDeflateStream(decoded.OpenStream()))
            {
                result = await Extraction.ExtractAsync(context, inflating, Math.Max(1, decoded.Length), cancellationToken).ConfigureAwait(false);
            }

            using var inflated = result.Content;
            if (context.ReportExtractionProblem(result, what, Rules.ExpansionBomb, Rules.XmlEncapsulatedData, null) || inflated is null)
            {
                return;
            }

            await context.InspectChildAsync(what, inflated, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Whether the bytes name an ED attribute at all (most XML and every plain text do not): one pass in chunks. UTF-16
    /// and UTF-32 (a byte order mark, or the opening of XML 1.0 Appendix F) are parsed whatever they hold, and so is XML
    /// whose namespace declarations hold a reference (<c>http://hl7.org/fhi&amp;#114;</c>), which the bytes cannot judge.
    /// </summary>
    private static bool MayHoldEncapsulatedData(ContentSource content, CancellationToken cancellationToken)
    {
        Span<byte> start = stackalloc byte[8];
        start = start[..content.ReadAt(0, start)];
        if (start.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]) || start.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF])
            || ContentIdentifier.UnmarkedWideEncoding(start) is not null)
        {
            // UTF-16 without a byte order mark was typed Unknown and never parsed until 2026-12-08.
            return true;
        }

        var found = AsciiSearch.Mentions(content, content.Length, EdAttributes, cancellationToken);
        // A FHIR namespace written with a character reference was clean until 2026-12-08.
        return found[0] || (found[1] && NamespaceHoldsReference(content, cancellationToken));
    }

    private static readonly string[][] EdAttributes = [["representation", "mediaType", FhirNamespace], ["xmlns"]];

    /// <summary>
    /// Whether a namespace declaration's value (<c>xmlns="…"</c>, <c>xmlns:f='…'</c>) holds a character or entity
    /// reference, which any XML parser resolves: one pass in chunks, each declaration's value looked at within 4 KiB.
    /// </summary>
    private static bool NamespaceHoldsReference(ContentSource content, CancellationToken cancellationToken)
    {
        const int Chunk = 64 * 1024;
        const int Reach = 4096;
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk + Reach);
        try
        {
            for (long offset = 0; offset < content.Length; offset += Chunk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var window = buffer.AsSpan(0, content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(Chunk + Reach, content.Length - offset))));
                var at = 0;
                while (at < Math.Min(Chunk, window.Length))
                {
                    var found = window[at..].IndexOf("xmlns"u8);
                    if (found < 0 || at + found >= Chunk)
                    {
                        break;
                    }

                    at += found + 5;
                    var rest = window[at..];
                    var equals = rest.IndexOf((byte)'=');
                    if (equals < 0 || equals > 256)
                    {
                        continue;
                    }

                    var value = rest[(equals + 1)..].TrimStart(" \t\r\n"u8);
                    if (value.IsEmpty || value[0] is not ((byte)'"' or (byte)'\''))
                    {
                        continue;
                    }

                    var end = value[1..].IndexOf(value[0]);
                    if (value[1..(end < 0 ? value.Length : end + 1)].IndexOf((byte)'&') >= 0)
                    {
                        return true;
                    }
                }
            }

            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private const string FhirNamespace = "http://hl7.org/fhir";

    private sealed record Encapsulated(bool Base64, string MediaType, string? Compression);

    /// <summary>One ED element being read: its text decoded as it arrives, under the inner size limit and the extraction budget.</summary>
    private sealed class Payload(InspectionContext context, Encapsulated found, string label, int depth) : IDisposable
    {
        private readonly MimeKit.Encodings.Base64Decoder? _decoder = found.Base64 ? new() : null;
        private SpillBuffer? _buffer = new(context);
        private byte[] _input = [];
        private byte[] _output = [];
        private long _produced;
        private bool _full;

        public Encapsulated Found => found;

        public string Label => label;

        public int Depth => depth;

        public ExtractionStatus Status { get; private set; } = ExtractionStatus.Complete;

        public async ValueTask AppendAsync(ReadOnlyMemory<char> text, CancellationToken cancellationToken)
        {
            if (_buffer is null || _full || Status != ExtractionStatus.Complete)
            {
                return;
            }

            int count;
            if (_decoder is not null)
            {
                // Base64 is ASCII; anything else is noise the decoder skips, as it does in a mail part.
                if (_input.Length < text.Length)
                {
                    _input = new byte[text.Length];
                }

                for (var i = 0; i < text.Length; i++)
                {
                    var c = text.Span[i];
                    _input[i] = c < 0x80 ? (byte)c : (byte)' ';
                }

                var estimate = _decoder.EstimateOutputLength(text.Length);
                if (_output.Length < estimate)
                {
                    _output = new byte[estimate];
                }

                count = _decoder.Decode(_input, 0, text.Length, _output);
            }
            else
            {
                var estimate = Encoding.UTF8.GetMaxByteCount(text.Length);
                if (_output.Length < estimate)
                {
                    _output = new byte[estimate];
                }

                count = Encoding.UTF8.GetBytes(text.Span, _output);
            }

            if (_produced + count > context.Limits.MaxInnerSize)
            {
                // Inspected as far as the limit, as a uuencoded file is.
                count = (int)(context.Limits.MaxInnerSize - _produced);
                _full = true;
                context.Report(Rules.InnerSizeLimit, Severity.Medium,
                    $"{label}:{found.MediaType} exceeds the {context.Limits.MaxInnerSize}-byte inner object limit: inspected as far as the limit");
            }

            if (count <= 0)
            {
                return;
            }

            if (!context.TryChargeExtraction(count))
            {
                Status = ExtractionStatus.BudgetExhausted;
                return;
            }

            await _buffer.WriteAsync(_output.AsMemory(0, count), cancellationToken).ConfigureAwait(false);
            _produced += count;
        }

        public ContentSource Detach()
        {
            var content = _buffer!.Detach();
            _buffer.Dispose();
            _buffer = null;
            return content;
        }

        public void Dispose()
        {
            _buffer?.Dispose();
            _buffer = null;
        }
    }
}
