using System.Buffers.Binary;
using System.Text;
using Vigie.Inspection.Archives;

namespace Vigie.Inspection.Engine;

/// <summary>
/// Decides what content is from its bytes only: magic numbers, structural checks (a PE needs its e_lfanew to
/// reach "PE\0\0", a DICOM file "DICM" at 128 or a plausible headerless dataset), then text heuristics.
/// Never looks at a name or a declared MIME type.
/// </summary>
internal static class ContentIdentifier
{
    internal const int HeadLength = 8192;

    /// <summary>
    /// How far XML is read for its first element when its prolog (declaration, comments, processing instructions,
    /// DOCTYPE, whitespace) runs past the head; beyond it the type stays undecided and is reported.
    /// </summary>
    internal const int MaxXmlProlog = 16 * 1024 * 1024;

    public static ContentType Identify(ContentSource source) => Identify(source, out _);

    /// <param name="source">The content.</param>
    /// <param name="prologUnread">
    /// Set when the content is XML (or blank) up to <see cref="MaxXmlProlog"/> without a first element: what it is was
    /// not decided, and a reader that reads on (LibreOffice, for a flat document) may see more than Vigie did.
    /// </param>
    public static ContentType Identify(ContentSource source, out bool prologUnread)
    {
        prologUnread = false;
        var length = source.Length;
        if (length == 0)
        {
            return ContentType.Unknown;
        }

        Span<byte> head = stackalloc byte[(int)Math.Min(HeadLength, length)];
        head = head[..source.ReadAt(0, head)];

        if (head.Length >= 132 && head.Slice(128, 4).SequenceEqual("DICM"u8))
        {
            return ContentType.Dicom;
        }

        if (IsPe(source, head))
        {
            return ContentType.Pe;
        }

        if (Starts(head, [0x7F, (byte)'E', (byte)'L', (byte)'F']))
        {
            return ContentType.Elf;
        }

        if (IsMachO(head))
        {
            return ContentType.MachO;
        }

        // Before the PDF check: a data set without preamble that carries a PDF in an early element is DICOM (its other
        // elements inspected, its disarmed copy still DICOM), not a PDF behind junk. No other signature starts 02 00 or 08 00.
        if (IsHeaderlessDicom(head, length))
        {
            return ContentType.Dicom;
        }

        if (head.StartsWith("%PDF-"u8))
        {
            return ContentType.Pdf;
        }

        if (Starts(head, [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]))
        {
            return ContentType.Ole2;
        }

        if (Starts(head, [0x78, 0x9F, 0x3E, 0x22]))
        {
            return ContentType.Tnef;
        }

        if (head.StartsWith("{\\rt"u8))
        {
            return ContentType.Rtf;
        }

        if (head.StartsWith("PK\x03\x04"u8) || head.StartsWith("PK\x05\x06"u8) || head.StartsWith("PK\x07\x08"u8))
        {
            return IdentifyZip(source);
        }

        if (Starts(head, [0x1F, 0x8B]))
        {
            return ContentType.Gzip;
        }

        if (head.Length >= 4 && head.StartsWith("BZh"u8) && head[3] is >= (byte)'1' and <= (byte)'9')
        {
            return ContentType.Bzip2;
        }

        if (Starts(head, [0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00]))
        {
            return ContentType.Xz;
        }

        if (Starts(head, [(byte)'7', (byte)'z', 0xBC, 0xAF, 0x27, 0x1C]))
        {
            return ContentType.SevenZip;
        }

        if (head.StartsWith("Rar!\x1A\x07"u8))
        {
            return ContentType.Rar;
        }

        if (head.Length >= 262 && head.Slice(257, 5).SequenceEqual("ustar"u8))
        {
            return ContentType.Tar;
        }

        if (Starts(head, [0xFF, 0xD8, 0xFF]))
        {
            return ContentType.Jpeg;
        }

        if (Starts(head, [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            return ContentType.Png;
        }

        if (head.StartsWith("GIF87a"u8) || head.StartsWith("GIF89a"u8))
        {
            return ContentType.Gif;
        }

        if (Starts(head, [0x00, 0x00, 0x00, 0x0C, (byte)'j', (byte)'P', 0x20, 0x20]) || Starts(head, [0xFF, 0x4F, 0xFF, 0x51]))
        {
            return ContentType.Jpeg2000;
        }

        var type = IdentifyText(head, out var prologCut, out var unjudgedRoot);
        if ((prologCut && head.Length < length) || unjudgedRoot is not null)
        {
            // The head ended inside the prolog, or an office root's start tag holds a reference the bytes cannot judge
            // (word&#109;l): the first element decides, found by a streaming XML reader (before 2026-12-07, a 9 KB
            // processing instruction or 20,000 newlines before a flat document's root made it plain XML, and a namespace
            // written with a character reference did until 2026-12-08).
            type = IdentifyXmlByRoot(source, head, type, out prologUnread, out var rootRead);
            if (unjudgedRoot is { } office && !rootRead)
            {
                // Not readable without its DTD (an entity declared there): the office document its root names, whose
                // analyser reports what it cannot parse rather than a plain XML's clean verdict.
                type = office;
            }
        }

        if (type is ContentType.Text or ContentType.Unknown && head.Length < length && ReadMailHeaders(SkipBom(head), HeadLines).Block == MailHeaderBlock.Cut)
        {
            // The head ended inside what reads as a header block (one long line, or many unknown headers): a mail
            // hides its attachments behind that. Judge on up to 1 MiB (where the mail analyser wants its end); a block
            // still going at 1 MiB with a mail header in it is a mail, which the analyser then reports as malformed.
            type = IdentifyLongHeaderBlock(source, length) ? ContentType.Mime : type;
        }

        // Readers accept the header anywhere in the first kilobyte; so do we, behind bytes of no other kind. A container,
        // an image, a page, a mail or a text that holds a PDF header there is what it is, and is read once more as the
        // PDF a reader opens (Inspector's second reading): a tar or winmail.dat whose first member is a PDF, a mail with
        // a quoted-printable PDF, or a support mail quoting a PDF's first lines, was read as a PDF behind junk, its other
        // parts unseen or the text suspicious, until 2026-12-07.
        var pdfAt = head[..Math.Min(1024, head.Length)].IndexOf("%PDF-"u8);
        if (pdfAt > 0 && (type is ContentType.Unknown || head[..pdfAt].IndexOfAnyExcept(" \t\r\n\0"u8) < 0))
        {
            return ContentType.Pdf;
        }

        return type;
    }

    private const int HeadLines = 200;
    /// <summary>
    /// Whether a mail client would read the content as a mail: its head is a header block, or one still going past the
    /// head that the next megabyte completes (padding lines or one long header kept a polyglot from its second reading
    /// as a mail until 2026-12-07).
    /// </summary>
    internal static bool ReadsAsMail(ContentSource source, ReadOnlySpan<byte> head)
    {
        var block = ReadMailHeaders(SkipBom(head), HeadLines).Block;
        return block == MailHeaderBlock.Mail || (block == MailHeaderBlock.Cut && head.Length < source.Length && IdentifyLongHeaderBlock(source, source.Length));
    }

    private const int LongHeaderBlock = 1024 * 1024;

    private static bool IdentifyLongHeaderBlock(ContentSource source, long length)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent((int)Math.Min(LongHeaderBlock, length));
        try
        {
            var read = source.ReadAt(0, buffer.AsSpan(0, (int)Math.Min(LongHeaderBlock, length)));
            var text = SkipBom(buffer.AsSpan(0, read));
            var (block, known) = ReadMailHeaders(text, int.MaxValue);
            // Still header lines at 1 MiB, none of them known: padding in front of a mail's headers (19,000 of them),
            // unless the first name starts with a digit, as a log line's timestamp does.
            return block == MailHeaderBlock.Mail || (block == MailHeaderBlock.Cut && (known >= 1 || (length > LongHeaderBlock && char.IsAsciiLetter((char)text[0]))));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> text) => Starts(text, [0xEF, 0xBB, 0xBF]) ? text[3..] : text;

    /// <summary>MZ whose e_lfanew points inside the file at "PE\0\0".</summary>
    public static bool IsPe(ContentSource source, ReadOnlySpan<byte> head)
    {
        if (head.Length < 64 || head[0] != (byte)'M' || head[1] != (byte)'Z')
        {
            return false;
        }

        var lfanew = BinaryPrimitives.ReadUInt32LittleEndian(head[60..]);
        if (lfanew < 4 || lfanew > source.Length - 4)
        {
            return false;
        }

        Span<byte> signature = stackalloc byte[4];
        return source.ReadAt(lfanew, signature) == 4 && signature.SequenceEqual("PE\0\0"u8);
    }

    public static bool IsMachO(ReadOnlySpan<byte> head)
    {
        if (head.Length < 8)
        {
            return false;
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(head);
        if (magic is 0xFEEDFACE or 0xFEEDFACF or 0xCEFAEDFE or 0xCFFAEDFE)
        {
            return true;
        }

        // Fat binaries share CAFEBABE with Java classes; a fat header counts a handful of architectures,
        // where a class file has its version (45 and up).
        return magic == 0xCAFEBABE && BinaryPrimitives.ReadUInt32BigEndian(head[4..]) is > 0 and < 20;
    }

    private static ContentType IdentifyZip(ContentSource source)
    {
        try
        {
            var directory = ZipReader.Read(source, 100_000);
            if (Office.OpenDocumentPackage.HasCanonicalMimetype(source, directory))
            {
                return ContentType.OpenDocument;
            }

            if (directory.Entries.Any(e => e.Name.Equals("[Content_Types].xml", StringComparison.OrdinalIgnoreCase)))
            {
                return ContentType.Ooxml;
            }

            // LibreOffice opens a package by its manifest (or a mimetype entry anywhere, deflated or not), so one without
            // the canonical first entry is a document all the same (a plain, clean ZIP until 2026-12-07).
            if (Office.OpenDocumentPackage.Recognise(Office.ZipParts.Of(source, directory)) is not null)
            {
                return ContentType.OpenDocument;
            }
        }
        catch (ZipFormatException)
        {
            // A broken zip is still a zip: the zip analyser reports why.
        }

        return ContentType.Zip;
    }

    /// <summary>A dataset without preamble: group 0002 or 0008, little endian, then two or more well-formed, ascending elements.</summary>
    private static bool IsHeaderlessDicom(ReadOnlySpan<byte> head, long length)
    {
        if (head.Length < 16)
        {
            return false;
        }

        var group = BinaryPrimitives.ReadUInt16LittleEndian(head);
        if (group is not (0x0002 or 0x0008))
        {
            return false;
        }

        var position = 0;
        uint previousTag = 0;
        var elements = 0;
        var explicitVr = IsVr(head[4], head[5]);
        while (elements < 3 && position + 8 <= head.Length)
        {
            var g = BinaryPrimitives.ReadUInt16LittleEndian(head[position..]);
            var e = BinaryPrimitives.ReadUInt16LittleEndian(head[(position + 2)..]);
            var tag = ((uint)g << 16) | e;
            if (tag <= previousTag && elements > 0)
            {
                return false;
            }

            if (g is not (0x0002 or 0x0008) && elements == 0)
            {
                return false;
            }

            long valueLength;
            int headerLength;
            if (explicitVr)
            {
                if (!IsVr(head[position + 4], head[position + 5]))
                {
                    return false;
                }

                var longForm = IsLongVr(head[position + 4], head[position + 5]);
                if (longForm)
                {
                    if (position + 12 > head.Length)
                    {
                        break;
                    }

                    valueLength = BinaryPrimitives.ReadUInt32LittleEndian(head[(position + 8)..]);
                    headerLength = 12;
                }
                else
                {
                    valueLength = BinaryPrimitives.ReadUInt16LittleEndian(head[(position + 6)..]);
                    headerLength = 8;
                }
            }
            else
            {
                valueLength = BinaryPrimitives.ReadUInt32LittleEndian(head[(position + 4)..]);
                headerLength = 8;
            }

            if (valueLength == 0xFFFFFFFF)
            {
                // Undefined length (a sequence): plausible, stop judging here.
                return elements >= 1;
            }

            if (valueLength > length)
            {
                return false;
            }

            previousTag = tag;
            elements++;
            position += headerLength + (int)Math.Min(valueLength, int.MaxValue / 2);
        }

        return elements >= 2 || (elements == 1 && position >= length);
    }

    private static bool IsVr(byte a, byte b) => a is >= (byte)'A' and <= (byte)'Z' && b is >= (byte)'A' and <= (byte)'Z'
        && "AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV"u8.IndexOf([a, b]) is var i && i >= 0 && i % 2 == 0;

    private static bool IsLongVr(byte a, byte b) => (a, b) switch
    {
        ((byte)'O', _) or ((byte)'S', (byte)'Q') or ((byte)'U', (byte)'C') or ((byte)'U', (byte)'N') or ((byte)'U', (byte)'R')
            or ((byte)'U', (byte)'T') or ((byte)'S', (byte)'V') or ((byte)'U', (byte)'V') => true,
        _ => false,
    };

    private static ContentType IdentifyText(ReadOnlySpan<byte> head, out bool prologCut, out ContentType? unjudgedRoot)
    {
        prologCut = false;
        unjudgedRoot = null;
        var text = head;
        if (Starts(text, [0xEF, 0xBB, 0xBF]))
        {
            text = text[3..];
        }
        else if (Starts(text, [0xFF, 0xFE]) || Starts(text, [0xFE, 0xFF]))
        {
            // UTF-16 text: transcode to judge.
            return ClassifyWide(text[2..], text[0] == 0xFF ? Encoding.Unicode : Encoding.BigEndianUnicode, out prologCut, out unjudgedRoot);
        }

        // A mail's header block decides, whatever binary (8bit or binary parts) follows it.
        if (LooksLikeMail(text))
        {
            return ContentType.Mime;
        }

        if (IsMostlyText(text))
        {
            return ClassifyText(text, out prologCut, out unjudgedRoot);
        }

        // UTF-16 or UTF-32 without a byte order mark, which XML parsers and spreadsheets read all the same (typed
        // Unknown, never parsed, until 2026-12-08). Only reached by content that is not 8-bit text.
        return UnmarkedWideEncoding(text) is { } wide ? ClassifyWide(text, wide, out prologCut, out unjudgedRoot) : ContentType.Unknown;
    }

    private static ContentType ClassifyWide(ReadOnlySpan<byte> text, Encoding encoding, out bool prologCut, out ContentType? unjudgedRoot)
    {
        prologCut = false;
        unjudgedRoot = null;
        var bytes = Encoding.UTF8.GetBytes(encoding.GetString(text));
        return IsMostlyText(bytes) ? ClassifyText(bytes, out prologCut, out unjudgedRoot) : ContentType.Unknown;
    }

    private static readonly Encoding Utf32BigEndian = new UTF32Encoding(bigEndian: true, byteOrderMark: false);

    /// <summary>
    /// The encoding of text that has no byte order mark and is not 8-bit: XML by its opening "&lt;?" (XML 1.0 Appendix F,
    /// as .NET, libxml2 and Xerces detect it: UTF-16 and UTF-32, either byte order), other text by the zero bytes of
    /// UTF-16 (nearly every unit of the head with one zero byte, always the same one). Null for anything else.
    /// </summary>
    internal static Encoding? UnmarkedWideEncoding(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith((ReadOnlySpan<byte>)[0x3C, 0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x00]))
        {
            return Encoding.UTF32;
        }

        if (head.StartsWith((ReadOnlySpan<byte>)[0x00, 0x00, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x3F]))
        {
            return Utf32BigEndian;
        }

        if (head.StartsWith((ReadOnlySpan<byte>)[0x3C, 0x00, 0x3F, 0x00]))
        {
            return Encoding.Unicode;
        }

        if (head.StartsWith((ReadOnlySpan<byte>)[0x00, 0x3C, 0x00, 0x3F]))
        {
            return Encoding.BigEndianUnicode;
        }

        // Latin text in UTF-16: a zero byte in every unit, on the same side. Binary data with zeros in it has them on
        // both sides, or runs of them.
        var units = Math.Min(head.Length, 1024) / 2;
        if (units < 8)
        {
            return null;
        }

        var little = 0;
        var big = 0;
        for (var i = 0; i < units; i++)
        {
            var (first, second) = (head[2 * i], head[(2 * i) + 1]);
            if (first != 0 && second == 0)
            {
                little++;
            }
            else if (first == 0 && second != 0)
            {
                big++;
            }
        }

        return little * 10 >= units * 9 ? Encoding.Unicode : big * 10 >= units * 9 ? Encoding.BigEndianUnicode : null;
    }

    private static bool IsMostlyText(ReadOnlySpan<byte> text)
    {
        if (text.IsEmpty)
        {
            return false;
        }

        var control = 0;
        foreach (var b in text)
        {
            if (b == 0)
            {
                return false;
            }

            if (b < 0x20 && b is not ((byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0C or 0x1B))
            {
                control++;
            }
        }

        return control * 50 < text.Length;
    }

    private static ContentType ClassifyText(ReadOnlySpan<byte> text, out bool prologCut, out ContentType? unjudgedRoot)
    {
        prologCut = false;
        unjudgedRoot = null;
        if (text.StartsWith("#!"u8))
        {
            return ContentType.Script;
        }

        if (LooksLikeMail(text))
        {
            return ContentType.Mime;
        }

        var trimmed = text.TrimStart(" \t\r\n"u8);
        // Blank so far: a root may still follow (XML allows any whitespace before it).
        prologCut = trimmed.IsEmpty;
        var sample = trimmed[..Math.Min(trimmed.Length, 2048)];
        if (StartsWithIgnoreCase(trimmed, "<!doctype html") || StartsWithIgnoreCase(trimmed, "<html")
            || StartsWithIgnoreCase(trimmed, "<head") || StartsWithIgnoreCase(trimmed, "<body")
            || StartsWithIgnoreCase(trimmed, "<script") || StartsWithIgnoreCase(trimmed, "<iframe"))
        {
            return ContentType.Html;
        }

        if (trimmed.StartsWith("<"u8))
        {
            var flat = OfficeXmlRootIn(trimmed, out var office);
            if (flat == HeadAnswer.Yes)
            {
                return office;
            }

            prologCut = flat == HeadAnswer.Undecided;
            unjudgedRoot = flat == HeadAnswer.Unjudged ? office : null;
        }

        if (StartsWithIgnoreCase(trimmed, "<?xml") || StartsWithIgnoreCase(trimmed, "<svg"))
        {
            return AsciiSearch.IndexOfIgnoreCase(sample, "<html") >= 0 ? ContentType.Html : ContentType.Xml;
        }

        // A browser renders a page whatever text comes before its first tag: a line, or a long comment.
        if (AsciiSearch.IndexOfIgnoreCase(trimmed, "<html") >= 0 || AsciiSearch.IndexOfIgnoreCase(trimmed, "<!doctype html") >= 0
            || (trimmed.StartsWith("<"u8) && AsciiSearch.IndexOfIgnoreCase(trimmed, "<script") >= 0))
        {
            return ContentType.Html;
        }

        return ContentType.Text;
    }

    private static readonly byte[] OdfOfficeNamespace = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"u8.ToArray();

    internal enum HeadAnswer
    {
        No,
        Yes,

        /// <summary>The head ended inside the prolog, before the first element's name.</summary>
        Undecided,

        /// <summary>
        /// The first element has the local name of an office root (the type it would give), and its start tag a
        /// character or entity reference (<c>xmlns:w="…word&amp;#109;l"</c>) where the namespace may be: only an XML
        /// reader can tell.
        /// </summary>
        Unjudged,
    }

    /// <summary>
    /// An office suite's single-file XML document: the first element, past the XML declaration, comments and DOCTYPE, is
    /// one of the roots of <see cref="OfficeXmlRoots"/> (any prefix) and its namespace follows it in the head, or its start
    /// tag runs past the head (padded with declarations, which the suites read all the same). Undecided when the head ends
    /// before that element.
    /// </summary>
    internal static HeadAnswer OfficeXmlRootIn(ReadOnlySpan<byte> text, out ContentType type)
    {
        type = ContentType.Unknown;
        var at = 0;
        while (true)
        {
            var open = text[at..].IndexOf((byte)'<');
            if (open < 0)
            {
                return text[at..].IndexOfAnyExcept(" \t\r\n"u8) < 0 ? HeadAnswer.Undecided : HeadAnswer.No;
            }

            at += open;
            var rest = text[at..];
            int skip;
            if (rest.StartsWith("<?"u8))
            {
                skip = rest.IndexOf("?>"u8) is var end and >= 0 ? end + 2 : -1;
            }
            else if (rest.StartsWith("<!--"u8))
            {
                skip = rest.IndexOf("-->"u8) is var end and >= 0 ? end + 3 : -1;
            }
            else if (rest.StartsWith("<!"u8))
            {
                // A DOCTYPE, whose internal subset holds '>' of its own.
                var subset = rest.IndexOf((byte)'[');
                var close = rest.IndexOf((byte)'>');
                skip = subset >= 0 && (close < 0 || subset < close) ? (rest.IndexOf("]"u8) is var end and >= 0 && rest[end..].IndexOf((byte)'>') is var gt and >= 0 ? end + gt + 1 : -1)
                    : close >= 0 ? close + 1 : -1;
            }
            else
            {
                break;
            }

            if (skip < 0)
            {
                return HeadAnswer.Undecided;
            }

            at += skip;
        }

        var tag = text[(at + 1)..];
        var nameEnd = tag.IndexOfAny(" \t\r\n/>"u8);
        if (nameEnd < 0)
        {
            return HeadAnswer.Undecided;
        }

        var name = tag[..nameEnd];
        var local = name[(name.LastIndexOf((byte)':') + 1)..];
        var after = tag[nameEnd..];
        var unjudged = false;
        foreach (var (root, ns, kind) in OfficeXmlRoots)
        {
            if (!local.SequenceEqual(root))
            {
                continue;
            }

            var close = after.IndexOf((byte)'>');
            if (after.IndexOf(ns) >= 0 || close < 0)
            {
                type = kind;
                return HeadAnswer.Yes;
            }

            // The same namespace to every XML parser, Word's and Excel's included (plain XML, clean, until 2026-12-08).
            if (after[..close].IndexOf((byte)'&') >= 0)
            {
                type = kind;
                unjudged = true;
            }
        }

        return unjudged ? HeadAnswer.Unjudged : HeadAnswer.No;
    }

    /// <summary>Root elements (local name, namespace) of the XML documents office suites open as documents.</summary>
    private static readonly (byte[] Root, byte[] Namespace, ContentType Type)[] OfficeXmlRoots =
    [
        ("document"u8.ToArray(), OdfOfficeNamespace, ContentType.FlatOpenDocument),
        ("package"u8.ToArray(), Encoding.ASCII.GetBytes(Office.OoxmlAnalyser.FlatOpcNamespace), ContentType.OfficeXml),
        ("wordDocument"u8.ToArray(), Encoding.ASCII.GetBytes(Office.OoxmlAnalyser.Word2003Namespace), ContentType.OfficeXml),
        ("Workbook"u8.ToArray(), Encoding.ASCII.GetBytes(Office.OoxmlAnalyser.Spreadsheet2003Namespace), ContentType.OfficeXml),
    ];

    /// <summary>What an XML root (namespace and local name) makes of a document, or null for none of <see cref="OfficeXmlRoots"/>.</summary>
    private static ContentType? OfficeXmlType(string namespaceUri, string localName) => (namespaceUri, localName) switch
    {
        ("urn:oasis:names:tc:opendocument:xmlns:office:1.0", "document") => ContentType.FlatOpenDocument,
        (Office.OoxmlAnalyser.FlatOpcNamespace, "package") or (Office.OoxmlAnalyser.Word2003Namespace, "wordDocument")
            or (Office.OoxmlAnalyser.Spreadsheet2003Namespace, "Workbook") => ContentType.OfficeXml,
        _ => null,
    };

    /// <summary>
    /// XML whose prolog runs past the head: its first element, found by a streaming reader (no DTD, bounded by
    /// <see cref="MaxXmlProlog"/>), decides. An office <c>document</c> is flat OpenDocument, an <c>html</c> root a page;
    /// content that is not XML keeps the type its head gave.
    /// </summary>
    private static ContentType IdentifyXmlByRoot(ContentSource source, ReadOnlySpan<byte> head, ContentType type, out bool prologUnread, out bool rootRead)
    {
        prologUnread = false;
        rootRead = false;
        // Whitespace before the declaration is read past, as the head's check does.
        var bom = Starts(head, [0xEF, 0xBB, 0xBF]) || Starts(head, [0xFF, 0xFE]) || Starts(head, [0xFE, 0xFF]);
        var start = bom || UnmarkedWideEncoding(head) is not null ? 0 : Math.Max(0, head.IndexOfAnyExcept(" \t\r\n"u8));
        var limit = Math.Min(source.Length - start, MaxXmlProlog);
        using var stream = source.OpenStream(start, limit);
        using var reader = System.Xml.XmlReader.Create(stream, UntrustedXml.Document);
        try
        {
            while (reader.Read())
            {
                if (reader.NodeType != System.Xml.XmlNodeType.Element)
                {
                    continue;
                }

                rootRead = true;
                if (OfficeXmlType(reader.NamespaceURI, reader.LocalName) is { } office)
                {
                    return office;
                }

                return reader.LocalName.Equals("html", StringComparison.OrdinalIgnoreCase) ? ContentType.Html
                    : type == ContentType.Text ? ContentType.Xml : type;
            }
        }
        catch (System.Xml.XmlException)
        {
            // Not XML up to its first element, or cut by the limit (below).
        }

        prologUnread = start + limit < source.Length && stream.Position >= limit;
        return type;
    }

    private static readonly string[] MailHeaders =
    [
        "from", "to", "subject", "date", "message-id", "mime-version", "received", "return-path", "delivered-to",
        "reply-to", "cc", "content-type", "x-mailer", "authentication-results", "dkim-signature", "sender",
    ];

    /// <summary>
    /// An RFC 5322 header block (optionally after an mbox "From " line) naming at least two mail headers, or one when the
    /// block's end is in sight.
    /// </summary>
    public static bool LooksLikeMail(ReadOnlySpan<byte> text) => ReadMailHeaders(text, HeadLines).Block == MailHeaderBlock.Mail;

    internal enum MailHeaderBlock
    {
        NotMail,
        Mail,

        /// <summary>Header lines, all well formed, up to the end of the text or the line limit: undecided.</summary>
        Cut,
    }

    /// <summary>
    /// Reads header lines up to the blank line that ends them: a mail when they name at least two mail headers (one when
    /// the blank line came); cut when
    /// the text or <paramref name="maxLines"/> ends first, with how many known headers were seen.
    /// </summary>
    internal static (MailHeaderBlock Block, int Known) ReadMailHeaders(ReadOnlySpan<byte> text, int maxLines)
    {
        var known = 0;
        var lines = 0;
        var position = 0;
        if (text.StartsWith("From "u8))
        {
            var nl = text.IndexOf((byte)'\n');
            if (nl < 0)
            {
                return (MailHeaderBlock.NotMail, 0);
            }

            position = nl + 1;
        }

        while (position < text.Length)
        {
            if (lines == maxLines)
            {
                return (known >= 2 ? MailHeaderBlock.Mail : MailHeaderBlock.Cut, known);
            }

            // Lines end in LF, CRLF, or a bare CR (old Mac mail, which Python reads and mail clients show).
            var rest = text[position..];
            var nl = rest.IndexOfAny((byte)'\r', (byte)'\n');
            var line = nl < 0 ? rest : rest[..nl];
            var next = nl < 0 ? -1 : rest[nl] == '\r' && nl + 1 < rest.Length && rest[nl + 1] == '\n' ? nl + 2 : nl + 1;

            if (line.IsEmpty)
            {
                // A block of well-formed header lines, closed by its blank line, with a mail header in it, is a mail to
                // MimeKit and to mail clients (a forwarded message with only a Content-Type was text until 2026-12-07).
                return (known >= 1 ? MailHeaderBlock.Mail : MailHeaderBlock.NotMail, known);
            }

            lines++;
            if (line[0] is (byte)' ' or (byte)'\t')
            {
                if (lines == 1)
                {
                    return (MailHeaderBlock.NotMail, 0);
                }
            }
            else
            {
                var colon = line.IndexOf((byte)':');
                if (colon <= 0)
                {
                    // A line cut by the end of the text may not have reached its colon yet.
                    return (nl < 0 && lines > 1 ? MailHeaderBlock.Cut : MailHeaderBlock.NotMail, known);
                }

                // "Received : x" (RFC 5322's obsolete syntax) and names with 8-bit bytes are headers to MimeKit and
                // to mail clients; read strictly, they turned a whole mail into text (until 2026-12-07).
                var name = line[..colon].TrimEnd(" \t"u8);
                if (name.IsEmpty)
                {
                    return (MailHeaderBlock.NotMail, known);
                }

                foreach (var c in name)
                {
                    if (c <= 32 || c == 127)
                    {
                        return (MailHeaderBlock.NotMail, known);
                    }
                }

                foreach (var header in MailHeaders)
                {
                    if (name.Length == header.Length && StartsWithIgnoreCase(name, header))
                    {
                        known++;
                        break;
                    }
                }
            }

            if (nl < 0)
            {
                break;
            }

            position += next;
        }

        return (known >= 2 ? MailHeaderBlock.Mail : MailHeaderBlock.Cut, known);
    }

    private static bool Starts(ReadOnlySpan<byte> span, ReadOnlySpan<byte> prefix) => span.StartsWith(prefix);

    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> text, string prefix)
    {
        if (text.Length < prefix.Length)
        {
            return false;
        }

        for (var i = 0; i < prefix.Length; i++)
        {
            if (char.ToLowerInvariant((char)text[i]) != prefix[i])
            {
                return false;
            }
        }

        return true;
    }
}
