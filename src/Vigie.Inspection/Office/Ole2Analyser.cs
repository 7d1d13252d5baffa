using System.Text;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// OLE2 compound files (.doc, .xls, .ppt, .msg, vbaProject.bin, embedded objects): VBA projects (modules decompressed
/// and read for auto-run entry points and dangerous calls), Excel 4.0 macro sheets, OLE packages (extracted and
/// inspected), embedded documents, ActiveX controls, the Equation Editor, DDE text and encrypted packages. Every
/// stream is inspected as a child, so known-bad engines see all of them.
/// </summary>
internal sealed class Ole2Analyser : IContentAnalyser
{
    private const int MaxModuleSource = 16 * 1024 * 1024;
    private const int MaxScannedStream = 32 * 1024 * 1024;

    private static readonly Guid[] EquationEditorClasses =
    [
        new("0002CE02-0000-0000-C000-000000000046"),
        new("0002CE03-0000-0000-C000-000000000046"),
    ];

    public string Name => "ole2";

    public bool CanAnalyse(ContentType type) => type == ContentType.Ole2;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        Ole2File file;
        try
        {
            file = Ole2File.Open(content, context.Limits.MaxEntries);
        }
        catch (Ole2FormatException ex)
        {
            context.Report(Rules.Ole2Malformed, Severity.Medium, $"unreadable compound file: {ex.Message}", ex.Offset);
            return;
        }

        var reporter = new CappedReporter(context);
        if (file.UnreadEntries > 0)
        {
            context.Report(Rules.Ole2TooManyEntries, Severity.Medium,
                $"more than {context.Limits.MaxEntries} directory entries ({file.UnreadEntries} more in use): the rest were not inspected");
        }

        var root = file.Entries[0];
        var rootNames = file.Children(root).Select(e => e.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        if (rootNames.Contains("EncryptionInfo") && rootNames.Contains("EncryptedPackage"))
        {
            context.Report(Rules.OfficeEncrypted, Severity.Medium, "password-protected Office document (EncryptedPackage): its content cannot be inspected");
        }

        foreach (var entry in file.Entries)
        {
            if (entry.ClassId != Guid.Empty && Array.IndexOf(EquationEditorClasses, entry.ClassId) >= 0)
            {
                reporter.Report(Rules.OfficeEquationEditor, Severity.High,
                    $"'{Display(entry)}' is an Equation Editor object (Equation.3), a classic exploit vehicle");
            }

            if (entry.IsStream && entry.Name is "\u0003OCXNAME" or "OCXNAME" or "\u0003OCXDATA")
            {
                reporter.Report(Rules.OfficeActiveX, Severity.Medium, $"ActiveX control in '{Display(entry)}'");
            }

            if (entry.IsStream && entry.Name.Equals("\u0001CompObj", StringComparison.Ordinal))
            {
                var compObj = file.ReadStream(entry, 4096);
                if (AsciiSearch.ContainsIgnoreCase(compObj, "Equation.3") || AsciiSearch.ContainsIgnoreCase(compObj, "Equation.2"))
                {
                    reporter.Report(Rules.OfficeEquationEditor, Severity.High, $"'{Display(entry)}' declares an Equation Editor object");
                }
            }
        }

        foreach (var vba in file.Entries.Where(e => e.Type == Ole2EntryType.Storage && e.Name.Equals("VBA", StringComparison.OrdinalIgnoreCase)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            await AnalyseVbaAsync(context, reporter, file, vba, cancellationToken).ConfigureAwait(false);
        }

        foreach (var entry in file.Entries.Where(e => e.IsStream))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (context.BombFound())
            {
                break;
            }

            if (entry.Name.Equals("Workbook", StringComparison.OrdinalIgnoreCase) || entry.Name.Equals("Book", StringComparison.OrdinalIgnoreCase))
            {
                CheckExcelMacroSheets(reporter, file, entry);
            }

            if (entry.Name is "WordDocument")
            {
                CheckDdeText(reporter, file, entry);
            }

            if (entry.Name.Equals("\u0001Ole10Native", StringComparison.Ordinal))
            {
                await InspectPackageAsync(context, file, entry, cancellationToken).ConfigureAwait(false);
                continue;
            }

            using var stream = file.OpenStream(entry);
            await context.InspectChildAsync(Display(entry), stream, cancellationToken).ConfigureAwait(false);
        }

        // Chains are followed lazily, so their problems are known only now.
        foreach (var problem in file.Problems.Distinct().Take(5))
        {
            context.Report(Rules.Ole2Malformed, Severity.Medium, problem);
        }

        reporter.Flush();
    }

    private static string Display(Ole2Entry entry)
    {
        var builder = new StringBuilder(entry.Path.Length);
        foreach (var c in entry.Path)
        {
            builder.Append(c < 32 ? '?' : c);
        }

        return builder.ToString();
    }

    private static async ValueTask AnalyseVbaAsync(InspectionContext context, CappedReporter reporter, Ole2File file, Ole2Entry vba, CancellationToken cancellationToken)
    {
        var children = file.Children(vba).Where(e => e.IsStream).ToDictionary(e => e.Name, StringComparer.OrdinalIgnoreCase);
        if (!children.TryGetValue("dir", out var dirEntry))
        {
            reporter.Report(Rules.OfficeVbaMacro, Severity.High, $"VBA storage '{Display(vba)}' (its dir stream is missing)");
            return;
        }

        var dir = Vba.Decompress(file.ReadStream(dirEntry, MaxModuleSource), MaxModuleSource, out var dirError);
        var modules = Vba.ParseDirectory(dir, out _);
        reporter.Report(Rules.OfficeVbaMacro, Severity.High,
            modules.Count > 0
                ? $"VBA project '{Display(vba)}' with {modules.Count} module(s): {string.Join(", ", modules.Select(m => m.Name).Take(20))}"
                : $"VBA project '{Display(vba)}' (dir stream unreadable: {dirError ?? "no module records"})");

        foreach (var module in modules)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!children.TryGetValue(module.StreamName, out var moduleEntry))
            {
                continue;
            }

            var raw = file.ReadStream(moduleEntry, MaxModuleSource);
            if (module.SourceOffset >= raw.Length)
            {
                continue;
            }

            var source = Vba.Decompress(raw.AsSpan((int)module.SourceOffset), MaxModuleSource, out _);
            var autoExec = Vba.AutoExecNames.Where(n => ContainsWord(source, n)).ToList();
            if (autoExec.Count > 0)
            {
                reporter.Report(Rules.OfficeVbaAutoExec, Severity.Critical,
                    $"module '{module.Name}' runs automatically ({string.Join(", ", autoExec)})");
            }

            var calls = Vba.SuspiciousCalls.Where(c => AsciiSearch.ContainsIgnoreCase(source, c)).ToList();
            if (calls.Count > 0)
            {
                reporter.Report(Rules.OfficeVbaSuspicious, Severity.High,
                    $"module '{module.Name}' calls {string.Join(", ", calls.Take(10))}");
            }

            if (source.Length > 0)
            {
                using var text = ContentSource.FromMemory(source);
                await context.InspectChildAsync($"{Display(vba)}/{module.Name} (VBA source)", text, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A name as a whole word (Sub AutoOpen(), not AutoOpenFolder).</summary>
    private static bool ContainsWord(ReadOnlySpan<byte> text, string word)
    {
        var offset = 0;
        while (offset < text.Length)
        {
            var i = AsciiSearch.IndexOfIgnoreCase(text[offset..], word);
            if (i < 0)
            {
                return false;
            }

            var start = offset + i;
            var end = start + word.Length;
            var before = start == 0 || !IsIdentifier(text[start - 1]);
            var after = end >= text.Length || !IsIdentifier(text[end]);
            if (before && after)
            {
                return true;
            }

            offset = end;
        }

        return false;
    }

    private static bool IsIdentifier(byte b) => b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9' or (byte)'_';

    /// <summary>BIFF BoundSheet8 records whose sheet type is 1: Excel 4.0 (XLM) macro sheets.</summary>
    private static void CheckExcelMacroSheets(CappedReporter reporter, Ole2File file, Ole2Entry workbook)
    {
        using var stream = file.OpenStream(workbook);
        using var reader = new SourceReader(stream);
        var records = 0;
        while (reader.Remaining >= 4 && records++ < 2_000_000)
        {
            var type = reader.ReadUInt16();
            var length = reader.ReadUInt16();
            if (type == 0x0085 && length >= 8)
            {
                reader.Skip(4);
                reader.ReadByte();
                var sheetType = reader.ReadByte();
                reader.Skip(length - 6);
                if (sheetType == 0x01)
                {
                    reporter.Report(Rules.OfficeXlmMacro, Severity.High, $"Excel 4.0 (XLM) macro sheet in '{Display(workbook)}'");
                }

                continue;
            }

            reader.Skip(length);
        }
    }

    /// <summary>DDE field codes in binary Word text: a field-begin mark (0x13) then DDE or DDEAUTO, in 8-bit or UTF-16 text.</summary>
    private static void CheckDdeText(CappedReporter reporter, Ole2File file, Ole2Entry entry)
    {
        var bytes = file.ReadStream(entry, MaxScannedStream);
        var span = bytes.AsSpan();
        for (var i = span.IndexOf((byte)0x13); i >= 0 && i < span.Length - 1;)
        {
            var unicode = span[i + 1] == 0;
            var step = unicode ? 2 : 1;
            var p = i + step;
            while (p + step <= span.Length && span[p] == (byte)' ' && (!unicode || span[p + 1] == 0))
            {
                p += step;
            }

            if (p + 3 * step <= span.Length && IsChar(span, p, 'D', unicode) && IsChar(span, p + step, 'D', unicode) && IsChar(span, p + 2 * step, 'E', unicode))
            {
                reporter.Report(Rules.OfficeDde, Severity.High, $"DDE field code in '{Display(entry)}' at offset {i}");
                return;
            }

            var next = span[(i + 1)..].IndexOf((byte)0x13);
            i = next < 0 ? -1 : i + 1 + next;
        }
    }

    private static bool IsChar(ReadOnlySpan<byte> span, int position, char c, bool unicode) =>
        (span[position] | 0x20) == (c | 0x20) && (!unicode || span[position + 1] == 0);

    private static async ValueTask InspectPackageAsync(InspectionContext context, Ole2File file, Ole2Entry entry, CancellationToken cancellationToken)
    {
        using var stream = file.OpenStream(entry);
        var package = OlePackageReader.Parse(stream, hasSizePrefix: true);
        if (package is null)
        {
            context.Report(Rules.OfficeOlePackage, Severity.High, $"embedded OLE native data in '{Display(entry)}' (unparsed layout)");
            await context.InspectChildAsync(Display(entry), stream, cancellationToken).ConfigureAwait(false);
            return;
        }

        var name = Path.GetFileName((package.SourcePath.Length > 0 ? package.SourcePath : package.Label).Replace('\\', '/'));
        context.Report(Rules.OfficeOlePackage, Severity.High,
            $"embedded OLE package '{Inspector.SanitiseName(package.Label)}' from '{Inspector.SanitiseName(package.SourcePath)}' ({package.DataLength} bytes)");
        using var data = stream.Slice(package.DataOffset, package.DataLength);
        await context.InspectChildAsync($"{Display(entry)}:{(name.Length == 0 ? "package" : name)}", data, cancellationToken).ConfigureAwait(false);
    }
}
