using System.Text;
using System.Text.RegularExpressions;
using System.Xml;
using Vigie.Inspection.Archives;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// OOXML (docx/xlsx/pptx and their macro-enabled kin) and OpenDocument packages (and flat files): content types (macro-enabled,
/// disguised), VBA and XLM macro parts, relationships (remote templates, external OLE links, other external
/// targets, ActiveX), DDE fields in Word XML and DDE links or formulas in Excel XML. Part contents are inspected
/// as children by the ZIP analyser; this one reads the package's own XML, streaming and bounded.
/// </summary>
internal sealed partial class OoxmlAnalyser : IContentAnalyser
{
    private const long MaxXmlPart = 256L * 1024 * 1024;
    private const int MaxFieldInstruction = 4096;
    private const int MaxFieldDepth = 64;

    private static readonly HashSet<string> PlainExtensions = new(StringComparer.OrdinalIgnoreCase) { "docx", "xlsx", "pptx", "dotx", "xltx", "potx", "ppsx" };

    public string Name => "ooxml";

    public bool CanAnalyse(ContentType type) => type is ContentType.Ooxml or ContentType.OpenDocument or ContentType.FlatOpenDocument or ContentType.OfficeXml;

    public ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (context.ContentType == ContentType.FlatOpenDocument)
        {
            return AnalyseFlatOpenDocumentAsync(context, content, cancellationToken);
        }

        if (context.ContentType == ContentType.OfficeXml)
        {
            return AnalyseOfficeXmlAsync(context, content, cancellationToken);
        }

        var parts = ZipParts.TryOpen(content, context.Limits.MaxEntries);
        if (parts is null)
        {
            // The ZIP analyser reports why the package is unreadable.
            return ValueTask.CompletedTask;
        }

        var state = new State(context, parts, new CappedReporter(context));
        // A package Word and LibreOffice both take for theirs is read as each would: it was read as the one its first bytes
        // named only, the other's macros unseen (until 2026-12-07).
        var ooxml = context.ContentType == ContentType.Ooxml || parts.Contains("[Content_Types].xml");
        var openDocument = context.ContentType == ContentType.OpenDocument || OpenDocumentPackage.Recognise(parts) is not null;
        if (ooxml && openDocument)
        {
            state.Reporter.Report(Rules.OfficeHybridPackage, Severity.Medium,
                "the package is both an OOXML package ([Content_Types].xml) and an OpenDocument one: Word and LibreOffice open different documents from it");
        }

        if (ooxml)
        {
            AnalyseOoxml(state, cancellationToken);
        }

        if (openDocument)
        {
            return AnalyseOpenDocumentAsync(state, cancellationToken);
        }

        state.Reporter.Flush();
        return ValueTask.CompletedTask;
    }

    private sealed record State(InspectionContext Context, ZipParts Parts, CappedReporter Reporter);

    private static Stream? Open(State state, ZipEntry entry) =>
        state.Parts.Open(entry, Math.Min(MaxXmlPart, state.Context.Limits.MaxInnerSize), state.Context.Limits.MaxCompressionRatio, state.Context.Limits.RatioCheckFloor);

    /// <summary>
    /// Every copy of a part, each named as findings show it: readers disagree on which copy of a duplicated name wins
    /// (LibreOffice opens the last), so each is read as the part it would be (only the first was until 2026-12-07).
    /// </summary>
    private static IEnumerable<(ZipEntry Entry, string Label)> CopiesOf(State state, string name)
    {
        var copies = state.Parts.Copies(name);
        for (var i = 0; i < copies.Count; i++)
        {
            yield return (copies[i], copies.Count == 1 ? name : $"{name} (copy {i + 1} of {copies.Count})");
        }
    }

    private static void AnalyseOoxml(State state, CancellationToken cancellationToken)
    {
        var context = state.Context;
        var (defaults, overrides) = ReadContentTypes(state);
        // Each type a copy of [Content_Types].xml declares for the part (one, unless the package holds it twice).
        List<string> TypesOf(string part) => overrides.GetValueOrDefault("/" + part.TrimStart('/')) ?? defaults.GetValueOrDefault(Path.GetExtension(part).TrimStart('.')) ?? [];
        var mainParts = ReadRelationships(state, cancellationToken);
        var mainTypes = mainParts.SelectMany(TypesOf).Distinct(StringComparer.OrdinalIgnoreCase).ToList();

        var vbaParts = state.Parts.Names.Where(n => n.EndsWith("vbaProject.bin", StringComparison.OrdinalIgnoreCase)).ToList();
        vbaParts.AddRange(overrides.Where(o => o.Value.Any(t => t.Equals("application/vnd.ms-office.vbaProject", StringComparison.OrdinalIgnoreCase)))
            .Select(o => o.Key.TrimStart('/')).Where(n => !vbaParts.Contains(n, StringComparer.OrdinalIgnoreCase) && state.Parts.Contains(n)));
        // A binary workbook (.xlsb) has no other type than "macroEnabled": one without a VBA project is not one (it was
        // suspicious until 2026-12-07). Macro sheets are looked for below all the same.
        var mainType = mainTypes.FirstOrDefault(t => t.Contains("macroEnabled", StringComparison.OrdinalIgnoreCase)
            && !(t.Contains(".sheet.binary.", StringComparison.OrdinalIgnoreCase) && vbaParts.Count == 0));
        var macroEnabled = mainType is not null;
        mainType ??= mainTypes.FirstOrDefault();

        if (macroEnabled)
        {
            context.Report(Rules.OfficeMacroEnabled, Severity.Medium, $"macro-enabled document type ({mainType})");
        }

        foreach (var part in vbaParts)
        {
            context.Report(Rules.OfficeVbaMacro, Severity.High, $"VBA project part '{part}'");
        }

        if (vbaParts.Count > 0 && !macroEnabled)
        {
            context.Report(Rules.OfficeMacroDisguised, Severity.High,
                $"a VBA project hides in a package whose main part is declared as the macro-free '{mainType ?? "unknown"}'");
        }

        var declaredExtension = context.DeclaredName is { } declared ? NameChecks.Extension(declared) : null;
        if (macroEnabled && declaredExtension is not null && PlainExtensions.Contains(declaredExtension))
        {
            context.Report(Rules.OfficeMacroDisguised, Severity.High,
                $"a macro-enabled document ({mainType}) is named '.{declaredExtension}', the extension of a macro-free one");
        }

        // Office finds parts through relationships and content types, not names: a macro sheet or a document part stored
        // under another name is found by its declared type (only the usual names were read until 2026-12-07).
        var macroSheets = state.Parts.Names.Where(n => n.StartsWith("xl/macrosheets/", StringComparison.OrdinalIgnoreCase) && (n.EndsWith(".xml", StringComparison.OrdinalIgnoreCase) || n.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
            || TypesOf(n).Any(t => t.Contains("macrosheet", StringComparison.OrdinalIgnoreCase))).ToList();
        if (macroSheets.Count > 0)
        {
            context.Report(Rules.OfficeXlmMacro, Severity.High, $"Excel 4.0 (XLM) macro sheets: {string.Join(", ", macroSheets.Take(5))}");
        }

        var activeX = state.Parts.Names.Where(n => n.Contains("/activeX/", StringComparison.OrdinalIgnoreCase) && !n.Contains("/_rels/", StringComparison.OrdinalIgnoreCase)).ToList();
        if (activeX.Count > 0)
        {
            state.Reporter.Report(Rules.OfficeActiveX, Severity.Medium, $"ActiveX controls: {string.Join(", ", activeX.Take(5))}");
        }

        foreach (var name in state.Parts.Names.ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var types = TypesOf(name);
            // Each reading a part's name or type calls for, not the first only: a worksheet named under word/ was read as
            // Word text alone, its DDE formula unseen (until 2026-12-07).
            if (IsWordText(name) || types.Any(IsWordTextType))
            {
                ScanWordFields(state, name);
            }

            if (name.StartsWith("xl/externalLinks/", StringComparison.OrdinalIgnoreCase) && name.EndsWith(".xml", StringComparison.OrdinalIgnoreCase)
                || types.Any(t => t.EndsWith(".externalLink+xml", StringComparison.OrdinalIgnoreCase)))
            {
                ScanElements(state, name, "ddeLink", (reader, part) =>
                    state.Reporter.Report(Rules.OfficeDde, Severity.High,
                        $"DDE link in '{part}': service '{reader.GetAttribute("ddeService")}', topic '{Inspector.Truncate(reader.GetAttribute("ddeTopic") ?? "", 120)}'"));
            }
            if (name.StartsWith("xl/worksheets/", StringComparison.OrdinalIgnoreCase) && name.EndsWith(".xml", StringComparison.OrdinalIgnoreCase)
                || types.Any(t => t.EndsWith("worksheet+xml", StringComparison.OrdinalIgnoreCase) || t.EndsWith("macrosheet+xml", StringComparison.OrdinalIgnoreCase)))
            {
                ScanElements(state, name, "f", (reader, part) => CheckFormula(state.Reporter, part, null, ReadBounded(reader)));
            }

            if (name.Equals("xl/workbook.xml", StringComparison.OrdinalIgnoreCase)
                || mainParts.Contains(name, StringComparer.OrdinalIgnoreCase) && types.Any(t => t.Contains("spreadsheetml", StringComparison.OrdinalIgnoreCase) && t.EndsWith("+xml", StringComparison.OrdinalIgnoreCase)))
            {
                // A defined name is a formula Excel evaluates wherever a cell uses it (one holding a DDE reference was clean
                // until 2026-12-07).
                ScanElements(state, name, "definedName", (reader, part) => CheckDefinedName(state.Reporter, part, reader.GetAttribute("name") ?? "", ReadBounded(reader)));
            }
        }
    }

    /// <summary>Reports a formula (a cell's, or the defined name's when one is given) that holds a DDE reference.</summary>
    private static void CheckFormula(CappedReporter reporter, string part, string? definedName, string formula)
    {
        // A "|" inside a string literal ("pos|neg") or a quoted sheet name ('IRM|Scanner'!A1) is not a DDE reference
        // (both were, until 2026-12-07); a quoted DDE topic may hold a double quote.
        var bare = WithoutLiterals(formula);
        var where = definedName is null ? $"'{part}'" : $"defined name '{Inspector.Truncate(definedName, 60)}' of '{part}'";
        if (DdeFormula().IsMatch(bare))
        {
            reporter.Report(Rules.OfficeDde, Severity.High, $"DDE formula in {where}: {Inspector.Truncate(formula, 120)}");
        }

        CheckWebService(reporter, where, formula, bare);
    }

    /// <summary>
    /// A formula calling WEBSERVICE, which fetches its URL each time the sheet is computed: what the cells hold can leave
    /// in that URL (no finding until 2026-12-07).
    /// </summary>
    private static void CheckWebService(CappedReporter reporter, string where, string formula, string bare)
    {
        if (WebServiceFunction().IsMatch(bare))
        {
            reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium,
                $"formula in {where} fetches a URL whenever the sheet is computed (WEBSERVICE): {Inspector.Truncate(formula, 120)}");
        }
    }

    /// <summary>WEBSERVICE( as a function call (OOXML writes it _xlfn.WEBSERVICE, OpenDocument of:WEBSERVICE or bare).</summary>
    [GeneratedRegex(@"(?<![A-Za-z0-9_])(?:_xlfn\.)?WEBSERVICE\s*\(", RegexOptions.IgnoreCase, matchTimeoutMilliseconds: 200)]
    private static partial Regex WebServiceFunction();

    /// <summary>Word text parts by declared type (document, headers, footers, notes, comments, glossary), not styles or settings.</summary>
    private static bool IsWordTextType(string type) =>
        (type.Contains("wordprocessingml", StringComparison.OrdinalIgnoreCase) || type.Contains("ms-word.", StringComparison.OrdinalIgnoreCase))
        && type.EndsWith("+xml", StringComparison.OrdinalIgnoreCase)
        && !WordNonText.Any(t => type.Contains(t, StringComparison.OrdinalIgnoreCase));

    private static readonly string[] WordNonText = ["styles", "fontTable", "settings", "webSettings", "numbering", "theme"];

    private static bool IsWordText(string name) =>
        name.StartsWith("word/", StringComparison.OrdinalIgnoreCase) && name.EndsWith(".xml", StringComparison.OrdinalIgnoreCase)
        && !name.Contains("/_rels/", StringComparison.OrdinalIgnoreCase) && !name.Contains("/theme/", StringComparison.OrdinalIgnoreCase)
        && !name.EndsWith("styles.xml", StringComparison.OrdinalIgnoreCase) && !name.EndsWith("fontTable.xml", StringComparison.OrdinalIgnoreCase);

    /// <summary>The declared types by extension and by part; a part or extension has more than one when the package holds several copies.</summary>
    private static (Dictionary<string, List<string>> Defaults, Dictionary<string, List<string>> Overrides) ReadContentTypes(State state)
    {
        var defaults = new Dictionary<string, List<string>>(StringComparer.OrdinalIgnoreCase);
        var overrides = new Dictionary<string, List<string>>(StringComparer.OrdinalIgnoreCase);
        static void Add(Dictionary<string, List<string>> map, string key, string type)
        {
            if (!map.TryGetValue(key, out var types))
            {
                map[key] = [type];
            }
            else if (!types.Contains(type, StringComparer.OrdinalIgnoreCase))
            {
                types.Add(type);
            }
        }

        ScanElements(state, "[Content_Types].xml", null, (reader, _) =>
        {
            var type = reader.GetAttribute("ContentType");
            if (type is null)
            {
                return;
            }

            if (reader.LocalName == "Default" && reader.GetAttribute("Extension") is { } extension)
            {
                Add(defaults, extension, type);
            }
            else if (reader.LocalName == "Override" && reader.GetAttribute("PartName") is { } part)
            {
                Add(overrides, "/" + part.TrimStart('/'), type);
            }
        });
        return (defaults, overrides);
    }

    /// <summary>Checks every relationship part; returns the main document part named by the package relationships (by each copy of them).</summary>
    private static List<string> ReadRelationships(State state, CancellationToken cancellationToken)
    {
        var mainParts = new List<string>();
        foreach (var name in state.Parts.Names.Where(n => n.EndsWith(".rels", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            ScanElements(state, name, "Relationship", (reader, part) =>
            {
                var type = reader.GetAttribute("Type") ?? "";
                var target = reader.GetAttribute("Target") ?? "";
                var external = string.Equals(reader.GetAttribute("TargetMode"), "External", StringComparison.OrdinalIgnoreCase);
                var kind = type[(type.LastIndexOf('/') + 1)..];
                if (name.Equals("_rels/.rels", StringComparison.OrdinalIgnoreCase) && kind == "officeDocument" && !external
                    && mainParts.Count < 16 && !mainParts.Contains(target.TrimStart('/'), StringComparer.OrdinalIgnoreCase))
                {
                    mainParts.Add(target.TrimStart('/'));
                }

                CheckRelationship(state.Reporter, part, kind, target, external);
            });
        }

        return mainParts;
    }

    /// <summary>What one relationship of a package (zipped or flat) fetches or runs: ActiveX, remote templates, linked OLE objects, external content.</summary>
    private static void CheckRelationship(CappedReporter reporter, string part, string kind, string target, bool external)
    {
        var shown = Inspector.Truncate(target, 160);
        if (kind is "activeXControl" or "control" or "activeXControlBinary")
        {
            reporter.Report(Rules.OfficeActiveX, Severity.Medium, $"ActiveX control relationship in '{part}' to '{shown}'");
        }

        if (!external)
        {
            return;
        }

        if (!IsRemote(target) && kind != "hyperlink")
        {
            // A local path (file:///C:/..., C:\...) fetches nothing on the recipient's machine: Word writes
            // them for templates on the author's disk.
            return;
        }

        switch (kind)
        {
            case "attachedTemplate":
                reporter.Report(Rules.OfficeRemoteTemplate, Severity.High,
                    $"the document loads its template from '{shown}' (remote template injection fetches macros from there)");
                break;
            case "oleObject":
                reporter.Report(Rules.OfficeExternalOleLink, Severity.High, $"linked OLE object loaded from '{shown}'");
                break;
            case "hyperlink":
                if (UrlChecks.ExecutableExtension(target) is { } extension)
                {
                    reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium, $"hyperlink to a .{extension} program: '{shown}'");
                }
                else if (UrlChecks.Host(target) is { } host && UrlChecks.IsRawIp(host))
                {
                    // A report links to its intranet viewer by address, as in PDF and mail (Medium until 2026-12-07); a
                    // network path or file: link to one still hands it Windows credentials.
                    var intranet = UrlChecks.IsPrivateAddress(host) && !IsNetworkPath(target);
                    reporter.Report(Rules.OfficeExternalRelationship, intranet ? Severity.Info : Severity.Medium,
                        $"hyperlink to a raw IP address{(intranet ? " on a private network" : string.Empty)}: '{shown}'");
                }

                break;
            default:
                reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium,
                    $"'{kind}' content loaded from outside the document: '{shown}'{(IsNetworkPath(target) ? " (a network path: leaks Windows credentials)" : "")}");
                break;
        }
    }

    /// <summary>A target fetched over the network: a URL, a UNC path, or a file URL naming a host.</summary>
    internal static bool IsRemote(string target)
    {
        var t = target.Trim();
        if (t.Contains("://", StringComparison.Ordinal) && !t.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return IsNetworkPath(t);
    }

    private static bool IsNetworkPath(string target)
    {
        var t = target.Trim().Replace('\\', '/');
        if (t.StartsWith("//", StringComparison.Ordinal))
        {
            return true;
        }

        if (!t.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        // file://host/share is remote; file:///C:/ and file:/C:/ are local.
        var rest = t["file:".Length..];
        if (!rest.StartsWith("//", StringComparison.Ordinal))
        {
            return false;
        }

        rest = rest[2..];
        if (rest.StartsWith('/'))
        {
            rest = rest.TrimStart('/');
            return !(rest.Length >= 2 && char.IsAsciiLetter(rest[0]) && rest[1] is ':' or '|');
        }

        return !(rest.Length >= 2 && char.IsAsciiLetter(rest[0]) && rest[1] is ':' or '|') && !rest.StartsWith("localhost/", StringComparison.OrdinalIgnoreCase);
    }

    private static void ScanWordFields(State state, string name)
    {
        foreach (var (entry, part) in CopiesOf(state, name))
        {
            using var stream = Open(state, entry);
            if (stream is not null)
            {
                ScanWordFields(state.Reporter, part, stream);
            }
        }
    }

    private static void ScanWordFields(CappedReporter reporter, string part, Stream stream)
    {
        try
        {
            using var reader = XmlReader.Create(stream, UntrustedXml.Document);
            ScanWordFields(reporter, part, reader);
        }
        catch (XmlException ex)
        {
            reporter.Report(Rules.OfficeMalformed, Severity.Low, $"'{part}' is not well-formed XML: {ex.Message}");
        }
        catch (InvalidDataException ex)
        {
            reporter.Report(Rules.OfficeMalformed, Severity.Low, $"'{part}' cannot be decompressed: {ex.Message}");
        }
    }

    /// <summary>DDE and remote-content fields (simple and complex, nested) in Word text read by <paramref name="reader"/>; throws what it throws.</summary>
    private static void ScanWordFields(CappedReporter reporter, string part, XmlReader reader)
    {
        var fields = new Stack<StringBuilder>();
        var evaluated = new Stack<bool>();
        while (reader.Read())
        {
            if (reader.NodeType != XmlNodeType.Element)
            {
                continue;
            }

            switch (reader.LocalName)
            {
                case "fldSimple":
                    EvaluateField(reporter, part, reader.GetAttribute("instr", reader.NamespaceURI) ?? reader.GetAttribute("w:instr") ?? "");
                    break;
                case "fldChar":
                    var kind = reader.GetAttribute("fldCharType", reader.NamespaceURI) ?? reader.GetAttribute("w:fldCharType");
                    if (kind == "begin" && fields.Count < MaxFieldDepth)
                    {
                        fields.Push(new StringBuilder());
                        evaluated.Push(false);
                    }
                    else if (kind is "separate" or "end" && fields.Count > 0)
                    {
                        if (!evaluated.Peek())
                        {
                            var instruction = fields.Pop();
                            EvaluateField(reporter, part, instruction.ToString());
                            // Word builds a field's code from the results of the fields nested in it: a QUOTE field there
                            // spells the name ({ {QUOTE 68 68 69 65 85 84 79} c:\\...\\cmd.exe }, 2017 malspam, clean
                            // until 2026-12-07). Evaluated here rather than trusting the cached result, which can lie.
                            if (fields.Count > 0 && QuoteResult(instruction.ToString()) is { } result)
                            {
                                var parent = fields.Peek();
                                parent.Append(result.AsSpan(0, Math.Min(result.Length, Math.Max(0, MaxFieldInstruction - parent.Length))));
                            }

                            fields.Push(instruction);
                            evaluated.Pop();
                            evaluated.Push(true);
                        }

                        if (kind == "end")
                        {
                            fields.Pop();
                            evaluated.Pop();
                        }
                    }

                    break;
                case "instrText":
                    var text = ReadBounded(reader);
                    if (fields.Count > 0 && fields.Peek().Length < MaxFieldInstruction)
                    {
                        fields.Peek().Append(text.AsSpan(0, Math.Min(text.Length, MaxFieldInstruction - fields.Peek().Length)));
                    }
                    else if (fields.Count == 0)
                    {
                        EvaluateField(reporter, part, text);
                    }

                    break;
                default:
                    break;
            }
        }
    }

    /// <summary>
    /// What a QUOTE field produces, or null for another field: its quoted text, and each number a character code
    /// (QUOTE 68 68 69 is "DDE"), at most <see cref="MaxFieldInstruction"/> characters.
    /// </summary>
    internal static string? QuoteResult(string instruction)
    {
        var text = instruction.Trim().TrimStart('\\').Trim();
        if (!text.StartsWith("QUOTE", StringComparison.OrdinalIgnoreCase) || text.Length > 5 && !(char.IsWhiteSpace(text[5]) || text[5] == '"'))
        {
            return null;
        }

        var result = new StringBuilder();
        foreach (var argument in FieldArguments(text))
        {
            if (result.Length >= MaxFieldInstruction)
            {
                break;
            }

            result.Append(int.TryParse(argument, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code) && code is > 0 and <= char.MaxValue
                ? ((char)code).ToString()
                : argument);
        }

        return result.Length > MaxFieldInstruction ? result.ToString(0, MaxFieldInstruction) : result.ToString();
    }

    private static void EvaluateField(CappedReporter reporter, string part, string instruction)
    {
        var text = instruction.Trim().TrimStart('\\').Trim();
        var first = text.Split([' ', '\t', '"'], 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.ToUpperInvariant();
        switch (first)
        {
            case "DDE" or "DDEAUTO":
                reporter.Report(Rules.OfficeDde, Severity.High, $"{first} field in '{part}': {Inspector.Truncate(text, 160)}");
                break;
            case "INCLUDETEXT" or "INCLUDEPICTURE" or "IMPORT" or "LINK":
                // Field codes write a path's backslashes doubled ("C:\\Docs\\a.xlsx"): a local file linked so is not a
                // network path (it was reported remote until 2026-12-07). Each argument is checked as written and unescaped.
                if (FieldArguments(text).Any(a => IsRemote(a) || IsRemote(a.Replace("\\\\", "\\", StringComparison.Ordinal))))
                {
                    reporter.Report(Rules.OfficeExternalRelationship, Severity.Medium,
                        $"{first} field in '{part}' fetches remote content: {Inspector.Truncate(text, 160)}");
                }

                break;
            default:
                break;
        }
    }

    /// <summary>A field's arguments after its name: quoted strings whole, other words one by one, switches (\\x) left out.</summary>
    private static IEnumerable<string> FieldArguments(string text)
    {
        var at = text.IndexOfAny([' ', '\t', '"']);
        var rest = at < 0 ? string.Empty : text[at..];
        for (var i = 0; i < rest.Length;)
        {
            if (char.IsWhiteSpace(rest[i]))
            {
                i++;
            }
            else if (rest[i] == '"')
            {
                var end = rest.IndexOf('"', i + 1);
                end = end < 0 ? rest.Length : end;
                yield return rest[(i + 1)..end];
                i = end + 1;
            }
            else
            {
                var end = i;
                while (end < rest.Length && !char.IsWhiteSpace(rest[end]))
                {
                    end++;
                }

                var word = rest[i..end];
                if (!(word.Length == 2 && word[0] == '\\'))
                {
                    yield return word;
                }

                i = end;
            }
        }
    }

    /// <summary>Calls <paramref name="onElement"/> for each element of that local name (each element, when null) in every copy of the part.</summary>
    private static void ScanElements(State state, string name, string? localName, Action<XmlReader, string> onElement)
    {
        foreach (var (entry, part) in CopiesOf(state, name))
        {
            using var stream = Open(state, entry);
            if (stream is null)
            {
                continue;
            }

            try
            {
                using var reader = XmlReader.Create(stream, UntrustedXml.Document);
                while (reader.Read())
                {
                    if (reader.NodeType == XmlNodeType.Element && (localName is null || reader.LocalName == localName))
                    {
                        onElement(reader, part);
                    }
                }
            }
            catch (XmlException ex)
            {
                state.Reporter.Report(Rules.OfficeMalformed, Severity.Low, $"'{part}' is not well-formed XML: {ex.Message}");
            }
            catch (InvalidDataException ex)
            {
                state.Reporter.Report(Rules.OfficeMalformed, Severity.Low, $"'{part}' cannot be decompressed: {ex.Message}");
            }
        }
    }

    /// <summary>An element's text, at most a few kilobytes (the reader skips the rest).</summary>
    private static string ReadBounded(XmlReader reader)
    {
        if (reader.IsEmptyElement)
        {
            return "";
        }

        var builder = new StringBuilder();
        var depth = reader.Depth;
        while (reader.Read() && reader.Depth > depth)
        {
            if (reader.NodeType is XmlNodeType.Text or XmlNodeType.CDATA or XmlNodeType.SignificantWhitespace && builder.Length < MaxFieldInstruction)
            {
                builder.Append(reader.Value.AsSpan(0, Math.Min(reader.Value.Length, MaxFieldInstruction - builder.Length)));
            }
        }

        return builder.ToString();
    }

    /// <summary>
    /// A formula with its string literals emptied and the pipes of its quoted names (sheet names, DDE topics) blanked,
    /// read left to right as Excel does: a quote inside a quoted name is part of the name, and the reverse.
    /// </summary>
    internal static string WithoutLiterals(string formula)
    {
        var builder = new System.Text.StringBuilder(formula.Length);
        for (var i = 0; i < formula.Length; i++)
        {
            var c = formula[i];
            if (c is not ('"' or '\''))
            {
                builder.Append(c);
                continue;
            }

            // To the closing quote; a doubled quote stays inside.
            var end = i + 1;
            while (end < formula.Length)
            {
                if (formula[end] == c)
                {
                    if (end + 1 < formula.Length && formula[end + 1] == c)
                    {
                        end += 2;
                        continue;
                    }

                    break;
                }

                end++;
            }

            if (c == '"')
            {
                builder.Append("\"\"");
            }
            else
            {
                builder.Append('\'').Append(formula.AsSpan(i + 1, Math.Max(0, Math.Min(end, formula.Length) - i - 1)).ToString().Replace('|', '_')).Append('\'');
            }

            i = end;
        }

        return builder.ToString();
    }

    /// <summary>app|'topic'!item, the DDE reference syntax of spreadsheet formulas.</summary>
    [GeneratedRegex(@"[A-Za-z0-9_.\-]+\s*\|\s*('[^']*'|[^\s'!]+)\s*!", RegexOptions.None, matchTimeoutMilliseconds: 200)]
    private static partial Regex DdeFormula();
}
