using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Dicom;

/// <summary>What a run of bytes inside a DICOM object starts with, judged structurally where that is cheap.</summary>
internal enum EmbeddedKind
{
    None,
    WindowsExecutable,
    MzStub,
    Elf,
    MachO,
    Script,
    Zip,
    Pdf,
    Ole2,
    Rar,
    SevenZip,
    Gzip,
    Html,
    Tiff,
}

internal static class EmbeddedContent
{
    /// <summary>Classifies the bytes at <paramref name="offset"/> of <paramref name="content"/>; a PE needs its e_lfanew to point at "PE\0\0".</summary>
    public static EmbeddedKind Classify(ContentSource content, long offset, long length)
    {
        Span<byte> head = stackalloc byte[64];
        var n = content.ReadAt(offset, head[..(int)Math.Min(64, length)]);
        head = head[..n];
        if (head.Length < 4)
        {
            return EmbeddedKind.None;
        }

        if (head[0] == 'M' && head[1] == 'Z')
        {
            if (head.Length >= 0x40)
            {
                var peOffset = BinaryPrimitives.ReadUInt32LittleEndian(head[0x3C..]);
                Span<byte> signature = stackalloc byte[4];
                if (peOffset >= 0x40 && peOffset <= length - 4 && content.ReadAt(offset + peOffset, signature) == 4 && signature.SequenceEqual("PE\0\0"u8))
                {
                    return EmbeddedKind.WindowsExecutable;
                }
            }

            return EmbeddedKind.MzStub;
        }

        // ELF: magic, a valid class (32/64-bit), byte order and version 1.
        if (head[0] == 0x7F && head[1] == 'E' && head[2] == 'L' && head[3] == 'F' && head.Length >= 7 && head[4] is 1 or 2 && head[5] is 1 or 2 && head[6] == 1)
        {
            return EmbeddedKind.Elf;
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(head);
        if (magic is 0xFEEDFACE or 0xFEEDFACF or 0xCEFAEDFE or 0xCFFAEDFE)
        {
            return EmbeddedKind.MachO;
        }

        // Universal binaries share CAFEBABE with Java classes: a fat header counts its architectures (few), a class file its version (many).
        if (magic == 0xCAFEBABE && head.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(head[4..]) is > 0 and < 32)
        {
            return EmbeddedKind.MachO;
        }

        if (head[0] == '#' && head[1] == '!')
        {
            return EmbeddedKind.Script;
        }

        if (head[0] == 'P' && head[1] == 'K' && head[2] is 3 or 5 or 7 && head[3] is 4 or 6 or 8)
        {
            return EmbeddedKind.Zip;
        }

        if (head[..4].SequenceEqual("%PDF"u8))
        {
            return EmbeddedKind.Pdf;
        }

        if (magic == 0xD0CF11E0 && head.Length >= 8 && BinaryPrimitives.ReadUInt32BigEndian(head[4..]) == 0xA1B11AE1)
        {
            return EmbeddedKind.Ole2;
        }

        if (head[..4].SequenceEqual("Rar!"u8))
        {
            return EmbeddedKind.Rar;
        }

        if (head.Length >= 6 && head[..6].SequenceEqual((ReadOnlySpan<byte>)[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]))
        {
            return EmbeddedKind.SevenZip;
        }

        if (head[0] == 0x1F && head[1] == 0x8B && head[2] == 8)
        {
            return EmbeddedKind.Gzip;
        }

        if (head[..4].SequenceEqual("II*\0"u8) || head[..4].SequenceEqual("MM\0*"u8))
        {
            return EmbeddedKind.Tiff;
        }

        return LooksLikeHtml(head) ? EmbeddedKind.Html : EmbeddedKind.None;
    }

    /// <summary>Most bytes after a PDF header searched for an object before it counts as a PDF anyway.</summary>
    private const long MaxPdfBodySearched = 64L << 20;

    private static bool ContainsAny(ContentSource content, long offset, long length, long bound, byte[][] needles)
    {
        const int chunk = 1 << 20;
        var longest = needles.Max(n => n.Length);
        var buffer = new byte[chunk + longest];
        for (long done = 0; done < Math.Min(length, bound); done += chunk)
        {
            var read = content.ReadAt(offset + done, buffer.AsSpan(0, (int)Math.Min(buffer.Length, length - done)));
            foreach (var needle in needles)
            {
                if (buffer.AsSpan(0, read).IndexOf(needle) >= 0)
                {
                    return true;
                }
            }
        }

        return length > bound;
    }

    /// <summary>PDF readers look for the header in a file's first kilobyte, not only at its start.</summary>
    private const int PdfHeaderWindow = 1024;

    /// <summary>
    /// <see cref="Classify"/>, and a PDF header anywhere in the first kilobyte, where readers still find it: for element
    /// values and fragments (a JPEG header followed by a PDF opens as the PDF).
    /// </summary>
    public static EmbeddedKind ClassifyValue(ContentSource content, long offset, long length)
    {
        var kind = Classify(content, offset, length);
        // A harmless start (a TIFF or MZ header, nothing known) does not make the rest harmless.
        if (IsExecutable(kind) || IsContainer(kind) || length < 8)
        {
            return kind;
        }

        // The header may start at any of the first 1024 bytes: read its last 4 bytes past them too.
        Span<byte> window = stackalloc byte[PdfHeaderWindow + 4];
        var n = content.ReadAt(offset, window[..(int)Math.Min(window.Length, length)]);
        return window[..n].IndexOf("%PDF-"u8) > 0 ? EmbeddedKind.Pdf : kind;
    }

    /// <summary>
    /// Whether bytes classified as a ZIP, a PDF or a gzip stream go on as one past the magic. Native pixel values spell
    /// "PK\x03\x04" or "%PDF-1." by chance (two 16-bit pixels 19280 and 1027); a real file has a sane local header, a
    /// version and an object after its header, or a gzip header and a deflate stream that decodes. Other kinds are
    /// judged by their magic alone.
    /// </summary>
    public static bool HasStructure(ContentSource content, long offset, long length, EmbeddedKind kind)
    {
        switch (kind)
        {
            case EmbeddedKind.Zip:
            {
                Span<byte> header = stackalloc byte[30 + 256];
                var n = content.ReadAt(offset, header[..(int)Math.Min(header.Length, length)]);
                header = header[..n];
                if (header.Length >= 8 && header[2] == 7 && header[3] == 8)
                {
                    header = header[4..]; // a spanned archive's marker, then its first local header
                }

                if (header.Length < 30 || header[2] != 3 || header[3] != 4)
                {
                    // An empty archive is its end record alone: no entry on any disk, and its comment ends the value.
                    return header.Length >= 22 && header[2] == 5 && header[3] == 6 && BinaryPrimitives.ReadUInt32LittleEndian(header[4..]) == 0
                        && BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) == 0 && 22 + BinaryPrimitives.ReadUInt16LittleEndian(header[20..]) <= length;
                }

                var version = BinaryPrimitives.ReadUInt16LittleEndian(header[4..]) & 0xFF;
                var method = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
                var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header[26..]);
                if (version > 63 || method is not (<= 20 or 93 or 94 or 95 or 96 or 97 or 98 or 99) || nameLength == 0 || 30 + nameLength > length)
                {
                    return false;
                }

                var name = header[30..Math.Min(header.Length, 30 + nameLength)];
                return !name.ContainsAnyInRange((byte)0, (byte)0x1F) && !name.Contains((byte)0x7F);
            }

            case EmbeddedKind.Pdf:
            {
                var head = new byte[(int)Math.Min(PdfHeaderWindow + 8, length)];
                var text = head.AsSpan(0, content.ReadAt(offset, head));
                var start = text.IndexOf("%PDF-"u8);
                if (start < 0 || text.Length < start + 8 || !char.IsAsciiDigit((char)text[start + 5]) || text[start + 6] != '.' || !char.IsAsciiDigit((char)text[start + 7]))
                {
                    return false;
                }

                // An object anywhere in the rest, not only near the header: a 9000-byte comment line after it hid a
                // PDF at a frame's start (second review). Past the bound, it counts as one.
                return ContainsAny(content, offset + start + 8, length - start - 8, MaxPdfBodySearched, [" obj"u8.ToArray(), "xref"u8.ToArray(), "trailer"u8.ToArray()]);
            }

            case EmbeddedKind.Gzip:
            {
                // Header bytes a real gzip stream has (no reserved flag, a known compression level, a known system), and a
                // deflate stream behind them that decodes: 1F 8B 08 alone is three pixel bytes.
                Span<byte> header = stackalloc byte[10];
                if (length < 18 || content.ReadAt(offset, header) != 10 || (header[3] & 0xE0) != 0 || header[8] is not (0 or 2 or 4) || header[9] is > 13 and not 255)
                {
                    return false;
                }

                try
                {
                    using var gzip = new System.IO.Compression.GZipStream(content.OpenStream(offset, Math.Min(length, 64 * 1024)),
                        System.IO.Compression.CompressionMode.Decompress);
                    Span<byte> decoded = stackalloc byte[16];
                    return gzip.ReadAtLeast(decoded, decoded.Length, throwOnEndOfStream: false) > 0;
                }
                catch (InvalidDataException)
                {
                    return false;
                }
            }

            default:
                return true;
        }
    }

    /// <summary>
    /// Whether raw bytes carry a program's signature anywhere (a PE's "PE\0\0", an ELF header) or, for a gzip stream, a
    /// second member: where an archive's comment or a second gzip member hides a program that inspection of the
    /// decoded entries does not reach. Values larger than <paramref name="maxBytes"/> count as carrying one.
    /// </summary>
    public static bool MayHideProgram(ContentSource content, EmbeddedKind kind, long maxBytes) =>
        content.Length > maxBytes
        || ContainsAny(content, 0, content.Length, maxBytes, ["PE\0\0"u8.ToArray(), "\u007FELF"u8.ToArray()])
        || (kind == EmbeddedKind.Gzip && content.Length > 10 && ContainsAny(content, 10, content.Length - 10, maxBytes, [[0x1F, 0x8B, 0x08]]));

    public static bool IsExecutable(EmbeddedKind kind) => kind is EmbeddedKind.WindowsExecutable or EmbeddedKind.Elf or EmbeddedKind.MachO or EmbeddedKind.Script;

    public static bool IsContainer(EmbeddedKind kind) => kind is EmbeddedKind.Zip or EmbeddedKind.Pdf or EmbeddedKind.Ole2 or EmbeddedKind.Rar
        or EmbeddedKind.SevenZip or EmbeddedKind.Gzip or EmbeddedKind.Html;

    public static string Describe(EmbeddedKind kind) => kind switch
    {
        EmbeddedKind.WindowsExecutable => "a Windows executable (MZ header whose e_lfanew points at a PE signature)",
        EmbeddedKind.MzStub => "an MZ (DOS) header",
        EmbeddedKind.Elf => "an ELF executable",
        EmbeddedKind.MachO => "a Mach-O executable",
        EmbeddedKind.Script => "a script (#! interpreter line)",
        EmbeddedKind.Zip => "a ZIP archive",
        EmbeddedKind.Pdf => "a PDF document",
        EmbeddedKind.Ole2 => "an OLE2 compound file",
        EmbeddedKind.Rar => "a RAR archive",
        EmbeddedKind.SevenZip => "a 7-Zip archive",
        EmbeddedKind.Gzip => "a gzip stream",
        EmbeddedKind.Html => "HTML or script markup",
        EmbeddedKind.Tiff => "a TIFF header",
        EmbeddedKind.None => "nothing recognised",
        _ => kind.ToString(),
    };

    /// <summary>Page markup anywhere in <paramref name="bytes"/> (a preamble, whose bytes are free: none is there by chance).</summary>
    public static bool HoldsMarkup(ReadOnlySpan<byte> bytes)
    {
        foreach (var tag in MarkupTags)
        {
            if (Engine.AsciiSearch.ContainsIgnoreCase(bytes, tag))
            {
                return true;
            }
        }

        return false;
    }

    private static readonly string[] MarkupTags = ["<html", "<!doctype html", "<script", "<svg", "<hta:"];

    private static bool LooksLikeHtml(ReadOnlySpan<byte> head)
    {
        // Browsers skip leading whitespace when they sniff a page (WHATWG MIME sniffing), not only spaces.
        var text = Encoding.ASCII.GetString(head.TrimStart(" \t\n\r\f"u8)).ToLowerInvariant();
        return text.StartsWith("<html", StringComparison.Ordinal) || text.StartsWith("<!doctype html", StringComparison.Ordinal)
            || text.StartsWith("<script", StringComparison.Ordinal) || text.StartsWith("<svg", StringComparison.Ordinal)
            || text.StartsWith("<hta:", StringComparison.Ordinal);
    }
}
