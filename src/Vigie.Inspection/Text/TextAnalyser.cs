using System.Text;
using System.Text.RegularExpressions;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Text;

/// <summary>
/// Plain text and CSV: cells that a spreadsheet would run as DDE commands (=cmd|' /C calc'!A0, =DDE(...),
/// @SUM(1+1)*cmd|...), and files uuencoded in the text (a mail body from an old client, or one that hides an
/// attachment from MIME-only scanners), decoded with MimeKit and inspected as children. Reads in chunks, looks
/// closely only at lines holding '|' or "DDE"; one finding is enough.
/// </summary>
internal sealed partial class TextAnalyser : IContentAnalyser
{
    private const long MaxScan = 64L * 1024 * 1024;
    private const int MaxLine = 64 * 1024;

    public string Name => "text";

    /// <summary>
    /// Html too: a CSV export with "&lt;html&gt;" in a free-text cell is typed a page by its bytes, and a spreadsheet
    /// still runs its DDE cells (clean until 2026-12-08).
    /// </summary>
    public bool CanAnalyse(ContentType type) => type is ContentType.Text or ContentType.Html;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var encoding = TextEncoding(content);
        var (dde, uuencoded) = Markers(content, encoding, cancellationToken);
        if (uuencoded)
        {
            await InspectUuencodedAsync(context, content, cancellationToken).ConfigureAwait(false);
        }

        if (dde)
        {
            FindDde(context, content, encoding, cancellationToken);
        }
    }

    /// <summary>
    /// UTF-16 or UTF-32 (Excel's "Unicode Text"), by its byte order mark or, without one, its zeros; null for 8-bit
    /// text, read as UTF-8.
    /// </summary>
    private static Encoding? TextEncoding(ContentSource content)
    {
        Span<byte> head = stackalloc byte[1024];
        head = head[..content.ReadAt(0, head)];
        if (head.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]))
        {
            return Encoding.Unicode;
        }

        if (head.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]))
        {
            return Encoding.BigEndianUnicode;
        }

        return head.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? null : ContentIdentifier.UnmarkedWideEncoding(head);
    }

    private const int MaxUuencodedFiles = 32;

    /// <summary>
    /// Each "begin MODE NAME" ... "end" block, decoded under the inner size limit. A block cut short (no "end") is
    /// inspected as far as it goes: leaving out the end line must not hide the file.
    /// </summary>
    private static async ValueTask InspectUuencodedAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var files = 0;
        string? name = null;
        MimeKit.Encodings.UUDecoder? decoder = null;
        SpillBuffer? decoded = null;
        byte[]? input = null;
        var output = Array.Empty<byte>();
        var truncated = false;
        try
        {
            foreach (var (line, number) in Lines(content, cancellationToken))
            {
                if (decoder is null)
                {
                    if (line.Span.StartsWith("begin "u8) && UuBegin().Match(Encoding.Latin1.GetString(line.Span)) is { Success: true } begin)
                    {
                        if (++files > MaxUuencodedFiles)
                        {
                            context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {MaxUuencodedFiles} uuencoded files: the rest were not decoded");
                            return;
                        }

                        name = begin.Groups[1].Value.Trim();
                        decoder = new MimeKit.Encodings.UUDecoder(payloadOnly: true);
                        decoded = new SpillBuffer(context);
                        truncated = false;
                        context.Report(Rules.TextUuencoded, Severity.Info, $"line {number}: a uuencoded file, '{Inspector.SanitiseName(name)}'");
                    }

                    continue;
                }

                if (line.Span.TrimEnd("\r "u8).SequenceEqual("end"u8))
                {
                    await FinishAsync().ConfigureAwait(false);
                    continue;
                }

                if (truncated)
                {
                    continue;
                }

                // The decoder wants whole lines, newline included; lines are at most MaxLine bytes.
                input ??= new byte[MaxLine + 1];
                line.Span.CopyTo(input);
                input[line.Length] = (byte)'\n';
                if (output.Length < decoder.EstimateOutputLength(line.Length + 1))
                {
                    output = new byte[decoder.EstimateOutputLength(line.Length + 1)];
                }

                var count = decoder.Decode(input, 0, line.Length + 1, output);
                if (decoded!.Length + count > context.Limits.MaxInnerSize)
                {
                    truncated = true;
                    context.Report(Rules.InnerSizeLimit, Severity.Medium,
                        $"the uuencoded file '{Inspector.SanitiseName(name!)}' exceeds the {context.Limits.MaxInnerSize}-byte inner object limit: inspected as far as the limit");
                    continue;
                }

                await decoded.WriteAsync(output.AsMemory(0, count), cancellationToken).ConfigureAwait(false);
            }

            if (decoder is not null)
            {
                await FinishAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            decoded?.Dispose();
        }

        async ValueTask FinishAsync()
        {
            using var file = decoded!.Detach();
            decoded = null;
            decoder = null;
            await context.InspectChildAsync($"uuencoded[{files}]:{name}", file, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The lines of the text (up to <see cref="MaxScan"/>), each cut at <see cref="MaxLine"/> bytes, with their numbers.</summary>
    private static IEnumerable<(ReadOnlyMemory<byte> Line, int Number)> Lines(ContentSource content, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        var line = new byte[MaxLine];
        var length = 0;
        var number = 1;
        var limit = Math.Min(content.Length, MaxScan);
        for (long offset = 0; offset < limit;)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var read = content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(buffer.Length, limit - offset)));
            if (read == 0)
            {
                break;
            }

            offset += read;
            for (var at = 0; at < read;)
            {
                var newline = buffer.AsSpan(at, read - at).IndexOf((byte)'\n');
                var end = newline < 0 ? read : at + newline;
                var kept = Math.Min(end - at, MaxLine - length);
                buffer.AsSpan(at, kept).CopyTo(line.AsSpan(length));
                length += kept;
                if (newline < 0)
                {
                    break;
                }

                yield return (line.AsMemory(0, length), number++);
                length = 0;
                at = end + 1;
            }
        }

        if (length > 0)
        {
            yield return (line.AsMemory(0, length), number);
        }
    }

    [GeneratedRegex(@"^begin [0-7]{3,4} (\S.{0,254})\r?$", RegexOptions.NonBacktracking)]
    private static partial Regex UuBegin();

    private static void FindDde(InspectionContext context, ContentSource content, Encoding? encoding, CancellationToken cancellationToken)
    {
        using var stream = content.OpenStream(0, Math.Min(content.Length, MaxScan));
        using var reader = new StreamReader(stream, encoding ?? Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var buffer = new char[64 * 1024];
        var line = new StringBuilder();
        var lineNumber = 1;
        var fetchReported = false;
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var span = buffer.AsSpan(0, read);
            while (!span.IsEmpty)
            {
                var newline = span.IndexOf('\n');
                var part = newline < 0 ? span : span[..newline];
                if (line.Length < MaxLine)
                {
                    line.Append(part[..Math.Min(part.Length, MaxLine - line.Length)]);
                }

                if (newline < 0)
                {
                    break;
                }

                if (Check(context, line, lineNumber, ref fetchReported))
                {
                    return;
                }

                line.Clear();
                lineNumber++;
                span = span[(newline + 1)..];
            }
        }

        Check(context, line, lineNumber, ref fetchReported);
    }

    /// <summary>
    /// What the text may hold, found at memory speed in one pass so that most text is dismissed without a closer look:
    /// a DDE cell needs a '|' or the letters DDE, a uuencoded file its "begin " line. In UTF-16 or UTF-32 the letters
    /// are looked for as that encoding writes them, a zero byte or three between them, in either byte order (only the
    /// ASCII forms were until 2026-12-08, and a UTF-16 CSV's WEBSERVICE and DDE cells were clean).
    /// </summary>
    private static (bool Dde, bool Uuencoded) Markers(ContentSource content, Encoding? encoding, CancellationToken cancellationToken)
    {
        var words = encoding is null ? DdeWords
            : DdeWords.Select(word => string.Join(new string('\0', encoding.GetByteCount("a") - 1), word.ToCharArray())).ToArray();
        // Chunks overlap by the longest marker less one, so that a marker cut by a chunk's end is found in the next.
        var overlap = words.Max(word => word.Length) - 1;
        var dde = false;
        var uuencoded = false;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            var limit = Math.Min(content.Length, MaxScan);
            for (long offset = 0; offset < limit; offset += buffer.Length - overlap)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(buffer.Length, limit - offset)));
                var span = buffer.AsSpan(0, read);
                dde = dde || span.IndexOf((byte)'|') >= 0;
                foreach (var word in words)
                {
                    dde = dde || AsciiSearch.ContainsIgnoreCase(span, word);
                }

                uuencoded = uuencoded || AsciiSearch.ContainsIgnoreCase(span, "begin ");
                if ((dde && uuencoded) || read < buffer.Length)
                {
                    break;
                }
            }

            return (dde, uuencoded);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static readonly string[] DdeWords = ["DDE", "WEBSERVICE", "IMPORT"];

    private static bool Check(InspectionContext context, StringBuilder builder, int lineNumber, ref bool fetchReported)
    {
        if (builder.Length < 3)
        {
            return false;
        }

        var line = builder.ToString();
        var fetch = !fetchReported && (line.Contains("WEBSERVICE", StringComparison.OrdinalIgnoreCase) || line.Contains("IMPORT", StringComparison.OrdinalIgnoreCase));
        if (!line.Contains('|', StringComparison.Ordinal) && !line.Contains("DDE", StringComparison.OrdinalIgnoreCase) && !fetch)
        {
            return false;
        }

        foreach (var cell in line.Split([',', ';', '\t']))
        {
            var trimmed = cell.Trim().Trim('"').TrimStart();
            if (trimmed.Length < 3 || trimmed[0] is not ('=' or '+' or '-' or '@'))
            {
                continue;
            }

            if (DdeCell().IsMatch(trimmed))
            {
                context.Report(Rules.CsvDdeInjection, Severity.High,
                    $"line {lineNumber}: a cell a spreadsheet would run as a DDE command: {Inspector.Truncate(trimmed, 120)}");
                return true;
            }

            if (fetch && !fetchReported && FetchCell().IsMatch(trimmed))
            {
                // Excel's WEBSERVICE and the spreadsheets' IMPORT functions fetch a URL when the sheet is computed, with
                // what the other cells hold in it (no finding until 2026-12-07). One is enough; DDE is still looked for.
                context.Report(Rules.CsvExternalFetch, Severity.Medium,
                    $"line {lineNumber}: a cell a spreadsheet would compute by fetching a URL: {Inspector.Truncate(trimmed, 120)}");
                fetchReported = true;
            }
        }

        return false;
    }

    /// <summary>A formula calling a function that fetches a URL when computed (Excel, LibreOffice, Google Sheets).</summary>
    [GeneratedRegex(@"(?<![A-Za-z0-9_])(?:_xlfn\.)?(WEBSERVICE|IMPORTXML|IMPORTDATA|IMPORTHTML|IMPORTFEED|IMPORTRANGE)\s*\(", RegexOptions.IgnoreCase, matchTimeoutMilliseconds: 200)]
    private static partial Regex FetchCell();

    /// <summary>app|'topic'!item or app|topic!item (one word: a bullet line "- Scanner | IRM : libre !" is text), or DDE(...).</summary>
    [GeneratedRegex(@"^[=+\-@].*?([A-Za-z0-9_.]+\s*\|\s*('[^']*'|[^\s'!]+)\s*!|\bDDE(AUTO)?\s*\()", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex DdeCell();
}
