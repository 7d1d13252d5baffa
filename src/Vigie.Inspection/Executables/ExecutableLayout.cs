using System.Buffers.Binary;

namespace Vigie.Inspection.Executables;

/// <summary>One section of an executable as it lies in the file: where its raw data starts and how long it is.</summary>
internal readonly record struct PeSection(uint VirtualAddress, long RawOffset, long RawSize);

/// <summary>
/// Where an executable's entry point and sections lie in the file, for signatures placed relative to them (ClamAV's
/// <c>EP+n</c>, <c>Sx+n</c>, <c>SEx</c>, <c>SL+n</c>): PE files (entry point and sections) and ELF files (entry
/// point). Read from the headers only, every field checked against the file: a header that points outside it leaves
/// the layout unknown, and such signatures do not match.
/// </summary>
internal sealed class ExecutableLayout
{
    /// <summary>The PE format's own ceiling on sections (the loader refuses more).</summary>
    public const int MaxSections = 96;

    /// <summary>Most program headers an ELF file may list here (the format allows 65,535; real files have a dozen).</summary>
    public const int MaxProgramHeaders = 512;

    private const int MaxHeaderOffset = 64 * 1024;

    private static ReadOnlySpan<byte> ElfMagic => [0x7F, (byte)'E', (byte)'L', (byte)'F'];

    private ExecutableLayout(long entryPoint, PeSection[] sections)
    {
        EntryPoint = entryPoint;
        Sections = sections;
    }

    /// <summary>The entry point's offset in the file; -1 when it lies in no section's raw data nor in the headers.</summary>
    public long EntryPoint { get; }

    public IReadOnlyList<PeSection> Sections { get; }

    /// <summary>Reads the layout of a PE or ELF file; null when the content is neither, or its headers cannot be trusted that far.</summary>
    public static ExecutableLayout? TryRead(ContentSource content, ContentType type) => type switch
    {
        ContentType.Pe => TryReadPe(content),
        ContentType.Elf => TryReadElf(content),
        _ => null,
    };

    /// <summary>Reads the layout of a PE file; null when the content is not one whose headers can be trusted that far.</summary>
    public static ExecutableLayout? TryReadPe(ContentSource content)
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
            var virtualAddress = BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]);
            var rawSize = BinaryPrimitives.ReadUInt32LittleEndian(entry[16..]);
            var rawOffset = BinaryPrimitives.ReadUInt32LittleEndian(entry[20..]);
            // Raw data past the end of the file is cut to what the file holds, as the loader reads it.
            var size = rawOffset >= content.Length ? 0 : Math.Min(rawSize, content.Length - rawOffset);
            sections[i] = new PeSection(virtualAddress, rawOffset, size);
        }

        return new ExecutableLayout(FileOffset(entryRva, sections, headersSize, content.Length), sections);
    }

    /// <summary>
    /// Reads an ELF file's entry point (32 or 64 bits, either byte order), mapped into the file through the first
    /// program header whose memory holds it, as ClamAV does. No sections: ELF section offsets are not read here.
    /// </summary>
    public static ExecutableLayout? TryReadElf(ContentSource content)
    {
        Span<byte> header = stackalloc byte[64];
        if (content.Length < 64 || content.ReadAt(0, header) != 64 || !header[..4].SequenceEqual(ElfMagic) || header[4] is not (1 or 2)
            || header[5] is not (1 or 2))
        {
            return null;
        }

        var wide = header[4] == 2;
        var big = header[5] == 2;
        ulong Word(ReadOnlySpan<byte> at, bool eight) => eight
            ? big ? BinaryPrimitives.ReadUInt64BigEndian(at) : BinaryPrimitives.ReadUInt64LittleEndian(at)
            : big ? BinaryPrimitives.ReadUInt32BigEndian(at) : BinaryPrimitives.ReadUInt32LittleEndian(at);
        ushort Half(ReadOnlySpan<byte> at) => big ? BinaryPrimitives.ReadUInt16BigEndian(at) : BinaryPrimitives.ReadUInt16LittleEndian(at);

        var entry = Word(header[0x18..], wide);
        var programOffset = Word(header[(wide ? 0x20 : 0x1C)..], wide);
        var entrySize = Half(header[(wide ? 0x36 : 0x2A)..]);
        var count = Half(header[(wide ? 0x38 : 0x2C)..]);
        var expectedSize = wide ? 56 : 32;
        if (count is 0 or > MaxProgramHeaders || entrySize < expectedSize || programOffset > (ulong)content.Length
            || (long)programOffset + ((long)count * entrySize) > content.Length)
        {
            return null;
        }

        var table = new byte[count * entrySize];
        if (content.ReadAt((long)programOffset, table) != table.Length)
        {
            return null;
        }

        for (var i = 0; i < count; i++)
        {
            var program = table.AsSpan(i * entrySize, entrySize);
            var (offset, address, memorySize) = wide
                ? (Word(program[8..], true), Word(program[16..], true), Word(program[40..], true))
                : (Word(program[4..], false), Word(program[8..], false), Word(program[20..], false));
            if (address <= entry && entry - address < memorySize)
            {
                var position = offset + (entry - address);
                return new ExecutableLayout(position < (ulong)content.Length ? (long)position : -1, []);
            }
        }

        return new ExecutableLayout(-1, []);
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
