using System.IO.Compression;
using System.Xml;
using System.Xml.Linq;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// OOXML content disarm: rebuilds the package without VBA projects (parts, relationships, content types),
/// external relationships (and the elements that use them), DDE fields, DDE links and formulas, XLM macro sheets,
/// ActiveX controls and OLE packages, and turns a macro-enabled main content type into its plain counterpart.
/// Every other part is copied as it is. Every change is listed.
/// </summary>
internal sealed class OoxmlDisarmer(IOptions<InspectionLimits> limits) : IDisarmer
{
    private const string RelationshipsNamespace = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    private const string PackageRelationshipsNamespace = "http://schemas.openxmlformats.org/package/2006/relationships";
    private const string ContentTypesNamespace = "http://schemas.openxmlformats.org/package/2006/content-types";
    private const string WordNamespace = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
    private const long MaxXmlPart = 64L * 1024 * 1024;

    private static readonly Dictionary<string, string> PlainTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        ["application/vnd.ms-word.document.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        ["application/vnd.ms-word.template.macroEnabledTemplate.main+xml"] = "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        ["application/vnd.ms-excel.sheet.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        ["application/vnd.ms-excel.template.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
        ["application/vnd.ms-excel.addin.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        ["application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        ["application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
        ["application/vnd.ms-powerpoint.template.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
        ["application/vnd.ms-powerpoint.addin.macroEnabled.main+xml"] = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
    };

    private static readonly XmlReaderSettings ReaderSettings = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersFromEntities = 1024,
    };

    public bool CanDisarm(ContentType type) => type == ContentType.Ooxml;

    public async ValueTask<IReadOnlyList<DisarmAction>> DisarmAsync(ContentSource content, Stream output, DisarmOptions options, CancellationToken cancellationToken)
    {
        var settings = limits.Value;
        var parts = ZipParts.TryOpen(content, settings.MaxEntries) ?? throw new DisarmException("the package's ZIP structure is unreadable");
        var actions = new List<DisarmAction>();
        var names = parts.Names.Where(n => !n.EndsWith('/')).ToList();

        // 1. Parts that go entirely.
        var removed = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in names)
        {
            var rule = name.EndsWith("vbaProject.bin", StringComparison.OrdinalIgnoreCase) || name.Contains("vbaProjectSignature", StringComparison.OrdinalIgnoreCase) || name.EndsWith("vbaData.xml", StringComparison.OrdinalIgnoreCase)
                ? Rules.OfficeVbaMacro
                : name.StartsWith("xl/macrosheets/", StringComparison.OrdinalIgnoreCase) ? Rules.OfficeXlmMacro
                : name.Contains("/activeX/", StringComparison.OrdinalIgnoreCase) ? Rules.OfficeActiveX
                : name.StartsWith("xl/externalLinks/", StringComparison.OrdinalIgnoreCase) && !name.Contains("/_rels/", StringComparison.OrdinalIgnoreCase) && ContainsDdeLink(parts, name, settings) ? Rules.OfficeDde
                : name.Contains("/embeddings/", StringComparison.OrdinalIgnoreCase) && IsOlePackage(parts, name, settings) ? Rules.OfficeOlePackage
                : null;
            if (rule is not null)
            {
                removed.Add(name);
                actions.Add(new DisarmAction(rule, $"removed part '{name}'", null, name));
            }
        }

        // A VBA project (or ActiveX binary) under another name, say word/media/image1.png: found by what points at it or
        // by its declared type, not by its name. Only the relationship went before, and the project stayed in the copy.
        foreach (var relsName in names.Where(n => n.EndsWith(".rels", StringComparison.OrdinalIgnoreCase) && !removed.Contains(n)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Load(parts, relsName, settings)?.Root is not { } root)
            {
                continue;
            }

            var source = SourceOf(relsName);
            foreach (var relationship in root.Elements(XName.Get("Relationship", PackageRelationshipsNamespace)))
            {
                var type = (string?)relationship.Attribute("Type") ?? "";
                var kind = type[(type.LastIndexOf('/') + 1)..];
                if (kind is not ("vbaProject" or "vbaProjectSignature" or "activeXControlBinary")
                    || string.Equals((string?)relationship.Attribute("TargetMode"), "External", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                var target = Resolve(source, (string?)relationship.Attribute("Target") ?? "");
                if (parts.Contains(target) && removed.Add(target))
                {
                    actions.Add(new DisarmAction(kind == "activeXControlBinary" ? Rules.OfficeActiveX : Rules.OfficeVbaMacro,
                        $"removed part '{target}' (the {kind} it holds, under another name)", null, target));
                }
            }
        }

        if (Load(parts, "[Content_Types].xml", settings)?.Root is { } declared)
        {
            foreach (var entry in declared.Elements().Where(e => e.Name.LocalName == "Override"))
            {
                var type = (string?)entry.Attribute("ContentType") ?? "";
                var part = ((string?)entry.Attribute("PartName") ?? "").TrimStart('/');
                if (type.StartsWith("application/vnd.ms-office.vbaProject", StringComparison.OrdinalIgnoreCase) && parts.Contains(part) && removed.Add(part))
                {
                    actions.Add(new DisarmAction(Rules.OfficeVbaMacro, $"removed part '{part}' (declared a VBA project, under another name)", null, part));
                }
            }
        }

        foreach (var name in removed.ToList())
        {
            var rels = RelsFor(name);
            if (parts.Contains(rels))
            {
                removed.Add(rels);
            }
        }

        // 2. Relationships: to removed parts, external ones (but plain hyperlinks), and the elements that used them.
        var rewritten = new Dictionary<string, byte[]>(StringComparer.OrdinalIgnoreCase);
        var removedIds = new Dictionary<string, HashSet<string>>(StringComparer.OrdinalIgnoreCase);
        foreach (var relsName in names.Where(n => n.EndsWith(".rels", StringComparison.OrdinalIgnoreCase) && !removed.Contains(n)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var document = Load(parts, relsName, settings);
            if (document?.Root is null)
            {
                continue;
            }

            var source = SourceOf(relsName);
            var ids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var relationship in document.Root.Elements(XName.Get("Relationship", PackageRelationshipsNamespace)).ToList())
            {
                var type = (string?)relationship.Attribute("Type") ?? "";
                var kind = type[(type.LastIndexOf('/') + 1)..];
                var target = (string?)relationship.Attribute("Target") ?? "";
                var external = string.Equals((string?)relationship.Attribute("TargetMode"), "External", StringComparison.OrdinalIgnoreCase);
                string? rule = null;
                if (!external && removed.Contains(Resolve(source, target)))
                {
                    rule = kind.Contains("vba", StringComparison.OrdinalIgnoreCase) ? Rules.OfficeVbaMacro : Rules.OfficeExternalRelationship;
                }
                else if (external && (kind != "hyperlink" || UrlChecks.ExecutableExtension(target) is not null || UrlChecks.Host(target) is { } host && UrlChecks.IsRawIp(host)))
                {
                    rule = kind switch
                    {
                        "attachedTemplate" => Rules.OfficeRemoteTemplate,
                        "oleObject" => Rules.OfficeExternalOleLink,
                        _ => Rules.OfficeExternalRelationship,
                    };
                }
                else if (kind is "vbaProject" or "activeXControl" or "control" or "keyMapCustomizations")
                {
                    rule = kind == "vbaProject" ? Rules.OfficeVbaMacro : Rules.OfficeActiveX;
                }

                if (rule is null)
                {
                    continue;
                }

                relationship.Remove();
                if ((string?)relationship.Attribute("Id") is { } id)
                {
                    ids.Add(id);
                }

                actions.Add(new DisarmAction(rule, $"removed the '{kind}' relationship to '{Inspector.Truncate(target, 120)}'", null, relsName));
            }

            if (ids.Count > 0)
            {
                rewritten[relsName] = Save(document);
                removedIds[source] = ids;
            }
        }

        // 3. Content types: removed parts and macro-enabled main types.
        var types = Load(parts, "[Content_Types].xml", settings) ?? throw new DisarmException("the package has no readable [Content_Types].xml");
        var typesChanged = false;
        foreach (var element in types.Root!.Elements().ToList())
        {
            var type = (string?)element.Attribute("ContentType") ?? "";
            if (element.Name.LocalName == "Override" && (string?)element.Attribute("PartName") is { } partName && removed.Contains(partName.TrimStart('/')))
            {
                element.Remove();
                typesChanged = true;
                continue;
            }

            if (element.Name.LocalName == "Default" && type.Equals("application/vnd.ms-office.vbaProject", StringComparison.OrdinalIgnoreCase))
            {
                element.Remove();
                typesChanged = true;
                continue;
            }

            if (PlainTypes.TryGetValue(type, out var plain))
            {
                element.SetAttributeValue("ContentType", plain);
                typesChanged = true;
                actions.Add(new DisarmAction(Rules.OfficeMacroEnabled, $"changed the content type '{type}' to '{plain}'", null, "[Content_Types].xml"));
            }
        }

        if (typesChanged)
        {
            rewritten["[Content_Types].xml"] = Save(types);
        }

        // 4. XML parts: elements using removed relationships, DDE fields, DDE formulas, auto-run names.
        foreach (var name in names.Where(n => n.EndsWith(".xml", StringComparison.OrdinalIgnoreCase) && !removed.Contains(n) && !rewritten.ContainsKey(n)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var ids = removedIds.GetValueOrDefault(name);
            var isWord = name.StartsWith("word/", StringComparison.OrdinalIgnoreCase);
            var isSheet = name.StartsWith("xl/worksheets/", StringComparison.OrdinalIgnoreCase);
            var isWorkbook = name.Equals("xl/workbook.xml", StringComparison.OrdinalIgnoreCase);
            if (ids is null && !isWord && !isSheet && !isWorkbook)
            {
                continue;
            }

            var document = Load(parts, name, settings);
            if (document?.Root is null)
            {
                continue;
            }

            var changed = false;
            if (ids is not null)
            {
                changed |= RemoveReferences(document, ids, name, actions);
            }

            if (isWord)
            {
                changed |= RemoveDdeFields(document, name, actions);
            }

            if (isSheet)
            {
                foreach (var formula in document.Descendants().Where(e => e.Name.LocalName == "f" && IsDdeFormula(e.Value)).ToList())
                {
                    actions.Add(new DisarmAction(Rules.OfficeDde, $"removed the DDE formula '{Inspector.Truncate(formula.Value, 80)}' (the cached value stays)", null, name));
                    formula.Remove();
                    changed = true;
                }
            }

            if (isWorkbook)
            {
                foreach (var definedName in document.Descendants().Where(e => e.Name.LocalName == "definedName"
                    && ((string?)e.Attribute("name") ?? "").Contains("Auto_Open", StringComparison.OrdinalIgnoreCase)).ToList())
                {
                    actions.Add(new DisarmAction(Rules.OfficeXlmMacro, $"removed the auto-run name '{(string?)definedName.Attribute("name")}'", null, name));
                    definedName.Remove();
                    changed = true;
                }
            }

            if (changed)
            {
                rewritten[name] = Save(document);
            }
        }

        // 5. Write the new package.
        using (var archive = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var name in names)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (removed.Contains(name))
                {
                    continue;
                }

                var entry = archive.CreateEntry(name, CompressionLevel.Optimal);
                await using var target = entry.Open();
                if (rewritten.TryGetValue(name, out var bytes))
                {
                    await target.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                await using var source = parts.Open(name, settings.MaxInnerSize, settings.MaxCompressionRatio, settings.RatioCheckFloor)
                    ?? throw new DisarmException($"part '{name}' cannot be read (encrypted or unsupported compression)");
                await source.CopyToAsync(target, cancellationToken).ConfigureAwait(false);
            }
        }

        return actions;
    }

    private static bool ContainsDdeLink(ZipParts parts, string name, InspectionLimits settings)
    {
        var document = Load(parts, name, settings);
        return document?.Descendants().Any(e => e.Name.LocalName == "ddeLink") == true;
    }

    private static bool IsOlePackage(ZipParts parts, string name, InspectionLimits settings)
    {
        var bytes = parts.ReadAll(name, (int)Math.Min(settings.MaxInnerSize, int.MaxValue), settings.MaxCompressionRatio, settings.RatioCheckFloor);
        if (bytes is null)
        {
            return false;
        }

        using var source = ContentSource.FromMemory(bytes);
        if (Inspector.Identify(source) != ContentType.Ole2)
        {
            return false;
        }

        try
        {
            return Ole2File.Open(source, settings.MaxEntries).Entries.Any(e => e.Name.Equals("\u0001Ole10Native", StringComparison.OrdinalIgnoreCase));
        }
        catch (Ole2FormatException)
        {
            return true;
        }
    }

    private static bool IsDdeFormula(string formula) => formula.Contains('|', StringComparison.Ordinal) && formula.Contains('!', StringComparison.Ordinal)
        || formula.Contains("DDE(", StringComparison.OrdinalIgnoreCase);

    /// <summary>Drops elements that point at removed relationships (hyperlink references lose only the attribute).</summary>
    private static bool RemoveReferences(XDocument document, HashSet<string> ids, string part, List<DisarmAction> actions)
    {
        var changed = false;
        foreach (var element in document.Descendants().ToList())
        {
            var attribute = element.Attributes().FirstOrDefault(a => a.Name.NamespaceName == RelationshipsNamespace && ids.Contains(a.Value));
            if (attribute is null || element.Document is null)
            {
                continue;
            }

            if (element.Name.LocalName is "hyperlink" or "hlinkClick" or "hlinkHover")
            {
                attribute.Remove();
            }
            else
            {
                element.Remove();
            }

            actions.Add(new DisarmAction(Rules.OfficeExternalRelationship, $"removed the <{element.Name.LocalName}> that used a removed relationship", null, part));
            changed = true;
        }

        return changed;
    }

    /// <summary>Removes DDE fields, keeping their displayed result.</summary>
    private static bool RemoveDdeFields(XDocument document, string part, List<DisarmAction> actions)
    {
        var changed = false;
        var w = XNamespace.Get(WordNamespace);
        foreach (var simple in document.Descendants(w + "fldSimple").ToList())
        {
            if (IsDde((string?)simple.Attribute(w + "instr")))
            {
                simple.ReplaceWith(simple.Nodes());
                actions.Add(new DisarmAction(Rules.OfficeDde, $"removed a DDE field ({Inspector.Truncate((string?)simple.Attribute(w + "instr") ?? "", 80)})", null, part));
                changed = true;
            }
        }

        // Complex fields: begin, instruction runs, separate, result runs, end.
        var fields = new Stack<(List<XElement> Runs, System.Text.StringBuilder Instruction, bool InResult, bool Dde)>();
        var toRemove = new List<XElement>();
        foreach (var run in document.Descendants(w + "r").ToList())
        {
            var fieldChar = run.Element(w + "fldChar");
            var kind = (string?)fieldChar?.Attribute(w + "fldCharType");
            if (kind == "begin")
            {
                fields.Push(([run], new System.Text.StringBuilder(), false, false));
                continue;
            }

            if (fields.Count == 0)
            {
                continue;
            }

            var field = fields.Pop();
            if (kind == "separate" || kind == "end" && !field.InResult)
            {
                field.Dde = IsDde(field.Instruction.ToString());
                field.InResult = true;
                field.Runs.Add(run);
                if (field.Dde)
                {
                    toRemove.AddRange(field.Runs);
                    actions.Add(new DisarmAction(Rules.OfficeDde, $"removed a DDE field ({Inspector.Truncate(field.Instruction.ToString().Trim(), 80)})", null, part));
                }

                if (kind == "end")
                {
                    continue;
                }

                fields.Push(field);
                continue;
            }

            if (kind == "end")
            {
                if (field.Dde)
                {
                    toRemove.Add(run);
                }

                continue;
            }

            if (!field.InResult)
            {
                field.Runs.Add(run);
                foreach (var text in run.Elements(w + "instrText"))
                {
                    field.Instruction.Append(text.Value);
                }
            }

            fields.Push(field);
        }

        foreach (var run in toRemove.Distinct())
        {
            run.Remove();
            changed = true;
        }

        return changed;
    }

    private static bool IsDde(string? instruction)
    {
        var first = (instruction ?? "").Trim().Split([' ', '\t', '"'], 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        return first is not null && (first.Equals("DDE", StringComparison.OrdinalIgnoreCase) || first.Equals("DDEAUTO", StringComparison.OrdinalIgnoreCase));
    }

    private static XDocument? Load(ZipParts parts, string name, InspectionLimits settings)
    {
        using var stream = parts.Open(name, Math.Min(MaxXmlPart, settings.MaxInnerSize), settings.MaxCompressionRatio, settings.RatioCheckFloor);
        if (stream is null)
        {
            return null;
        }

        try
        {
            using var reader = XmlReader.Create(stream, ReaderSettings);
            return XDocument.Load(reader, LoadOptions.PreserveWhitespace);
        }
        catch (XmlException ex)
        {
            throw new DisarmException($"part '{name}' is not well-formed XML: {ex.Message}");
        }
    }

    private static byte[] Save(XDocument document)
    {
        using var output = new MemoryStream();
        using (var writer = XmlWriter.Create(output, new XmlWriterSettings { Encoding = new System.Text.UTF8Encoding(false), Indent = false }))
        {
            document.Save(writer);
        }

        return output.ToArray();
    }

    /// <summary>The part a relationships part describes ("word/_rels/document.xml.rels" describes "word/document.xml"; "_rels/.rels" the package, "").</summary>
    private static string SourceOf(string relsName)
    {
        var folder = Path.GetDirectoryName(Path.GetDirectoryName(relsName))?.Replace('\\', '/') ?? "";
        var file = Path.GetFileName(relsName)[..^".rels".Length];
        return file.Length == 0 ? "" : folder.Length == 0 ? file : folder + "/" + file;
    }

    private static string RelsFor(string part)
    {
        var folder = Path.GetDirectoryName(part)?.Replace('\\', '/') ?? "";
        return (folder.Length == 0 ? "" : folder + "/") + "_rels/" + Path.GetFileName(part) + ".rels";
    }

    /// <summary>A relationship target resolved against its source part's folder.</summary>
    private static string Resolve(string source, string target)
    {
        if (target.StartsWith('/'))
        {
            return target.TrimStart('/');
        }

        var folder = Path.GetDirectoryName(source)?.Replace('\\', '/') ?? "";
        var segments = new List<string>(folder.Length == 0 ? [] : folder.Split('/'));
        foreach (var segment in target.Split('/'))
        {
            if (segment == "..")
            {
                if (segments.Count > 0)
                {
                    segments.RemoveAt(segments.Count - 1);
                }
            }
            else if (segment is not ("." or ""))
            {
                segments.Add(segment);
            }
        }

        return string.Join('/', segments);
    }
}
