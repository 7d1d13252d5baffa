using System.Buffers;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Hl7;

/// <summary>
/// HL7 v2 messages (ORU results, MDM documents; MLLP-framed or not, batches too): an OBX whose value type is ED carries a
/// document (a report as a PDF, Base64 or Hex), which the receiving system files and a viewer opens. Each one is decoded
/// under the extraction limits and inspected as a child <c>OBX[N]:TYPE/SUBTYPE</c>. Before 2026-12-07 a v2 message was
/// plain text, its documents never decoded. Segments are read one at a time; an ED segment is held whole up to what an
/// inspection keeps in memory, a longer one is reported, never clean.
/// </summary>
internal sealed class Hl7v2Analyser : IContentAnalyser
{
    private const int MaxPayloads = 256;
    private const int Chunk = 64 * 1024;

    /// <summary>Bytes at the head where the header is looked for, behind a BOM, blank lines and an MLLP start byte.</summary>
    private const int HeadLength = 1024;

    public string Name => "hl7v2";

    public bool CanAnalyse(ContentType type) => type == ContentType.Text;

    /// <summary>
    /// A message whatever type the identifier gave it (Html for a TX report in HTML, Unknown for one NUL byte): its
    /// receiver reads it all the same. Only the head is read.
    /// </summary>
    public bool CanAnalyse(ContentType type, ContentSource content) => Delimiters(content) is not null;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (Delimiters(content) is not { } delimiters)
        {
            return;
        }

        var maxSegment = (int)Math.Min(context.Limits.MaxInnerSize, context.Limits.InMemoryThreshold) / 3 * 4 + Chunk;
        var session = (context as EngineContext)?.Session;
        var payloads = 0;
        long start = 0;
        var head = new byte[64];
        using var segments = new SegmentFinder(content);
        while (start < content.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var end = segments.End(start, cancellationToken);
            var length = end - start;
            var read = segments.Read(start, head.AsSpan(0, (int)Math.Min(head.Length, length)));
            if (IsEncapsulatedData(head.AsSpan(0, read), delimiters.Field))
            {
                if (++payloads > MaxPayloads)
                {
                    context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxPayloads} HL7 v2 encapsulated data segments: the rest were not decoded");
                    return;
                }

                if (length > maxSegment || session is not null && !session.TryReserveMemory(length))
                {
                    context.Report(Rules.InnerSizeLimit, Severity.Medium,
                        $"OBX[{payloads}]: an encapsulated data segment of {length} bytes, longer than an inspection decodes in memory ({maxSegment} bytes): not decoded");
                }
                else
                {
                    var segment = ArrayPool<byte>.Shared.Rent((int)length);
                    try
                    {
                        content.ReadAt(start, segment.AsSpan(0, (int)length));
                        if (!await InspectSegmentAsync(context, segment.AsMemory(0, (int)length), delimiters, payloads, cancellationToken).ConfigureAwait(false))
                        {
                            return;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(segment, clearArray: true);
                        session?.ReleaseMemory(length);
                    }
                }
            }

            start = end + 1;
        }
    }

    internal readonly record struct Hl7Delimiters(byte Field, byte Component, byte Repetition, byte Escape, byte Subcomponent);

    /// <summary>
    /// The message's delimiters when it opens with an MSH (or a batch's FHS/BHS) header, after a UTF-8 BOM, blank lines
    /// and an MLLP start byte (in the first kilobyte: file drops and engines' archives write them, receivers skip them); null otherwise.
    /// </summary>
    private static Hl7Delimiters? Delimiters(ContentSource content)
    {
        Span<byte> head = stackalloc byte[HeadLength];
        var text = head[..content.ReadAt(0, head)];
        if (text.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
        {
            text = text[3..];
        }

        text = text.TrimStart((ReadOnlySpan<byte>)[0x0B, (byte)' ', (byte)'\r', (byte)'\n', (byte)'\t']);
        if (text.Length < 8 || !(text.StartsWith("MSH"u8) || text.StartsWith("FHS"u8) || text.StartsWith("BHS"u8)))
        {
            return null;
        }

        // MSH-1 and MSH-2: |^~\& as a rule, but any printable punctuation, all different.
        var delimiters = text.Slice(3, 5);
        foreach (var b in delimiters)
        {
            if (b is < 0x21 or > 0x7E || char.IsAsciiLetterOrDigit((char)b))
            {
                return null;
            }
        }

        // MSH-2 of three characters leaves the subcomponent separator to its default.
        var subcomponent = delimiters[4] == delimiters[0] ? (byte)'&' : delimiters[4];
        return delimiters[0] == delimiters[1] ? null : new Hl7Delimiters(delimiters[0], delimiters[1], delimiters[2], delimiters[3], subcomponent);
    }

    /// <summary>Finds segment ends reading the content once, a chunk at a time (a message of many short segments is not read again per segment).</summary>
    private sealed class SegmentFinder(ContentSource content) : IDisposable
    {
        private readonly byte[] _buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        private long _chunkStart;
        private int _chunkLength;

        /// <summary>Where the segment starting at <paramref name="start"/> ends: its CR (or LF), or the end of the content.</summary>
        public long End(long start, CancellationToken cancellationToken)
        {
            var from = start;
            while (true)
            {
                if (from < _chunkStart || from >= _chunkStart + _chunkLength)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    _chunkStart = from;
                    _chunkLength = Math.Max(0, content.ReadAt(from, _buffer.AsSpan(0, Chunk)));
                    if (_chunkLength == 0)
                    {
                        return content.Length;
                    }
                }

                var offset = (int)(from - _chunkStart);
                var at = _buffer.AsSpan(offset, _chunkLength - offset).IndexOfAny((byte)'\r', (byte)'\n');
                if (at >= 0)
                {
                    return from + at;
                }

                from = _chunkStart + _chunkLength;
            }
        }

        /// <summary>Bytes from <paramref name="position"/>, from the chunk in hand when it holds them.</summary>
        public int Read(long position, Span<byte> destination)
        {
            if (position >= _chunkStart && position + destination.Length <= _chunkStart + _chunkLength)
            {
                _buffer.AsSpan((int)(position - _chunkStart), destination.Length).CopyTo(destination);
                return destination.Length;
            }

            return content.ReadAt(position, destination);
        }

        public void Dispose() => ArrayPool<byte>.Shared.Return(_buffer);
    }

    /// <summary>An OBX segment whose value type (OBX-2) is ED.</summary>
    private static bool IsEncapsulatedData(ReadOnlySpan<byte> head, byte field)
    {
        var segment = head.TrimStart((ReadOnlySpan<byte>)[0x0B, 0x1C, (byte)' ']);
        if (segment.Length < 8 || !segment.StartsWith("OBX"u8) || segment[3] != field)
        {
            return false;
        }

        var fields = segment[4..];
        var second = fields.IndexOf(field);
        if (second < 0)
        {
            return false;
        }

        var type = fields[(second + 1)..];
        var end = type.IndexOf(field);
        return end >= 0 && type[..end].Trim((byte)' ').SequenceEqual("ED"u8);
    }

    /// <summary>Decodes OBX-5's ED repetitions (application^type^subtype^encoding^data) and inspects each; false once the budget is spent.</summary>
    private static async ValueTask<bool> InspectSegmentAsync(InspectionContext context, ReadOnlyMemory<byte> segment, Hl7Delimiters delimiters, int index,
        CancellationToken cancellationToken)
    {
        var value = Piece(segment, delimiters.Field, 5);
        var repetition = 0;
        while (!value.IsEmpty)
        {
            var next = value.Span.IndexOf(delimiters.Repetition);
            var one = next < 0 ? value : value[..next];
            value = next < 0 ? ReadOnlyMemory<byte>.Empty : value[(next + 1)..];
            repetition++;
            var type = Printable(Piece(one, delimiters.Component, 1));
            var subtype = Printable(Piece(one, delimiters.Component, 2));
            var encoding = Printable(Piece(one, delimiters.Component, 3));
            var data = Piece(one, delimiters.Component, 4);
            var label = $"OBX[{index}{(repetition > 1 ? $".{repetition}" : "")}]:{(type.Length > 0 ? type : "?")}/{(subtype.Length > 0 ? subtype : "?")}";
            if (data.IsEmpty)
            {
                continue;
            }

            // Receivers un-escape before decoding: \X4A56\ is "JV", \F\ the field separator, \.br\ nothing.
            var unescaped = ArrayPool<byte>.Shared.Rent(data.Length);
            byte[]? decoded = null;
            try
            {
                var text = unescaped.AsSpan(0, Unescape(data.Span, unescaped, delimiters));
                int length;
                var skipped = 0;
                if (encoding.Equals("Base64", StringComparison.OrdinalIgnoreCase))
                {
                    decoded = ArrayPool<byte>.Shared.Rent(LenientBase64.MaxDecodedLength(text.Length));
                    length = LenientBase64.Decode(text, decoded, out skipped);
                }
                else if (encoding.Equals("Hex", StringComparison.OrdinalIgnoreCase))
                {
                    decoded = ArrayPool<byte>.Shared.Rent(text.Length / 2 + 1);
                    length = DecodeHex(text, decoded);
                }
                else
                {
                    // "A": the data as it is, un-escaped.
                    length = text.Length;
                }

                if (length == 0)
                {
                    context.Report(Rules.Hl7EncapsulatedData, Severity.Low, $"{label}: its {encoding} data does not decode");
                    continue;
                }

                var bytes = (decoded ?? unescaped).AsMemory(0, (int)Math.Min(length, context.Limits.MaxInnerSize));
                var note = skipped > 0 ? $", {skipped} character(s) outside the base64 alphabet skipped" : "";
                if (!await FhirAttachmentAnalyser.InspectDecodedAsync(context, label, bytes, Rules.Hl7EncapsulatedData,
                        $"{label}: HL7 v2 encapsulated data ({(encoding.Length > 0 ? encoding : "A")}, {bytes.Length} bytes{note}) decoded and inspected", cancellationToken)
                        .ConfigureAwait(false))
                {
                    return false;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(unescaped, clearArray: true);
                if (decoded is not null)
                {
                    ArrayPool<byte>.Shared.Return(decoded, clearArray: true);
                }
            }
        }

        return true;
    }

    /// <summary>The piece of <paramref name="value"/> after <paramref name="skip"/> separators (OBX-5 is 5 after the segment's name, an ED's data 4 after its application).</summary>
    private static ReadOnlyMemory<byte> Piece(ReadOnlyMemory<byte> value, byte separator, int skip)
    {
        var rest = value;
        for (var i = 0; i < skip; i++)
        {
            var at = rest.Span.IndexOf(separator);
            if (at < 0)
            {
                return ReadOnlyMemory<byte>.Empty;
            }

            rest = rest[(at + 1)..];
        }

        var end = rest.Span.IndexOf(separator);
        return end < 0 ? rest : rest[..end];
    }

    private static string Printable(ReadOnlyMemory<byte> value) =>
        Inspector.Truncate(Inspector.Printable(System.Text.Encoding.ASCII.GetString(value.Span[..Math.Min(value.Length, 64)]).Trim()), 40);

    /// <summary>
    /// HL7's escape sequences as a receiver reads them (2.x, 2.7): \Xhh..\ the bytes hh.., \F\ \S\ \T\ \R\ \E\ the
    /// delimiters, formatting ones (\.br\, \H\, \Zxx\...) nothing. An escape character never closed stays as it is.
    /// Never longer than <paramref name="data"/>.
    /// </summary>
    internal static int Unescape(ReadOnlySpan<byte> data, Span<byte> output, Hl7Delimiters delimiters)
    {
        var count = 0;
        for (var i = 0; i < data.Length; i++)
        {
            var b = data[i];
            var close = b == delimiters.Escape ? data[(i + 1)..].IndexOf(delimiters.Escape) : -1;
            if (close < 0)
            {
                output[count++] = b;
                continue;
            }

            var sequence = data.Slice(i + 1, close);
            i += close + 1;
            if (sequence.Length == 1)
            {
                var delimiter = sequence[0] switch
                {
                    (byte)'F' => delimiters.Field,
                    (byte)'S' => delimiters.Component,
                    (byte)'T' => delimiters.Subcomponent,
                    (byte)'R' => delimiters.Repetition,
                    (byte)'E' => delimiters.Escape,
                    _ => (byte)0,
                };
                if (delimiter != 0)
                {
                    output[count++] = delimiter;
                }
            }
            else if (sequence.Length > 1 && sequence[0] is (byte)'X' or (byte)'x')
            {
                count += DecodeHex(sequence[1..], output[count..]);
            }
        }

        return count;
    }

    private static int DecodeHex(ReadOnlySpan<byte> data, Span<byte> output)
    {
        var count = 0;
        var high = -1;
        foreach (var b in data)
        {
            var nibble = b switch
            {
                >= (byte)'0' and <= (byte)'9' => b - '0',
                >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
                _ => -1,
            };
            if (nibble < 0)
            {
                continue;
            }

            if (high < 0)
            {
                high = nibble;
            }
            else
            {
                output[count++] = (byte)(high << 4 | nibble);
                high = -1;
            }
        }

        return count;
    }
}
