using System.Text;
using System.Xml;
using Vigie.Inspection.Archives;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Office;

/// <summary>
/// Whether a ZIP is an OpenDocument package, as LibreOffice decides: its storage's media type comes from
/// META-INF/manifest.xml (the entry for "/"), or from the <c>mimetype</c> entry wherever it is and however it is
/// compressed. The canonical form (<c>mimetype</c> first and stored, ODF 1.3 Part 2, 3.3) is only what magic-number
/// sniffers look for; until 2026-12-07 it was all Vigie looked for, and a package without it was a plain ZIP.
/// </summary>
internal static class OpenDocumentPackage
{
    private const string MediaTypePrefix = "application/vnd.oasis.opendocument";

    /// <summary>OpenOffice.org 1.x / StarOffice 6–7 (.sxw, .sxc, .sxi...), which LibreOffice still opens, Basic macros included.</summary>
    private const string LegacyMediaTypePrefix = "application/vnd.sun.xml.";

    private const string OfficeNamespace = "urn:oasis:names:tc:opendocument:xmlns:office:1.0";

    private const string LegacyOfficeNamespace = "http://openoffice.org/2000/office";

    /// <summary>
    /// A media type LibreOffice opens as an office document: OpenDocument's, or OpenOffice.org 1.x's (read as a plain ZIP
    /// until 2026-12-07, its Basic/ macros unreported).
    /// </summary>
    public static bool IsOfficeMediaType(string? type) =>
        type is not null && (type.StartsWith(MediaTypePrefix, StringComparison.Ordinal) || type.StartsWith(LegacyMediaTypePrefix, StringComparison.Ordinal));

    /// <summary>What is read of one part to recognise the package (a manifest up to its "/" entry, a part up to its root).</summary>
    private const long MaxRead = 16L * 1024 * 1024;

    private const double MaxRatio = 200;

    private const long RatioFloor = 1024 * 1024;

    /// <summary>The first entry is <c>mimetype</c>, stored, naming an OpenDocument type.</summary>
    public static bool HasCanonicalMimetype(ContentSource source, ZipDirectory directory)
    {
        if (directory.Entries is not [var entry, ..] || entry.Name != "mimetype" || entry.Method != 0 || entry.UncompressedSize is <= 0 or >= 200)
        {
            return false;
        }

        var local = ZipReader.ReadLocalHeader(source, entry.LocalHeaderOffset);
        if (local is null)
        {
            return false;
        }

        var mime = new byte[(int)entry.UncompressedSize];
        var read = source.ReadAt(local.DataOffset, mime);
        return IsOfficeMediaType(Encoding.ASCII.GetString(mime, 0, read));
    }

    /// <summary>
    /// How the package is recognised as OpenDocument when its <c>mimetype</c> entry is not canonical: the manifest's
    /// media type for "/", a <c>mimetype</c> entry elsewhere or deflated, or a content.xml / styles.xml whose root is in
    /// the office namespace. Null when none of these holds (a plain ZIP).
    /// </summary>
    public static string? Recognise(ZipParts parts)
    {
        if (ManifestMediaType(parts) is { } manifest && IsOfficeMediaType(manifest))
        {
            return $"META-INF/manifest.xml declares '{Inspector.Truncate(manifest, 80)}'";
        }

        if (MimetypeValue(parts) is { } mimetype && IsOfficeMediaType(mimetype))
        {
            return $"its mimetype entry says '{Inspector.Truncate(mimetype, 80)}'";
        }

        foreach (var name in (string[])["content.xml", "styles.xml"])
        {
            foreach (var entry in parts.Copies(name))
            {
                if (RootIsOffice(parts, entry) is { } root)
                {
                    return $"its {name} is an OpenDocument '{root}'";
                }
            }
        }

        return null;
    }

    /// <summary>
    /// What is wrong with the package's <c>mimetype</c> entry (missing, not first, compressed, another type than the
    /// manifest's), or null when it is canonical.
    /// </summary>
    public static string? MimetypeProblem(ZipParts parts)
    {
        if (HasCanonicalMimetype(parts.Source, parts.Directory))
        {
            return null;
        }

        var entries = parts.Directory.Entries;
        var index = -1;
        for (var i = 0; i < entries.Count; i++)
        {
            if (entries[i].Name == "mimetype")
            {
                index = i;
                break;
            }
        }

        if (index < 0)
        {
            return "has no 'mimetype' entry";
        }

        var problems = new List<string>();
        if (index > 0)
        {
            problems.Add($"is entry {index + 1} of {entries.Count}, not the first");
        }

        if (entries[index].Method != 0)
        {
            problems.Add($"is compressed (method {entries[index].Method}), not stored");
        }

        var value = MimetypeValue(parts);
        var manifest = ManifestMediaType(parts);
        if (value is null || !IsOfficeMediaType(value))
        {
            problems.Add($"says '{Inspector.Truncate(value ?? "", 80)}', not an OpenDocument type");
        }
        else if (manifest is not null && manifest != value)
        {
            problems.Add($"says '{Inspector.Truncate(value, 80)}' where the manifest says '{Inspector.Truncate(manifest, 80)}'");
        }

        return problems.Count == 0 ? null : $"has a 'mimetype' entry that {string.Join(" and ", problems)}";
    }

    /// <summary>The media type META-INF/manifest.xml gives the package ("/"), from the first copy that gives one.</summary>
    public static string? ManifestMediaType(ZipParts parts)
    {
        foreach (var entry in parts.Copies("META-INF/manifest.xml"))
        {
            try
            {
                using var stream = parts.Open(entry, MaxRead, MaxRatio, RatioFloor);
                if (stream is null)
                {
                    continue;
                }

                using var reader = XmlReader.Create(stream, UntrustedXml.Document);
                while (reader.Read())
                {
                    if (reader.NodeType == XmlNodeType.Element && reader.LocalName == "file-entry"
                        && OoxmlAnalyser.OdfAttribute(reader, "full-path") == "/" && OoxmlAnalyser.OdfAttribute(reader, "media-type") is { Length: > 0 } type)
                    {
                        return type.Trim();
                    }
                }
            }
            catch (Exception ex) when (ex is XmlException or InvalidDataException)
            {
                // An unreadable manifest: LibreOffice falls back on the mimetype entry.
            }
        }

        return null;
    }

    private static string? MimetypeValue(ZipParts parts)
    {
        if (parts.Entry("mimetype") is not { UncompressedSize: > 0 and < 200 } entry)
        {
            return null;
        }

        try
        {
            using var stream = parts.Open(entry, 200, MaxRatio, RatioFloor);
            if (stream is null)
            {
                return null;
            }

            var buffer = new byte[200];
            var total = 0;
            int read;
            while (total < buffer.Length && (read = stream.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += read;
            }

            return Encoding.ASCII.GetString(buffer, 0, total).Trim();
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    private static string? RootIsOffice(ZipParts parts, ZipEntry entry)
    {
        try
        {
            using var stream = parts.Open(entry, MaxRead, MaxRatio, RatioFloor);
            if (stream is null)
            {
                return null;
            }

            using var reader = XmlReader.Create(stream, UntrustedXml.Document);
            while (reader.Read())
            {
                if (reader.NodeType == XmlNodeType.Element)
                {
                    return reader.NamespaceURI is OfficeNamespace or LegacyOfficeNamespace ? reader.Name : null;
                }
            }
        }
        catch (Exception ex) when (ex is XmlException or InvalidDataException)
        {
            // Not XML, or not inflatable: not what recognises a document.
        }

        return null;
    }
}
