using System.Collections.Concurrent;
using System.Text;

namespace Vigie.Dicom;

/// <summary>
/// The Specific Character Set (0008,0005) of a dataset: decodes and encodes the values of SH, LO, ST, LT, UC, UT and PN.
/// Supports the ISO 8859 family, JIS X 0201, TIS 620, UTF-8, GB18030 and GBK, and ISO 2022 code extensions with the
/// escape sequences of PS3.3 C.12.1.1.2 (JIS X 0208, KS X 1001, GB 2312 and the single-byte G1 sets). JIS X 0212 is
/// recognised but its characters decode to U+FFFD: .NET ships no table for it.
/// </summary>
public sealed class DicomCharacterSet
{
    private static readonly ConcurrentDictionary<string, DicomCharacterSet> Cache = new(StringComparer.Ordinal);
    private static readonly Encoding Latin1;
    private static readonly Encoding ShiftJis;
    private static readonly Encoding EucJp;
    private static readonly Encoding EucKr;
    private static readonly Encoding Gb2312;
    private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, false);

    private readonly Encoding? _encoding;
    private readonly G0 _initialG0;
    private readonly G1 _initialG1;

    static DicomCharacterSet()
    {
        Encoding.RegisterProvider(CodePagesEncodingProvider.Instance);
        Latin1 = Encoding.Latin1;
        ShiftJis = Encoding.GetEncoding(932);
        EucJp = Encoding.GetEncoding(20932);
        EucKr = Encoding.GetEncoding(51949);
        Gb2312 = Encoding.GetEncoding(936);
        Default = new DicomCharacterSet([]);
    }

    private DicomCharacterSet(string[] terms)
    {
        Terms = terms;
        var unknown = new List<string>();
        var normalised = terms.Select(Normalise).ToArray();
        IsIso2022 = normalised.Any(t => t.StartsWith("ISO 2022", StringComparison.Ordinal));
        if (!IsIso2022)
        {
            var first = normalised.Length > 0 ? normalised[0] : string.Empty;
            _encoding = SingleEncoding(first);
            if (_encoding is null)
            {
                unknown.Add(terms[0]);
                _encoding = Latin1;
            }

            for (var i = 1; i < normalised.Length; i++)
            {
                // Several values without code extensions is not allowed; only the first is used.
                if (SingleEncoding(normalised[i]) is null)
                {
                    unknown.Add(terms[i]);
                }
            }
        }
        else
        {
            foreach (var (term, raw) in normalised.Zip(terms))
            {
                if (term.Length > 0 && !Iso2022Terms.Contains(term))
                {
                    unknown.Add(raw);
                }
            }

            (_initialG0, _initialG1) = InitialDesignations(normalised.Length > 0 ? normalised[0] : string.Empty);
            // A G1 set named in a later value but never designated by an escape is the usual sloppiness of writers:
            // high bytes met with no G1 designated are decoded with it.
            FallbackG1 = normalised.Skip(1).Select(t => InitialDesignations(t).G1).FirstOrDefault(g => g.Kind != G1Kind.None);
        }

        UnknownTerms = unknown;
    }

    /// <summary>The default character repertoire (ISO IR 6); bytes above 0x7F are decoded as ISO 8859-1, as most readers do.</summary>
    public static DicomCharacterSet Default { get; }

    public IReadOnlyList<string> Terms { get; }

    /// <summary>Defined terms Vigie does not know; their values decode as ISO 8859-1.</summary>
    public IReadOnlyList<string> UnknownTerms { get; }

    public bool IsIso2022 { get; }

    /// <summary>True when values are UTF-8 (ISO_IR 192) and can be passed through as is.</summary>
    public bool IsUtf8 => _encoding is UTF8Encoding;

    private G1 FallbackG1 { get; }

    public static DicomCharacterSet FromTerms(IReadOnlyList<string> terms)
    {
        if (terms.Count == 0 || (terms.Count == 1 && terms[0].Trim().Length == 0))
        {
            return Default;
        }

        var key = string.Join('\\', terms);
        return Cache.Count > 1024
            ? new DicomCharacterSet([.. terms])
            : Cache.GetOrAdd(key, static (_, t) => new DicomCharacterSet([.. t]), terms);
    }

    public string Decode(ReadOnlySpan<byte> bytes, DicomVR vr)
    {
        if (bytes.IsEmpty)
        {
            return string.Empty;
        }

        if (_encoding is not null)
        {
            return _encoding.GetString(bytes);
        }

        return DecodeIso2022(bytes, vr);
    }

    /// <summary>Encodes with this character set. ISO 2022 sets encode the characters their single-byte G1 sets cover; others become '?'.</summary>
    public byte[] Encode(string text, DicomVR vr)
    {
        if (_encoding is not null)
        {
            return (_encoding == Latin1 && this == Default ? Encoding.ASCII : _encoding).GetBytes(text);
        }

        // ISO 2022: ASCII for G0, the initial G1 single-byte set for the rest. Multi-byte sets are for reading only;
        // Vigie writes new text as UTF-8 (ISO_IR 192).
        var g1 = _initialG1.Kind == G1Kind.SingleByte ? _initialG1.Encoding! : null;
        var result = new List<byte>(text.Length);
        Span<byte> one = stackalloc byte[4];
        foreach (var c in text)
        {
            if (c < 0x80)
            {
                result.Add((byte)c);
                continue;
            }

            if (g1 is not null && g1.GetBytes([c], one) == 1 && one[0] >= 0xA0)
            {
                result.Add(one[0]);
            }
            else
            {
                result.Add((byte)'?');
            }
        }

        return [.. result];
    }

    public override string ToString() => Terms.Count == 0 ? "ISO_IR 6" : string.Join('\\', Terms);

    private string DecodeIso2022(ReadOnlySpan<byte> bytes, DicomVR vr)
    {
        var builder = new StringBuilder(bytes.Length);
        var g0 = _initialG0;
        var g1 = _initialG1;
        Span<char> chars = stackalloc char[4];
        Span<byte> pair = stackalloc byte[3];
        var i = 0;
        while (i < bytes.Length)
        {
            var b = bytes[i];
            if (b == 0x1B)
            {
                var consumed = ReadEscape(bytes[i..], ref g0, ref g1);
                if (consumed == 0)
                {
                    builder.Append('\uFFFD');
                    i++;
                }
                else
                {
                    i += consumed;
                }

                continue;
            }

            if (b < 0x80)
            {
                if (g0 is G0.Jisx0208 or G0.Jisx0212 && b is >= 0x21 and <= 0x7E && i + 1 < bytes.Length && bytes[i + 1] is >= 0x21 and <= 0x7E)
                {
                    if (g0 == G0.Jisx0208)
                    {
                        pair[0] = (byte)(b | 0x80);
                        pair[1] = (byte)(bytes[i + 1] | 0x80);
                        var n = EucJp.GetChars(pair[..2], chars);
                        builder.Append(chars[..n]);
                    }
                    else
                    {
                        builder.Append('\uFFFD');
                    }

                    i += 2;
                    continue;
                }

                var c = (char)b;
                builder.Append(c);
                i++;
                if (IsResetPoint(c, vr))
                {
                    g0 = _initialG0;
                }

                continue;
            }

            var set = g1.Kind == G1Kind.None ? FallbackG1 : g1;
            switch (set.Kind)
            {
                case G1Kind.SingleByte:
                case G1Kind.JisKatakana:
                {
                    var n = set.Encoding!.GetChars(bytes.Slice(i, 1), chars);
                    builder.Append(chars[..n]);
                    i++;
                    break;
                }

                case G1Kind.DoubleByte:
                    if (i + 1 < bytes.Length && bytes[i + 1] >= 0xA1)
                    {
                        var n = set.Encoding!.GetChars(bytes.Slice(i, 2), chars);
                        builder.Append(chars[..n]);
                        i += 2;
                    }
                    else
                    {
                        builder.Append('\uFFFD');
                        i++;
                    }

                    break;
                case G1Kind.None:
                    builder.Append(Latin1.GetString(bytes.Slice(i, 1)));
                    i++;
                    break;
                default:
                    throw new InvalidOperationException($"Unexpected G1 kind {set.Kind}.");
            }
        }

        return builder.ToString();
    }

    /// <summary>Delimiters at which the character set of value 1 is active again (PS3.5 6.1.2.5.3).</summary>
    private static bool IsResetPoint(char c, DicomVR vr) => c switch
    {
        '\\' => true,
        '^' or '=' => vr == DicomVR.PN,
        '\r' or '\n' or '\t' or '\f' => true,
        _ => false,
    };

    private static int ReadEscape(ReadOnlySpan<byte> s, ref G0 g0, ref G1 g1)
    {
        if (s.Length >= 3 && s[1] == (byte)'(')
        {
            switch (s[2])
            {
                case (byte)'B':
                    g0 = G0.Ascii;
                    return 3;
                case (byte)'J':
                    g0 = G0.JisRoman;
                    return 3;
            }
        }

        if (s.Length >= 3 && s[1] == (byte)')' && s[2] == (byte)'I')
        {
            g1 = new G1(G1Kind.JisKatakana, ShiftJis);
            return 3;
        }

        if (s.Length >= 3 && s[1] == (byte)'$' && s[2] == (byte)'B')
        {
            g0 = G0.Jisx0208;
            return 3;
        }

        if (s.Length >= 4 && s[1] == (byte)'$' && s[2] == (byte)'(' && s[3] == (byte)'D')
        {
            g0 = G0.Jisx0212;
            return 4;
        }

        if (s.Length >= 4 && s[1] == (byte)'$' && s[2] == (byte)')')
        {
            switch (s[3])
            {
                case (byte)'C':
                    g1 = new G1(G1Kind.DoubleByte, EucKr);
                    return 4;
                case (byte)'A':
                    g1 = new G1(G1Kind.DoubleByte, Gb2312);
                    return 4;
            }
        }

        if (s.Length >= 3 && s[1] == (byte)'-')
        {
            var codePage = s[2] switch
            {
                (byte)'A' => 28591,
                (byte)'B' => 28592,
                (byte)'C' => 28593,
                (byte)'D' => 28594,
                (byte)'L' => 28595,
                (byte)'G' => 28596,
                (byte)'F' => 28597,
                (byte)'H' => 28598,
                (byte)'M' => 28599,
                (byte)'b' => 28605,
                (byte)'T' => 874,
                _ => 0,
            };
            if (codePage != 0)
            {
                g1 = new G1(G1Kind.SingleByte, Encoding.GetEncoding(codePage));
                return 3;
            }
        }

        return 0;
    }

    private static readonly HashSet<string> Iso2022Terms =
    [
        "ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 101", "ISO 2022 IR 109", "ISO 2022 IR 110", "ISO 2022 IR 144",
        "ISO 2022 IR 127", "ISO 2022 IR 126", "ISO 2022 IR 138", "ISO 2022 IR 148", "ISO 2022 IR 203", "ISO 2022 IR 13",
        "ISO 2022 IR 166", "ISO 2022 IR 87", "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58",
    ];

    private static (G0 G0, G1 G1) InitialDesignations(string term) => term switch
    {
        "" or "ISO 2022 IR 6" => (G0.Ascii, default),
        "ISO 2022 IR 13" => (G0.JisRoman, new G1(G1Kind.JisKatakana, ShiftJis)),
        "ISO 2022 IR 87" => (G0.Jisx0208, default),
        "ISO 2022 IR 159" => (G0.Jisx0212, default),
        "ISO 2022 IR 149" => (G0.Ascii, new G1(G1Kind.DoubleByte, EucKr)),
        "ISO 2022 IR 58" => (G0.Ascii, new G1(G1Kind.DoubleByte, Gb2312)),
        _ when term.StartsWith("ISO 2022 IR ", StringComparison.Ordinal)
               && SingleEncoding("ISO_IR " + term["ISO 2022 IR ".Length..]) is { } single => (G0.Ascii, new G1(G1Kind.SingleByte, single)),
        _ => (G0.Ascii, default),
    };

    private static Encoding? SingleEncoding(string term) => term switch
    {
        "" or "ISO_IR 6" => Latin1,
        "ISO_IR 100" => Latin1,
        "ISO_IR 101" => Encoding.GetEncoding(28592),
        "ISO_IR 109" => Encoding.GetEncoding(28593),
        "ISO_IR 110" => Encoding.GetEncoding(28594),
        "ISO_IR 144" => Encoding.GetEncoding(28595),
        "ISO_IR 127" => Encoding.GetEncoding(28596),
        "ISO_IR 126" => Encoding.GetEncoding(28597),
        "ISO_IR 138" => Encoding.GetEncoding(28598),
        "ISO_IR 148" => Encoding.GetEncoding(28599),
        "ISO_IR 203" => Encoding.GetEncoding(28605),
        "ISO_IR 13" => ShiftJis,
        "ISO_IR 166" => Encoding.GetEncoding(874),
        "ISO_IR 192" => StrictUtf8,
        "GB18030" => Encoding.GetEncoding(54936),
        "GBK" => Encoding.GetEncoding(936),
        _ => null,
    };

    /// <summary>Accepts the common misspellings ("ISO-IR 100", "ISO_IR100", "iso_ir 192") that real devices send.</summary>
    private static string Normalise(string term)
    {
        var t = term.Trim().ToUpperInvariant();
        if (t.StartsWith("ISO 2022", StringComparison.Ordinal) || t.StartsWith("ISO2022", StringComparison.Ordinal))
        {
            var number = new string(t.SkipWhile(c => !char.IsAsciiDigit(c)).Skip(4).SkipWhile(c => !char.IsAsciiDigit(c)).ToArray());
            return number.Length > 0 ? "ISO 2022 IR " + number : "ISO 2022 IR 6";
        }

        if (t.StartsWith("ISO", StringComparison.Ordinal) && t.Contains("IR", StringComparison.Ordinal))
        {
            var number = new string(t.SkipWhile(c => !char.IsAsciiDigit(c)).TakeWhile(char.IsAsciiDigit).ToArray());
            return number.Length > 0 ? "ISO_IR " + number : t;
        }

        return t;
    }

    private enum G0
    {
        Ascii,
        JisRoman,
        Jisx0208,
        Jisx0212,
    }

    private enum G1Kind
    {
        None,
        SingleByte,
        JisKatakana,
        DoubleByte,
    }

    private readonly record struct G1(G1Kind Kind, Encoding? Encoding);
}
