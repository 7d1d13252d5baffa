using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Office;

/// <summary>A file wrapped by the OLE "Package" object (Ole10Native stream, or RTF object data of class Package).</summary>
internal sealed record OlePackage(string Label, string SourcePath, long DataOffset, long DataLength);

internal static class OlePackageReader
{
    private const int MaxString = 4096;

    /// <summary>
    /// Parses Packager native data: [u32 total size when from an Ole10Native stream] u16 type, label and source path
    /// (zero-terminated), u32 u32, temporary path (zero-terminated), u32 data size, data. Null when the layout does not hold.
    /// </summary>
    public static OlePackage? Parse(ContentSource source, bool hasSizePrefix)
    {
        var head = new byte[(int)Math.Min(source.Length, 3 * MaxString + 64)];
        var length = source.ReadAt(0, head);
        var span = head.AsSpan(0, length);
        var position = hasSizePrefix ? 4 : 0;
        if (position + 2 > span.Length)
        {
            return null;
        }

        position += 2;
        var label = ReadZ(span, ref position);
        var path = ReadZ(span, ref position);
        if (label is null || path is null || position + 8 > span.Length)
        {
            return null;
        }

        position += 4;
        var tempLength = BinaryPrimitives.ReadUInt32LittleEndian(span[position..]);
        position += 4;
        if (tempLength > MaxString || position + tempLength + 4 > span.Length)
        {
            return null;
        }

        position += (int)tempLength;
        var dataSize = BinaryPrimitives.ReadUInt32LittleEndian(span[position..]);
        position += 4;
        var available = Math.Min(dataSize, source.Length - position);
        return available < 0 ? null : new OlePackage(label, path, position, available);
    }

    private static string? ReadZ(ReadOnlySpan<byte> span, ref int position)
    {
        var end = span[position..].IndexOf((byte)0);
        if (end < 0 || end > MaxString)
        {
            return null;
        }

        var text = Encoding.Latin1.GetString(span.Slice(position, end));
        position += end + 1;
        return text;
    }
}
