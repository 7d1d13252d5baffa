using System.Buffers;
using System.Text.Json;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Hl7;

/// <summary>
/// FHIR resources in JSON (one, a Bundle, an array, or bulk-export NDJSON): the base64 <c>data</c> of an Attachment (a
/// DocumentReference's, a DiagnosticReport's presented form, a Media's) or of a Binary is the document a viewer opens,
/// so each one is decoded under the extraction limits and inspected as a child <c>data[N]:contentType</c>. Before
/// 2026-12-07 a FHIR resource was plain text: a PDF running a script inside a DocumentReference was clean.
/// Read streaming, token by token; one value may be as long as the inner object limit allows, never longer.
/// </summary>
internal sealed class FhirAttachmentAnalyser : IContentAnalyser
{
    /// <summary>Payloads read from one document; the engine's object limit bounds them too.</summary>
    private const int MaxPayloads = 256;

    /// <summary>FHIR nests a few levels (a Bundle's entry, a resource, its content, an attachment): far above any real one.</summary>
    private const int MaxDepth = 64;

    private const int Chunk = 64 * 1024;

    /// <summary>JSON lines that could not be read, each skipped to the next line (NDJSON), before the rest is left unread.</summary>
    private const int MaxMalformed = 256;

    /// <summary>Bytes at the head where <see cref="CanAnalyse(ContentType, ContentSource)"/> looks for a JSON object.</summary>
    private const int HeadLength = 1024;

    private static readonly JsonReaderOptions Options = new()
    {
        MaxDepth = MaxDepth,
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        AllowMultipleValues = true,
    };

    public string Name => "fhir-data";

    public bool CanAnalyse(ContentType type) => type == ContentType.Text;

    /// <summary>
    /// Text, or JSON whatever type the identifier gave it (Html for a narrative that names &lt;html&gt;, Unknown for one
    /// NUL byte): a FHIR reader parses it all the same. Only the head is read, a few bytes for anything else.
    /// </summary>
    public bool CanAnalyse(ContentType type, ContentSource content) => type == ContentType.Text || StartsAsJsonObject(content);

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (JsonStart(content, cancellationToken) is not { } start)
        {
            return;
        }

        var recognised = start.Recognised;
        // A value is held whole while it is decoded: up to what an inspection keeps in memory (16 MiB decoded by default),
        // reserved in its memory budget like any in-memory copy, and its decoded copy too.
        var maxToken = (int)Math.Min(context.Limits.MaxInnerSize, context.Limits.InMemoryThreshold) / 3 * 4 + Chunk;
        var session = (context as EngineContext)?.Session;
        long reserved = 0;
        var capacity = Chunk;
        var buffer = ArrayPool<byte>.Shared.Rent(capacity);
        var state = new JsonReaderState(Options);
        var scan = new Scan(session, context.Limits.MaxInnerSize);
        try
        {
            var position = start.Offset;
            var filled = 0;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(position, buffer.AsSpan(filled, capacity - filled));
                position += read;
                filled += read;
                var final = position >= content.Length || read == 0 && filled < capacity;
                scan.Found.Clear();
                var consumed = ReadTokens(buffer.AsSpan(0, filled), final, position - filled, ref state, scan);
                foreach (var payload in scan.Found)
                {
                    try
                    {
                        // JSON let through for a \u escape is decoded only once it names a resource type.
                        if ((recognised || scan.ResourceTypeSeen) && !await InspectPayloadAsync(context, payload, cancellationToken).ConfigureAwait(false))
                        {
                            return;
                        }
                    }
                    finally
                    {
                        payload.Release(session);
                    }
                }

                if (consumed < 0 || final || scan.Payloads > MaxPayloads)
                {
                    break;
                }

                filled = scan.SkipLine ? 0 : KeepUnread(buffer.AsSpan(0, filled), consumed);
                if (filled == capacity)
                {
                    // One token fills the buffer: a longer one is read, up to the limit (the requested size, not the
                    // pool's array, which may be twice as long).
                    var what = buffer.AsSpan(0, filled).TrimStart(",:"u8) is [(byte)'"', ..] ? "string value" : "value or comment";
                    if (capacity >= maxToken)
                    {
                        context.Report(Rules.InnerSizeLimit, Severity.Medium,
                            $"a FHIR JSON {what} at byte {position - filled} longer than {maxToken} bytes (the most an inspection decodes in memory, {context.Limits.InMemoryThreshold} bytes decoded): it and the rest of the document were not read");
                        break;
                    }

                    var size = (int)Math.Min(maxToken, (long)capacity * 2);
                    var larger = ArrayPool<byte>.Shared.Rent(size);
                    if (session is not null && !session.TryReserveMemory(larger.Length))
                    {
                        ArrayPool<byte>.Shared.Return(larger);
                        context.Report(Rules.InnerSizeLimit, Severity.Medium,
                            $"a FHIR JSON {what} at byte {position - filled} longer than {capacity} bytes while the node's inspection memory is spent: it and the rest of the document were not read");
                        break;
                    }

                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
                    session?.ReleaseMemory(reserved);
                    reserved = larger.Length;
                    buffer = larger;
                    capacity = size;
                }
            }

            ReportUnread(context, scan, recognised || scan.ResourceTypeSeen);
        }
        finally
        {
            foreach (var payload in scan.Found)
            {
                payload.Release(session);
            }

            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            session?.ReleaseMemory(reserved);
        }
    }

    /// <summary>
    /// Moves what the reader left to the buffer's start, without the whitespace before its next token (the reader
    /// leaves a separator and the whitespace after it unconsumed): a gigabyte of whitespace between tokens is no long value.
    /// </summary>
    private static int KeepUnread(Span<byte> buffer, int consumed)
    {
        var rest = buffer[consumed..];
        var lead = rest.IndexOfAnyExcept(" \t\r\n,:"u8);
        lead = lead < 0 ? rest.Length : lead;
        var kept = 0;
        foreach (var b in rest[..lead])
        {
            if (b is (byte)',' or (byte)':')
            {
                buffer[kept++] = b;
            }
        }

        rest[lead..].CopyTo(buffer[kept..]);
        return kept + rest.Length - lead;
    }

    /// <summary>What could not be read is said, never clean, once the content reads as FHIR (JSON that is no FHIR stays text).</summary>
    private static void ReportUnread(InspectionContext context, Scan scan, bool fhir)
    {
        if (scan.Payloads > MaxPayloads)
        {
            context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxPayloads} FHIR attachments: the rest were not decoded");
        }

        if (scan.MemorySpent is { } label)
        {
            context.Report(Rules.InnerSizeLimit, Severity.Medium, $"{label}: not decoded while the node's inspection memory is spent, nor the rest of the document");
        }

        if (!fhir)
        {
            return;
        }

        if (scan.TooDeep is { } deep)
        {
            context.Report(Rules.DepthLimit, Severity.Medium,
                $"FHIR JSON nested deeper than {MaxDepth} levels at byte {deep}: the rest of its line was not read", deep);
        }

        if (scan.Malformed > 0)
        {
            var rest = scan.Malformed > MaxMalformed ? $"; past {MaxMalformed} such lines the rest of the document was not read" : "";
            context.Report(Rules.FhirMalformed, Severity.Medium,
                $"FHIR JSON that does not parse ({scan.FirstError}): {Math.Min(scan.Malformed, MaxMalformed)} line(s) not read past the error{rest}; what could not be read was not inspected",
                scan.FirstErrorAt);
        }
    }

    /// <summary>One decoded data value (or one that gave nothing), held until it is inspected.</summary>
    private sealed class Payload(string label, byte[]? data, int length, int skipped, bool cut, long reserved)
    {
        private byte[]? _data = data;

        public string Label => label;

        public ReadOnlyMemory<byte> Data => _data is null ? ReadOnlyMemory<byte>.Empty : _data.AsMemory(0, length);

        public int Skipped => skipped;

        public bool Cut => cut;

        public void Release(InspectionSession? session)
        {
            if (_data is not null)
            {
                ArrayPool<byte>.Shared.Return(_data, clearArray: true);
                _data = null;
                session?.ReleaseMemory(reserved);
            }
        }
    }

    private static async ValueTask<bool> InspectPayloadAsync(InspectionContext context, Payload payload, CancellationToken cancellationToken)
    {
        if (payload.Data.IsEmpty)
        {
            context.Report(Rules.FhirAttachmentData, Severity.Low, $"{payload.Label}: its data is not base64 (nothing decodes): not inspected");
            return true;
        }

        var skipped = payload.Skipped > 0 ? $", {payload.Skipped} character(s) outside the base64 alphabet skipped" : "";
        if (!await InspectDecodedAsync(context, payload.Label, payload.Data, Rules.FhirAttachmentData,
                $"{payload.Label}: FHIR attachment data (base64, {payload.Data.Length} bytes{skipped}) decoded and inspected", cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        if (payload.Cut)
        {
            context.Report(Rules.InnerSizeLimit, Severity.Medium,
                $"{payload.Label} exceeds the {context.Limits.MaxInnerSize}-byte inner object limit: inspected as far as the limit");
        }

        return true;
    }

    /// <summary>What the token reader remembers from one buffer to the next.</summary>
    private sealed class Scan(InspectionSession? session, long maxInner)
    {
        public InspectionSession? Session => session;

        public long MaxInner => maxInner;

        /// <summary>Per open object: its contentType when read before its data.</summary>
        public List<string?> Objects { get; } = [];

        public List<Payload> Found { get; } = [];

        public bool DataNext { get; set; }

        public bool ContentTypeNext { get; set; }

        public int Payloads { get; set; }

        /// <summary>A resourceType property was read (escaped or not): the content is FHIR.</summary>
        public bool ResourceTypeSeen { get; set; }

        /// <summary>After an error, the rest of the line is skipped: NDJSON's next line is read on its own.</summary>
        public bool SkipLine { get; set; }

        public int Malformed { get; set; }

        public string? FirstError { get; set; }

        public long? FirstErrorAt { get; set; }

        public long? TooDeep { get; set; }

        public string? MemorySpent { get; set; }
    }

    /// <summary>
    /// Reads the whole tokens of <paramref name="json"/> (at <paramref name="at"/> in the content); returns the bytes
    /// consumed, or -1 when the rest is not to be read. Decoded payloads go to the scan's list.
    /// </summary>
    private static int ReadTokens(ReadOnlySpan<byte> json, bool final, long at, ref JsonReaderState state, Scan scan)
    {
        var offset = 0;
        while (true)
        {
            if (scan.SkipLine)
            {
                var end = json[offset..].IndexOf((byte)'\n');
                if (end < 0)
                {
                    return json.Length;
                }

                offset += end + 1;
                scan.SkipLine = false;
                state = new JsonReaderState(Options);
                scan.Objects.Clear();
                scan.DataNext = false;
                scan.ContentTypeNext = false;
            }

            var reader = new Utf8JsonReader(json[offset..], final, state);
            try
            {
                var stop = !ReadValues(ref reader, scan);
                state = reader.CurrentState;
                return stop ? -1 : offset + (int)reader.BytesConsumed;
            }
            catch (JsonException ex)
            {
                // The token that failed starts after what was consumed; its line is skipped, the next one read on its own.
                var rest = json[(offset + (int)reader.BytesConsumed)..];
                var token = rest.IndexOfAnyExcept(JsonWhitespace);
                offset += (int)reader.BytesConsumed + (token < 0 ? rest.Length : token);
                if (reader.CurrentDepth >= MaxDepth)
                {
                    scan.TooDeep ??= at + offset;
                }
                else if (++scan.Malformed == 1)
                {
                    scan.FirstError = Inspector.Truncate(Inspector.Printable(ex.Message.Split(" Path:", 2)[0]), 120);
                    scan.FirstErrorAt = at + offset;
                }

                if (scan.Malformed > MaxMalformed)
                {
                    return -1;
                }

                scan.SkipLine = true;
            }
        }
    }

    /// <summary>Reads tokens until the buffer ends; false when reading stops (the attachment or memory limit).</summary>
    private static bool ReadValues(ref Utf8JsonReader reader, Scan scan)
    {
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                    scan.Objects.Add(null);
                    break;
                case JsonTokenType.EndObject when scan.Objects.Count > 0:
                    scan.Objects.RemoveAt(scan.Objects.Count - 1);
                    break;
                case JsonTokenType.PropertyName:
                    scan.DataNext = reader.ValueTextEquals("data"u8);
                    scan.ContentTypeNext = reader.ValueTextEquals("contentType"u8);
                    scan.ResourceTypeSeen |= reader.ValueTextEquals("resourceType"u8);
                    continue;
                case JsonTokenType.String when scan.ContentTypeNext && scan.Objects.Count > 0:
                    scan.Objects[^1] = Inspector.Truncate(Inspector.Printable(reader.GetString() ?? ""), 60);
                    break;
                case JsonTokenType.String when scan.DataNext:
                    if (++scan.Payloads > MaxPayloads)
                    {
                        return false;
                    }

                    var type = scan.Objects.Count > 0 ? scan.Objects[^1] : null;
                    var label = $"data[{scan.Payloads}]:{(string.IsNullOrEmpty(type) ? "unknown" : type)}";
                    if (Decode(ref reader, scan, label) is not { } payload)
                    {
                        scan.MemorySpent = label;
                        return false;
                    }

                    if (payload.Data.IsEmpty && payload.Skipped == 0 && !payload.Cut && reader.ValueSpan.IndexOfAnyExcept(JsonWhitespace) < 0)
                    {
                        // An empty value carries nothing.
                        scan.Payloads--;
                        break;
                    }

                    scan.Found.Add(payload);
                    break;
                default:
                    break;
            }

            scan.DataNext = false;
            scan.ContentTypeNext = false;
        }

        return true;
    }

    /// <summary>A data value decoded leniently (at most the inner object limit kept); null when the memory budget is spent.</summary>
    private static Payload? Decode(ref Utf8JsonReader reader, Scan scan, string label)
    {
        var session = scan.Session;
        byte[]? unescaped = null;
        var text = reader.ValueSpan;
        var output = LenientBase64.MaxDecodedLength(text.Length);
        long reserve = output + (reader.ValueIsEscaped ? text.Length : 0);
        if (session is not null && !session.TryReserveMemory(reserve))
        {
            return null;
        }

        try
        {
            if (reader.ValueIsEscaped)
            {
                // Base64 needs no escape, but JSON allows "\/" and "\u0041": the unescaped value is what a FHIR parser decodes.
                unescaped = ArrayPool<byte>.Shared.Rent(text.Length);
                text = unescaped.AsSpan(0, reader.CopyString(unescaped));
            }

            var decoded = ArrayPool<byte>.Shared.Rent(output);
            var written = LenientBase64.Decode(text, decoded, out var skipped);
            var kept = (int)Math.Min(written, scan.MaxInner);
            if (kept == 0)
            {
                ArrayPool<byte>.Shared.Return(decoded);
                return new Payload(label, null, 0, skipped, false, 0);
            }

            // The decoded copy stays reserved until it is inspected.
            reserve -= output;
            return new Payload(label, decoded, kept, skipped, written > kept, output);
        }
        finally
        {
            if (unescaped is not null)
            {
                ArrayPool<byte>.Shared.Return(unescaped, clearArray: true);
            }

            session?.ReleaseMemory(reserve);
        }
    }

    /// <summary>Inspects one decoded payload as a child, said by an Info finding; false once the extraction budget is spent (FHIR and HL7 v2 alike).</summary>
    internal static async ValueTask<bool> InspectDecodedAsync(InspectionContext context, string label, ReadOnlyMemory<byte> data, string rule, string description,
        CancellationToken cancellationToken)
    {
        if (context.BombFound() || !context.TryChargeExtraction(data.Length))
        {
            return false;
        }

        using var buffer = new SpillBuffer(context);
        await buffer.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        using var decoded = buffer.Detach();
        context.Report(rule, Severity.Info, description);
        await context.InspectChildAsync(label, decoded, cancellationToken).ConfigureAwait(false);
        return true;
    }

    private static ReadOnlySpan<byte> JsonWhitespace => " \t\r\n"u8;

    private static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> head) =>
        head.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? head[3..] : head;

    /// <summary>A JSON object, or an array of them, opening with a member name, after a BOM and whitespace at the head; a head all whitespace is read on.</summary>
    private static bool StartsAsJsonObject(ContentSource content)
    {
        Span<byte> head = stackalloc byte[HeadLength];
        var read = content.ReadAt(0, head);
        var text = SkipBom(head[..read]).TrimStart(JsonWhitespace);
        if (text.IsEmpty)
        {
            return read == HeadLength;
        }

        if (text[0] == (byte)'[')
        {
            text = text[1..].TrimStart(JsonWhitespace);
            if (text.IsEmpty)
            {
                return read == HeadLength;
            }
        }

        if (text[0] != (byte)'{')
        {
            return false;
        }

        text = text[1..].TrimStart(JsonWhitespace);
        return text.IsEmpty ? read == HeadLength : text[0] == (byte)'"';
    }

    /// <summary>Where JSON starts (after a BOM and any whitespace), when it may be FHIR; whether the bytes name a resource type and a data element.</summary>
    private readonly record struct Start(long Offset, bool Recognised);

    /// <summary>
    /// JSON (an object or an array, NDJSON) that names a FHIR resource type and a data element, in one pass in chunks;
    /// or any that holds a \u escape, since the names may be written with one ("\u0064ata").
    /// </summary>
    private static Start? JsonStart(ContentSource content, CancellationToken cancellationToken)
    {
        Span<byte> chunk = stackalloc byte[4096];
        long position = 0;
        while (true)
        {
            var read = content.ReadAt(position, chunk);
            if (read <= 0)
            {
                return null;
            }

            var text = position == 0 ? SkipBom(chunk[..read]) : chunk[..read];
            var first = text.IndexOfAnyExcept(JsonWhitespace);
            if (first >= 0)
            {
                if (text[first] is not ((byte)'{' or (byte)'['))
                {
                    return null;
                }

                position += read - text.Length + first;
                break;
            }

            position += read;
            cancellationToken.ThrowIfCancellationRequested();
        }

        var found = AsciiSearch.Mentions(content, content.Length, FhirWords, cancellationToken);
        var recognised = found[0] && found[1];
        return recognised || found[2] ? new Start(position, recognised) : null;
    }

    private static readonly string[][] FhirWords = [["\"resourceType\""], ["\"data\""], ["\\u"]];
}
