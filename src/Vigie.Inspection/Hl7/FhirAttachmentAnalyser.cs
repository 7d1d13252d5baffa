using System.Buffers;
using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Hl7;

/// <summary>
/// FHIR resources in JSON (one, a Bundle, or bulk-export NDJSON): the base64 <c>data</c> of an Attachment (a
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

    public string Name => "fhir-data";

    public bool CanAnalyse(ContentType type) => type == ContentType.Text;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (!MayBeFhirJson(content, cancellationToken))
        {
            return;
        }

        // A value is held whole while it is decoded: up to what an inspection keeps in memory (16 MiB decoded by default),
        // reserved in its memory budget like any in-memory copy.
        var maxToken = (int)Math.Min(context.Limits.MaxInnerSize, context.Limits.InMemoryThreshold) / 3 * 4 + Chunk;
        var session = (context as EngineContext)?.Session;
        long reserved = 0;
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        var state = new JsonReaderState(new JsonReaderOptions
        {
            MaxDepth = MaxDepth,
            CommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true,
            AllowMultipleValues = true,
        });
        var scan = new Scan();
        try
        {
            long position = 0;
            var filled = 0;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(position, buffer.AsSpan(filled));
                position += read;
                filled += read;
                var final = position >= content.Length || read == 0 && filled < buffer.Length;
                var found = new List<(string Label, byte[] Data, int Length)>();
                int consumed;
                try
                {
                    consumed = ReadTokens(buffer.AsSpan(0, filled), final, ref state, scan, found, context.Limits.MaxInnerSize);
                }
                catch (JsonException)
                {
                    // Not JSON, or not past this point: it stays text, and what was found so far is read.
                    consumed = -1;
                }

                foreach (var (label, data, length) in found)
                {
                    try
                    {
                        if (!await InspectDecodedAsync(context, label, data.AsMemory(0, length), Rules.FhirAttachmentData,
                                $"{label}: FHIR attachment data (base64, {length} bytes) decoded and inspected", cancellationToken).ConfigureAwait(false))
                        {
                            return;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(data, clearArray: true);
                    }
                }

                if (consumed < 0 || final || scan.Payloads > MaxPayloads)
                {
                    if (scan.Payloads > MaxPayloads)
                    {
                        context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxPayloads} FHIR attachments: the rest were not decoded");
                    }

                    return;
                }

                buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                filled -= consumed;
                if (filled == buffer.Length)
                {
                    // One token fills the buffer: a longer one is read, up to the limit.
                    var size = (int)Math.Min(maxToken, (long)buffer.Length * 2);
                    if (buffer.Length >= maxToken || session is not null && !session.TryReserveMemory(size))
                    {
                        context.Report(Rules.InnerSizeLimit, Severity.Medium,
                            $"a FHIR value longer than {buffer.Length} bytes{(buffer.Length >= maxToken ? $" (the most an inspection decodes in memory, {context.Limits.InMemoryThreshold} bytes)" : " while the node's inspection memory is spent")}: it and the rest of the document were not decoded");
                        return;
                    }

                    reserved += size;
                    var larger = ArrayPool<byte>.Shared.Rent(size);
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
                    buffer = larger;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            session?.ReleaseMemory(reserved);
        }
    }

    /// <summary>What the token reader remembers from one buffer to the next.</summary>
    private sealed class Scan
    {
        /// <summary>Per open object: its contentType when read before its data.</summary>
        public List<string?> Objects { get; } = [];

        public bool DataNext { get; set; }

        public bool ContentTypeNext { get; set; }

        public int Payloads { get; set; }
    }

    /// <summary>Reads the whole tokens of <paramref name="json"/>; returns the bytes consumed. Decoded payloads go to <paramref name="found"/>.</summary>
    private static int ReadTokens(ReadOnlySpan<byte> json, bool final, ref JsonReaderState state, Scan scan, List<(string, byte[], int)> found, long maxInner)
    {
        var reader = new Utf8JsonReader(json, final, state);
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
                    continue;
                case JsonTokenType.String when scan.ContentTypeNext && scan.Objects.Count > 0:
                    scan.Objects[^1] = Inspector.Truncate(Inspector.Printable(reader.GetString() ?? ""), 60);
                    break;
                case JsonTokenType.String when scan.DataNext:
                    if (Decode(ref reader, maxInner) is { } decoded)
                    {
                        scan.Payloads++;
                        if (scan.Payloads > MaxPayloads)
                        {
                            ArrayPool<byte>.Shared.Return(decoded.Data, clearArray: true);
                            state = reader.CurrentState;
                            return (int)reader.BytesConsumed;
                        }

                        var type = scan.Objects.Count > 0 ? scan.Objects[^1] : null;
                        found.Add(($"data[{scan.Payloads}]:{(string.IsNullOrEmpty(type) ? "unknown" : type)}", decoded.Data, decoded.Length));
                    }

                    break;
                default:
                    break;
            }

            scan.DataNext = false;
            scan.ContentTypeNext = false;
        }

        state = reader.CurrentState;
        return (int)reader.BytesConsumed;
    }

    /// <summary>A base64 string value, decoded (at most <paramref name="maxInner"/> bytes); null when it is not base64 (text, a URL).</summary>
    private static (byte[] Data, int Length)? Decode(ref Utf8JsonReader reader, long maxInner)
    {
        byte[] text;
        int textLength;
        if (reader.ValueIsEscaped)
        {
            // Base64 needs no escape, but JSON allows "\/" and "\u0041": the unescaped value is what a FHIR parser decodes.
            var value = reader.GetString() ?? "";
            text = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(value.Length));
            textLength = Encoding.UTF8.GetBytes(value, text);
        }
        else
        {
            text = ArrayPool<byte>.Shared.Rent(reader.ValueSpan.Length);
            reader.ValueSpan.CopyTo(text);
            textLength = reader.ValueSpan.Length;
        }

        try
        {
            var input = text.AsSpan(0, Math.Min(textLength, (int)Math.Min(int.MaxValue, (maxInner + 2) / 3 * 4)));
            // Whole quanta only when the value was cut at the limit.
            input = input[..(input.Length - input.Length % 4)];
            if (input.Length < 8)
            {
                return null;
            }

            var output = ArrayPool<byte>.Shared.Rent(Base64.GetMaxDecodedFromUtf8Length(input.Length));
            var status = Base64.DecodeFromUtf8(input, output, out _, out var written);
            if (status != OperationStatus.Done)
            {
                ArrayPool<byte>.Shared.Return(output, clearArray: true);
                return null;
            }

            return (output, (int)Math.Min(written, maxInner));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(text, clearArray: true);
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

    /// <summary>JSON (an object first, or NDJSON) that names a FHIR resource type and a data element: one pass in chunks.</summary>
    private static bool MayBeFhirJson(ContentSource content, CancellationToken cancellationToken)
    {
        Span<byte> head = stackalloc byte[64];
        var read = content.ReadAt(0, head);
        var start = head[..read];
        if (start.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
        {
            start = start[3..];
        }

        var first = start.IndexOfAnyExcept(" \t\r\n"u8);
        if (first < 0 || start[first] != (byte)'{')
        {
            return false;
        }

        var found = AsciiSearch.Mentions(content, content.Length, FhirWords, cancellationToken);
        return found[0] && found[1];
    }

    private static readonly string[][] FhirWords = [["\"resourceType\""], ["\"data\""]];
}
