using System.Buffers;
using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Pdf;

internal enum PdfTokenKind
{
    End,
    Number,
    Name,
    String,
    ArrayStart,
    ArrayEnd,
    DictionaryStart,
    DictionaryEnd,
    Keyword,
}

internal readonly record struct PdfToken(PdfTokenKind Kind, long Start, PdfObject? Value = null, string? Keyword = null)
{
    public bool IsKeyword(string keyword) => Kind == PdfTokenKind.Keyword && Keyword == keyword;

    public bool IsInteger => Kind == PdfTokenKind.Number && Value is PdfNumber { IsInteger: true };

    public long Integer => ((PdfNumber)Value!).AsLong;
}

/// <summary>
/// A tolerant, bounded PDF tokenizer over a window of the source: never reads a value whole beyond its limits
/// (strings, names and keywords are capped), skips garbage, and treats every byte sequence as something.
/// </summary>
internal sealed class PdfLexer : IDisposable
{
    public const int MaxStringBytes = 1024 * 1024;
    private const int MaxTokenLength = 256;
    private const int WindowSize = 64 * 1024;

    private static readonly SearchValues<byte> Whitespace = SearchValues.Create([0, 9, 10, 12, 13, 32]);
    private static readonly SearchValues<byte> WhitespaceOrDelimiter = SearchValues.Create([0, 9, 10, 12, 13, 32, (byte)'(', (byte)')', (byte)'<', (byte)'>', (byte)'[', (byte)']', (byte)'{', (byte)'}', (byte)'/', (byte)'%']);

    private readonly ContentSource _source;
    private readonly long _end;
    private byte[] _window;
    private long _windowStart;
    private int _windowLength;
    private readonly Stack<PdfToken> _pushback = new();

    public PdfLexer(ContentSource source, long start = 0)
    {
        _source = source;
        _end = source.Length;
        _window = ArrayPool<byte>.Shared.Rent(WindowSize);
        Position = start;
    }

    public long Position { get; private set; }

    /// <summary>Values kept in arrays and dictionaries so far; parsers stop keeping them past <see cref="MaxValuesKept"/>.</summary>
    public long ValuesKept { get; set; }

    public long MaxValuesKept { get; init; } = 1_000_000;

    /// <summary>String bytes kept so far; past <see cref="MaxStringBytesKept"/> strings are read but not kept.</summary>
    public long StringBytesKept { get; private set; }

    public long MaxStringBytesKept { get; init; } = 32L * 1024 * 1024;

    public bool BudgetExceeded => ValuesKept > MaxValuesKept || StringBytesKept > MaxStringBytesKept;

    public bool TryKeepValue() => ++ValuesKept <= MaxValuesKept;

    public long Length => _end;

    /// <summary>Raw bytes at <paramref name="offset"/>, without moving the tokenizer.</summary>
    public int ReadAt(long offset, Span<byte> destination) =>
        offset < 0 || offset >= _end ? 0 : _source.ReadAt(offset, destination[..(int)Math.Min(destination.Length, _end - offset)]);

    public void Seek(long position)
    {
        _pushback.Clear();
        Position = Math.Clamp(position, 0, _end);
    }

    public void PushBack(PdfToken token)
    {
        _pushback.Push(token);
    }

    private bool Fill()
    {
        if (Position >= _windowStart && Position < _windowStart + _windowLength)
        {
            return true;
        }

        if (Position >= _end)
        {
            return false;
        }

        _windowStart = Position;
        _windowLength = _source.ReadAt(Position, _window.AsSpan(0, (int)Math.Min(_window.Length, _end - Position)));
        return _windowLength > 0;
    }

    private ReadOnlySpan<byte> Available => Fill() ? _window.AsSpan((int)(Position - _windowStart), _windowLength - (int)(Position - _windowStart)) : default;

    public int Peek() => Fill() ? _window[Position - _windowStart] : -1;

    public int Read()
    {
        if (!Fill())
        {
            return -1;
        }

        var b = _window[Position - _windowStart];
        Position++;
        return b;
    }

    public void SkipWhitespaceAndComments()
    {
        while (true)
        {
            var span = Available;
            if (span.IsEmpty)
            {
                return;
            }

            var i = span.IndexOfAnyExcept(Whitespace);
            if (i < 0)
            {
                Position += span.Length;
                continue;
            }

            Position += i;
            if (span[i] != (byte)'%')
            {
                return;
            }

            SkipLine();
        }
    }

    private void SkipLine()
    {
        while (true)
        {
            var span = Available;
            if (span.IsEmpty)
            {
                return;
            }

            var i = span.IndexOfAny((byte)'\r', (byte)'\n');
            if (i >= 0)
            {
                Position += i + 1;
                return;
            }

            Position += span.Length;
        }
    }

    /// <summary>Finds <paramref name="pattern"/> at or after <paramref name="from"/> and before <paramref name="limit"/>; -1 when absent.</summary>
    public long IndexOf(ReadOnlySpan<byte> pattern, long from, long limit)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(WindowSize);
        try
        {
            limit = Math.Min(limit, _end);
            for (var offset = from; offset < limit; offset += WindowSize - pattern.Length)
            {
                var read = _source.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(WindowSize, limit - offset)));
                var hit = buffer.AsSpan(0, read).IndexOf(pattern);
                if (hit >= 0)
                {
                    return offset + hit;
                }

                if (read < WindowSize)
                {
                    break;
                }
            }

            return -1;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public PdfToken Next()
    {
        if (_pushback.Count > 0)
        {
            return _pushback.Pop();
        }

        SkipWhitespaceAndComments();
        var start = Position;
        var c = Read();
        switch (c)
        {
            case -1:
                return new PdfToken(PdfTokenKind.End, start);
            case '[':
                return new PdfToken(PdfTokenKind.ArrayStart, start);
            case ']':
                return new PdfToken(PdfTokenKind.ArrayEnd, start);
            case '{' or '}':
                return new PdfToken(PdfTokenKind.Keyword, start, Keyword: ((char)c).ToString());
            case '/':
                return new PdfToken(PdfTokenKind.Name, start, ReadName());
            case '(':
                return new PdfToken(PdfTokenKind.String, start, ReadLiteralString());
            case '<':
                if (Peek() == '<')
                {
                    Read();
                    return new PdfToken(PdfTokenKind.DictionaryStart, start);
                }

                return new PdfToken(PdfTokenKind.String, start, ReadHexString());
            case '>':
                if (Peek() == '>')
                {
                    Read();
                    return new PdfToken(PdfTokenKind.DictionaryEnd, start);
                }

                return new PdfToken(PdfTokenKind.Keyword, start, Keyword: ">");
            case ')':
                return new PdfToken(PdfTokenKind.Keyword, start, Keyword: ")");
            default:
                Position = start;
                return ReadRegular(start);
        }
    }

    private PdfToken ReadRegular(long start)
    {
        Span<byte> token = stackalloc byte[MaxTokenLength];
        var length = 0;
        while (true)
        {
            var span = Available;
            if (span.IsEmpty)
            {
                break;
            }

            var stop = span.IndexOfAny(WhitespaceOrDelimiter);
            var take = stop < 0 ? span.Length : stop;
            var copy = Math.Min(take, MaxTokenLength - length);
            span[..copy].CopyTo(token[length..]);
            length += copy;
            Position += take;
            if (stop >= 0)
            {
                break;
            }
        }

        if (length == 0)
        {
            // A lone delimiter we do not handle: consume it so the scan always advances.
            Position = start + 1;
            return new PdfToken(PdfTokenKind.Keyword, start, Keyword: "?");
        }

        var text = token[..length];
        if (TryParseNumber(text, out var number))
        {
            return new PdfToken(PdfTokenKind.Number, start, number);
        }

        return new PdfToken(PdfTokenKind.Keyword, start, Keyword: Encoding.Latin1.GetString(text));
    }

    private static bool TryParseNumber(ReadOnlySpan<byte> text, out PdfNumber number)
    {
        number = null!;
        var digits = 0;
        var dots = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var b = text[i];
            if (b is >= (byte)'0' and <= (byte)'9')
            {
                digits++;
            }
            else if (b == '.')
            {
                dots++;
            }
            else if (!((b == '-' || b == '+') && i == 0))
            {
                return false;
            }
        }

        if (digits == 0 || dots > 1)
        {
            return false;
        }

        if (dots == 0 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            number = new PdfNumber(integer, true);
            return true;
        }

        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var real))
        {
            number = new PdfNumber(real, dots == 0);
            return true;
        }

        return false;
    }

    private PdfName ReadName()
    {
        Span<byte> raw = stackalloc byte[MaxTokenLength];
        var length = 0;
        while (true)
        {
            var c = Peek();
            if (c < 0 || WhitespaceOrDelimiter.Contains((byte)c))
            {
                break;
            }

            Position++;
            if (length < MaxTokenLength)
            {
                raw[length++] = (byte)c;
            }
        }

        return DecodeName(raw[..length]);
    }

    public static PdfName DecodeName(ReadOnlySpan<byte> raw)
    {
        if (raw.IndexOf((byte)'#') < 0)
        {
            var plain = Encoding.Latin1.GetString(raw);
            return new PdfName(plain);
        }

        var decoded = new byte[raw.Length];
        var length = 0;
        var needless = false;
        for (var i = 0; i < raw.Length; i++)
        {
            if (raw[i] == '#' && i + 2 < raw.Length && IsHex(raw[i + 1]) && IsHex(raw[i + 2]))
            {
                var value = (byte)((HexValue(raw[i + 1]) << 4) | HexValue(raw[i + 2]));
                needless |= value is >= (byte)'A' and <= (byte)'Z' or >= (byte)'a' and <= (byte)'z' or >= (byte)'0' and <= (byte)'9';
                decoded[length++] = value;
                i += 2;
            }
            else
            {
                decoded[length++] = raw[i];
            }
        }

        return new PdfName(Encoding.Latin1.GetString(decoded, 0, length), escaped: true, needlesslyEscaped: needless, raw: Encoding.Latin1.GetString(raw));
    }

    private PdfString ReadLiteralString()
    {
        var bytes = new ArrayBufferWriter<byte>(64);
        var depth = 1;
        var kept = 0;
        while (true)
        {
            var c = Read();
            if (c < 0)
            {
                break;
            }

            if (c == '\\')
            {
                var e = Read();
                switch (e)
                {
                    case -1:
                        break;
                    case 'n': Append('\n'); break;
                    case 'r': Append('\r'); break;
                    case 't': Append('\t'); break;
                    case 'b': Append('\b'); break;
                    case 'f': Append('\f'); break;
                    case '\r':
                        if (Peek() == '\n')
                        {
                            Read();
                        }

                        break;
                    case '\n':
                        break;
                    case >= '0' and <= '7':
                        var value = e - '0';
                        for (var k = 0; k < 2 && Peek() is >= '0' and <= '7'; k++)
                        {
                            value = value * 8 + (Read() - '0');
                        }

                        Append(value & 0xFF);
                        break;
                    default:
                        Append(e);
                        break;
                }

                continue;
            }

            if (c == '(')
            {
                depth++;
            }
            else if (c == ')' && --depth == 0)
            {
                break;
            }

            Append(c);
        }

        StringBytesKept += bytes.WrittenCount;
        return new PdfString(StringBytesKept > MaxStringBytesKept ? [] : bytes.WrittenSpan.ToArray(), hex: false);

        void Append(int b)
        {
            if (kept++ < MaxStringBytes)
            {
                bytes.GetSpan(1)[0] = (byte)b;
                bytes.Advance(1);
            }
        }
    }

    private PdfString ReadHexString()
    {
        var bytes = new ArrayBufferWriter<byte>(32);
        var high = -1;
        var kept = 0;
        while (true)
        {
            var c = Read();
            if (c is -1 or '>')
            {
                break;
            }

            if (!IsHex((byte)c))
            {
                continue;
            }

            if (high < 0)
            {
                high = HexValue((byte)c);
            }
            else
            {
                if (kept++ < MaxStringBytes)
                {
                    bytes.GetSpan(1)[0] = (byte)((high << 4) | HexValue((byte)c));
                    bytes.Advance(1);
                }

                high = -1;
            }
        }

        if (high >= 0 && kept < MaxStringBytes)
        {
            bytes.GetSpan(1)[0] = (byte)(high << 4);
            bytes.Advance(1);
        }

        StringBytesKept += bytes.WrittenCount;
        return new PdfString(StringBytesKept > MaxStringBytesKept ? [] : bytes.WrittenSpan.ToArray(), hex: true);
    }

    public static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';

    public static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    public void Dispose()
    {
        var window = Interlocked.Exchange(ref _window, []);
        if (window.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(window);
        }
    }
}
