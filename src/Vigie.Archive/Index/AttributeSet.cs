using System.Buffers.Binary;
using System.Collections;
using System.Text;

namespace Vigie.Archive.Index;

/// <summary>
/// DICOM attributes as the index keeps them: tag (group &lt;&lt; 16 | element) to string values (a multi-valued element
/// has several). Immutable; serialised in a compact binary form that is sealed before it reaches the database.
/// </summary>
public sealed class AttributeSet : IReadOnlyDictionary<uint, IReadOnlyList<string>>
{
    private const byte FormatVersion = 1;
    private readonly SortedDictionary<uint, IReadOnlyList<string>> _values;

    public AttributeSet(IEnumerable<KeyValuePair<uint, IReadOnlyList<string>>> values)
    {
        _values = new SortedDictionary<uint, IReadOnlyList<string>>();
        foreach (var (tag, list) in values)
        {
            _values[tag] = list.ToArray();
        }
    }

    public static AttributeSet Empty { get; } = new([]);

    /// <summary>Builds a set from (tag, value) pairs; a value with backslashes is split into several values.</summary>
    public static AttributeSet From(params (uint Tag, string? Value)[] values) =>
        new(values.Where(v => v.Value is not null)
            .Select(v => new KeyValuePair<uint, IReadOnlyList<string>>(v.Tag, v.Value!.Split('\\'))));

    public int Count => _values.Count;

    public IEnumerable<uint> Keys => _values.Keys;

    public IEnumerable<IReadOnlyList<string>> Values => _values.Values;

    public IReadOnlyList<string> this[uint key] => _values[key];

    public bool ContainsKey(uint key) => _values.ContainsKey(key);

    public bool TryGetValue(uint key, out IReadOnlyList<string> value) => _values.TryGetValue(key, out value!);

    /// <summary>The first value of <paramref name="tag"/>, or null.</summary>
    public string? First(uint tag) => _values.TryGetValue(tag, out var list) && list.Count > 0 ? list[0] : null;

    /// <summary>A copy with <paramref name="tag"/> set (or removed when <paramref name="value"/> is null).</summary>
    public AttributeSet With(uint tag, string? value)
    {
        var copy = new SortedDictionary<uint, IReadOnlyList<string>>(_values);
        if (value is null)
        {
            copy.Remove(tag);
        }
        else
        {
            copy[tag] = [value];
        }

        return new AttributeSet(copy);
    }

    /// <summary>This set with the other's attributes added (the other wins on equal tags).</summary>
    public AttributeSet Merge(AttributeSet other)
    {
        var copy = new SortedDictionary<uint, IReadOnlyList<string>>(_values);
        foreach (var (tag, list) in other._values)
        {
            copy[tag] = list;
        }

        return new AttributeSet(copy);
    }

    public IEnumerator<KeyValuePair<uint, IReadOnlyList<string>>> GetEnumerator() => _values.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>version | count u16 | (tag u32 | values u16 | (length u32 | UTF-8)*)*, in tag order, so equal sets serialise equally.</summary>
    internal byte[] Serialize(int maxBytes, int maxAttributes)
    {
        if (_values.Count > maxAttributes)
        {
            throw new IndexLimitException($"{_values.Count} attributes exceed the {maxAttributes} allowed per index row.");
        }

        var size = 3;
        foreach (var (_, list) in _values)
        {
            size += 6;
            foreach (var value in list)
            {
                size += 4 + Encoding.UTF8.GetByteCount(value);
            }

            if (size > maxBytes || list.Count > ushort.MaxValue)
            {
                throw new IndexLimitException($"The attributes exceed the {maxBytes} bytes allowed per index row.");
            }
        }

        var bytes = new byte[size];
        bytes[0] = FormatVersion;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(1), (ushort)_values.Count);
        var at = 3;
        foreach (var (tag, list) in _values)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(at), tag);
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(at + 4), (ushort)list.Count);
            at += 6;
            foreach (var value in list)
            {
                var written = Encoding.UTF8.GetBytes(value, bytes.AsSpan(at + 4));
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(at), written);
                at += 4 + written;
            }
        }

        return bytes;
    }

    /// <summary>Reads what <see cref="Serialize"/> wrote. The bytes were authenticated, but lengths are still checked.</summary>
    internal static AttributeSet Deserialize(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 3 || bytes[0] != FormatVersion)
        {
            throw new InvalidDataException("Not a serialised attribute set.");
        }

        var count = BinaryPrimitives.ReadUInt16BigEndian(bytes[1..]);
        var values = new List<KeyValuePair<uint, IReadOnlyList<string>>>(Math.Min((int)count, 1024));
        var at = 3;
        for (var i = 0; i < count; i++)
        {
            if (at + 6 > bytes.Length)
            {
                throw new InvalidDataException("Attribute set truncated.");
            }

            var tag = BinaryPrimitives.ReadUInt32BigEndian(bytes[at..]);
            var valueCount = BinaryPrimitives.ReadUInt16BigEndian(bytes[(at + 4)..]);
            at += 6;
            var list = new string[valueCount];
            for (var v = 0; v < valueCount; v++)
            {
                if (at + 4 > bytes.Length)
                {
                    throw new InvalidDataException("Attribute set truncated.");
                }

                var length = BinaryPrimitives.ReadInt32BigEndian(bytes[at..]);
                if (length < 0 || length > bytes.Length - at - 4)
                {
                    throw new InvalidDataException("Attribute value length out of range.");
                }

                list[v] = Encoding.UTF8.GetString(bytes.Slice(at + 4, length));
                at += 4 + length;
            }

            values.Add(new KeyValuePair<uint, IReadOnlyList<string>>(tag, list));
        }

        return new AttributeSet(values);
    }
}

/// <summary>An index write or query went beyond a configured limit.</summary>
public sealed class IndexLimitException(string message) : Exception(message);
