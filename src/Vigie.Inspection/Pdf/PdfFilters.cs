using System.IO.Compression;

namespace Vigie.Inspection.Pdf;

/// <summary>The decoding chain of one stream, as streaming decoders (nothing decoded whole).</summary>
internal sealed class PdfDecodeChain
{
    public required Stream Stream { get; init; }

    public required IReadOnlyList<string> Filters { get; init; }

    /// <summary>The first filter not decoded (images, Crypt...): the data is left encoded from there.</summary>
    public string? StoppedAt { get; init; }

    public List<TolerantStream> Tolerant { get; } = [];

    /// <summary>Why decoding ended early, if it did.</summary>
    public string? Error => Tolerant.Select(t => t.Error).FirstOrDefault(e => e is not null);
}

internal static class PdfFilters
{
    /// <summary>The crypt filter: decryption happens before the chain (<see cref="PdfEncryption"/>), so it passes bytes on.</summary>
    public const string Crypt = "Crypt";

    private static readonly Dictionary<string, string> Abbreviations = new(StringComparer.Ordinal)
    {
        ["Fl"] = "FlateDecode",
        ["AHx"] = "ASCIIHexDecode",
        ["A85"] = "ASCII85Decode",
        ["LZW"] = "LZWDecode",
        ["RL"] = "RunLengthDecode",
        ["DCT"] = "DCTDecode",
        ["CCF"] = "CCITTFaxDecode",
    };

    public static IReadOnlyList<string> FilterNames(PdfDictionary dictionary, PdfDocument? document)
    {
        var filter = document?.Resolve(dictionary.Get("Filter")) ?? dictionary.Get("Filter");
        var names = new List<string>();
        switch (filter)
        {
            case PdfName name:
                names.Add(Normalise(name.Value));
                break;
            case PdfArray array:
                foreach (var item in array.Items.Take(32))
                {
                    if ((document?.Resolve(item) ?? item) is PdfName n)
                    {
                        names.Add(Normalise(n.Value));
                    }
                }

                break;
            default:
                break;
        }

        return names;
    }

    private static string Normalise(string name) => Abbreviations.GetValueOrDefault(name, name);

    public static PdfDecodeChain Create(Stream raw, PdfDictionary dictionary, PdfDocument? document)
    {
        var filters = FilterNames(dictionary, document);
        var parms = document?.Resolve(dictionary.Get("DecodeParms")) ?? dictionary.Get("DecodeParms") ?? dictionary.Get("DP");
        var chain = new List<TolerantStream>();
        var stream = raw;
        string? stoppedAt = null;
        for (var i = 0; i < filters.Count; i++)
        {
            var parameters = parms switch
            {
                PdfDictionary d => i == 0 ? d : null,
                PdfArray a when i < a.Items.Count => (document?.Resolve(a.Items[i]) ?? a.Items[i]) as PdfDictionary,
                _ => null,
            };
            if (filters[i] == Crypt && i == 0)
            {
                continue;
            }

            Stream? decoded = filters[i] switch
            {
                "FlateDecode" => new ZlibOrDeflateStream(stream),
                "ASCIIHexDecode" => new AsciiHexStream(stream),
                "ASCII85Decode" => new Ascii85Stream(stream),
                "LZWDecode" => new LzwStream(stream, EarlyChange(parameters)),
                "RunLengthDecode" => new RunLengthStream(stream),
                _ => null,
            };
            if (decoded is null)
            {
                stoppedAt = filters[i];
                break;
            }

            var tolerant = new TolerantStream(decoded);
            chain.Add(tolerant);
            stream = tolerant;
            if (filters[i] is "FlateDecode" or "LZWDecode" && parameters is not null && Predictor(parameters) is var (predictor, colors, bits, columns) && predictor > 1)
            {
                stream = predictor >= 10
                    ? new PngPredictorStream(stream, colors, bits, columns)
                    : predictor == 2 && bits == 8 ? new TiffPredictorStream(stream, colors, columns) : stream;
            }
        }

        var result = new PdfDecodeChain { Stream = stream, Filters = filters, StoppedAt = stoppedAt };
        result.Tolerant.AddRange(chain);
        return result;
    }

    private static int EarlyChange(PdfDictionary? parameters) => parameters?.Get("EarlyChange") is PdfNumber n ? (int)n.AsLong : 1;

    private static (int Predictor, int Colors, int Bits, int Columns) Predictor(PdfDictionary parameters)
    {
        static int Get(PdfDictionary d, string key, int fallback, int max) =>
            d.Get(key) is PdfNumber n ? (int)Math.Clamp(n.AsLong, 1, max) : fallback;
        return (Get(parameters, "Predictor", 1, 15), Get(parameters, "Colors", 1, 32), Get(parameters, "BitsPerComponent", 8, 16), Get(parameters, "Columns", 1, 1 << 20));
    }
}

/// <summary>Read-only forward decoding stream; subclasses produce bytes into the caller's buffer.</summary>
internal abstract class DecodingStream(Stream inner) : Vigie.Dicom.IO.ForwardOnlyStream
{
    private readonly byte[] _input = new byte[16 * 1024];
    private int _inputPosition;
    private int _inputLength;
    private bool _innerEnded;

    protected Stream Inner => inner;

    /// <summary>The next input byte, or -1 at the end.</summary>
    protected int NextByte()
    {
        if (_inputPosition >= _inputLength)
        {
            if (_innerEnded)
            {
                return -1;
            }

            _inputLength = inner.Read(_input, 0, _input.Length);
            _inputPosition = 0;
            if (_inputLength <= 0)
            {
                _innerEnded = true;
                _inputLength = 0;
                return -1;
            }
        }

        return _input[_inputPosition++];
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(buffer.Span));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>Turns a decoder's complaint into the end of data, keeping what was decoded and the reason.</summary>
internal sealed class TolerantStream(Stream inner) : DecodingStream(inner)
{
    public string? Error { get; private set; }

    public override int Read(Span<byte> buffer)
    {
        if (Error is not null)
        {
            return 0;
        }

        try
        {
            return Inner.Read(buffer);
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or NotSupportedException or IndexOutOfRangeException or ArgumentException)
        {
            Error = ex.Message;
            return 0;
        }
    }
}

/// <summary>FlateDecode: zlib data, or raw deflate when a producer forgot the zlib header.</summary>
internal sealed class ZlibOrDeflateStream(Stream inner) : DecodingStream(inner)
{
    private Stream? _decoder;

    public override int Read(Span<byte> buffer)
    {
        if (_decoder is null)
        {
            var first = NextByte();
            var second = NextByte();
            var prefix = new List<byte>(2);
            if (first >= 0)
            {
                prefix.Add((byte)first);
            }

            if (second >= 0)
            {
                prefix.Add((byte)second);
            }

            var isZlib = first >= 0 && second >= 0 && (first & 0x0F) == 8 && ((first << 8) | second) % 31 == 0;
            var rest = new PrefixedStream(isZlib ? [] : [.. prefix], this);
            // The zlib header is consumed above; its Adler-32 trailer is ignored, as readers do.
            _decoder = new DeflateStream(rest, CompressionMode.Decompress);
        }

        return _decoder.Read(buffer);
    }

    internal int ReadRaw(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            var b = NextByte();
            if (b < 0)
            {
                break;
            }

            buffer[count++] = (byte)b;
        }

        return count;
    }

    private sealed class PrefixedStream(byte[] prefix, ZlibOrDeflateStream owner) : DecodingStream(Null)
    {
        private int _prefixPosition;

        public override int Read(Span<byte> buffer)
        {
            if (_prefixPosition < prefix.Length)
            {
                var n = Math.Min(buffer.Length, prefix.Length - _prefixPosition);
                prefix.AsSpan(_prefixPosition, n).CopyTo(buffer);
                _prefixPosition += n;
                return n;
            }

            return owner.ReadRaw(buffer);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _decoder?.Dispose();
        }

        base.Dispose(disposing);
    }
}

internal sealed class AsciiHexStream(Stream inner) : DecodingStream(inner)
{
    private bool _ended;

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        var high = -1;
        while (count < buffer.Length && !_ended)
        {
            var c = NextByte();
            if (c is -1 or '>')
            {
                _ended = true;
                if (high >= 0)
                {
                    buffer[count++] = (byte)(high << 4);
                }

                break;
            }

            if (!PdfLexer.IsHex((byte)c))
            {
                continue;
            }

            if (high < 0)
            {
                high = PdfLexer.HexValue((byte)c);
            }
            else
            {
                buffer[count++] = (byte)((high << 4) | PdfLexer.HexValue((byte)c));
                high = -1;
            }
        }

        return count;
    }
}

internal sealed class Ascii85Stream(Stream inner) : DecodingStream(inner)
{
    private readonly byte[] _pending = new byte[4];
    private int _pendingPosition;
    private int _pendingLength;
    private bool _ended;

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            if (_pendingPosition < _pendingLength)
            {
                buffer[count++] = _pending[_pendingPosition++];
                continue;
            }

            if (_ended || !DecodeGroup())
            {
                break;
            }
        }

        return count;
    }

    private bool DecodeGroup()
    {
        Span<int> digits = stackalloc int[5];
        var n = 0;
        while (n < 5)
        {
            var c = NextByte();
            if (c is -1 or '~')
            {
                _ended = true;
                break;
            }

            if (c == 'z' && n == 0)
            {
                _pending.AsSpan().Clear();
                _pendingPosition = 0;
                _pendingLength = 4;
                return true;
            }

            if (c is >= '!' and <= 'u')
            {
                digits[n++] = c - '!';
            }
        }

        if (n == 0)
        {
            return false;
        }

        var produced = n == 5 ? 4 : n - 1;
        for (var i = n; i < 5; i++)
        {
            digits[i] = 84;
        }

        uint value = 0;
        for (var i = 0; i < 5; i++)
        {
            value = unchecked(value * 85 + (uint)digits[i]);
        }

        _pending[0] = (byte)(value >> 24);
        _pending[1] = (byte)(value >> 16);
        _pending[2] = (byte)(value >> 8);
        _pending[3] = (byte)value;
        _pendingPosition = 0;
        _pendingLength = Math.Max(0, produced);
        return produced > 0;
    }
}

internal sealed class RunLengthStream(Stream inner) : DecodingStream(inner)
{
    private int _copy;
    private int _repeat;
    private byte _repeated;
    private bool _ended;

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            if (_copy > 0)
            {
                var b = NextByte();
                if (b < 0)
                {
                    _ended = true;
                    break;
                }

                buffer[count++] = (byte)b;
                _copy--;
                continue;
            }

            if (_repeat > 0)
            {
                buffer[count++] = _repeated;
                _repeat--;
                continue;
            }

            if (_ended)
            {
                break;
            }

            var length = NextByte();
            if (length is < 0 or 128)
            {
                _ended = true;
                break;
            }

            if (length < 128)
            {
                _copy = length + 1;
            }
            else
            {
                var value = NextByte();
                if (value < 0)
                {
                    _ended = true;
                    break;
                }

                _repeated = (byte)value;
                _repeat = 257 - length;
            }
        }

        return count;
    }
}

/// <summary>LZWDecode (9 to 12-bit codes, most significant bit first, clear 256, end 257).</summary>
internal sealed class LzwStream : DecodingStream
{
    private const int MaxCodes = 4096;
    private readonly int _earlyChange;
    private readonly short[] _prefix = new short[MaxCodes];
    private readonly byte[] _suffix = new byte[MaxCodes];
    private readonly byte[] _first = new byte[MaxCodes];
    private readonly byte[] _stack = new byte[MaxCodes + 1];
    private int _stackLength;
    private int _next = 258;
    private int _width = 9;
    private int _previous = -1;
    private int _bitBuffer;
    private int _bitCount;
    private bool _ended;

    public LzwStream(Stream inner, int earlyChange) : base(inner)
    {
        _earlyChange = earlyChange == 0 ? 0 : 1;
        for (var i = 0; i < 256; i++)
        {
            _prefix[i] = -1;
            _suffix[i] = (byte)i;
            _first[i] = (byte)i;
        }
    }

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            if (_stackLength > 0)
            {
                buffer[count++] = _stack[--_stackLength];
                continue;
            }

            if (_ended || !DecodeCode())
            {
                break;
            }
        }

        return count;
    }

    private int ReadCode()
    {
        while (_bitCount < _width)
        {
            var b = NextByte();
            if (b < 0)
            {
                return -1;
            }

            _bitBuffer = (_bitBuffer << 8) | b;
            _bitCount += 8;
        }

        var code = (_bitBuffer >> (_bitCount - _width)) & ((1 << _width) - 1);
        _bitCount -= _width;
        return code;
    }

    private bool DecodeCode()
    {
        var code = ReadCode();
        if (code is < 0 or 257)
        {
            _ended = true;
            return false;
        }

        if (code == 256)
        {
            _next = 258;
            _width = 9;
            _previous = -1;
            return true;
        }

        int entry;
        if (_previous < 0)
        {
            if (code > 255)
            {
                _ended = true;
                return false;
            }

            entry = code;
        }
        else if (code < _next)
        {
            entry = code;
            AddEntry(_previous, _first[code]);
        }
        else if (code == _next)
        {
            AddEntry(_previous, _first[_previous]);
            entry = code;
        }
        else
        {
            _ended = true;
            return false;
        }

        for (var c = entry; c >= 0 && _stackLength < _stack.Length; c = _prefix[c])
        {
            _stack[_stackLength++] = _suffix[c];
        }

        _previous = code;
        return true;
    }

    private void AddEntry(int prefix, byte suffix)
    {
        if (_next >= MaxCodes)
        {
            return;
        }

        _prefix[_next] = (short)prefix;
        _suffix[_next] = suffix;
        _first[_next] = _first[prefix];
        _next++;
        if (_next + _earlyChange >= (1 << _width) && _width < 12)
        {
            _width++;
        }
    }
}

/// <summary>PNG row predictors (Predictor 10 to 15) for Flate and LZW data.</summary>
internal sealed class PngPredictorStream : DecodingStream
{
    private readonly int _bytesPerPixel;
    private readonly byte[] _previous;
    private readonly byte[] _current;
    private int _position;
    private bool _ended;

    public PngPredictorStream(Stream inner, int colors, int bits, int columns) : base(inner)
    {
        var rowLength = (int)Math.Min(1 << 24, ((long)colors * bits * columns + 7) / 8);
        _bytesPerPixel = Math.Max(1, colors * bits / 8);
        _previous = new byte[rowLength];
        _current = new byte[rowLength];
        _position = rowLength;
    }

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            if (_position < _current.Length)
            {
                var n = Math.Min(buffer.Length - count, _current.Length - _position);
                _current.AsSpan(_position, n).CopyTo(buffer[count..]);
                _position += n;
                count += n;
                continue;
            }

            if (_ended || !NextRow())
            {
                break;
            }
        }

        return count;
    }

    private bool NextRow()
    {
        var type = NextByte();
        if (type < 0)
        {
            _ended = true;
            return false;
        }

        _current.CopyTo(_previous, 0);
        for (var i = 0; i < _current.Length; i++)
        {
            var b = NextByte();
            if (b < 0)
            {
                _ended = true;
                Array.Clear(_current, i, _current.Length - i);
                break;
            }

            var left = i >= _bytesPerPixel ? _current[i - _bytesPerPixel] : 0;
            var up = _previous[i];
            var upLeft = i >= _bytesPerPixel ? _previous[i - _bytesPerPixel] : 0;
            _current[i] = type switch
            {
                1 => (byte)(b + left),
                2 => (byte)(b + up),
                3 => (byte)(b + ((left + up) >> 1)),
                4 => (byte)(b + Paeth(left, up, upLeft)),
                _ => (byte)b,
            };
        }

        _position = 0;
        return true;
    }

    private static int Paeth(int a, int b, int c)
    {
        var p = a + b - c;
        var pa = Math.Abs(p - a);
        var pb = Math.Abs(p - b);
        var pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}

/// <summary>TIFF predictor 2 for 8-bit samples.</summary>
internal sealed class TiffPredictorStream(Stream inner, int colors, int columns) : DecodingStream(inner)
{
    private readonly byte[] _row = new byte[(int)Math.Min(1 << 24, (long)colors * columns)];
    private int _rowLength;
    private int _position;
    private bool _ended;

    public override int Read(Span<byte> buffer)
    {
        var count = 0;
        while (count < buffer.Length)
        {
            if (_position < _rowLength)
            {
                var n = Math.Min(buffer.Length - count, _rowLength - _position);
                _row.AsSpan(_position, n).CopyTo(buffer[count..]);
                _position += n;
                count += n;
                continue;
            }

            if (_ended)
            {
                break;
            }

            _rowLength = 0;
            for (var i = 0; i < _row.Length; i++)
            {
                var b = NextByte();
                if (b < 0)
                {
                    _ended = true;
                    break;
                }

                _row[i] = (byte)(i >= colors ? b + _row[i - colors] : b);
                _rowLength++;
            }

            _position = 0;
            if (_rowLength == 0)
            {
                break;
            }
        }

        return count;
    }
}
