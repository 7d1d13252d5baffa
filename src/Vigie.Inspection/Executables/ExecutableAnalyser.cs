using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Executables;

/// <summary>
/// Reports executables wherever they turn up: top level, archive entries, attachments, embedded files, OLE
/// packages. A hospital gateway has no business passing programs along.
/// </summary>
internal sealed class ExecutableAnalyser : IContentAnalyser
{
    public string Name => "executable";

    public bool CanAnalyse(ContentType type) => type is ContentType.Pe or ContentType.Elf or ContentType.MachO or ContentType.Script;

    public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var where = context.Depth == 0 ? "" : $" inside {(context.ParentType?.ToString() ?? "a container")} content";
        switch (context.ContentType)
        {
            case ContentType.Pe:
                context.Report(Rules.ExecutablePe, Severity.High, $"Windows PE executable (MZ header whose e_lfanew reaches PE\\0\\0){where}", 0);
                break;
            case ContentType.Elf:
                context.Report(Rules.ExecutableElf, Severity.High, $"ELF executable{where}", 0);
                break;
            case ContentType.MachO:
                context.Report(Rules.ExecutableMachO, Severity.High, $"Mach-O executable{where}", 0);
                break;
            case ContentType.Script:
                context.Report(Rules.ExecutableScript, Severity.Medium, $"script with interpreter line '{ReadShebang(content)}'{where}", 0);
                break;
            default:
                break;
        }

        return ValueTask.CompletedTask;
    }

    private static string ReadShebang(ContentSource content)
    {
        Span<byte> head = stackalloc byte[128];
        head = head[..content.ReadAt(0, head)];
        var end = head.IndexOfAny((byte)'\n', (byte)'\r');
        var line = end < 0 ? head : head[..end];
        var text = new char[line.Length];
        for (var i = 0; i < line.Length; i++)
        {
            text[i] = line[i] is >= 32 and < 127 ? (char)line[i] : '?';
        }

        return new string(text);
    }
}
