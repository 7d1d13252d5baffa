using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Pdf;

/// <summary>A parsed PDF value. Kept deliberately small: what analysis and rewriting need, nothing more.</summary>
internal abstract class PdfObject
{
    public static readonly PdfObject Null = new PdfNull();

    private sealed class PdfNull : PdfObject;
}

internal sealed class PdfBoolean(bool value) : PdfObject
{
    public bool Value => value;
}

internal sealed class PdfNumber(double value, bool isInteger) : PdfObject
{
    public double Value => value;

    public bool IsInteger => isInteger;

    public long AsLong => (long)Math.Clamp(value, long.MinValue, long.MaxValue);

    public override string ToString() => isInteger ? AsLong.ToString(CultureInfo.InvariantCulture) : value.ToString("0.######", CultureInfo.InvariantCulture);
}

internal sealed class PdfString(byte[] bytes, bool hex) : PdfObject
{
    public byte[] Bytes => bytes;

    public bool IsHex => hex;

    /// <summary>Text for messages and checks: UTF-16 when it has a BOM, Latin-1 otherwise.</summary>
    public string Text => bytes.Length >= 2 && bytes[0] == 0xFE && bytes[1] == 0xFF
        ? Encoding.BigEndianUnicode.GetString(bytes, 2, bytes.Length - 2)
        : Encoding.Latin1.GetString(bytes);
}

/// <summary>A name with its #xx escapes decoded; <see cref="Escaped"/> remembers that escapes were used.</summary>
internal sealed class PdfName(string value, bool escaped = false, bool needlesslyEscaped = false, string? raw = null) : PdfObject
{
    public string Value => value;

    public bool Escaped => escaped;

    /// <summary>An escape stood for a letter or digit: no reason to escape it but to hide the name.</summary>
    public bool NeedlesslyEscaped => needlesslyEscaped;

    public string Raw => raw ?? value;

    public override string ToString() => "/" + value;
}

internal sealed class PdfArray(List<PdfObject> items) : PdfObject
{
    public List<PdfObject> Items => items;
}

internal sealed class PdfDictionary(List<KeyValuePair<PdfName, PdfObject>> entries) : PdfObject
{
    public List<KeyValuePair<PdfName, PdfObject>> Entries => entries;

    public PdfObject? Get(string key)
    {
        foreach (var (name, value) in entries)
        {
            if (name.Value == key)
            {
                return value;
            }
        }

        return null;
    }

    public bool Has(string key) => Get(key) is not null;

    public string? GetName(string key) => Get(key) is PdfName name ? name.Value : null;

    public bool Remove(string key) => entries.RemoveAll(e => e.Key.Value == key) > 0;

    public void Set(string key, PdfObject value)
    {
        var index = entries.FindIndex(e => e.Key.Value == key);
        if (index >= 0)
        {
            entries[index] = new(entries[index].Key, value);
        }
        else
        {
            entries.Add(new(new PdfName(key), value));
        }
    }
}

internal sealed class PdfReference(int number, int generation) : PdfObject
{
    public int Number => number;

    public int Generation => generation;

    public override string ToString() => $"{number} {generation} R";
}

/// <summary>A bare keyword where a value was expected (tolerated, reported as malformed where it matters).</summary>
internal sealed class PdfKeyword(string value) : PdfObject
{
    public string Value => value;
}

/// <summary>One "n g obj ... endobj" (or an object unpacked from an object stream).</summary>
internal sealed class PdfIndirectObject
{
    public required int Number { get; init; }

    public required int Generation { get; init; }

    /// <summary>Offset of the object header in the file (of the containing object stream for packed objects).</summary>
    public required long Offset { get; init; }

    public required PdfObject Value { get; set; }

    /// <summary>For streams: where the raw (encoded) data lies in the file.</summary>
    public long StreamOffset { get; init; } = -1;

    public long StreamLength { get; init; }

    public bool IsStream => StreamOffset >= 0;

    /// <summary>The object stream this object was unpacked from, if any.</summary>
    public int? ContainerNumber { get; init; }

    public PdfDictionary? Dictionary => Value as PdfDictionary;
}
