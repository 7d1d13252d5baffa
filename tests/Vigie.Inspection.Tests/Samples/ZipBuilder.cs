using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>
/// Writes ZIP files byte by byte so tests can craft every malformation: lying sizes, local/central mismatches,
/// overlapping entries, hidden local headers, encryption flags, traversal names, prepended data.
/// </summary>
internal sealed class ZipBuilder
{
    private readonly List<ZipSampleEntry> _entries = [];

    public byte[] Prefix { get; set; } = [];

    public ZipBuilder Add(string name, byte[] data, bool deflate = true, Action<ZipSampleEntry>? tweak = null)
    {
        var entry = new ZipSampleEntry { Name = name, Data = data, Deflate = deflate };
        tweak?.Invoke(entry);
        _entries.Add(entry);
        return this;
    }

    public ZipBuilder Add(string name, string text, bool deflate = true, Action<ZipSampleEntry>? tweak = null) =>
        Add(name, Encoding.UTF8.GetBytes(text), deflate, tweak);

    public static byte[] Deflate(ReadOnlySpan<byte> data)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            deflate.Write(data);
        }

        return output.ToArray();
    }

    public byte[] Build()
    {
        using var output = new MemoryStream();
        output.Write(Prefix);
        var offsets = new long[_entries.Count];
        var compressedData = new byte[_entries.Count][];
        for (var i = 0; i < _entries.Count; i++)
        {
            var entry = _entries[i];
            var compressed = entry.RawCompressed ?? (entry.Deflate ? Deflate(entry.Data) : entry.Data);
            compressedData[i] = compressed;
            if (entry.LocalOffsetOf is { } shared)
            {
                offsets[i] = offsets[shared];
                continue;
            }

            offsets[i] = output.Position - (entry.OffsetsRelativeToPrefix ? Prefix.Length : 0);
            var name = Encoding.UTF8.GetBytes(entry.LocalName ?? entry.Name);
            WriteLocal(output, entry, name, compressed);
        }

        foreach (var hidden in _entries.Where(e => e.HiddenLocalAfter is not null))
        {
            var name = Encoding.UTF8.GetBytes(hidden.HiddenLocalAfter!);
            WriteLocal(output, new ZipSampleEntry { Name = hidden.HiddenLocalAfter!, Data = "hidden"u8.ToArray(), Deflate = false }, name, "hidden"u8.ToArray());
        }

        var centralStart = output.Position;
        var count = 0;
        for (var i = 0; i < _entries.Count; i++)
        {
            var entry = _entries[i];
            if (entry.OmitFromCentral)
            {
                continue;
            }

            count++;
            var name = Encoding.UTF8.GetBytes(entry.Name);
            var h = new byte[46].AsSpan();
            h.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 20);
            BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 20);
            BinaryPrimitives.WriteUInt16LittleEndian(h[8..], (ushort)(entry.Flags | 0x0800));
            BinaryPrimitives.WriteUInt16LittleEndian(h[10..], entry.Method ?? (ushort)(entry.Deflate ? 8 : 0));
            BinaryPrimitives.WriteUInt32LittleEndian(h[16..], Crc32.Compute(entry.Data));
            BinaryPrimitives.WriteUInt32LittleEndian(h[20..], (uint)(entry.DeclaredCompressedSize ?? compressedData[i].Length));
            BinaryPrimitives.WriteUInt32LittleEndian(h[24..], (uint)(entry.DeclaredSize ?? entry.Data.Length));
            BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)name.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h[30..], (ushort)entry.Extra.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(h[42..], (uint)offsets[i]);
            output.Write(h);
            output.Write(name);
            output.Write(entry.Extra);
        }

        var centralSize = output.Position - centralStart;
        Span<byte> end = stackalloc byte[22];
        end.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end[8..], (ushort)count);
        BinaryPrimitives.WriteUInt16LittleEndian(end[10..], (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(end[12..], (uint)centralSize);
        BinaryPrimitives.WriteUInt32LittleEndian(end[16..], (uint)(centralStart - (_entries.Any(e => e.OffsetsRelativeToPrefix) ? Prefix.Length : 0)));
        output.Write(end);
        return output.ToArray();
    }

    private static void WriteLocal(MemoryStream output, ZipSampleEntry entry, byte[] name, byte[] compressed)
    {
        Span<byte> h = stackalloc byte[30];
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 20);
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], (ushort)((entry.LocalFlags ?? entry.Flags) | 0x0800));
        BinaryPrimitives.WriteUInt16LittleEndian(h[8..], entry.LocalMethod ?? entry.Method ?? (ushort)(entry.Deflate ? 8 : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(h[14..], Crc32.Compute(entry.Data));
        BinaryPrimitives.WriteUInt32LittleEndian(h[18..], (uint)(entry.LocalDeclaredCompressedSize ?? entry.DeclaredCompressedSize ?? compressed.Length));
        BinaryPrimitives.WriteUInt32LittleEndian(h[22..], (uint)(entry.LocalDeclaredSize ?? entry.DeclaredSize ?? entry.Data.Length));
        BinaryPrimitives.WriteUInt16LittleEndian(h[26..], (ushort)name.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)entry.Extra.Length);
        output.Write(h);
        output.Write(name);
        output.Write(entry.Extra);
        output.Write(compressed);
    }
}

internal sealed class ZipSampleEntry
{
    public required string Name { get; set; }

    public required byte[] Data { get; set; }

    public bool Deflate { get; set; }

    /// <summary>Bytes written as the entry's data instead of compressing <see cref="Data"/>.</summary>
    public byte[]? RawCompressed { get; set; }

    public ushort Flags { get; set; }

    public ushort? Method { get; set; }

    public ushort? LocalMethod { get; set; }

    public ushort? LocalFlags { get; set; }

    public string? LocalName { get; set; }

    public long? DeclaredSize { get; set; }

    public long? DeclaredCompressedSize { get; set; }

    public long? LocalDeclaredSize { get; set; }

    public long? LocalDeclaredCompressedSize { get; set; }

    /// <summary>Reuse the local header (and data) of an earlier entry: overlapping entries.</summary>
    public int? LocalOffsetOf { get; set; }

    public bool OmitFromCentral { get; set; }

    /// <summary>Write a local header with this name after the entries, listed nowhere.</summary>
    public string? HiddenLocalAfter { get; set; }

    public bool OffsetsRelativeToPrefix { get; set; }

    /// <summary>Extra fields, in both headers.</summary>
    public byte[] Extra { get; set; } = [];

    /// <summary>Adds an Info-ZIP Unicode Path extra field (0x7075) naming <paramref name="path"/> for the header name's CRC.</summary>
    public void UnicodePath(string path)
    {
        var utf8 = Encoding.UTF8.GetBytes(path);
        var field = new byte[4 + 5 + utf8.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(field, 0x7075);
        BinaryPrimitives.WriteUInt16LittleEndian(field.AsSpan(2), (ushort)(5 + utf8.Length));
        field[4] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(field.AsSpan(5), Crc32.Compute(Encoding.UTF8.GetBytes(Name)));
        utf8.CopyTo(field, 9);
        Extra = [.. Extra, .. field];
    }
}
