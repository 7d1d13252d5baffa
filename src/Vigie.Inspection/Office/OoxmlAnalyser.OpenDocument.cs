using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Xml;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// OpenDocument, zipped or flat: Basic libraries, event listeners and links bound to scripts, DDE (the <c>DDE()</c>
/// function, DDE links and fields), content loaded from outside the document and hyperlinks to programs; data written
/// inline (<c>office:binary-data</c>: pictures, OLE objects) is decoded and inspected as a child. Until 2026-12-07 only
/// the names of a package's Basic/ and Scripts/ entries were looked at.
/// </summary>
internal sealed partial class OoxmlAnalyser
{
    private const string XlinkNamespace = "http://www.w3.org/1999/xlink";

    /// <summary>Elements whose link waits for a click, graded as OOXML hyperlinks; any other linked element loads its target.</summary>
    private static readonly HashSet<string> OdfClickedLinks = new(StringComparer.Ordinal)
    {
        "a", "area-rectangle", "area-circle", "area-polygon", "form", "button", "event-listener",
    };

    /// <summary>URL schemes LibreOffice runs as macros or scripts, from a hyperlink, a button or an event.</summary>
    private static readonly string[] ScriptSchemes = ["vnd.sun.star.script:", "vnd.sun.star.basic:", "macro:", "service:", "vnd.sun.star.service:", "vnd.sun.star.job:"];

    /// <summary>LibreOffice's own letter wizard templates bind this installed macro to office:new; it ships with the program.</summary>
    private static readonly HashSet<string> ShippedTemplateMacros = new(StringComparer.OrdinalIgnoreCase) { "application:Template.Correspondence.Main" };

    private static async ValueTask AnalyseOpenDocumentAsync(State state, CancellationToken cancellationToken)
    {
        // Recognised by its manifest or content, as LibreOffice opens it: what magic-number sniffers miss is said, not graded.
        if (OpenDocumentPackage.MimetypeProblem(state.Parts) is { } problem)
        {
            var how = OpenDocumentPackage.Recognise(state.Parts) ?? "its parts";
            state.Reporter.Report(Rules.OfficeOdfMimetype, Severity.Info,
                $"the OpenDocument package {problem}; LibreOffice opens it as a document ({how}), and it is read as one");
        }

        var macros = state.Parts.Names.Where(n => n.StartsWith("Basic/", StringComparison.OrdinalIgnoreCase) && !n.EndsWith("/", StringComparison.Ordinal)
            && !n.EndsWith("script-lc.xml", StringComparison.OrdinalIgnoreCase) && !n.EndsWith("script-lb.xml", StringComparison.OrdinalIgnoreCase)
            || n.StartsWith("Scripts/", StringComparison.OrdinalIgnoreCase) && !n.EndsWith("/", StringComparison.Ordinal)).ToList();
        if (macros.Count > 0)
        {
            state.Reporter.Report(Rules.OfficeOdfMacro, Severity.High, $"OpenDocument macros or scripts: {string.Join(", ", macros.Take(10))}");
        }

        // content.xml, styles.xml and meta.xml, and those of embedded objects ("Object 1/content.xml"), whatever their
        // case; macro libraries and configuration are not document content.
        foreach (var name in state.Parts.Names.Where(n => n.EndsWith(".xml", StringComparison.OrdinalIgnoreCase)
            && !n.StartsWith("META-INF/", StringComparison.OrdinalIgnoreCase) && !n.StartsWith("Basic/", StringComparison.OrdinalIgnoreCase)
            && !n.StartsWith("Configurations2/", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            // Every copy of a duplicated part, as for OOXML: readers disagree on which one wins.
            foreach (var (entry, part) in CopiesOf(state, name))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var stream = Open(state, entry);
                if (stream is not null)
                {
                    await ScanOpenDocumentXmlAsync(state.Context, state.Reporter, stream, part, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        state.Reporter.Flush();
    }

    /// <summary>A flat OpenDocument file (.fodt...): the same checks on its one XML document, as long as the ooxml analyser reads a part.</summary>
    private static async ValueTask AnalyseFlatOpenDocumentAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var reporter = new CappedReporter(context);
        using var stream = content.OpenStream(0, Math.Min(content.Length, Math.Min(MaxXmlPart, context.Limits.MaxInnerSize)));
        await ScanOpenDocumentXmlAsync(context, reporter, stream, "", cancellationToken).ConfigureAwait(false);
        reporter.Flush();
    }

    private static async ValueTask ScanOpenDocumentXmlAsync(InspectionContext context, CappedReporter reporter, Stream stream, string part, CancellationToken cancellationToken)
    {
        var where = part.Length == 0 ? "the document" : $"'{part}'";
        var modules = new List<string>();
        try
        {
            using var reader = XmlReader.Create(stream, UntrustedXml.Document);
            var count = 0;
            var inline = 0;
            var positioned = false;
            while (positioned || reader.Read())
            {
                positioned = false;
                if (reader.NodeType != XmlNodeType.Element)
                {
                    continue;
                }

                if (++count % 4096 == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }

                if (reader.LocalName == "binary-data" && !reader.IsEmptyElement)
                {
                    // A picture or an OLE object written inline, which a zipped package holds as an entry.
                    var name = $"{(part.Length == 0 ? "" : part + " ")}[binary-data {++inline}]";
                    await InspectInlineDataAsync(context, reader, name, cancellationToken).ConfigureAwait(false);
                    positioned = !reader.EOF;
                    continue;
                }

                switch (reader.LocalName)
                {
                    case "module" when reader.NamespaceURI == "http://openoffice.org/2004/office":
                        modules.Add(Inspector.Truncate(OdfAttribute(reader, "name") ?? "?", 60));
                        break;
                    case "library-linked":
                        reporter.Report(Rules.OfficeOdfMacro, Severity.High,
                            $"{where} links the Basic library '{Inspector.Truncate(OdfAttribute(reader, "name") ?? "?", 60)}' from '{Inspector.Truncate(OdfAttribute(reader, "href") ?? "", 160)}'");
                        break;
                    case "dde-source" or "dde-connection-decl":
                        var automatic = string.Equals(OdfAttribute(reader, "automatic-update"), "true", StringComparison.OrdinalIgnoreCase);
                        reporter.Report(Rules.OfficeDde, Severity.High,
                            $"DDE {(reader.LocalName == "dde-source" ? "link" : "field")} in {where}: application '{Inspector.Truncate(OdfAttribute(reader, "dde-application") ?? "", 60)}', "
                            + $"topic '{Inspector.Truncate(OdfAttribute(reader, "dde-topic") ?? "", 120)}'{(automatic ? ", updated automatically" : "")}");
                        break;
                    case "event-listener" or "event" when OdfAttribute(reader, "macro-name") is { Length: > 0 } macro:
                        // The ODF 1.0 way to bind a Basic macro (script:event in OpenOffice.org 1.x files): "application:Library.Module.Sub" or a document's own.
                        ReportScriptBinding(reporter, where, OdfAttribute(reader, "event-name"), macro, ShippedTemplateMacros.Contains(macro.Trim()));
                        break;
                    default:
                        break;
                }

                if (reader.HasAttributes)
                {
                    CheckOdfAttributes(reporter, reader, where);
                }
            }
        }
        catch (XmlException ex)
        {
            reporter.Report(Rules.OfficeMalformed, Severity.Low, $"{where} is not well-formed XML: {ex.Message}");
        }
        catch (InvalidDataException ex)
        {
            reporter.Report(Rules.OfficeMalformed, Severity.Low, $"{where} cannot be decompressed: {ex.Message}");
        }

        if (modules.Count > 0)
        {
            reporter.Report(Rules.OfficeOdfMacro, Severity.High, $"Basic macros embedded in {where}: {string.Join(", ", modules.Distinct().Take(10))}");
        }
    }

    private static async ValueTask InspectInlineDataAsync(InspectionContext context, XmlReader reader, string name, CancellationToken cancellationToken)
    {
        await using var data = new Base64ElementStream(reader);
        var result = await Extraction.ExtractAsync(context, data, 0, cancellationToken).ConfigureAwait(false);
        using var extracted = result.Content;
        // What the extraction left unread is decoded and dropped, so the reader goes on after the element.
        var rest = new byte[64 * 1024];
        while (await data.ReadAsync(rest.AsMemory(), cancellationToken).ConfigureAwait(false) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        if (!context.ReportExtractionProblem(result, $"'{name}'", Rules.InnerSizeLimit, Rules.OfficeMalformed, null) && extracted is not null)
        {
            await context.InspectChildAsync(name, extracted, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>An element's base64 content, decoded as it is read.</summary>
    private sealed class Base64ElementStream(XmlReader reader) : Stream
    {
        private bool _done;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_done)
            {
                return 0;
            }

            var read = reader.ReadElementContentAsBase64(buffer, offset, count);
            _done = read == 0;
            return read;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (MemoryMarshal.TryGetArray<byte>(buffer, out var segment))
            {
                return ValueTask.FromResult(Read(segment.Array!, segment.Offset, segment.Count));
            }

            var copy = new byte[buffer.Length];
            var read = Read(copy, 0, copy.Length);
            copy.AsMemory(0, read).CopyTo(buffer);
            return ValueTask.FromResult(read);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Formulas (DDE) and links (scripts, programs, content loaded from the network) on one element.</summary>
    private static void CheckOdfAttributes(CappedReporter reporter, XmlReader reader, string where)
    {
        var element = reader.LocalName;
        string? href = null;
        string? formula = null;
        string? action = null;
        string? eventName = null;
        while (reader.MoveToNextAttribute())
        {
            switch (reader.LocalName)
            {
                case "href" when reader.NamespaceURI == XlinkNamespace || href is null:
                    href = reader.Value;
                    break;
                case "formula":
                    formula = reader.Value;
                    break;
                case "action":
                    action = reader.Value;
                    break;
                case "event-name":
                    eventName = reader.Value;
                    break;
                default:
                    break;
            }
        }

        reader.MoveToElement();
        if (formula is not null)
        {
            CheckOdfFormula(reporter, where, formula);
        }

        if (string.IsNullOrWhiteSpace(href))
        {
            return;
        }

        var target = href.Trim();
        var shown = Inspector.Truncate(target, 160);
        if (ScriptSchemes.Any(s => target.StartsWith(s, StringComparison.OrdinalIgnoreCase)))
        {
            ReportScriptBinding(reporter, where, element == "event-listener" ? eventName : $"a click on its '{element}'", target, shipped: false);
            return;
        }

        if (element == "event-listener" && string.Equals(action, "execute", StringComparison.OrdinalIgnoreCase))
        {
            // An Impress interaction "run program".
            reporter.Report(Rules.OfficeOdfMacro, Severity.High, $"an event in {where} ({eventName ?? "?"}) runs the program '{shown}'");
            return;
        }

        if (element is "object" or "object-ole")
        {
            if (IsRemote(target))
            {
                reporter.Report(Rules.OfficeExternalOleLink, Severity.High, $"linked OLE object in {where} loaded from '{shown}'");
            }

            return;
        }

        if (OdfClickedLinks.Contains(element))
        {
            // As OOXML hyperlinks: a program, or a raw address (Info when plainly private: an intranet viewer).
            if (UrlChecks.ExecutableExtension(target) is { } extension)
            {
                reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium, $"hyperlink in {where} to a .{extension} program: '{shown}'");
            }
            else if (UrlChecks.Host(target) is { } host && UrlChecks.IsRawIp(host))
            {
                var intranet = UrlChecks.IsPrivateAddress(host);
                reporter.Report(Rules.OfficeExternalRelationship, intranet ? Severity.Info : Severity.Medium,
                    $"hyperlink in {where} to a raw IP address{(intranet ? " on a private network" : "")}: '{shown}'");
            }

            return;
        }

        if (IsRemote(target))
        {
            reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium,
                $"'{element}' content in {where} loaded from outside the document: '{shown}'{(IsNetworkPath(target) ? " (a network path: leaks Windows credentials)" : "")}");
        }
    }

    private static void ReportScriptBinding(CappedReporter reporter, string where, string? trigger, string script, bool shipped)
    {
        var shown = Inspector.Truncate(script, 200);
        if (shipped)
        {
            reporter.Report(Rules.OfficeOdfMacro, Severity.Info, $"{where} calls LibreOffice's own template macro '{shown}' on {trigger ?? "an event"}");
            return;
        }

        var decoded = Uri.UnescapeDataString(script.Replace('\\', '/'));
        var traversal = decoded.Contains("../", StringComparison.Ordinal) || decoded.Contains("/..", StringComparison.Ordinal);
        reporter.Report(Rules.OfficeOdfMacro, Severity.High,
            $"{where} runs the script '{shown}' on {trigger ?? "an event"}"
            + (traversal ? " (a path out of the script folders: the CVE-2018-16858 shape reaching the program's own files)" : ""));
    }

    /// <summary>A cell formula calling DDE() (LibreOffice's, the CSV-injection payload) or written with a DDE reference (app|topic!item).</summary>
    private static void CheckOdfFormula(CappedReporter reporter, string where, string formula)
    {
        var text = formula.Length > MaxFieldInstruction ? formula[..MaxFieldInstruction] : formula;
        var bare = WithoutLiterals(text);
        if (OdfDdeFunction().IsMatch(bare) || DdeFormula().IsMatch(bare))
        {
            reporter.Report(Rules.OfficeDde, Severity.High, $"DDE formula in {where}: {Inspector.Truncate(text, 120)}");
        }

        CheckWebService(reporter, where, text, bare);
    }

    /// <summary>An attribute by local name, in whatever namespace (ODF writes them prefixed, other writers may not).</summary>
    internal static string? OdfAttribute(XmlReader reader, string localName)
    {
        string? value = null;
        while (reader.MoveToNextAttribute())
        {
            if (reader.LocalName == localName)
            {
                value = reader.Value;
                break;
            }
        }

        reader.MoveToElement();
        return value;
    }

    /// <summary>DDE( as a function call, not a name that ends so (ISODDE would be another function).</summary>
    [GeneratedRegex(@"(?<![A-Za-z0-9_.])DDE\s*\(", RegexOptions.IgnoreCase, matchTimeoutMilliseconds: 200)]
    private static partial Regex OdfDdeFunction();
}
