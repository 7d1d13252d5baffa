using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>
/// Writes PDFs object by object with a correct cross-reference table, so tests can build clean documents and
/// every kind of active or obfuscated content. Object 1 is the catalog, 2 the page tree, 3 the page.
/// </summary>
internal sealed class PdfBuilder
{
    private readonly List<(int Number, byte[] Bytes)> _objects = [];
    private readonly List<(int Number, string Body)> _packed = [];
    private int _next = 1;

    public string CatalogExtra { get; set; } = "";

    public string PageExtra { get; set; } = "";

    public string TrailerExtra { get; set; } = "";

    /// <summary>Bytes placed before "%PDF-" (polyglot prefixes).</summary>
    public byte[] Prefix { get; set; } = [];

    public static PdfBuilder Document(string text = "Synthetic report")
    {
        var builder = new PdfBuilder();
        builder.Reserve(3);
        var font = builder.Add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
        var content = builder.AddStream("", Encoding.ASCII.GetBytes($"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"), flate: true);
        builder.PageExtra = $"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R";
        return builder;
    }

    private void Reserve(int count) => _next += count;

    public int Add(string body)
    {
        var number = _next++;
        _objects.Add((number, Encoding.Latin1.GetBytes($"{number} 0 obj\n{body}\nendobj\n")));
        return number;
    }

    /// <summary>Adds a stream; <paramref name="data"/> is written as given unless <paramref name="flate"/> compresses it.</summary>
    public int AddStream(string dictionaryEntries, byte[] data, bool flate = false, long? declaredLength = null)
    {
        var number = _next++;
        var encoded = flate ? Zlib(data) : data;
        var filter = flate ? " /Filter /FlateDecode" : "";
        var header = Encoding.Latin1.GetBytes($"{number} 0 obj\n<< {dictionaryEntries}{filter} /Length {declaredLength ?? encoded.Length} >>\nstream\n");
        var footer = "\nendstream\nendobj\n"u8.ToArray();
        _objects.Add((number, [.. header, .. encoded, .. footer]));
        return number;
    }

    /// <summary>Adds raw bytes as they are (hand-made objects, garbage).</summary>
    public void AddRaw(byte[] bytes, int? number = null) => _objects.Add((number ?? 0, bytes));

    public int NextNumber => _next;

    /// <summary>An object that will be packed into an object stream by <see cref="Build"/>.</summary>
    public int AddPacked(string body)
    {
        var number = _next++;
        _packed.Add((number, body));
        return number;
    }

    public byte[] Build()
    {
        if (_packed.Count > 0)
        {
            var header = new StringBuilder();
            var bodies = new StringBuilder();
            foreach (var (number, body) in _packed)
            {
                header.Append(CultureInfo.InvariantCulture, $"{number} {bodies.Length} ");
                bodies.Append(body).Append('\n');
            }

            var data = Encoding.Latin1.GetBytes(header.ToString() + bodies);
            AddStream($"/Type /ObjStm /N {_packed.Count} /First {Encoding.Latin1.GetByteCount(header.ToString())}", data, flate: true);
            _packed.Clear();
        }

        using var output = new MemoryStream();
        output.Write(Prefix);
        var start = output.Position;
        output.Write("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"u8.ToArray().Select(b => b).ToArray());
        var offsets = new SortedDictionary<int, long>();
        void Write(int number, byte[] bytes)
        {
            if (number > 0)
            {
                offsets[number] = output.Position - start;
            }

            output.Write(bytes);
        }

        Write(1, Encoding.Latin1.GetBytes($"1 0 obj\n<< /Type /Catalog /Pages 2 0 R {CatalogExtra} >>\nendobj\n"));
        Write(2, Encoding.Latin1.GetBytes("2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"));
        Write(3, Encoding.Latin1.GetBytes($"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] {PageExtra} >>\nendobj\n"));
        foreach (var (number, bytes) in _objects)
        {
            Write(number, bytes);
        }

        var xref = output.Position - start;
        var size = Math.Max(_next, offsets.Count == 0 ? 1 : offsets.Keys.Max() + 1);
        var table = new StringBuilder($"xref\n0 {size}\n0000000000 65535 f \n");
        for (var i = 1; i < size; i++)
        {
            table.Append(offsets.TryGetValue(i, out var o) ? $"{o:D10} 00000 n \n" : "0000000000 00000 f \n");
        }

        table.Append(CultureInfo.InvariantCulture, $"trailer\n<< /Size {size} /Root 1 0 R {TrailerExtra} >>\nstartxref\n{xref}\n%%EOF\n");
        output.Write(Encoding.Latin1.GetBytes(table.ToString()));
        return output.ToArray();
    }

    public static byte[] Zlib(byte[] data)
    {
        using var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            z.Write(data);
        }

        return output.ToArray();
    }
}

/// <summary>Encoders for the PDF filters the analyser decodes, to build layered streams.</summary>
internal static class PdfEncoders
{
    public static byte[] AsciiHex(byte[] data) => Encoding.ASCII.GetBytes(Convert.ToHexString(data) + ">");

    public static byte[] Ascii85(byte[] data)
    {
        var text = new StringBuilder();
        for (var i = 0; i < data.Length; i += 4)
        {
            var n = Math.Min(4, data.Length - i);
            uint value = 0;
            for (var k = 0; k < 4; k++)
            {
                value = (value << 8) | (k < n ? data[i + k] : (byte)0);
            }

            if (n == 4 && value == 0)
            {
                text.Append('z');
                continue;
            }

            var digits = new char[5];
            for (var k = 4; k >= 0; k--)
            {
                digits[k] = (char)('!' + value % 85);
                value /= 85;
            }

            text.Append(digits, 0, n + 1);
        }

        return Encoding.ASCII.GetBytes(text + "~>");
    }

    public static byte[] RunLength(byte[] data)
    {
        var output = new List<byte>();
        for (var i = 0; i < data.Length;)
        {
            var run = 1;
            while (i + run < data.Length && data[i + run] == data[i] && run < 128)
            {
                run++;
            }

            if (run > 1)
            {
                output.Add((byte)(257 - run));
                output.Add(data[i]);
                i += run;
                continue;
            }

            var literal = 1;
            while (i + literal < data.Length && literal < 128 && (i + literal + 1 >= data.Length || data[i + literal] != data[i + literal + 1]))
            {
                literal++;
            }

            output.Add((byte)(literal - 1));
            output.AddRange(data.AsSpan(i, literal).ToArray());
            i += literal;
        }

        output.Add(128);
        return [.. output];
    }

    /// <summary>LZW with early change, 9 to 12-bit codes, clear code when the table fills.</summary>
    public static byte[] Lzw(byte[] data)
    {
        var output = new List<byte>();
        var bitBuffer = 0L;
        var bitCount = 0;
        var width = 9;
        void Emit(int code)
        {
            bitBuffer = (bitBuffer << width) | (uint)code;
            bitCount += width;
            while (bitCount >= 8)
            {
                output.Add((byte)(bitBuffer >> (bitCount - 8)));
                bitCount -= 8;
            }
        }

        var table = new Dictionary<(int, byte), int>();
        var next = 258;
        Emit(256);
        var current = -1;
        foreach (var b in data)
        {
            if (current < 0)
            {
                current = b;
                continue;
            }

            if (table.TryGetValue((current, b), out var code))
            {
                current = code;
                continue;
            }

            Emit(current);
            table[(current, b)] = next++;
            if (next + 1 > (1 << width) && width < 12)
            {
                width++;
            }

            if (next >= 4094)
            {
                Emit(256);
                table.Clear();
                next = 258;
                width = 9;
            }

            current = b;
        }

        if (current >= 0)
        {
            Emit(current);
        }

        Emit(257);
        if (bitCount > 0)
        {
            output.Add((byte)(bitBuffer << (8 - bitCount)));
        }

        return [.. output];
    }
}
