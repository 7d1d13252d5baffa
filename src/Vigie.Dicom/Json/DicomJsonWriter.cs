using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Vigie.Dicom.Json;

/// <summary>How binary values appear in the DICOM JSON model.</summary>
public sealed record DicomJsonOptions
{
    /// <summary>Binary values up to this size are InlineBinary (base64); larger ones get a BulkDataURI.</summary>
    public long InlineBinaryLimit { get; init; } = 64 * 1024;

    /// <summary>Builds the BulkDataURI of a value at (offset, length) in the source; null writes no URI.</summary>
    public Func<long, long, string>? BulkDataUri { get; init; }

    /// <summary>Reads bytes of a bulk reference when an inline value is needed (small values left in the source).</summary>
    public Func<DicomBulkReference, byte[]>? ReadBulk { get; init; }

    /// <summary>A file-based BulkDataURI, in the form dcm4che uses: file:///path?offset=N&amp;length=M.</summary>
    public static Func<long, long, string> FileUri(string path)
    {
        var uri = new Uri(Path.GetFullPath(path)).AbsoluteUri;
        return (offset, length) => string.Create(CultureInfo.InvariantCulture, $"{uri}?offset={offset}&length={length}");
    }
}

/// <summary>Writes datasets in the DICOM JSON Model (PS3.18 Annex F).</summary>
public static class DicomJsonWriter
{
    public static void Write(Utf8JsonWriter writer, IEnumerable<DicomElement> elements, DicomCharacterSet characterSet, DicomJsonOptions options)
    {
        writer.WriteStartObject();
        foreach (var element in elements)
        {
            WriteElement(writer, element, characterSet, options);
        }

        writer.WriteEndObject();
    }

    public static void Write(Utf8JsonWriter writer, DicomDataset dataset, DicomJsonOptions options) =>
        Write(writer, dataset, dataset.CharacterSet, options);

    /// <summary>Meta information and dataset in one object, as `vigie dump --json` prints them.</summary>
    public static void Write(Utf8JsonWriter writer, DicomFile file, DicomJsonOptions options)
    {
        writer.WriteStartObject();
        foreach (var element in file.Meta)
        {
            WriteElement(writer, element, DicomCharacterSet.Default, options);
        }

        var characterSet = file.Dataset.CharacterSet;
        foreach (var element in file.Dataset)
        {
            if (element.Tag.Group != 0x0002 || !file.Meta.Contains(element.Tag))
            {
                WriteElement(writer, element, characterSet, options);
            }
        }

        writer.WriteEndObject();
    }

    public static string ToJson(DicomDataset dataset, DicomJsonOptions? options = null, bool indented = false)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            Write(writer, dataset, options ?? new DicomJsonOptions());
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteElement(Utf8JsonWriter writer, DicomElement element, DicomCharacterSet characterSet, DicomJsonOptions options)
    {
        Span<char> key = stackalloc char[8];
        element.Tag.TryFormat(key, out _, "J", CultureInfo.InvariantCulture);
        writer.WritePropertyName(key);
        writer.WriteStartObject();
        writer.WriteString("vr"u8, DicomVRInfo.Code(element.VR == DicomVR.None ? DicomVR.UN : element.VR));
        switch (element)
        {
            case DicomSequence sequence:
                if (sequence.Items.Count > 0)
                {
                    writer.WriteStartArray("Value"u8);
                    foreach (var item in sequence.Items)
                    {
                        Write(writer, item, item.CharacterSet, options);
                    }

                    writer.WriteEndArray();
                }

                break;
            case DicomFragmentSequence fragments:
                WriteFragments(writer, fragments, options);
                break;
            case DicomValueElement value:
                WriteValue(writer, value, characterSet, options);
                break;
        }

        writer.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter writer, DicomValueElement value, DicomCharacterSet characterSet, DicomJsonOptions options)
    {
        if (value.Length == 0)
        {
            return;
        }

        var vr = value.VR;
        if (DicomVRInfo.IsBinary(vr) || vr == DicomVR.None || value.IsBulk)
        {
            WriteBinary(writer, value, options);
            return;
        }

        if (vr == DicomVR.PN)
        {
            var names = value.GetStrings(characterSet);
            if (names.Length == 0)
            {
                return;
            }

            writer.WriteStartArray("Value"u8);
            foreach (var name in names)
            {
                if (name.Length == 0)
                {
                    writer.WriteNullValue();
                    continue;
                }

                writer.WriteStartObject();
                var groups = name.Split('=');
                WriteGroup(writer, "Alphabetic"u8, groups, 0);
                WriteGroup(writer, "Ideographic"u8, groups, 1);
                WriteGroup(writer, "Phonetic"u8, groups, 2);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            return;
        }

        if (DicomVRInfo.IsString(vr))
        {
            var strings = value.GetStrings(characterSet);
            if (strings.Length == 0)
            {
                return;
            }

            writer.WriteStartArray("Value"u8);
            foreach (var s in strings)
            {
                if (s.Length == 0)
                {
                    writer.WriteNullValue();
                }
                else if (vr is DicomVR.DS or DicomVR.IS)
                {
                    WriteDecimalString(writer, s, vr);
                }
                else
                {
                    writer.WriteStringValue(s);
                }
            }

            writer.WriteEndArray();
            return;
        }

        if (vr == DicomVR.AT)
        {
            writer.WriteStartArray("Value"u8);
            foreach (var tag in value.GetTags())
            {
                writer.WriteStringValue(tag.ToString("J", CultureInfo.InvariantCulture));
            }

            writer.WriteEndArray();
            return;
        }

        WriteBinaryNumbers(writer, value);
    }

    private static void WriteGroup(Utf8JsonWriter writer, ReadOnlySpan<byte> name, string[] groups, int index)
    {
        if (index < groups.Length && groups[index].Length > 0)
        {
            writer.WriteString(name, groups[index]);
        }
    }

    private static void WriteDecimalString(Utf8JsonWriter writer, string text, DicomVR vr)
    {
        var styles = vr == DicomVR.IS ? NumberStyles.Integer : NumberStyles.Float;
        if (vr == DicomVR.IS && long.TryParse(text, styles, CultureInfo.InvariantCulture, out var integer))
        {
            writer.WriteNumberValue(integer);
        }
        else if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
        {
            // Keep the writer's digits when they already form a JSON number; otherwise the shortest round-trip form.
            if (IsJsonNumber(text))
            {
                writer.WriteRawValue(text, skipInputValidation: true);
            }
            else
            {
                writer.WriteNumberValue(number);
            }
        }
        else
        {
            // Not a number (a malformed IS/DS): kept as the string the file holds rather than dropped.
            writer.WriteStringValue(text);
        }
    }

    private static bool IsJsonNumber(string text)
    {
        var i = 0;
        if (i < text.Length && text[i] == '-')
        {
            i++;
        }

        if (i >= text.Length || !char.IsAsciiDigit(text[i]) || (text[i] == '0' && i + 1 < text.Length && char.IsAsciiDigit(text[i + 1])))
        {
            return false;
        }

        while (i < text.Length && char.IsAsciiDigit(text[i]))
        {
            i++;
        }

        if (i < text.Length && text[i] == '.')
        {
            i++;
            if (i >= text.Length || !char.IsAsciiDigit(text[i]))
            {
                return false;
            }

            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }
        }

        if (i < text.Length && (text[i] == 'e' || text[i] == 'E'))
        {
            i++;
            if (i < text.Length && (text[i] == '+' || text[i] == '-'))
            {
                i++;
            }

            if (i >= text.Length || !char.IsAsciiDigit(text[i]))
            {
                return false;
            }

            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }
        }

        return i == text.Length;
    }

    private static void WriteBinaryNumbers(Utf8JsonWriter writer, DicomValueElement value)
    {
        var span = value.Span;
        writer.WriteStartArray("Value"u8);
        switch (value.VR)
        {
            case DicomVR.US:
                for (var i = 0; i + 2 <= span.Length; i += 2)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadUInt16LittleEndian(span[i..]));
                }

                break;
            case DicomVR.SS:
                for (var i = 0; i + 2 <= span.Length; i += 2)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadInt16LittleEndian(span[i..]));
                }

                break;
            case DicomVR.UL:
                for (var i = 0; i + 4 <= span.Length; i += 4)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadUInt32LittleEndian(span[i..]));
                }

                break;
            case DicomVR.SL:
                for (var i = 0; i + 4 <= span.Length; i += 4)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadInt32LittleEndian(span[i..]));
                }

                break;
            case DicomVR.SV:
                for (var i = 0; i + 8 <= span.Length; i += 8)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadInt64LittleEndian(span[i..]));
                }

                break;
            case DicomVR.UV:
                for (var i = 0; i + 8 <= span.Length; i += 8)
                {
                    writer.WriteNumberValue(BinaryPrimitives.ReadUInt64LittleEndian(span[i..]));
                }

                break;
            case DicomVR.FL:
                for (var i = 0; i + 4 <= span.Length; i += 4)
                {
                    WriteFloat(writer, BinaryPrimitives.ReadSingleLittleEndian(span[i..]));
                }

                break;
            case DicomVR.FD:
                for (var i = 0; i + 8 <= span.Length; i += 8)
                {
                    WriteFloat(writer, BinaryPrimitives.ReadDoubleLittleEndian(span[i..]));
                }

                break;
        }

        writer.WriteEndArray();
    }

    private static void WriteFloat(Utf8JsonWriter writer, double number)
    {
        // JSON has no NaN or infinities: PS3.18 F.2.3.1 writes them as strings.
        if (double.IsNaN(number))
        {
            writer.WriteStringValue("NaN");
        }
        else if (double.IsPositiveInfinity(number))
        {
            writer.WriteStringValue("Infinity");
        }
        else if (double.IsNegativeInfinity(number))
        {
            writer.WriteStringValue("-Infinity");
        }
        else
        {
            writer.WriteNumberValue(number);
        }
    }

    private static void WriteFloat(Utf8JsonWriter writer, float number)
    {
        if (!float.IsFinite(number))
        {
            WriteFloat(writer, (double)number);
            return;
        }

        writer.WriteNumberValue(number);
    }

    private static void WriteBinary(Utf8JsonWriter writer, DicomValueElement value, DicomJsonOptions options)
    {
        if (value.Bulk is { } bulk)
        {
            if (bulk.Length <= options.InlineBinaryLimit && options.ReadBulk is { } read)
            {
                writer.WriteBase64String("InlineBinary"u8, read(bulk));
            }
            else if (options.BulkDataUri is { } uri)
            {
                writer.WriteString("BulkDataURI"u8, uri(bulk.Offset, bulk.Length));
            }

            return;
        }

        writer.WriteBase64String("InlineBinary"u8, value.Span);
    }

    private static void WriteFragments(Utf8JsonWriter writer, DicomFragmentSequence fragments, DicomJsonOptions options)
    {
        var total = fragments.Items.Sum(f => f.Length + 8) + 8;
        var allLoaded = fragments.Items.TrueForAll(f => !f.IsBulk);
        if (total <= options.InlineBinaryLimit && allLoaded)
        {
            // The encoded item sequence, as the element's value bytes are on the wire.
            var bytes = new byte[total];
            var offset = 0;
            foreach (var fragment in fragments.Items)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), 0xE000FFFE);
                BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset + 4), (uint)fragment.Length);
                fragment.Value.Span.CopyTo(bytes.AsSpan(offset + 8));
                offset += 8 + (int)fragment.Length;
            }

            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), 0xE0DDFFFE);
            writer.WriteBase64String("InlineBinary"u8, bytes);
        }
        else if (options.BulkDataUri is { } uri && fragments.ValueOffset >= 0)
        {
            writer.WriteString("BulkDataURI"u8, uri(fragments.ValueOffset, fragments.ValueLength));
        }
    }
}
