using System.Xml;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// Microsoft Office's single-file XML forms, which Word and Excel open as they open the zipped ones (an .xml file, or
/// one renamed .doc or .xls): a flat OPC package (<c>pkg:package</c>, Word's "XML Document"), WordprocessingML 2003
/// (<c>w:wordDocument</c>, whose <c>editdata.mso</c> carries a VBA project) and SpreadsheetML 2003 (<c>ss:Workbook</c>,
/// whose cell formulas can be DDE). All three were plain XML, clean, until 2026-12-07.
/// </summary>
internal sealed partial class OoxmlAnalyser
{
    internal const string FlatOpcNamespace = "http://schemas.microsoft.com/office/2006/xmlPackage";
    internal const string Word2003Namespace = "http://schemas.microsoft.com/office/word/2003/wordml";
    internal const string Spreadsheet2003Namespace = "urn:schemas-microsoft-com:office:spreadsheet";

    private static async ValueTask AnalyseOfficeXmlAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var reporter = new CappedReporter(context);
        var length = Math.Min(content.Length, Math.Min(MaxXmlPart, context.Limits.MaxInnerSize));
        string? root = null;
        try
        {
            using var stream = content.OpenStream(0, length);
            using var reader = XmlReader.Create(stream, UntrustedXml.Document);
            reader.MoveToContent();
            root = reader.NamespaceURI + " " + reader.LocalName;
            switch (root)
            {
                case FlatOpcNamespace + " package":
                    await ScanFlatOpcAsync(context, reporter, reader, cancellationToken).ConfigureAwait(false);
                    break;
                case Word2003Namespace + " wordDocument":
                    await ScanWord2003Async(context, reporter, reader, cancellationToken).ConfigureAwait(false);
                    break;
                case Spreadsheet2003Namespace + " Workbook":
                    ScanSpreadsheet2003(reporter, reader, cancellationToken);
                    break;
                default:
                    break;
            }
        }
        catch (XmlException ex)
        {
            reporter.Report(Rules.OfficeMalformed, Severity.Low, $"the document is not well-formed XML: {ex.Message}");
        }

        if (root == Word2003Namespace + " wordDocument")
        {
            // A second pass for fields: their state machine reads the whole body.
            using var stream = content.OpenStream(0, length);
            ScanWordFields(reporter, "the document", stream);
        }

        reporter.Flush();
    }

    private static async ValueTask ScanFlatOpcAsync(InspectionContext context, CappedReporter reporter, XmlReader reader, CancellationToken cancellationToken)
    {
        string? macroEnabledType = null;
        var vbaParts = new List<string>();
        var part = "";
        var type = "";
        var count = 0;
        var positioned = false;
        while (positioned || reader.Read())
        {
            positioned = false;
            if (reader.NodeType != XmlNodeType.Element || reader.NamespaceURI != FlatOpcNamespace)
            {
                continue;
            }

            if (++count % 1024 == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            switch (reader.LocalName)
            {
                case "part":
                    part = Inspector.Truncate((reader.GetAttribute("name", FlatOpcNamespace) ?? "").TrimStart('/'), 160);
                    type = reader.GetAttribute("contentType", FlatOpcNamespace) ?? "";
                    if (macroEnabledType is null && type.Contains("macroEnabled", StringComparison.OrdinalIgnoreCase) && type.Contains(".main+xml", StringComparison.OrdinalIgnoreCase))
                    {
                        macroEnabledType = type;
                        reporter.Report(Rules.OfficeMacroEnabled, Severity.Medium, $"macro-enabled document type ({Inspector.Truncate(type, 120)})");
                    }

                    if (part.EndsWith("vbaProject.bin", StringComparison.OrdinalIgnoreCase) || type.Equals("application/vnd.ms-office.vbaProject", StringComparison.OrdinalIgnoreCase))
                    {
                        vbaParts.Add(part);
                        reporter.Report(Rules.OfficeVbaMacro, Severity.High, $"VBA project part '{part}'");
                    }

                    if (part.StartsWith("xl/macrosheets/", StringComparison.OrdinalIgnoreCase) || type.Contains("macrosheet", StringComparison.OrdinalIgnoreCase))
                    {
                        reporter.Report(Rules.OfficeXlmMacro, Severity.High, $"Excel 4.0 (XLM) macro sheet '{part}'");
                    }

                    if (part.Contains("/activeX/", StringComparison.OrdinalIgnoreCase) && !part.Contains("/_rels/", StringComparison.OrdinalIgnoreCase))
                    {
                        reporter.Report(Rules.OfficeActiveX, Severity.Medium, $"ActiveX control '{part}'");
                    }

                    break;
                case "binaryData" when !reader.IsEmptyElement:
                    // A part's bytes (a VBA project, an OLE object, a picture), inspected as the zipped package's entry would be.
                    await InspectInlineDataAsync(context, reader, part, cancellationToken).ConfigureAwait(false);
                    positioned = !reader.EOF;
                    break;
                case "xmlData" when !reader.IsEmptyElement:
                    using (var data = reader.ReadSubtree())
                    {
                        ScanFlatOpcXmlPart(reporter, data, part, type);
                    }

                    break;
                default:
                    break;
            }
        }

        if (vbaParts.Count > 0 && macroEnabledType is null)
        {
            reporter.Report(Rules.OfficeMacroDisguised, Severity.High, "a VBA project hides in a package whose main part is not declared macro-enabled");
        }
    }

    /// <summary>One part's XML, read as the zipped package's part of that name and type is.</summary>
    private static void ScanFlatOpcXmlPart(CappedReporter reporter, XmlReader data, string part, string type)
    {
        if (part.EndsWith(".rels", StringComparison.OrdinalIgnoreCase) || type.Contains("relationships+xml", StringComparison.OrdinalIgnoreCase))
        {
            while (data.Read())
            {
                if (data.NodeType == XmlNodeType.Element && data.LocalName == "Relationship")
                {
                    var relationship = data.GetAttribute("Type") ?? "";
                    CheckRelationship(reporter, part, relationship[(relationship.LastIndexOf('/') + 1)..], data.GetAttribute("Target") ?? "",
                        string.Equals(data.GetAttribute("TargetMode"), "External", StringComparison.OrdinalIgnoreCase));
                }
            }
        }
        else if (IsWordText(part) || IsWordTextType(type))
        {
            ScanWordFields(reporter, part, data);
        }
        else
        {
            var workbook = part.Equals("xl/workbook.xml", StringComparison.OrdinalIgnoreCase) || type.Contains(".sheet.main+xml", StringComparison.OrdinalIgnoreCase)
                || type.Contains(".sheet.macroEnabled.main+xml", StringComparison.OrdinalIgnoreCase);
            while (data.Read())
            {
                if (data.NodeType != XmlNodeType.Element)
                {
                    continue;
                }

                if (data.LocalName == "f")
                {
                    CheckFormula(reporter, part, null, ReadBounded(data));
                }
                else if (workbook && data.LocalName == "definedName")
                {
                    CheckDefinedName(reporter, part, data.GetAttribute("name") ?? "", ReadBounded(data));
                }
            }
        }
    }

    private static void CheckDefinedName(CappedReporter reporter, string part, string name, string formula)
    {
        if (name.StartsWith("_xlnm.Auto_Open", StringComparison.OrdinalIgnoreCase) || name.StartsWith("Auto_Open", StringComparison.OrdinalIgnoreCase))
        {
            reporter.Report(Rules.OfficeXlmMacro, Severity.High, $"'{Inspector.Truncate(name, 60)}' in '{part}' runs an XLM macro when the workbook opens");
        }

        CheckFormula(reporter, part, name, formula);
    }

    private static async ValueTask ScanWord2003Async(InspectionContext context, CappedReporter reporter, XmlReader reader, CancellationToken cancellationToken)
    {
        if (string.Equals(reader.GetAttribute("macrosPresent", Word2003Namespace), "yes", StringComparison.OrdinalIgnoreCase))
        {
            reporter.Report(Rules.OfficeMacroEnabled, Severity.Medium, "the document declares macros (w:macrosPresent)");
        }

        var inline = 0;
        var count = 0;
        var positioned = false;
        while (positioned || reader.Read())
        {
            positioned = false;
            if (reader.NodeType == XmlNodeType.Element && reader.NamespaceURI == Word2003Namespace)
            {
                CheckWord2003Link(reporter, reader);
            }

            if (reader.NodeType != XmlNodeType.Element || reader.LocalName != "binData" || reader.IsEmptyElement)
            {
                if (++count % 4096 == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }

                continue;
            }

            var name = Inspector.Truncate(reader.GetAttribute("name", Word2003Namespace) ?? reader.GetAttribute("w:name") ?? "", 120);
            if (name.Equals("editdata.mso", StringComparison.OrdinalIgnoreCase))
            {
                // Word keeps a 2003 XML document's VBA project there (an ActiveMime blob), and runs it as a .docm's.
                reporter.Report(Rules.OfficeVbaMacro, Severity.High, "VBA project in the document's binary data 'editdata.mso'");
            }

            await InspectInlineDataAsync(context, reader, $"[binData {++inline}{(name.Length > 0 ? " " + name : "")}]", cancellationToken).ConfigureAwait(false);
            positioned = !reader.EOF;
        }
    }

    /// <summary>
    /// What a .docx says by an external relationship, Word 2003 XML says in place: a template (settings.xml's
    /// attachedTemplate) and hyperlinks, checked as those relationships are (clean until 2026-12-08).
    /// </summary>
    private static void CheckWord2003Link(CappedReporter reporter, XmlReader reader)
    {
        switch (reader.LocalName)
        {
            case "attachedTemplate" when reader.GetAttribute("val", Word2003Namespace) is { Length: > 0 } template:
                CheckRelationship(reporter, "the document", "attachedTemplate", template, external: true);
                break;
            case "hlink" when reader.GetAttribute("dest", Word2003Namespace) is { Length: > 0 } destination:
                CheckRelationship(reporter, "the document", "hyperlink", destination, external: true);
                break;
            default:
                break;
        }
    }

    private static void ScanSpreadsheet2003(CappedReporter reporter, XmlReader reader, CancellationToken cancellationToken)
    {
        var count = 0;
        while (reader.Read())
        {
            if (reader.NodeType != XmlNodeType.Element)
            {
                continue;
            }

            if (++count % 4096 == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            switch (reader.LocalName)
            {
                case "Cell":
                    if (reader.GetAttribute("Formula", Spreadsheet2003Namespace) is { } formula)
                    {
                        CheckFormula(reporter, "the workbook", null, Inspector.Truncate(formula, MaxFieldInstruction));
                    }

                    if (reader.GetAttribute("HRef", Spreadsheet2003Namespace) is { Length: > 0 } link)
                    {
                        // An .xlsx cell's hyperlink is an external relationship of its sheet (clean here until 2026-12-08).
                        CheckRelationship(reporter, "the workbook", "hyperlink", link, external: true);
                    }

                    break;
                case "NamedRange":
                    CheckDefinedName(reporter, "the workbook", reader.GetAttribute("Name", Spreadsheet2003Namespace) ?? "",
                        Inspector.Truncate(reader.GetAttribute("RefersTo", Spreadsheet2003Namespace) ?? "", MaxFieldInstruction));
                    break;
                default:
                    break;
            }
        }
    }
}
