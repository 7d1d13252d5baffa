using System.Globalization;
using System.Text;

namespace Vigie.Dicom;

/// <summary>A readable listing in the style of dcmdump: tag, VR, value, length, multiplicity and keyword.</summary>
public static class DicomDumper
{
    private const int ValueColumn = 40;
    private const int MaxShownValues = 16;

    public static void Write(TextWriter output, DicomFile file)
    {
        output.WriteLine("# Dicom-File-Format");
        if (file.Preamble is not null)
        {
            output.WriteLine(file.Preamble.AsSpan().IndexOfAnyExcept((byte)0) < 0 ? "# Preamble: 128 zero bytes" : "# Preamble: 128 bytes, not all zero");
        }

        if (file.HasMetaInformation)
        {
            output.WriteLine();
            output.WriteLine("# Dicom-Meta-Information-Header");
            output.WriteLine("# Used TransferSyntax: Little Endian Explicit");
            WriteDataset(output, file.Meta, DicomCharacterSet.Default, 0);
        }

        output.WriteLine();
        output.WriteLine("# Dicom-Data-Set");
        output.WriteLine($"# Used TransferSyntax: {file.TransferSyntax.Name}");
        WriteDataset(output, file.Dataset, file.Dataset.CharacterSet, 0);
        if (file.IsPartial)
        {
            output.WriteLine("# (read stopped early)");
        }
    }

    public static void WriteDataset(TextWriter output, DicomDataset dataset, DicomCharacterSet characterSet, int depth)
    {
        foreach (var element in dataset)
        {
            WriteElement(output, element, dataset.CharacterSet, depth);
        }
    }

    private static void WriteElement(TextWriter output, DicomElement element, DicomCharacterSet characterSet, int depth)
    {
        var indent = new string(' ', depth * 2);
        var name = Keyword(element.Tag);
        switch (element)
        {
            case DicomSequence sequence:
                Line(output, indent, element.Tag, "SQ",
                    $"(Sequence with {(sequence.UndefinedLength ? "undefined" : "explicit")} length #={sequence.Items.Count})", "u/l", 1, name);
                for (var i = 0; i < sequence.Items.Count; i++)
                {
                    var item = sequence.Items[i];
                    var undefined = i < sequence.ItemUndefinedLength.Count ? sequence.ItemUndefinedLength[i] : true;
                    Line(output, indent + "  ", DicomTag.Item, "na", $"(Item with {(undefined ? "undefined" : "explicit")} length #={item.Count})", "u/l", 1, "Item");
                    WriteDataset(output, item, item.CharacterSet, depth + 2);
                    if (undefined)
                    {
                        Line(output, indent + "  ", DicomTag.ItemDelimitation, "na", "(ItemDelimitationItem)", "0", 0, "ItemDelimitationItem");
                    }
                }

                if (sequence.UndefinedLength)
                {
                    Line(output, indent, DicomTag.SequenceDelimitation, "na", "(SequenceDelimitationItem)", "0", 0, "SequenceDelimitationItem");
                }

                break;
            case DicomFragmentSequence fragments:
                Line(output, indent, element.Tag, DicomVRInfo.Code(element.VR), $"(PixelSequence #={fragments.Items.Count})", "u/l", 1, name);
                foreach (var fragment in fragments.Items)
                {
                    var shown = fragment.IsBulk ? $"(not loaded: {fragment.Length} bytes at offset {fragment.Bulk!.Offset})" : Hex(fragment.Value.Span, 1);
                    Line(output, indent + "  ", DicomTag.Item, "pi", shown, fragment.Length.ToString(CultureInfo.InvariantCulture), 1, "Item");
                }

                Line(output, indent, DicomTag.SequenceDelimitation, "na", "(SequenceDelimitationItem)", "0", 0, "SequenceDelimitationItem");
                break;
            case DicomValueElement value:
                var (text, count) = Describe(value, characterSet);
                Line(output, indent, element.Tag, DicomVRInfo.Code(element.VR), text, value.Length.ToString(CultureInfo.InvariantCulture), count, name);
                break;
        }
    }

    private static (string Text, int Count) Describe(DicomValueElement value, DicomCharacterSet characterSet)
    {
        if (value.IsBulk)
        {
            return ($"(not loaded: {value.Length} bytes at offset {value.Bulk!.Offset})", 1);
        }

        if (value.Length == 0)
        {
            return ("(no value available)", 0);
        }

        var vr = value.VR;
        if (DicomVRInfo.IsString(vr))
        {
            var strings = value.GetStrings(characterSet);
            var text = string.Join('\\', strings);
            if (vr == DicomVR.UI && strings.Length == 1 && DicomDictionary.FindUid(strings[0]) is { Keyword.Length: > 0 } uid)
            {
                return ("=" + uid.Keyword, 1);
            }

            return ("[" + Printable(text) + "]", strings.Length);
        }

        if (vr == DicomVR.AT)
        {
            var tags = value.GetTags();
            return (string.Join('\\', tags.Take(MaxShownValues).Select(t => t.ToString().ToLowerInvariant())) + (tags.Length > MaxShownValues ? "..." : ""), tags.Length);
        }

        if (vr is DicomVR.OB or DicomVR.UN)
        {
            return (Hex(value.Span, 1), 1);
        }

        if (vr is DicomVR.OW)
        {
            return (Hex(value.Span, 2), 1);
        }

        if (vr is DicomVR.OF or DicomVR.OD or DicomVR.OL or DicomVR.OV)
        {
            return (Hex(value.Span, DicomVRInfo.UnitSize(vr)), 1);
        }

        var numbers = value.GetExactIntegers();
        if (vr is DicomVR.FL or DicomVR.FD)
        {
            numbers = value.GetNumbers().Select(n => n.ToString("G8", CultureInfo.InvariantCulture)).ToArray();
        }

        return (string.Join('\\', numbers.Take(MaxShownValues)) + (numbers.Length > MaxShownValues ? "..." : ""), numbers.Length);
    }

    private static string Hex(ReadOnlySpan<byte> bytes, int unit)
    {
        var builder = new StringBuilder();
        var shown = Math.Min(bytes.Length / unit, MaxShownValues);
        for (var i = 0; i < shown; i++)
        {
            if (i > 0)
            {
                builder.Append('\\');
            }

            for (var b = unit - 1; b >= 0; b--)
            {
                builder.Append(bytes[i * unit + b].ToString("x2", CultureInfo.InvariantCulture));
            }
        }

        if (bytes.Length / unit > shown)
        {
            builder.Append("...");
        }

        return builder.ToString();
    }

    private static string Printable(string text)
    {
        if (text.Length > 200)
        {
            text = text[..200] + "...";
        }

        return string.Create(text.Length, text, static (span, t) =>
        {
            for (var i = 0; i < t.Length; i++)
            {
                span[i] = char.IsControl(t[i]) ? '.' : t[i];
            }
        });
    }

    private static string Keyword(DicomTag tag)
    {
        var entry = DicomDictionary.Find(tag);
        if (entry is not null)
        {
            return tag.IsPrivateCreator ? "PrivateCreator" : entry.Keyword;
        }

        return tag.IsPrivate ? "PrivateTag" : "UnknownTag";
    }

    private static void Line(TextWriter output, string indent, DicomTag tag, string vr, string value, string length, int count, string name)
    {
        var head = $"{indent}({tag.Group:x4},{tag.Element:x4}) {vr} {value}";
        var pad = Math.Max(1, ValueColumn + indent.Length - head.Length);
        output.Write(head);
        output.Write(new string(' ', pad));
        output.WriteLine($"# {length,3}, {count} {name}");
    }
}
