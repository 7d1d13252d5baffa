using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Vigie.Dicom;

/// <summary>A data element as read or built. Values are held little endian whatever the source byte order.</summary>
public abstract class DicomElement
{
    protected DicomElement(DicomTag tag, DicomVR vr, long sourceOffset)
    {
        Tag = tag;
        VR = vr;
        SourceOffset = sourceOffset;
    }

    public DicomTag Tag { get; }

    public DicomVR VR { get; internal set; }

    /// <summary>Offset of the element header in the source, -1 for elements built in memory.</summary>
    public long SourceOffset { get; }

    /// <summary>
    /// UN when an explicit VR source sent this element as UN and the reader read it as its known VR; the writer
    /// writes it back as UN so a round trip changes nothing. None otherwise.
    /// </summary>
    public DicomVR SourceVR { get; internal set; }

    public override string ToString() => $"{Tag} {DicomVRInfo.Code(VR)}";
}

/// <summary>Where a large value lives in the source, when it was not loaded.</summary>
/// <param name="Offset">Offset of the first value byte in the source.</param>
/// <param name="Length">Value length in bytes.</param>
/// <param name="SwapUnit">Byte-swap width to convert to little endian (1: none; the source was big endian otherwise).</param>
public sealed record DicomBulkReference(long Offset, long Length, int SwapUnit);

/// <summary>A non-sequence element: its value bytes, or a reference to them in the source.</summary>
public sealed class DicomValueElement : DicomElement
{
    public DicomValueElement(DicomTag tag, DicomVR vr, ReadOnlyMemory<byte> value, long sourceOffset = -1)
        : base(tag, vr, sourceOffset)
    {
        Value = value;
        Length = value.Length;
    }

    public DicomValueElement(DicomTag tag, DicomVR vr, DicomBulkReference bulk, long sourceOffset)
        : base(tag, vr, sourceOffset)
    {
        Bulk = bulk;
        Length = bulk.Length;
    }

    /// <summary>The value (little endian), empty when <see cref="Bulk"/> is set.</summary>
    public ReadOnlyMemory<byte> Value { get; }

    /// <summary>Set when the value was left in the source.</summary>
    public DicomBulkReference? Bulk { get; }

    /// <summary>
    /// Offset of the first value byte in the source, -1 for elements built in memory. In a deflated data set it counts
    /// in the inflated stream, and in a big endian one the loaded value is swapped: compare before using it on the file.
    /// </summary>
    public long ValueOffset { get; internal set; } = -1;

    public bool IsBulk => Bulk is not null;

    /// <summary>Value length in bytes, loaded or not.</summary>
    public long Length { get; }

    public ReadOnlySpan<byte> Span => Value.Span;

    /// <summary>Decodes a string value, whole (backslashes kept), without trailing padding.</summary>
    public string GetText(DicomCharacterSet characterSet) => IsBulk ? string.Empty : DicomText.Decode(Span, VR, characterSet);

    /// <summary>The values of a string element (split on backslash for multi-valued VRs), each trimmed as its VR says.</summary>
    public string[] GetStrings(DicomCharacterSet characterSet)
    {
        if (IsBulk || Length == 0)
        {
            return [];
        }

        return DicomText.SplitValues(GetText(characterSet), VR);
    }

    /// <summary>Number of values held.</summary>
    public int Count(DicomCharacterSet characterSet)
    {
        if (IsBulk)
        {
            return 1;
        }

        if (DicomVRInfo.IsString(VR))
        {
            return GetStrings(characterSet).Length;
        }

        var unit = VR == DicomVR.AT ? 4 : DicomVRInfo.UnitSize(VR);
        return DicomVRInfo.IsBinary(VR) ? (Length > 0 ? 1 : 0) : (int)(Length / unit);
    }

    /// <summary>Binary numbers as .NET values; the element's VR decides the width and sign.</summary>
    public double[] GetNumbers()
    {
        if (IsBulk)
        {
            return [];
        }

        var s = Span;
        return VR switch
        {
            DicomVR.US or DicomVR.OW => Read<ushort>(s, v => v),
            DicomVR.SS => Read<short>(s, v => v),
            DicomVR.UL or DicomVR.OL => Read<uint>(s, v => v),
            DicomVR.SL => Read<int>(s, v => v),
            DicomVR.FL or DicomVR.OF => Read<float>(s, v => v),
            DicomVR.FD or DicomVR.OD => Read<double>(s, v => v),
            DicomVR.SV => Read<long>(s, v => v),
            DicomVR.UV or DicomVR.OV => Read<ulong>(s, v => v),
            _ => [],
        };

        static double[] Read<T>(ReadOnlySpan<byte> bytes, Func<T, double> convert)
            where T : unmanaged
        {
            var values = MemoryMarshal.Cast<byte, T>(bytes[..(bytes.Length / Marshal.SizeOf<T>() * Marshal.SizeOf<T>())]);
            var result = new double[values.Length];
            for (var i = 0; i < values.Length; i++)
            {
                result[i] = convert(values[i]);
            }

            return result;
        }
    }

    /// <summary>64-bit integers (SV, UV) exactly, beyond double precision.</summary>
    public string[] GetExactIntegers()
    {
        var s = Span;
        return VR switch
        {
            DicomVR.SV => MemoryMarshal.Cast<byte, long>(s[..(s.Length / 8 * 8)]).ToArray().Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray(),
            DicomVR.UV or DicomVR.OV => MemoryMarshal.Cast<byte, ulong>(s[..(s.Length / 8 * 8)]).ToArray().Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray(),
            _ => GetNumbers().Select(v => v.ToString("R", CultureInfo.InvariantCulture)).ToArray(),
        };
    }

    /// <summary>AT values.</summary>
    public DicomTag[] GetTags()
    {
        var s = Span;
        var result = new DicomTag[s.Length / 4];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = new DicomTag(BinaryPrimitives.ReadUInt16LittleEndian(s[(i * 4)..]), BinaryPrimitives.ReadUInt16LittleEndian(s[(i * 4 + 2)..]));
        }

        return result;
    }
}

/// <summary>A sequence of items, each a dataset.</summary>
public sealed class DicomSequence : DicomElement
{
    public DicomSequence(DicomTag tag, bool undefinedLength = true, long sourceOffset = -1)
        : base(tag, DicomVR.SQ, sourceOffset)
    {
        UndefinedLength = undefinedLength;
    }

    public List<DicomDataset> Items { get; } = [];

    /// <summary>How the sequence was (or will be) encoded; kept so a rewrite dumps the same.</summary>
    public bool UndefinedLength { get; set; }

    /// <summary>Per item, whether it had undefined length in the source (true when built in memory).</summary>
    internal List<bool> ItemUndefinedLength { get; } = [];
}

/// <summary>One fragment of encapsulated pixel data: loaded bytes or a reference.</summary>
public sealed record DicomFragment(ReadOnlyMemory<byte> Value, DicomBulkReference? Bulk, long Length, long SourceOffset)
{
    public bool IsBulk => Bulk is not null;
}

/// <summary>Encapsulated pixel data: the Basic Offset Table (first item) and the fragments, kept as they are.</summary>
public sealed class DicomFragmentSequence : DicomElement
{
    public DicomFragmentSequence(DicomTag tag, DicomVR vr, long sourceOffset = -1)
        : base(tag, vr, sourceOffset)
    {
    }

    /// <summary>Every item in order; the first is the Basic Offset Table (often empty).</summary>
    public List<DicomFragment> Items { get; } = [];

    /// <summary>Offset of the first item header in the source and length up to and including the sequence delimitation (-1 when built in memory).</summary>
    public long ValueOffset { get; internal set; } = -1;

    public long ValueLength { get; internal set; } = -1;
}
