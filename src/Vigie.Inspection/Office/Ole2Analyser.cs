using System.Buffers.Binary;
using System.IO.Compression;
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
    private const int DdeChunk = 1024 * 1024;
    private const int DdeOverlap = 4096;
    private const int MaxSameName = 4;
    private const int MaxPowerPointRecords = 1_000_000;
    private const int MaxPowerPointDepth = 32;
    private const int MaxPowerPointObjects = 256;
    private const int MaxPersistOffsets = 65_536;

    /// <summary>StdOleLink: a linked object whose moniker Office resolves when the link updates (CVE-2017-0199).</summary>
    private static readonly Guid Ole2LinkClass = new("00000300-0000-0000-C000-000000000046");

    /// <summary>CLSID_StdURLMoniker as stored (little-endian fields): it is followed by a byte length and a UTF-16 URL.</summary>
    private static readonly byte[] UrlMonikerClass = new Guid("79EAC9E0-BAF9-11CE-8C82-00AA004BA90B").ToByteArray();

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

        ReportDuplicateNames(reporter, file);
        foreach (var entry in file.Entries)
        {
            if (entry.ClassId != Guid.Empty && Array.IndexOf(EquationEditorClasses, entry.ClassId) >= 0)
            {
                reporter.Report(Rules.OfficeEquationEditor, Severity.High,
                    $"'{Display(entry)}' is an Equation Editor object (Equation.3), a classic exploit vehicle");
            }

            if (entry.ClassId == Ole2LinkClass || (entry.Type is Ole2EntryType.Storage or Ole2EntryType.Root && IsDeclaredLink(file, entry)))
            {
                var url = ReadLinkUrl(file, entry);
                reporter.Report(Rules.OfficeExternalOleLink, Severity.High,
                    $"'{Display(entry)}' is a linked OLE object (OLE2Link){(url is null ? "" : $" to '{Inspector.SanitiseName(Inspector.Truncate(url, 200))}'")}: Office fetches and runs what the link names when it updates (CVE-2017-0199)");
            }

            if (entry.IsStream && (Named(entry, "\u0003OCXNAME") || Named(entry, "OCXNAME") || Named(entry, "\u0003OCXDATA")))
            {
                reporter.Report(Rules.OfficeActiveX, Severity.Medium, $"ActiveX control in '{Display(entry)}'");
            }

            if (entry.IsStream && Named(entry, "\u0001CompObj"))
            {
                var compObj = file.ReadStream(entry, 4096);
                if (AsciiSearch.ContainsIgnoreCase(compObj, "Equation.3") || AsciiSearch.ContainsIgnoreCase(compObj, "Equation.2"))
                {
                    reporter.Report(Rules.OfficeEquationEditor, Severity.High, $"'{Display(entry)}' declares an Equation Editor object");
                }
            }
        }

        foreach (var vba in file.Entries.Where(e => e.Type == Ole2EntryType.Storage && Named(e, "VBA")))
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

            if (Named(entry, "Workbook") || Named(entry, "Book"))
            {
                CheckExcelMacroSheets(reporter, file, entry);
            }

            if (Named(entry, "WordDocument"))
            {
                CheckWordEncryption(reporter, file, entry);
                CheckDdeText(reporter, file, entry, cancellationToken);
            }

            if (Named(entry, "EncryptedSummary") && entry.ParentId == 0)
            {
                reporter.Report(Rules.OfficeEncrypted, Severity.Medium, "password-protected PowerPoint presentation (EncryptedSummary): its content cannot be inspected");
            }

            if (Named(entry, "PowerPoint Document"))
            {
                await InspectPowerPointAsync(context, reporter, file, entry, cancellationToken).ConfigureAwait(false);
            }

            if (Named(entry, "\u0001Ole10Native"))
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

    /// <summary>MS-CFB compares names case-insensitively: Word opens "worddocument" as its text.</summary>
    private static bool Named(Ole2Entry entry, string name) => entry.Name.Equals(name, StringComparison.OrdinalIgnoreCase);

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
        // Names differing only by case (dir and DIR) are all kept: which one Office reads is not ours to guess.
        var children = file.Children(vba).Where(e => e.IsStream).ToLookup(e => e.Name, StringComparer.OrdinalIgnoreCase);
        var dirs = children["dir"].Take(MaxSameName).ToList();
        if (dirs.Count == 0)
        {
            reporter.Report(Rules.OfficeVbaMacro, Severity.High, $"VBA storage '{Display(vba)}' (its dir stream is missing)");
            return;
        }

        foreach (var dirEntry in dirs)
        {
            await AnalyseVbaProjectAsync(context, reporter, file, vba, children, dirEntry, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async ValueTask AnalyseVbaProjectAsync(InspectionContext context, CappedReporter reporter, Ole2File file, Ole2Entry vba,
        ILookup<string, Ole2Entry> children, Ole2Entry dirEntry, CancellationToken cancellationToken)
    {
        var dir = Vba.Decompress(file.ReadStream(dirEntry, MaxModuleSource), MaxModuleSource, out var dirError);
        var modules = Vba.ParseDirectory(dir, out _);
        reporter.Report(Rules.OfficeVbaMacro, Severity.High,
            modules.Count > 0
                ? $"VBA project '{Display(vba)}' with {modules.Count} module(s): {string.Join(", ", modules.Select(m => m.Name).Take(20))}"
                : $"VBA project '{Display(vba)}' (dir stream unreadable: {dirError ?? "no module records"})");

        foreach (var module in modules)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var streams = children[module.StreamName];
            if (module.UnicodeStreamName is { Length: > 0 } unicodeName && !unicodeName.Equals(module.StreamName, StringComparison.OrdinalIgnoreCase))
            {
                streams = streams.Concat(children[unicodeName]);
            }

            foreach (var moduleEntry in streams.Take(MaxSameName))
            {
                await AnalyseModuleAsync(context, reporter, file, vba, module, moduleEntry, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static async ValueTask AnalyseModuleAsync(InspectionContext context, CappedReporter reporter, Ole2File file, Ole2Entry vba,
        VbaModule module, Ole2Entry moduleEntry, CancellationToken cancellationToken)
    {
        var raw = file.ReadStream(moduleEntry, MaxModuleSource);
        if (module.SourceOffset >= raw.Length)
        {
            return;
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

    /// <summary>MS-CFB forbids two names in one storage that differ only by case; a reader picks one, the others hide.</summary>
    private static void ReportDuplicateNames(CappedReporter reporter, Ole2File file)
    {
        var reported = 0;
        foreach (var group in file.Entries.Where(e => e.ParentId >= 0).GroupBy(e => (e.ParentId, Name: e.Name.ToUpperInvariant())))
        {
            if (group.Skip(1).Any() && reported++ < 5)
            {
                reporter.Report(Rules.Ole2Malformed, Severity.Medium,
                    $"{group.Count()} entries named '{Display(group.First())}' (differing only by case) in one storage: each is inspected");
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
        var encrypted = false;
        while (reader.Remaining >= 4 && records++ < 2_000_000)
        {
            var type = reader.ReadUInt16();
            var length = reader.ReadUInt16();
            if (type == 0x002F && !encrypted)
            {
                // FILEPASS: every later record body is encrypted (BoundSheet8's sheet type too), so macro sheets cannot be seen.
                encrypted = true;
                reporter.Report(Rules.OfficeEncrypted, Severity.Medium,
                    $"password-protected Excel workbook (FILEPASS) in '{Display(workbook)}': its sheets and macros cannot be inspected");
            }

            if (type == 0x0085 && length >= 8 && !encrypted)
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

    /// <summary>
    /// FIB: wIdent 0xA5EC (Word 97 and later) or 0xA5DC (Word 6/95), then the flags word at 0x0A whose bit 0x0100 is
    /// fEncrypted (RC4 or XOR obfuscation) in both.
    /// </summary>
    private static void CheckWordEncryption(CappedReporter reporter, Ole2File file, Ole2Entry entry)
    {
        var fib = file.ReadStream(entry, 12);
        if (fib.Length == 12 && BinaryPrimitives.ReadUInt16LittleEndian(fib) is 0xA5EC or 0xA5DC
            && (BinaryPrimitives.ReadUInt16LittleEndian(fib.AsSpan(10)) & 0x0100) != 0)
        {
            reporter.Report(Rules.OfficeEncrypted, Severity.Medium, $"password-protected Word document (encrypted FIB) in '{Display(entry)}': its text cannot be inspected");
        }
    }

    /// <summary>
    /// A linked object whose CLSID is not OLE2Link (null, or anything): its \x01Ole stream (MS-OLEDS OLEStream) has the
    /// linked flag (Flags bit 0) and moniker data after the fixed header, or its \x01CompObj names the OLE2Link ProgID.
    /// Office resolves such a link all the same.
    /// </summary>
    private static bool IsDeclaredLink(Ole2File file, Ole2Entry storage)
    {
        foreach (var child in file.Children(storage))
        {
            if (!child.IsStream)
            {
                continue;
            }

            if (Named(child, "\u0001CompObj") && AsciiSearch.ContainsIgnoreCase(file.ReadStream(child, 4096), "OLE2Link"))
            {
                return true;
            }

            if (Named(child, "\u0001Ole"))
            {
                var ole = file.ReadStream(child, 24);
                if (ole.Length > 20 && (BinaryPrimitives.ReadUInt32LittleEndian(ole.AsSpan(4)) & 1) != 0)
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>The URL of an OLE2Link object's URL moniker, read from its \x01Ole stream; null when there is none to read.</summary>
    private static string? ReadLinkUrl(Ole2File file, Ole2Entry link)
    {
        var ole = file.Children(link).FirstOrDefault(e => e.IsStream && Named(e, "\u0001Ole"));
        if (ole is null)
        {
            return null;
        }

        var bytes = file.ReadStream(ole, 64 * 1024);
        var at = bytes.AsSpan().IndexOf(UrlMonikerClass);
        if (at < 0 || at + 20 > bytes.Length)
        {
            return null;
        }

        var length = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 16)), (uint)(bytes.Length - at - 20));
        var url = Encoding.Unicode.GetString(bytes, at + 20, length & ~1);
        var end = url.IndexOf('\0', StringComparison.Ordinal);
        return end >= 0 ? url[..end] : url;
    }

    /// <summary>
    /// PowerPoint keeps embedded objects, its VBA project among them, in ExOleObjStg records (0x1011) of the
    /// "PowerPoint Document" stream: instance 1 is a 4-byte size then zlib data, instance 0 the storage itself.
    /// The record tree is walked with bounded depth and count; each object is inspected as a child. PowerPoint itself
    /// finds records through the PersistDirectoryAtom offsets, so those pointing at an ExOleObjStg the walk did not
    /// reach (one inside an atom's body) are inspected too. Reaching a limit is reported: the rest was not read.
    /// </summary>
    private static async ValueTask InspectPowerPointAsync(InspectionContext context, CappedReporter reporter, Ole2File file, Ole2Entry entry,
        CancellationToken cancellationToken)
    {
        using var stream = file.OpenStream(entry);
        var header = new byte[8];
        var ends = new Stack<long>();
        var objects = new PowerPointObjects();
        var persistOffsets = new List<long>();
        long position = 0;
        var records = 0;
        var depthReported = false;
        var encryptedReported = false;
        while (position + 8 <= stream.Length && !context.BombFound())
        {
            if (records++ >= MaxPowerPointRecords)
            {
                context.Report(Rules.ObjectLimit, Severity.Medium,
                    $"more than {MaxPowerPointRecords} records in '{Display(entry)}', the record limit: the rest of the presentation (its embedded objects and macros) was not inspected");
                break;
            }

            if ((records & 0xFFFF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            while (ends.Count > 0 && position + 8 > ends.Peek())
            {
                position = Math.Max(position, ends.Pop());
            }

            if (position + 8 > stream.Length)
            {
                break;
            }

            stream.ReadAt(position, header);
            var verInstance = BinaryPrimitives.ReadUInt16LittleEndian(header);
            var type = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2));
            var length = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
            var bodyStart = position + 8;
            var bodyEnd = Math.Min(bodyStart + length, ends.Count > 0 ? ends.Peek() : stream.Length);

            // By type first: a CryptSession10Container is a container (recVer 0xF) and would otherwise be stepped into.
            if (type == 0x2F14)
            {
                if (!encryptedReported)
                {
                    reporter.Report(Rules.OfficeEncrypted, Severity.Medium,
                        $"password-protected PowerPoint presentation (CryptSession10Container) in '{Display(entry)}': its content cannot be inspected");
                    encryptedReported = true;
                }

                position = bodyEnd;
                continue;
            }

            if (type == 0x1011)
            {
                await InspectPowerPointRecordAsync(context, entry, stream, position, verInstance, bodyStart, bodyEnd, objects, cancellationToken)
                    .ConfigureAwait(false);
                position = bodyEnd;
                continue;
            }

            if (type == 0x1772)
            {
                ReadPersistDirectory(stream, bodyStart, bodyEnd, persistOffsets);
            }

            if ((verInstance & 0x000F) == 0x000F)
            {
                if (ends.Count < MaxPowerPointDepth)
                {
                    ends.Push(bodyEnd);
                    position = bodyStart;
                    continue;
                }

                if (!depthReported)
                {
                    context.Report(Rules.DepthLimit, Severity.Medium,
                        $"PowerPoint records in '{Display(entry)}' nest past the depth limit of {MaxPowerPointDepth} levels at offset {position}: the deeper records were not inspected");
                    depthReported = true;
                }
            }

            position = bodyEnd;
        }

        foreach (var offset in persistOffsets)
        {
            if (context.BombFound() || objects.Inspected.Contains(offset) || offset + 8 > stream.Length)
            {
                continue;
            }

            cancellationToken.ThrowIfCancellationRequested();
            stream.ReadAt(offset, header);
            if (BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(2)) != 0x1011)
            {
                continue;
            }

            var bodyStart = offset + 8;
            var bodyEnd = Math.Min(bodyStart + BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)), stream.Length);
            await InspectPowerPointRecordAsync(context, entry, stream, offset, BinaryPrimitives.ReadUInt16LittleEndian(header), bodyStart, bodyEnd,
                objects, cancellationToken).ConfigureAwait(false);
        }
    }

    private sealed class PowerPointObjects
    {
        public readonly HashSet<long> Inspected = [];
        public bool LimitReported;
    }

    private static async ValueTask InspectPowerPointRecordAsync(InspectionContext context, Ole2Entry entry, ContentSource stream, long position,
        ushort verInstance, long bodyStart, long bodyEnd, PowerPointObjects objects, CancellationToken cancellationToken)
    {
        if (objects.Inspected.Count >= MaxPowerPointObjects)
        {
            if (!objects.LimitReported)
            {
                context.Report(Rules.ObjectLimit, Severity.Medium,
                    $"more than {MaxPowerPointObjects} embedded objects (ExOleObjStg) in '{Display(entry)}', the object limit: the rest were not inspected");
                objects.LimitReported = true;
            }

            return;
        }

        if (!objects.Inspected.Add(position))
        {
            return;
        }

        await InspectPowerPointObjectAsync(context, stream, bodyStart, Math.Max(0, bodyEnd - bodyStart), compressed: (verInstance >> 4) == 1,
            $"{Display(entry)}/ExOleObjStg@{position}", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>PersistDirectoryAtom: entries of a 4-byte word (persistId:20, cPersist:12) then cPersist 4-byte stream offsets.</summary>
    private static void ReadPersistDirectory(ContentSource stream, long start, long end, List<long> offsets)
    {
        var word = new byte[4];
        var position = start;
        while (position + 4 <= end && offsets.Count < MaxPersistOffsets)
        {
            stream.ReadAt(position, word);
            var count = BinaryPrimitives.ReadUInt32LittleEndian(word) >> 20;
            position += 4;
            for (var i = 0; i < count && position + 4 <= end && offsets.Count < MaxPersistOffsets; i++, position += 4)
            {
                stream.ReadAt(position, word);
                offsets.Add(BinaryPrimitives.ReadUInt32LittleEndian(word));
            }
        }
    }

    private static async ValueTask InspectPowerPointObjectAsync(InspectionContext context, ContentSource stream, long offset, long length, bool compressed,
        string name, CancellationToken cancellationToken)
    {
        if (!compressed)
        {
            using var plain = stream.Slice(offset, length);
            await context.InspectChildAsync(name, plain, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (length <= 4)
        {
            return;
        }

        // The declared decompressed size is not trusted: the extraction limits bound the output.
        using var data = stream.Slice(offset + 4, length - 4);
        ExtractionResult result;
        await using (var raw = data.OpenStream())
        await using (var zlib = new ZLibStream(raw, CompressionMode.Decompress))
        {
            result = await Extraction.ExtractAsync(context, zlib, length - 4, cancellationToken).ConfigureAwait(false);
        }

        using var extracted = result.Content;
        if (context.ReportExtractionProblem(result, $"'{name}'", Rules.ExpansionBomb, Rules.Ole2Malformed, null) || extracted is null)
        {
            return;
        }

        await context.InspectChildAsync(name, extracted, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// DDE field codes in binary Word text: a field-begin mark (0x13) then DDE or DDEAUTO, in 8-bit or UTF-16 text.
    /// The whole stream is scanned in overlapping chunks, so memory stays bounded however long the text is.
    /// </summary>
    private static void CheckDdeText(CappedReporter reporter, Ole2File file, Ole2Entry entry, CancellationToken cancellationToken)
    {
        using var stream = file.OpenStream(entry);
        var buffer = new byte[DdeChunk + DdeOverlap];
        for (long start = 0; start < stream.Length; start += DdeChunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var read = 0;
            while (read < buffer.Length && start + read < stream.Length)
            {
                var n = stream.ReadAt(start + read, buffer.AsSpan(read));
                if (n <= 0)
                {
                    break;
                }

                read += n;
            }

            if (read == 0)
            {
                break;
            }

            // A mark in the overlap is left to the next chunk, which sees what follows it.
            var marks = start + read >= stream.Length ? read : Math.Min(read, DdeChunk);
            var at = FindDde(buffer.AsSpan(0, read), marks);
            if (at >= 0)
            {
                reporter.Report(Rules.OfficeDde, Severity.High, $"DDE field code in '{Display(entry)}' at offset {start + at}");
                return;
            }
        }
    }

    private static int FindDde(ReadOnlySpan<byte> span, int marks)
    {
        for (var i = span.IndexOf((byte)0x13); i >= 0 && i < marks && i < span.Length - 1;)
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
                return i;
            }

            var next = span[(i + 1)..].IndexOf((byte)0x13);
            i = next < 0 ? -1 : i + 1 + next;
        }

        return -1;
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
