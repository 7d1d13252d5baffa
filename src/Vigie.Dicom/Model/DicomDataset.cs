using System.Collections;
using System.Globalization;
using System.Text;

namespace Vigie.Dicom;

/// <summary>
/// A dataset (or a sequence item): elements kept in ascending tag order. Items know their parent, so the
/// Specific Character Set and Pixel Representation of an enclosing dataset apply to them as the standard says.
/// </summary>
public sealed class DicomDataset : IEnumerable<DicomElement>
{
    private readonly List<DicomElement> _elements;
    private DicomCharacterSet? _characterSet;

    public DicomDataset()
        : this(null)
    {
    }

    public DicomDataset(DicomDataset? parent, int capacity = 16)
    {
        Parent = parent;
        _elements = new List<DicomElement>(capacity);
    }

    /// <summary>Offset of the item header in the source when this dataset is a sequence item that was read; -1 otherwise.</summary>
    public long SourceOffset { get; internal set; } = -1;

    /// <summary>The dataset this one is an item of, if any.</summary>
    public DicomDataset? Parent { get; internal set; }

    public int Count => _elements.Count;

    public DicomElement? this[DicomTag tag] => TryGet(tag, out var element) ? element : null;

    /// <summary>The character set in force: this dataset's (0008,0005), else the parent's, else the default repertoire.</summary>
    public DicomCharacterSet CharacterSet
    {
        get
        {
            if (_characterSet is not null)
            {
                return _characterSet;
            }

            if (TryGet(DicomTags.SpecificCharacterSet, out var element) && element is DicomValueElement value)
            {
                var terms = DicomText.SplitValues(DicomText.Decode(value.Span, DicomVR.CS, DicomCharacterSet.Default), DicomVR.CS, trimLeading: false);
                return _characterSet = DicomCharacterSet.FromTerms(terms);
            }

            return Parent?.CharacterSet ?? DicomCharacterSet.Default;
        }
    }

    public bool Contains(DicomTag tag) => IndexOf(tag) >= 0;

    public bool TryGet(DicomTag tag, out DicomElement element)
    {
        var index = IndexOf(tag);
        if (index >= 0)
        {
            element = _elements[index];
            return true;
        }

        element = null!;
        return false;
    }

    /// <summary>Adds an element, replacing any element with the same tag.</summary>
    public void AddOrUpdate(DicomElement element)
    {
        if (element.Tag == DicomTags.SpecificCharacterSet)
        {
            _characterSet = null;
        }

        if (element is DicomSequence sequence)
        {
            foreach (var item in sequence.Items)
            {
                item.Parent = this;
            }
        }

        var count = _elements.Count;
        if (count == 0 || _elements[count - 1].Tag < element.Tag)
        {
            _elements.Add(element);
            return;
        }

        var index = IndexOf(element.Tag);
        if (index >= 0)
        {
            _elements[index] = element;
        }
        else
        {
            _elements.Insert(~index, element);
        }
    }

    /// <summary>Reader path: appends in order; returns false (and keeps the first) for a duplicate tag.</summary>
    internal bool Append(DicomElement element)
    {
        var count = _elements.Count;
        if (count == 0 || _elements[count - 1].Tag < element.Tag)
        {
            _elements.Add(element);
            return true;
        }

        var index = IndexOf(element.Tag);
        if (index >= 0)
        {
            return false;
        }

        _elements.Insert(~index, element);
        return true;
    }

    public bool Remove(DicomTag tag)
    {
        var index = IndexOf(tag);
        if (index < 0)
        {
            return false;
        }

        _elements.RemoveAt(index);
        if (tag == DicomTags.SpecificCharacterSet)
        {
            _characterSet = null;
        }

        return true;
    }

    public void RemoveAll(Predicate<DicomElement> match) => _elements.RemoveAll(match);

    /// <summary>The whole string value (backslashes kept), decoded and trimmed; null when absent or not a string.</summary>
    public string? GetString(DicomTag tag) =>
        TryGet(tag, out var element) && element is DicomValueElement value && DicomVRInfo.IsString(value.VR)
            ? value.GetText(CharacterSet)
            : null;

    /// <summary>The first value of a string element, or null.</summary>
    public string? GetSingleString(DicomTag tag)
    {
        var values = GetStrings(tag);
        return values.Length > 0 ? values[0] : null;
    }

    public string[] GetStrings(DicomTag tag) =>
        TryGet(tag, out var element) && element is DicomValueElement value && DicomVRInfo.IsString(value.VR)
            ? value.GetStrings(CharacterSet)
            : [];

    /// <summary>An integer from a binary (US, SS, UL, SL) or IS element.</summary>
    public bool TryGetInt64(DicomTag tag, out long result)
    {
        result = 0;
        if (!TryGet(tag, out var element) || element is not DicomValueElement value)
        {
            return false;
        }

        if (value.VR == DicomVR.IS)
        {
            var text = value.GetStrings(CharacterSet);
            return text.Length > 0 && long.TryParse(text[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out result);
        }

        var numbers = value.GetNumbers();
        if (numbers.Length == 0)
        {
            return false;
        }

        result = (long)numbers[0];
        return true;
    }

    public DicomSequence? GetSequence(DicomTag tag) => TryGet(tag, out var element) ? element as DicomSequence : null;

    /// <summary>Sets a string element, encoded with this dataset's character set.</summary>
    public void SetString(DicomTag tag, DicomVR vr, string value) =>
        AddOrUpdate(new DicomValueElement(tag, vr, DicomText.Encode(value, vr, tag == DicomTags.SpecificCharacterSet ? DicomCharacterSet.Default : CharacterSet)));

    public void SetStrings(DicomTag tag, DicomVR vr, IEnumerable<string> values) => SetString(tag, vr, string.Join('\\', values));

    public void SetUInt16(DicomTag tag, params ReadOnlySpan<ushort> values)
    {
        var bytes = new byte[values.Length * 2];
        for (var i = 0; i < values.Length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), values[i]);
        }

        AddOrUpdate(new DicomValueElement(tag, DicomVR.US, bytes));
    }

    public void SetUInt32(DicomTag tag, DicomVR vr, uint value)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        AddOrUpdate(new DicomValueElement(tag, vr, bytes));
    }

    public void SetBytes(DicomTag tag, DicomVR vr, ReadOnlyMemory<byte> value) => AddOrUpdate(new DicomValueElement(tag, vr, value));

    public IEnumerator<DicomElement> GetEnumerator() => _elements.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString()
    {
        var builder = new StringBuilder();
        foreach (var element in _elements)
        {
            builder.Append(element).Append('\n');
        }

        return builder.ToString();
    }

    private int IndexOf(DicomTag tag)
    {
        int lo = 0, hi = _elements.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var midTag = _elements[mid].Tag.Value;
            if (midTag == tag.Value)
            {
                return mid;
            }

            if (midTag < tag.Value)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return ~lo;
    }
}
