using System.Buffers;
using System.Buffers.Text;

namespace Vigie.Inspection.Hl7;

/// <summary>
/// Base64 decoded as receivers decode it (HAPI's commons-codec, MimeKit's decoder for CDA and mail parts): whitespace
/// and characters outside the alphabet skipped, the URL-safe alphabet (<c>-</c> <c>_</c>) read too, padding closing a
/// quantum. A strict decoder drops what they open: a value wrapped at 76 columns, URL-safe, or with one stray character.
/// </summary>
internal static class LenientBase64
{
    /// <summary>The decoded length is at most this for <paramref name="textLength"/> characters.</summary>
    public static int MaxDecodedLength(int textLength) => textLength / 4 * 3 + 2;

    /// <summary>Decodes <paramref name="text"/>; <paramref name="skipped"/> counts what was neither alphabet, padding nor whitespace.</summary>
    public static int Decode(ReadOnlySpan<byte> text, Span<byte> output, out int skipped)
    {
        // Vectorised for the usual value (whitespace is allowed there); byte by byte only for the others.
        if (Base64.DecodeFromUtf8(text, output, out _, out var written) == OperationStatus.Done)
        {
            skipped = 0;
            return written;
        }

        skipped = 0;
        written = 0;
        var bits = 0;
        var count = 0;
        foreach (var b in text)
        {
            var value = Values[b];
            if (value < 0)
            {
                if (b == (byte)'=')
                {
                    written = Flush(output, written, bits, count);
                    bits = 0;
                    count = 0;
                }
                else if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0x0C))
                {
                    skipped++;
                }

                continue;
            }

            bits = bits << 6 | value;
            if (++count == 4)
            {
                output[written++] = (byte)(bits >> 16);
                output[written++] = (byte)(bits >> 8);
                output[written++] = (byte)bits;
                bits = 0;
                count = 0;
            }
        }

        return Flush(output, written, bits, count);
    }

    /// <summary>The bytes of a quantum cut short (2 or 3 characters), as decoders that accept a missing padding give them.</summary>
    private static int Flush(Span<byte> output, int written, int bits, int count)
    {
        if (count == 2)
        {
            output[written++] = (byte)(bits >> 4);
        }
        else if (count == 3)
        {
            output[written++] = (byte)(bits >> 10);
            output[written++] = (byte)(bits >> 2);
        }

        return written;
    }

    private static readonly int[] Values = BuildValues();

    private static int[] BuildValues()
    {
        var values = new int[256];
        Array.Fill(values, -1);
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (var i = 0; i < alphabet.Length; i++)
        {
            values[alphabet[i]] = i;
        }

        values['-'] = 62;
        values['_'] = 63;
        return values;
    }
}
