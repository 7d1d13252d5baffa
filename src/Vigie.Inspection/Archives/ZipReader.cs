using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Archives;

/// <summary>One central-directory record.</summary>
internal sealed record ZipEntry(
    int Index,
    string Name,
    ushort Flags,
    ushort Method,
    uint Crc,
    long CompressedSize,
    long UncompressedSize,
    long LocalHeaderOffset,
    long CentralRecordOffset)
{
    public bool IsEncrypted => (Flags & 0x0001) != 0 || Method == 99;

    public bool HasDataDescriptor => (Flags & 0x0008) != 0;

    public bool IsDirectory => Name.EndsWith('/') && UncompressedSize == 0;

    /// <summary>The name in an Info-ZIP Unicode Path extra field (0x7075), which extractors such as unzip use instead.</summary>
    public string? UnicodePath { get; init; }
}

/// <summary>A local file header, as the bytes at an entry's offset say.</summary>
internal sealed record ZipLocalHeader(long Offset, ushort Flags, ushort Method, uint Crc, long CompressedSize, long UncompressedSize, string Name, long DataOffset)
{
    /// <inheritdoc cref="ZipEntry.UnicodePath"/>
    public string? UnicodePath { get; init; }
}

/// <summary>The central directory: the authoritative list of entries.</summary>
internal sealed class ZipDirectory
{
    public required IReadOnlyList<ZipEntry> Entries { get; init; }

    public long CentralDirectoryOffset { get; init; }

    public long CentralDirectorySize { get; init; }

    public long EndRecordOffset { get; init; }

    /// <summary>Bytes in front of the archive (self-extractors, polyglots): offsets in the directory are shifted by this.</summary>
    public long PrefixLength { get; init; }

    /// <summary>The count the end record declares (may exceed what was read when the limit was reached).</summary>
    public long DeclaredCount { get; init; }

    public bool Truncated { get; init; }

    public bool IsZip64 { get; init; }
}

/// <summary>
/// Reads a ZIP from its central directory (never trusting local headers alone), with hard limits on the count of
/// entries and on name lengths. Every malformation is a <see cref="ZipFormatException"/> with its offset.
/// </summary>
internal static class ZipReader
{
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const uint CentralSignature = 0x02014b50;
    public const uint LocalSignature = 0x04034b50;

    /// <summary>
    /// A ZIP that ends the content without starting it (a polyglot: unzip opens it from its end): where its first local
    /// header is, where its end record is, and how many entries it has. Null when the content does not end with a
    /// readable directory whose first member lies past offset 0.
    /// </summary>
    public static AppendedZip? FindAppended(ContentSource source, int maxEntries)
    {
        if (!TryFindEnd(source, out var end))
        {
            return null;
        }

        ZipDirectory directory;
        try
        {
            directory = Read(source, maxEntries);
        }
        catch (ZipFormatException)
        {
            return null;
        }

        if (directory.Entries.Count == 0)
        {
            return null;
        }

        var start = directory.Entries.Min(e => e.LocalHeaderOffset);
        return start <= 0 || start >= source.Length || ReadLocalHeader(source, start) is null ? null : new AppendedZip(start, end, directory.Entries.Count);
    }

    /// <summary>Finds the end record in the last 64 KiB; false when there is none.</summary>
    public static bool TryFindEnd(ContentSource source, out long endOffset)
    {
        endOffset = -1;
        var length = source.Length;
        if (length < 22)
        {
            return false;
        }

        var tailLength = (int)Math.Min(length, 65_535 + 22);
        var tail = ArrayPool<byte>.Shared.Rent(tailLength);
        try
        {
            var read = source.ReadAt(length - tailLength, tail.AsSpan(0, tailLength));
            // Every object is checked for an appended ZIP, so the backward search is vectorised (LastIndexOf).
            var window = tail.AsSpan(0, Math.Max(0, read - 18));
            while (window.LastIndexOf("PK\u0005\u0006"u8) is var i and >= 0)
            {
                var commentLength = BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(i + 20));
                // A comment may legitimately be followed by junk, but it must fit in the file.
                if (i + 22 + commentLength <= read)
                {
                    endOffset = length - tailLength + i;
                    return true;
                }

                window = window[..i];
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(tail);
        }

        return false;
    }

    public static ZipDirectory Read(ContentSource source, int maxEntries)
    {
        if (!TryFindEnd(source, out var endOffset))
        {
            throw new ZipFormatException("no end of central directory record", source.Length);
        }

        using var reader = new SourceReader(source, endOffset, windowSize: 4096);
        reader.Skip(4);
        reader.ReadUInt16(); // this disk
        reader.ReadUInt16(); // disk with the directory
        reader.ReadUInt16(); // entries on this disk
        long count = reader.ReadUInt16();
        long size = reader.ReadUInt32();
        long offset = reader.ReadUInt32();
        var zip64 = false;

        if ((count == 0xFFFF || size == 0xFFFFFFFF || offset == 0xFFFFFFFF) && endOffset >= 20)
        {
            reader.Position = endOffset - 20;
            if (reader.ReadUInt32() == Zip64LocatorSignature)
            {
                reader.ReadUInt32();
                var zip64EndOffset = (long)Math.Min(reader.ReadUInt64(), long.MaxValue);
                if (zip64EndOffset < 0 || zip64EndOffset + 56 > source.Length)
                {
                    throw new ZipFormatException("ZIP64 end record points outside the file", endOffset - 20);
                }

                reader.Position = zip64EndOffset;
                if (reader.ReadUInt32() != Zip64EndSignature)
                {
                    throw new ZipFormatException("ZIP64 end record signature missing", zip64EndOffset);
                }

                reader.Skip(8 + 2 + 2 + 4 + 4 + 8);
                count = (long)Math.Min(reader.ReadUInt64(), long.MaxValue);
                size = (long)Math.Min(reader.ReadUInt64(), long.MaxValue);
                offset = (long)Math.Min(reader.ReadUInt64(), long.MaxValue);
                zip64 = true;
            }
        }

        if (size > source.Length || offset > source.Length)
        {
            throw new ZipFormatException($"central directory ({size} bytes at {offset}) lies outside the file", endOffset);
        }

        // Self-extractors and polyglots put bytes in front; the directory then sits just before the end record.
        long prefix = 0;
        if (!SignatureAt(source, offset, CentralSignature) && count > 0)
        {
            var expected = endOffset - size;
            if (expected >= offset && SignatureAt(source, expected, CentralSignature))
            {
                prefix = expected - offset;
                offset = expected;
            }
            else
            {
                throw new ZipFormatException("central directory signature missing", offset);
            }
        }

        var entries = new List<ZipEntry>((int)Math.Min(count, 1024));
        var truncated = false;
        using var cd = new SourceReader(source, offset, offset + size);
        var index = 0;
        while (!cd.AtEnd)
        {
            if (entries.Count >= maxEntries)
            {
                truncated = true;
                break;
            }

            var recordOffset = cd.Position;
            if (cd.ReadUInt32() != CentralSignature)
            {
                if (cd.Overrun || recordOffset + 4 > offset + size)
                {
                    break;
                }

                throw new ZipFormatException("central directory record signature missing", recordOffset);
            }

            cd.Skip(4); // versions
            var flags = cd.ReadUInt16();
            var method = cd.ReadUInt16();
            cd.Skip(4); // time, date
            var crc = cd.ReadUInt32();
            long compressed = cd.ReadUInt32();
            long uncompressed = cd.ReadUInt32();
            var nameLength = cd.ReadUInt16();
            var extraLength = cd.ReadUInt16();
            var commentLength = cd.ReadUInt16();
            cd.Skip(2 + 2 + 4); // disk, internal and external attributes
            long localOffset = cd.ReadUInt32();
            var nameBytes = new byte[nameLength];
            cd.Read(nameBytes);
            var extra = new byte[extraLength];
            cd.Read(extra);
            cd.Skip(commentLength);
            if (cd.Overrun)
            {
                throw new ZipFormatException("central directory record runs past the directory", recordOffset);
            }

            ApplyZip64Extra(extra, ref uncompressed, ref compressed, ref localOffset);
            entries.Add(new ZipEntry(index++, DecodeName(nameBytes, flags), flags, method, crc, compressed, uncompressed,
                localOffset + prefix, recordOffset) { UnicodePath = UnicodePath(extra) });
        }

        return new ZipDirectory
        {
            Entries = entries,
            CentralDirectoryOffset = offset,
            CentralDirectorySize = size,
            EndRecordOffset = endOffset,
            PrefixLength = prefix,
            DeclaredCount = count,
            Truncated = truncated,
            IsZip64 = zip64,
        };
    }

    public static ZipLocalHeader? ReadLocalHeader(ContentSource source, long offset)
    {
        if (offset < 0 || offset + 30 > source.Length)
        {
            return null;
        }

        Span<byte> header = stackalloc byte[30];
        if (source.ReadAt(offset, header) < 30 || BinaryPrimitives.ReadUInt32LittleEndian(header) != LocalSignature)
        {
            return null;
        }

        var flags = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        var method = BinaryPrimitives.ReadUInt16LittleEndian(header[8..]);
        var crc = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]);
        long compressed = BinaryPrimitives.ReadUInt32LittleEndian(header[18..]);
        long uncompressed = BinaryPrimitives.ReadUInt32LittleEndian(header[22..]);
        var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header[26..]);
        var extraLength = BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
        var name = new byte[nameLength];
        var extra = new byte[extraLength];
        source.ReadAt(offset + 30, name);
        source.ReadAt(offset + 30 + nameLength, extra);
        long ignored = 0;
        ApplyZip64Extra(extra, ref uncompressed, ref compressed, ref ignored);
        return new ZipLocalHeader(offset, flags, method, crc, compressed, uncompressed, DecodeName(name, flags), offset + 30 + nameLength + extraLength)
        {
            UnicodePath = UnicodePath(extra),
        };
    }

    /// <summary>
    /// The Info-ZIP Unicode Path field's name (version 1, CRC-32 of the header name, UTF-8 name), whether or not its CRC
    /// matches: the name an extractor may write to, so the one whose traversal matters.
    /// </summary>
    private static string? UnicodePath(ReadOnlySpan<byte> extra)
    {
        string? found = null;
        var position = 0;
        while (position + 4 <= extra.Length)
        {
            var id = BinaryPrimitives.ReadUInt16LittleEndian(extra[position..]);
            var length = BinaryPrimitives.ReadUInt16LittleEndian(extra[(position + 2)..]);
            var body = extra.Slice(position + 4, Math.Min(length, extra.Length - position - 4));
            if (id == 0x7075 && body.Length > 5)
            {
                // Extractors differ on which of several fields wins (unzip takes the last): the one that traverses is kept.
                var path = Encoding.UTF8.GetString(body[5..]);
                if (found is null || NameChecks.TraversalReason(path) is not null)
                {
                    found = path;
                }
            }

            position += 4 + length;
        }

        return found;
    }

    private static bool SignatureAt(ContentSource source, long offset, uint signature)
    {
        Span<byte> b = stackalloc byte[4];
        return offset >= 0 && source.ReadAt(offset, b) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(b) == signature;
    }

    private static void ApplyZip64Extra(ReadOnlySpan<byte> extra, ref long uncompressed, ref long compressed, ref long offset)
    {
        var position = 0;
        while (position + 4 <= extra.Length)
        {
            var id = BinaryPrimitives.ReadUInt16LittleEndian(extra[position..]);
            var length = BinaryPrimitives.ReadUInt16LittleEndian(extra[(position + 2)..]);
            var body = extra.Slice(position + 4, Math.Min(length, extra.Length - position - 4));
            if (id == 0x0001)
            {
                var p = 0;
                if (uncompressed == 0xFFFFFFFF && p + 8 <= body.Length)
                {
                    uncompressed = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(body[p..]), long.MaxValue);
                    p += 8;
                }

                if (compressed == 0xFFFFFFFF && p + 8 <= body.Length)
                {
                    compressed = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(body[p..]), long.MaxValue);
                    p += 8;
                }

                if (offset == 0xFFFFFFFF && p + 8 <= body.Length)
                {
                    offset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(body[p..]), long.MaxValue);
                }

                return;
            }

            position += 4 + length;
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private static string DecodeName(byte[] bytes, ushort flags)
    {
        if ((flags & 0x0800) != 0 || Ascii.IsValid(bytes))
        {
            return Encoding.UTF8.GetString(bytes);
        }

        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return Encoding.Latin1.GetString(bytes);
        }
    }
}

/// <summary>A ZIP structure the reader cannot accept, with where it went wrong.</summary>
/// <summary>A ZIP found from the end of other content: its first local header, its end record, its entry count.</summary>
internal sealed record AppendedZip(long Start, long EndRecord, int Entries);

internal sealed class ZipFormatException(string message, long offset) : Exception($"{message} (offset {offset})")
{
    public long Offset { get; } = offset;
}
