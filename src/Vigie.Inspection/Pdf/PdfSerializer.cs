using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Pdf;

/// <summary>Writes values in a canonical form: names without needless escapes, strings in hex, numbers invariant.</summary>
internal static class PdfSerializer
{
    public static void Write(StringBuilder output, PdfObject value, int depth = 0)
    {
        if (depth > PdfParser.MaxDepth)
        {
            output.Append("null");
            return;
        }

        switch (value)
        {
            case PdfBoolean b:
                output.Append(b.Value ? "true" : "false");
                break;
            case PdfNumber n:
                output.Append(n.IsInteger ? n.AsLong.ToString(CultureInfo.InvariantCulture) : n.Value.ToString("0.######", CultureInfo.InvariantCulture));
                break;
            case PdfString s:
                output.Append('<').Append(Convert.ToHexString(s.Bytes)).Append('>');
                break;
            case PdfName name:
                WriteName(output, name.Value);
                break;
            case PdfReference r:
                output.Append(CultureInfo.InvariantCulture, $"{r.Number} {r.Generation} R");
                break;
            case PdfArray array:
                output.Append('[');
                for (var i = 0; i < array.Items.Count; i++)
                {
                    if (i > 0)
                    {
                        output.Append(' ');
                    }

                    Write(output, array.Items[i], depth + 1);
                }

                output.Append(']');
                break;
            case PdfDictionary dictionary:
                output.Append("<<");
                foreach (var (key, item) in dictionary.Entries)
                {
                    output.Append(' ');
                    WriteName(output, key.Value);
                    output.Append(' ');
                    Write(output, item, depth + 1);
                }

                output.Append(" >>");
                break;
            default:
                // Null and stray keywords alike.
                output.Append("null");
                break;
        }
    }

    public static void WriteName(StringBuilder output, string name)
    {
        output.Append('/');
        foreach (var b in Encoding.Latin1.GetBytes(name))
        {
            if (b is > 0x20 and < 0x7F && b is not ((byte)'#' or (byte)'/' or (byte)'(' or (byte)')' or (byte)'<' or (byte)'>' or (byte)'[' or (byte)']' or (byte)'{' or (byte)'}' or (byte)'%'))
            {
                output.Append((char)b);
            }
            else
            {
                output.Append('#').Append(b.ToString("X2", CultureInfo.InvariantCulture));
            }
        }
    }
}
