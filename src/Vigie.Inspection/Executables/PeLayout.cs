using System.Buffers.Binary;

namespace Vigie.Inspection.Executables;

/// <summary>One section of a PE file as it lies in the file: where its raw data starts and how long it is.</summary>
internal readonly record struct PeSection(uint VirtualAddress, uint VirtualSize, long RawOffset, long RawSize);

/// <summary>
/// Where a PE file's entry point and sections lie in the file, for signatures placed relative to them (ClamAV's
/// <c>EP+n</c>, <c>Sx+n</c>, <c>SEx</c>, <c>SL+n</c>). Read from the headers only, every field checked against the
/// file: a header that points outside it leaves the layout unknown, and such signatures do not match.
/// </summary>
internal sealed class PeLayout
{
    /// <summary>The PE format's own ceiling on sections (the loader refuses more).</summary>
    public const int MaxSections = 96;

    private const int MaxHeaderOffset = 64 * 1024;

    private PeLayout(long entryPoint, PeSection[] sections)
    {
        EntryPoint = entryPoint;
        Sections = sections;
    }

    /// <summary>The entry point's offset in the file; -1 when it lies in no section's raw data nor in the headers.</summary>
    public long EntryPoint { get; }

    public IReadOnlyList<PeSection> Sections { get; }

    /// <summary>Reads the layout of a PE file; null when the content is not one whose headers can be trusted that far.</summary>
    public static PeLayout? TryRead(ContentSource content)
    {
        Span<byte> dos = stackalloc byte[64];
        if (content.Length < 64 || content.ReadAt(0, dos) != 64 || dos[0] != 'M' || dos[1] != 'Z')
        {
            return null;
        }

        var peOffset = BinaryPrimitives.ReadUInt32LittleEndian(dos[0x3C..]);
        // Signature, COFF header (20 bytes) and the optional header's first fields up to SizeOfHeaders (64 bytes).
        Span<byte> header = stackalloc byte[4 + 20 + 64];
        if (peOffset > MaxHeaderOffset || peOffset + (long)header.Length > content.Length || content.ReadAt(peOffset, header) != header.Length
            || !header[..4].SequenceEqual("PE\0\0"u8))
        {
            return null;
        }

        var sectionCount = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        var optionalSize = BinaryPrimitives.ReadUInt16LittleEndian(header[20..]);
        var optional = header[24..];
        var magic = BinaryPrimitives.ReadUInt16LittleEndian(optional);
        if (sectionCount is 0 or > MaxSections || magic is not (0x10B or 0x20B) || optionalSize < 64)
        {
            return null;
        }

        var entryRva = BinaryPrimitives.ReadUInt32LittleEndian(optional[16..]);
        var headersSize = BinaryPrimitives.ReadUInt32LittleEndian(optional[60..]);
        var tableOffset = peOffset + 24L + optionalSize;
        var tableLength = sectionCount * 40;
        if (tableOffset + tableLength > content.Length)
        {
            return null;
        }

        var table = new byte[tableLength];
        if (content.ReadAt(tableOffset, table) != tableLength)
        {
            return null;
        }

        var sections = new PeSection[sectionCount];
        for (var i = 0; i < sectionCount; i++)
        {
            var entry = table.AsSpan(i * 40, 40);
            var virtualSize = BinaryPrimitives.ReadUInt32LittleEndian(entry[8..]);
            var virtualAddress = BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]);
            var rawSize = BinaryPrimitives.ReadUInt32LittleEndian(entry[16..]);
            var rawOffset = BinaryPrimitives.ReadUInt32LittleEndian(entry[20..]);
            // Raw data past the end of the file is cut to what the file holds, as the loader reads it.
            var size = rawOffset >= content.Length ? 0 : Math.Min(rawSize, content.Length - rawOffset);
            sections[i] = new PeSection(virtualAddress, virtualSize, rawOffset, size);
        }

        return new PeLayout(FileOffset(entryRva, sections, headersSize, content.Length), sections);
    }

    /// <summary>An address in the loaded image as an offset in the file: in the headers as it is, else through the last section holding it.</summary>
    private static long FileOffset(uint rva, PeSection[] sections, uint headersSize, long fileLength)
    {
        if (rva < headersSize)
        {
            return rva < fileLength ? rva : -1;
        }

        for (var i = sections.Length - 1; i >= 0; i--)
        {
            var section = sections[i];
            if (section.RawSize > 0 && rva >= section.VirtualAddress && rva - section.VirtualAddress < section.RawSize)
            {
                return section.RawOffset + (rva - section.VirtualAddress);
            }
        }

        return -1;
    }
}
