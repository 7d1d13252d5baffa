using System.Buffers.Binary;

namespace Vigie.Inspection.Archives;

/// <summary>
/// SharpCompress throws NullReferenceException on a valid 7z whose MainStreamsInfo has no SubStreamsInfo (the block
/// is optional: one stream per folder). For a plain (not encoded) header, this writes a copy of the archive with an
/// empty SubStreamsInfo, which means exactly the defaults, so the library can read it. Every field is parsed with
/// bounds; anything unexpected gives up.
/// </summary>
internal static class SevenZipHeaderRepair
{
    private const int MaxHeader = 16 * 1024 * 1024;
    private const int MaxCount = 1_000_000;
    private static readonly uint[] CrcTable = BuildCrcTable();

    /// <summary>
    /// Whether the archive has a plain header without SubStreamsInfo: SharpCompress must not read such a header at all
    /// (it threw NullReferenceException, and under load was seen spinning in ArchiveReader.ReadHeader for minutes).
    /// </summary>
    public static bool LacksSubStreamsInfo(ContentSource content) =>
        ReadNextHeader(content, atEnd: false) is { } next && FindStreamsInfoEnd(next.Header) >= 0;

    /// <summary>The repaired archive, or null when the header is not of that shape (or too large to copy).</summary>
    public static byte[]? TryAddSubStreamsInfo(ContentSource content, long maxSize)
    {
        if (content.Length > maxSize || ReadNextHeader(content, atEnd: true) is not { } next)
        {
            return null;
        }

        var (nextOffset, nextSize, header) = next;
        var insertAt = FindStreamsInfoEnd(header);
        if (insertAt < 0)
        {
            return null;
        }

        var output = new byte[content.Length + 2];
        content.ReadAt(0, output.AsSpan(0, 32 + (int)nextOffset));
        var headerStart = 32 + (int)nextOffset;
        header.AsSpan(0, insertAt).CopyTo(output.AsSpan(headerStart));
        output[headerStart + insertAt] = 0x08;
        output[headerStart + insertAt + 1] = 0x00;
        header.AsSpan(insertAt).CopyTo(output.AsSpan(headerStart + insertAt + 2));
        BinaryPrimitives.WriteUInt64LittleEndian(output.AsSpan(20), nextSize + 2);
        BinaryPrimitives.WriteUInt32LittleEndian(output.AsSpan(28), Crc(output.AsSpan(headerStart, header.Length + 2)));
        BinaryPrimitives.WriteUInt32LittleEndian(output.AsSpan(8), Crc(output.AsSpan(12, 20)));
        return output;
    }

    /// <summary>One folder of a plain header: where its single packed stream lies and how it is coded.</summary>
    public sealed record Folder(long Offset, long Length, bool Copy, bool Encrypted);

    /// <summary>
    /// The folders of a plain (not encoded) header, each with one packed stream, for when the library cannot read the
    /// archive: stored (Copy) folders can still be inspected and AES ones named. Null for any other shape.
    /// </summary>
    public static IReadOnlyList<Folder>? TryReadFolders(ContentSource content)
    {
        var layout = new Layout();
        if (ReadNextHeader(content, atEnd: false) is not { } next || FindStreamsInfoEnd(next.Header, layout, requireNoSubStreams: false) < 0 || layout.Coders.Count != layout.PackSizes.Count)
        {
            return null;
        }

        var folders = new List<Folder>();
        var offset = 32 + (long)layout.PackPosition;
        for (var i = 0; i < layout.Coders.Count; i++)
        {
            var length = (long)Math.Min(layout.PackSizes[i], (ulong)Math.Max(0, content.Length - offset));
            var id = layout.Coders[i];
            folders.Add(new Folder(offset, length, Copy: id is [0x00], Encrypted: id is [0x06, 0xF1, 0x07, 0x01]));
            offset += length;
        }

        return folders;
    }

    private sealed class Layout
    {
        public ulong PackPosition;
        public readonly List<ulong> PackSizes = [];

        /// <summary>Per folder, the id of its only coder; a folder of several coders or packed streams fails the read.</summary>
        public readonly List<byte[]> Coders = [];
    }

    /// <summary>The next header's offset (after the start header), size and bytes; with <paramref name="atEnd"/>, only when it ends the archive.</summary>
    private static (ulong Offset, ulong Size, byte[] Header)? ReadNextHeader(ContentSource content, bool atEnd)
    {
        if (content.Length < 32)
        {
            return null;
        }

        var start = new byte[32];
        content.ReadAt(0, start);
        var nextOffset = BinaryPrimitives.ReadUInt64LittleEndian(start.AsSpan(12));
        var nextSize = BinaryPrimitives.ReadUInt64LittleEndian(start.AsSpan(20));
        var end = 32 + nextOffset + nextSize;
        if (nextSize is 0 or > MaxHeader || nextOffset > (ulong)content.Length || (atEnd ? end != (ulong)content.Length : end > (ulong)content.Length))
        {
            return null;
        }

        var header = new byte[(int)nextSize];
        content.ReadAt(32 + (long)nextOffset, header);
        return (nextOffset, nextSize, header);
    }

    /// <summary>The offset of the End byte of MainStreamsInfo when it has no SubStreamsInfo; -1 otherwise.</summary>
    private static int FindStreamsInfoEnd(byte[] header, Layout? layout = null, bool requireNoSubStreams = true)
    {
        var position = 0;
        try
        {
            if (header[position++] != 0x01)
            {
                return -1;
            }

            var id = header[position++];
            if (id == 0x02)
            {
                // ArchiveProperties: (type, size, data)* then End.
                while ((id = header[position++]) != 0x00)
                {
                    var size = ReadNumber(header, ref position);
                    position = Skip(header, position, size);
                }

                id = header[position++];
            }

            if (id != 0x04)
            {
                return -1;
            }

            id = header[position++];
            if (id == 0x06)
            {
                var packPosition = ReadNumber(header, ref position);
                var packStreams = Count(ReadNumber(header, ref position));
                if (layout is not null)
                {
                    layout.PackPosition = packPosition;
                }

                while ((id = header[position++]) != 0x00)
                {
                    if (id == 0x09)
                    {
                        for (var i = 0; i < packStreams; i++)
                        {
                            var size = ReadNumber(header, ref position);
                            layout?.PackSizes.Add(size);
                        }
                    }
                    else if (id == 0x0A)
                    {
                        position = SkipDigests(header, position, packStreams);
                    }
                    else
                    {
                        return -1;
                    }
                }

                id = header[position++];
            }

            if (id != 0x07 || header[position++] != 0x0B)
            {
                return -1;
            }

            var folders = Count(ReadNumber(header, ref position));
            if (header[position++] != 0x00)
            {
                return -1;
            }

            var outputs = 0;
            for (var f = 0; f < folders; f++)
            {
                var folderStart = position;
                var folderOutputs = SkipFolder(header, ref position);
                if (layout is not null)
                {
                    // One coder (count byte 1), one packed stream: its id follows the flags byte.
                    if (folderOutputs != 1 || header[folderStart] != 1)
                    {
                        return -1;
                    }

                    var flags = header[folderStart + 1];
                    layout.Coders.Add(header.AsSpan(folderStart + 2, flags & 0x0F).ToArray());
                }

                if (folderOutputs < 0)
                {
                    return -1;
                }

                outputs = checked(outputs + folderOutputs);
            }

            if (header[position++] != 0x0C)
            {
                return -1;
            }

            for (var i = 0; i < outputs; i++)
            {
                ReadNumber(header, ref position);
            }

            id = header[position++];
            if (id == 0x0A)
            {
                position = SkipDigests(header, position, folders);
                id = header[position++];
            }

            if (id != 0x00)
            {
                return -1;
            }

            // The next byte ends MainStreamsInfo when SubStreamsInfo (0x08) is absent.
            return header[position] == 0x00 || !requireNoSubStreams ? position : -1;
        }
        catch (Exception ex) when (ex is IndexOutOfRangeException or ArgumentOutOfRangeException or OverflowException or InvalidDataException)
        {
            return -1;
        }
    }

    /// <summary>Skips one folder's coders, bind pairs and packed stream indices; returns its output count (-1 for what it does not read).</summary>
    private static int SkipFolder(byte[] header, ref int position)
    {
        var coders = Count(ReadNumber(header, ref position));
        if (coders is 0 or > 64)
        {
            return -1;
        }

        int inputs = 0, outputs = 0;
        for (var c = 0; c < coders; c++)
        {
            var flags = header[position++];
            if ((flags & 0x80) != 0)
            {
                return -1;
            }

            position = Skip(header, position, (ulong)(flags & 0x0F));
            if ((flags & 0x10) != 0)
            {
                inputs = checked(inputs + Count(ReadNumber(header, ref position)));
                outputs = checked(outputs + Count(ReadNumber(header, ref position)));
            }
            else
            {
                inputs++;
                outputs++;
            }

            if ((flags & 0x20) != 0)
            {
                // The length first: Skip(header, position, ReadNumber(ref position)) took position before the number moved it.
                var size = ReadNumber(header, ref position);
                position = Skip(header, position, size);
            }
        }

        if (outputs is 0 or > 64 || inputs > 64)
        {
            return -1;
        }

        for (var i = 0; i < outputs - 1; i++)
        {
            ReadNumber(header, ref position);
            ReadNumber(header, ref position);
        }

        var packed = inputs - (outputs - 1);
        if (packed > 1)
        {
            for (var i = 0; i < packed; i++)
            {
                ReadNumber(header, ref position);
            }
        }

        return outputs;
    }

    private static int SkipDigests(byte[] header, int position, int count)
    {
        var defined = count;
        if (header[position++] == 0)
        {
            defined = 0;
            for (var i = 0; i < count; i++)
            {
                if ((header[position + i / 8] & (0x80 >> (i % 8))) != 0)
                {
                    defined++;
                }
            }

            position += (count + 7) / 8;
        }

        return Skip(header, position, (ulong)defined * 4);
    }

    private static int Skip(byte[] header, int position, ulong count) =>
        count > (ulong)(header.Length - position) ? throw new InvalidDataException("field past the header") : position + (int)count;

    private static int Count(ulong value) => value > MaxCount ? throw new InvalidDataException("count too large") : (int)value;

    /// <summary>7z numbers: the first byte's leading one bits say how many little-endian bytes follow.</summary>
    private static ulong ReadNumber(byte[] header, ref int position)
    {
        var first = header[position++];
        ulong value = 0;
        for (var i = 0; i < 8; i++)
        {
            var mask = 0x80 >> i;
            if ((first & mask) == 0)
            {
                return value | ((ulong)(first & (mask - 1)) << (8 * i));
            }

            value |= (ulong)header[position++] << (8 * i);
        }

        return value;
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }

    private static uint Crc(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return ~crc;
    }
}
