using System.Text;
using System.Text.RegularExpressions;
using System.Xml;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Pdf;

/// <summary>
/// Whether an XFA form carries scripts: a <c>script</c> element of the XFA template namespace, whatever its prefix
/// (<c>&lt;t:script&gt;</c> was only Medium until 2026-12-07), read from the form's packets joined as a reader joins them.
/// </summary>
internal static partial class XfaForm
{
    /// <summary>Bytes of each packet searched raw, for a form that is not well-formed XML.</summary>
    private const int RawWindow = 4 * 1024 * 1024;

    public static bool HasScript(IReadOnlyList<ContentSource> parts, CancellationToken cancellationToken)
    {
        var heads = new List<byte[]>(parts.Count);
        foreach (var part in parts)
        {
            var head = new byte[(int)Math.Min(part.Length, RawWindow)];
            head = head[..part.ReadAt(0, head)];
            // An unprefixed <script> in any namespace (or none), as before.
            if (AsciiSearch.ContainsIgnoreCase(head, "<script"))
            {
                return true;
            }

            heads.Add(head);
        }

        try
        {
            using var reader = XmlReader.Create(new Joined(parts), UntrustedXml.Fragment);
            for (var nodes = 0L; reader.Read(); nodes++)
            {
                if ((nodes & 0xFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }

                if (reader.NodeType == XmlNodeType.Element && reader.LocalName == "script" && IsTemplateNamespace(reader.NamespaceURI))
                {
                    return true;
                }
            }

            return false;
        }
        catch (XmlException)
        {
            // Not well-formed (an undeclared prefix, a packet cut): a prefixed script element in the bytes counts as one.
            return heads.Any(head => PrefixedScript().IsMatch(Encoding.Latin1.GetString(head)));
        }
    }

    private static bool IsTemplateNamespace(string uri) => TemplateNamespace().IsMatch(uri);

    [GeneratedRegex(@"^https?://www\.xfa\.(org|com)/schema/xfa-template", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex TemplateNamespace();

    [GeneratedRegex(@"<[A-Za-z_][\w.\-]*:script[\s/>]", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.NonBacktracking)]
    private static partial Regex PrefixedScript();

    /// <summary>The packets one after the other, as one stream.</summary>
    private sealed class Joined(IReadOnlyList<ContentSource> parts) : Vigie.Dicom.IO.ForwardOnlyStream
    {
        private int _part;
        private long _position;

        public override int Read(Span<byte> buffer)
        {
            while (_part < parts.Count && !buffer.IsEmpty)
            {
                var read = parts[_part].ReadAt(_position, buffer);
                if (read > 0)
                {
                    _position += read;
                    return read;
                }

                _part++;
                _position = 0;
            }

            return 0;
        }
    }
}
