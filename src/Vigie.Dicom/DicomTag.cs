using System.Globalization;

namespace Vigie.Dicom;

/// <summary>A data element tag (gggg,eeee), stored as one 32-bit value so tags sort and compare as integers.</summary>
public readonly record struct DicomTag(uint Value) : IComparable<DicomTag>, ISpanFormattable
{
    public DicomTag(ushort group, ushort element)
        : this(((uint)group << 16) | element)
    {
    }

    public ushort Group => (ushort)(Value >> 16);

    public ushort Element => (ushort)Value;

    /// <summary>Odd groups other than 0001, 0003, 0005, 0007, FFFF belong to private creators.</summary>
    public bool IsPrivate => (Group & 1) == 1 && Group > 0x0007 && Group != 0xFFFF;

    /// <summary>(gggg,0010-00FF) in a private group reserves a block for a creator.</summary>
    public bool IsPrivateCreator => IsPrivate && Element is >= 0x0010 and <= 0x00FF;

    /// <summary>(gggg,0000): the retired group length elements, still found in older files.</summary>
    public bool IsGroupLength => Element == 0x0000;

    /// <summary>Item, item delimitation and sequence delimitation tags of group FFFE.</summary>
    public bool IsDelimiter => Group == 0xFFFE;

    public static readonly DicomTag Item = new(0xFFFEE000);
    public static readonly DicomTag ItemDelimitation = new(0xFFFEE00D);
    public static readonly DicomTag SequenceDelimitation = new(0xFFFEE0DD);

    public int CompareTo(DicomTag other) => Value.CompareTo(other.Value);

    public static bool operator <(DicomTag left, DicomTag right) => left.Value < right.Value;

    public static bool operator >(DicomTag left, DicomTag right) => left.Value > right.Value;

    public static bool operator <=(DicomTag left, DicomTag right) => left.Value <= right.Value;

    public static bool operator >=(DicomTag left, DicomTag right) => left.Value >= right.Value;

    /// <summary>"(0010,0010)".</summary>
    public override string ToString() => ToString(null, null);

    public string ToString(string? format, IFormatProvider? formatProvider) =>
        format == "J"
            ? Value.ToString("X8", CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"({Group:X4},{Element:X4})");

    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider)
    {
        if (format.SequenceEqual("J"))
        {
            return Value.TryFormat(destination, out charsWritten, "X8", CultureInfo.InvariantCulture);
        }

        return destination.TryWrite(CultureInfo.InvariantCulture, $"({Group:X4},{Element:X4})", out charsWritten);
    }

    /// <summary>Parses "(gggg,eeee)", "gggg,eeee" or "ggggeeee" (hex).</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out DicomTag tag)
    {
        tag = default;
        text = text.Trim();
        if (text.Length > 2 && text[0] == '(' && text[^1] == ')')
        {
            text = text[1..^1];
        }

        Span<char> digits = stackalloc char[8];
        var count = 0;
        foreach (var c in text)
        {
            if (c == ',')
            {
                continue;
            }

            if (count == 8 || !char.IsAsciiHexDigit(c))
            {
                return false;
            }

            digits[count++] = c;
        }

        if (count != 8 || !uint.TryParse(digits, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var value))
        {
            return false;
        }

        tag = new DicomTag(value);
        return true;
    }
}
