using System.Text;
using System.Text.RegularExpressions;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Text;

/// <summary>
/// Plain text and CSV: cells that a spreadsheet would run as DDE commands (=cmd|' /C calc'!A0, =DDE(...),
/// @SUM(1+1)*cmd|...). Reads in chunks, looks closely only at lines holding '|' or "DDE"; one finding is enough.
/// </summary>
internal sealed partial class TextAnalyser : IContentAnalyser
{
    private const long MaxScan = 64L * 1024 * 1024;
    private const int MaxLine = 64 * 1024;

    public string Name => "text";

    public bool CanAnalyse(ContentType type) => type == ContentType.Text;

    public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (!MayHoldDde(content, cancellationToken))
        {
            return ValueTask.CompletedTask;
        }

        using var stream = content.OpenStream(0, Math.Min(content.Length, MaxScan));
        using var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var buffer = new char[64 * 1024];
        var line = new StringBuilder();
        var lineNumber = 1;
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

                if (Check(context, line, lineNumber))
                {
                    return ValueTask.CompletedTask;
                }

                line.Clear();
                lineNumber++;
                span = span[(newline + 1)..];
            }
        }

        Check(context, line, lineNumber);
        return ValueTask.CompletedTask;
    }

    /// <summary>A DDE cell needs a '|' or the letters DDE: most text has neither, and is dismissed at memory speed.</summary>
    private static bool MayHoldDde(ContentSource content, CancellationToken cancellationToken)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            var limit = Math.Min(content.Length, MaxScan);
            for (long offset = 0; offset < limit; offset += buffer.Length - 2)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(buffer.Length, limit - offset)));
                var span = buffer.AsSpan(0, read);
                if (span.IndexOf((byte)'|') >= 0 || AsciiSearch.ContainsIgnoreCase(span, "DDE"))
                {
                    return true;
                }

                if (read < buffer.Length)
                {
                    break;
                }
            }

            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static bool Check(InspectionContext context, StringBuilder builder, int lineNumber)
    {
        if (builder.Length < 3)
        {
            return false;
        }

        var line = builder.ToString();
        if (!line.Contains('|', StringComparison.Ordinal) && !line.Contains("DDE", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        foreach (var cell in line.Split([',', ';', '\t']))
        {
            var trimmed = cell.Trim().Trim('"').TrimStart();
            if (trimmed.Length >= 3 && trimmed[0] is '=' or '+' or '-' or '@' && DdeCell().IsMatch(trimmed))
            {
                context.Report(Rules.CsvDdeInjection, Severity.High,
                    $"line {lineNumber}: a cell a spreadsheet would run as a DDE command: {Inspector.Truncate(trimmed, 120)}");
                return true;
            }
        }

        return false;
    }

    [GeneratedRegex(@"^[=+\-@].*?([A-Za-z0-9_.]+\s*\|\s*'?[^'!]*'?\s*!|\bDDE(AUTO)?\s*\()", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex DdeCell();
}
