using System.Buffers.Binary;
using System.Text;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// RTF: embedded objects (\object, \objclass, \objdata decoded from hex or \bin, their OLE1 header parsed and the
/// native data inspected as a child), auto-updating objects (\objupdate), linked objects and DDE fields. Reads the
/// document once, streaming; hex object data goes to a spill buffer, never whole into memory.
/// </summary>
internal sealed class RtfAnalyser : IContentAnalyser
{
    private const int MaxGroupDepth = 4096;
    private const int MaxTextCapture = 4096;

    private static readonly string[] RiskyClasses =
    [
        "Package", "Equation.3", "Equation.2", "OLE2Link", "htmlfile", "Forms.HTML", "Script", "Word.Document.8", "Excel.Sheet.8",
        "PowerPoint.Show", "Shell.Explorer", "MSScriptControl", "Forms.Image", "otkloadr.WRAssembly", "Msxml2.SAXXMLReader",
    ];

    /// <summary>
    /// Destination control words (RTF 1.9.1) a reader sends elsewhere: a group opened inside \objdata with one of them
    /// (or with \*) holds no object data, as in Word and oletools' rtfobj.
    /// </summary>
    private static readonly HashSet<string> Destinations = new(StringComparer.Ordinal)
    {
        "annotation", "atnauthor", "atndate", "atnicn", "atnid", "atnparent", "atnref", "atntime", "atrfend", "atrfstart", "author", "background",
        "bkmkend", "bkmkstart", "blipuid", "buptim", "category", "colorschememapping", "colortbl", "comment", "company", "creatim", "datafield",
        "datastore", "defchp", "defpap", "do", "doccomm", "docvar", "dptxbxtext", "ebcend", "ebcstart", "factoidname", "falt", "fchars", "ffdeftext",
        "ffentrymcr", "ffexitmcr", "ffformat", "ffhelptext", "ffl", "ffname", "ffstattext", "field", "file", "filetbl", "fldinst", "fldrslt",
        "fldtype", "fname", "fontemb", "fontfile", "fonttbl", "footer", "footerf", "footerl", "footerr", "footnote", "formfield", "ftncn", "ftnsep",
        "ftnsepc", "g", "generator", "gridtbl", "header", "headerf", "headerl", "headerr", "hl", "hlfr", "hlinkbase", "hlloc", "hlsrc", "hsv", "info",
        "keywords", "latentstyles", "lchars", "levelnumbers", "leveltext", "lfolevel", "linkval", "list", "listlevel", "listname", "listoverride",
        "listoverridetable", "listpicture", "liststylename", "listtable", "listtext", "lsdlockedexcept", "macc", "maccPr", "manager", "mmathPr",
        "nesttableprops", "nextfile", "nonesttables", "nonshppict", "objalias", "objclass", "objname", "objsect", "objtime", "oldcprops",
        "oldpprops", "oldsprops", "oldtprops", "operator", "panose", "password", "passwordhash", "pgp", "pgptbl", "picprop", "pict", "pn",
        "pnseclvl", "pntext", "pntxta", "pntxtb", "printim", "private", "propname", "protend", "protstart", "protusertbl", "pxe", "result",
        "revtbl", "revtim", "rsidtbl", "rxe", "shp", "shpgrp", "shpinst", "shppict", "shprslt", "shptxt", "sn", "sp", "staticval", "stylesheet",
        "subject", "sv", "svb", "tc", "template", "themedata", "title", "txe", "ud", "upr", "userprops", "wgrffmtfilter", "windowcaption",
        "writereservation", "writereservhash", "xe", "xform", "xmlattrname", "xmlattrvalue", "xmlclose", "xmlname", "xmlnstbl", "xmlopen",
    };

    public string Name => "rtf";

    public bool CanAnalyse(ContentType type) => type == ContentType.Rtf;

    private enum Destination
    {
        Other,
        ObjData,
        ObjClass,
        FieldInstruction,
    }

    private sealed class Group
    {
        public Destination Destination;
        public bool InObject;
        public bool InField;

        /// <summary>\ucN: how many fallback characters follow each \uN (group-scoped, 1 by default).</summary>
        public int UnicodeSkip = 1;

        /// <summary>A group opened inside object data or a field instruction that has read nothing yet: a \* here makes it a destination readers skip.</summary>
        public bool Fresh;

        /// <summary>A fresh group inside a field instruction that read \*: the next control word says whether readers keep it.</summary>
        public bool Starred;

        /// <summary>A \upr group: its first group (the ANSI text) is dropped, Word reads the {\*\ud ...} one.</summary>
        public bool Upr;
    }

    private sealed class ObjectState
    {
        public long Offset;
        public string? ClassName;
        public bool AutoUpdate;
        public bool Linked;
        public SpillBuffer? Data;
        public int PendingNibble = -1;
    }

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var reporter = new CappedReporter(context);
        var objects = new List<ObjectState>();
        var stack = new Stack<Group>();
        var current = new Group();
        ObjectState? obj = null;
        var capture = new StringBuilder();
        var maxData = context.Limits.MaxInnerSize;
        var depthReported = false;
        using var reader = new SourceReader(content);
        var word = new StringBuilder(32);
        long steps = 0;
        // Fallback characters still to skip after a \uN, as Word does (a group boundary ends them).
        var skip = 0;
        try
        {
            while (!reader.AtEnd)
            {
                if ((++steps & 0xFFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }

                var c = reader.ReadByte();
                switch (c)
                {
                    case (byte)'{':
                        if (stack.Count >= MaxGroupDepth)
                        {
                            if (!depthReported)
                            {
                                context.Report(Rules.RtfMalformed, Severity.Low, $"groups nest deeper than {MaxGroupDepth} levels", reader.Position - 1);
                                depthReported = true;
                            }

                            continue;
                        }

                        stack.Push(current);
                        skip = 0;
                        // {\upr{ANSI}{\*\ud{Unicode}}}: readers that know \ud drop the ANSI group.
                        var droppedUpr = current.Upr && current.Destination == Destination.FieldInstruction;
                        current.Upr = false;
                        // Nested groups stay in their parent's destination until a control word names another.
                        current = new Group
                        {
                            InObject = current.InObject, InField = current.InField,
                            Destination = droppedUpr ? Destination.Other : current.Destination, UnicodeSkip = current.UnicodeSkip,
                            Fresh = current.Destination is Destination.ObjData or Destination.FieldInstruction && !droppedUpr,
                        };
                        break;
                    case (byte)'}':
                        skip = 0;
                        // The class name is the text of the whole group, nested groups included ({\*\objclass Equ{}ation.3}).
                        if (current.Destination == Destination.ObjClass && obj is not null && (stack.Count == 0 || stack.Peek().Destination != Destination.ObjClass))
                        {
                            obj.ClassName ??= capture.ToString().Trim().TrimEnd(';');
                        }
                        else if (current.Destination == Destination.FieldInstruction && (stack.Count == 0 || stack.Peek().Destination != Destination.FieldInstruction))
                        {
                            CheckField(reporter, capture.ToString(), reader.Position);
                        }

                        if (current.Destination is Destination.ObjClass or Destination.FieldInstruction
                            && (stack.Count == 0 || stack.Peek().Destination != current.Destination))
                        {
                            capture.Clear();
                        }

                        if (current.InObject && (stack.Count == 0 || !stack.Peek().InObject))
                        {
                            obj = null;
                        }

                        current = stack.Count > 0 ? stack.Pop() : new Group();
                        break;
                    case (byte)'\\':
                        ReadControl(reader, word, out var parameter, out var isSymbol);
                        var fresh = current.Fresh;
                        var starred = current.Starred;
                        current.Fresh = false;
                        current.Starred = false;
                        if (isSymbol)
                        {
                            if (word.Length == 1 && word[0] == '*' && fresh)
                            {
                                if (current.Destination == Destination.FieldInstruction)
                                {
                                    // {\*\ud ...} is read, any other ignorable destination dropped: decided by the next control word.
                                    current.Starred = true;
                                }
                                else
                                {
                                    // {\* ...} inside \objdata: an ignorable destination, whose text is no object data.
                                    current.Destination = Destination.Other;
                                }
                            }

                            if (word.Length == 1 && word[0] == '\'')
                            {
                                // \'hh: a hex-escaped character; inside object data it is just two more hex digits.
                                var high = reader.ReadByte();
                                var low = reader.ReadByte();
                                if (skip > 0)
                                {
                                    skip--;
                                }
                                else if (current.Destination == Destination.ObjData && obj is not null)
                                {
                                    AppendHex(obj, high, maxData);
                                    AppendHex(obj, low, maxData);
                                }
                                else
                                {
                                    Capture(current, capture, (char)((Hex(high) << 4) | Hex(low)));
                                }
                            }
                            else if (skip > 0)
                            {
                                skip--;
                            }
                            else if (word.Length == 1 && word[0] is '\\' or '{' or '}')
                            {
                                // Escaped literals: a field's path keeps its backslashes (c:\\windows reads c:\windows).
                                Capture(current, capture, word[0]);
                            }

                            break;
                        }

                        var control = word.ToString();
                        if (skip > 0 && control != "bin")
                        {
                            // A control word in a \uN fallback counts as one character and is skipped with it.
                            skip--;
                            break;
                        }

                        if (fresh && current.Destination == Destination.FieldInstruction && control == "upr")
                        {
                            current.Upr = true;
                        }
                        else if ((fresh || starred) && current.Destination == Destination.FieldInstruction && control is "ud" or "fldinst")
                        {
                            // \ud holds the Unicode text Word reads; a nested \fldinst starts its own instruction.
                        }
                        else if (starred || (fresh && Destinations.Contains(control) && control is not ("objclass" or "fldinst")))
                        {
                            // A destination group (\bkmkstart, \datafield, an unknown {\* ...}) inside \objdata or a field
                            // instruction: readers send its text elsewhere or drop it, it is neither object data nor instruction.
                            current.Destination = Destination.Other;
                        }

                        switch (control)
                        {
                            case "u":
                                // \uN: the character N (negative for code points above 32767), then \ucN fallback characters to skip.
                                Capture(current, capture, (char)(parameter < 0 ? parameter + 65536 : parameter));
                                skip = current.UnicodeSkip;
                                break;
                            case "uc":
                                current.UnicodeSkip = (int)Math.Clamp(parameter, 0, 255);
                                break;
                            case "object":
                                current.InObject = true;
                                obj = new ObjectState { Offset = reader.Position - 7 };
                                objects.Add(obj);
                                break;
                            case "objdata" when obj is not null:
                                current.Destination = Destination.ObjData;
                                obj.Data ??= new SpillBuffer(context);
                                break;
                            case "objclass":
                                current.Destination = Destination.ObjClass;
                                capture.Clear();
                                break;
                            case "objupdate" when obj is not null:
                                obj.AutoUpdate = true;
                                break;
                            case "objautlink" or "objlink" when obj is not null:
                                obj.Linked = true;
                                break;
                            case "field":
                                current.InField = true;
                                break;
                            case "fldinst":
                                current.Destination = Destination.FieldInstruction;
                                capture.Clear();
                                break;
                            case "fldrslt" or "result" or "pict" or "fonttbl" or "colortbl" or "stylesheet" or "info" or "themedata" or "datastore" or "objalias" or "objsect":
                                current.Destination = Destination.Other;
                                break;
                            case "bin" when parameter > 0:
                                var count = Math.Min(parameter, reader.Remaining);
                                if (current.Destination == Destination.ObjData && obj?.Data is not null && obj.Data.Length + count <= maxData)
                                {
                                    var buffer = new byte[(int)Math.Min(count, 1 << 20)];
                                    for (long copied = 0; copied < count;)
                                    {
                                        var n = reader.Read(buffer.AsSpan(0, (int)Math.Min(buffer.Length, count - copied)));
                                        obj.Data.Write(buffer.AsSpan(0, n));
                                        copied += n;
                                        if (n == 0)
                                        {
                                            break;
                                        }
                                    }
                                }
                                else
                                {
                                    reader.Skip(count);
                                }

                                break;
                            default:
                                break;
                        }

                        break;
                    default:
                        if (c is (byte)'\r' or (byte)'\n')
                        {
                            break;
                        }

                        if (c is not ((byte)' ' or (byte)'\t'))
                        {
                            current.Fresh = false;
                        }

                        if (skip > 0)
                        {
                            skip--;
                        }
                        else if (current.Destination == Destination.ObjData && obj is not null)
                        {
                            AppendHex(obj, c, maxData);
                        }
                        else if (c >= 32)
                        {
                            Capture(current, capture, (char)c);
                        }

                        break;
                }
            }

            foreach (var found in objects)
            {
                cancellationToken.ThrowIfCancellationRequested();
                await ReportObjectAsync(context, reporter, found, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (var found in objects)
            {
                found.Data?.Dispose();
            }
        }

        reporter.Flush();
    }

    private static void Capture(Group group, StringBuilder capture, char c)
    {
        if (group.Destination is Destination.ObjClass or Destination.FieldInstruction && capture.Length < MaxTextCapture)
        {
            capture.Append(c);
        }
    }

    private static void ReadControl(SourceReader reader, StringBuilder word, out long parameter, out bool isSymbol)
    {
        word.Clear();
        parameter = 0;
        isSymbol = false;
        var c = reader.ReadByte();
        if (!char.IsAsciiLetter((char)c))
        {
            word.Append((char)c);
            isSymbol = true;
            return;
        }

        while (char.IsAsciiLetter((char)c) && word.Length < 32)
        {
            word.Append((char)c);
            if (reader.AtEnd)
            {
                return;
            }

            c = reader.ReadByte();
        }

        var negative = false;
        if (c == '-')
        {
            negative = true;
            c = reader.ReadByte();
        }

        var digits = 0;
        while (c is >= (byte)'0' and <= (byte)'9' && !reader.AtEnd)
        {
            if (digits++ < 10)
            {
                parameter = parameter * 10 + (c - '0');
            }

            c = reader.ReadByte();
        }

        if (negative)
        {
            parameter = -parameter;
        }

        if (c != ' ')
        {
            reader.Position--;
        }
    }

    private static int Hex(byte b) => PdfHex(b) ? (b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10) : 0;

    private static bool PdfHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';

    private static void AppendHex(ObjectState obj, byte c, long maxData)
    {
        if (!PdfHex(c) || obj.Data is null)
        {
            return;
        }

        if (obj.PendingNibble < 0)
        {
            obj.PendingNibble = Hex(c);
            return;
        }

        if (obj.Data.Length < maxData)
        {
            obj.Data.Write([(byte)((obj.PendingNibble << 4) | Hex(c))]);
        }

        obj.PendingNibble = -1;
    }

    private static void CheckField(CappedReporter reporter, string instruction, long offset)
    {
        var text = instruction.Trim();
        var first = text.Split([' ', '\t', '"'], 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.ToUpperInvariant();
        if (first is "DDE" or "DDEAUTO")
        {
            reporter.Report(Rules.RtfDde, Severity.High, $"{first} field: {Inspector.Truncate(text, 160)}", offset);
        }
    }

    private static async ValueTask ReportObjectAsync(InspectionContext context, CappedReporter reporter, ObjectState obj, CancellationToken cancellationToken)
    {
        using var data = obj.Data?.Detach();
        obj.Data = null;
        var header = data is null ? null : ReadOle1Header(data);
        var className = header?.ClassName ?? obj.ClassName ?? "unknown";
        var risky = RiskyClasses.Any(r => className.StartsWith(r, StringComparison.OrdinalIgnoreCase));
        reporter.Report(risky ? Rules.RtfRiskyObjectClass : Rules.RtfObject, risky ? Severity.High : Severity.Medium,
            $"embedded {(obj.Linked ? "linked" : "OLE")} object of class '{Inspector.SanitiseName(className)}' ({data?.Length ?? 0} bytes of object data)", obj.Offset);
        if (obj.AutoUpdate)
        {
            reporter.Report(Rules.RtfObjectAutoUpdate, Severity.High, $"object '{Inspector.SanitiseName(className)}' updates itself when the document opens (\\objupdate)", obj.Offset);
        }

        if (data is null || data.Length == 0 || header is null || context.BombFound())
        {
            if (data is not null && data.Length > 0 && header is null)
            {
                await context.InspectChildAsync("object data", data, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        using var native = data.Slice(header.NativeOffset, header.NativeLength);
        if (className.Equals("Package", StringComparison.OrdinalIgnoreCase) && OlePackageReader.Parse(native, hasSizePrefix: false) is { } package)
        {
            var name = Path.GetFileName((package.SourcePath.Length > 0 ? package.SourcePath : package.Label).Replace('\\', '/'));
            reporter.Report(Rules.OfficeOlePackage, Severity.High,
                $"embedded OLE package '{Inspector.SanitiseName(package.Label)}' from '{Inspector.SanitiseName(package.SourcePath)}' ({package.DataLength} bytes)", obj.Offset);
            using var file = native.Slice(package.DataOffset, package.DataLength);
            await context.InspectChildAsync(name.Length == 0 ? "package" : name, file, cancellationToken).ConfigureAwait(false);
            return;
        }

        await context.InspectChildAsync($"object '{className}'", native, cancellationToken).ConfigureAwait(false);
    }

    private sealed record Ole1Header(string ClassName, long NativeOffset, long NativeLength);

    /// <summary>OLE1 ObjectHeader: version, format (2 = embedded), class, topic and item names, then the native data size.</summary>
    private static Ole1Header? ReadOle1Header(ContentSource data)
    {
        var head = new byte[(int)Math.Min(data.Length, 4096)];
        var length = data.ReadAt(0, head);
        var span = head.AsSpan(0, length);
        if (span.Length < 12)
        {
            return null;
        }

        var format = BinaryPrimitives.ReadUInt32LittleEndian(span[4..]);
        if (format is not (1 or 2))
        {
            return null;
        }

        var position = 8;
        var className = ReadLengthPrefixed(span, ref position);
        var topic = ReadLengthPrefixed(span, ref position);
        var item = ReadLengthPrefixed(span, ref position);
        if (className is null || topic is null || item is null || position + 4 > span.Length)
        {
            return className is null ? null : new Ole1Header(className, Math.Min(position, data.Length), 0);
        }

        if (format == 1)
        {
            // A linked object: no native data, the topic names the linked file.
            return new Ole1Header(className, position, 0);
        }

        var size = BinaryPrimitives.ReadUInt32LittleEndian(span[position..]);
        position += 4;
        return new Ole1Header(className, position, Math.Min(size, data.Length - position));
    }

    private static string? ReadLengthPrefixed(ReadOnlySpan<byte> span, ref int position)
    {
        if (position + 4 > span.Length)
        {
            return null;
        }

        var length = BinaryPrimitives.ReadUInt32LittleEndian(span[position..]);
        position += 4;
        if (length > 1024 || position + length > span.Length)
        {
            return null;
        }

        var text = Encoding.Latin1.GetString(span.Slice(position, (int)length)).TrimEnd('\0');
        position += (int)length;
        return text;
    }
}
