namespace Vigie.Inspection.Engine;

/// <summary>Checks on names carried by containers: archive entry names, attachment file names.</summary>
internal static class NameChecks
{
    /// <summary>Why extracting <paramref name="name"/> could write outside the target folder, or null.</summary>
    public static string? TraversalReason(string name)
    {
        if (name.StartsWith('/') || name.StartsWith('\\'))
        {
            return name.StartsWith(@"\\", StringComparison.Ordinal) ? "a UNC path" : "an absolute path";
        }

        if (name.Length >= 2 && char.IsAsciiLetter(name[0]) && name[1] == ':')
        {
            return "a drive letter";
        }

        foreach (var segment in name.Split('/', '\\'))
        {
            if (segment == "..")
            {
                return "a parent-directory (..) segment";
            }
        }

        return null;
    }

    /// <summary>Oddities that are not traversal by themselves but confuse extractors or people.</summary>
    public static string? OddityReason(string name)
    {
        if (name.Contains('\\'))
        {
            return "backslashes as separators";
        }

        foreach (var c in name)
        {
            if (char.IsControl(c))
            {
                return "control characters";
            }

            if (c is '\u202E' or '\u202D' or '\u2066' or '\u2067' or '\u2068')
            {
                return "a bidirectional override character (hides the real extension)";
            }
        }

        return null;
    }

    private static readonly HashSet<string> Dangerous = new(StringComparer.OrdinalIgnoreCase)
    {
        "exe", "scr", "com", "pif", "bat", "cmd", "js", "jse", "vbs", "vbe", "wsf", "wsh", "wsc", "hta", "ps1", "psm1",
        "msi", "msp", "msc", "lnk", "iso", "img", "vhd", "vhdx", "jar", "cpl", "dll", "reg", "chm", "appx", "appxbundle",
        "msix", "application", "gadget", "scf", "url", "inf", "sct", "xll", "xlam", "ppam", "sys", "drv", "ocx", "elf",
        "sh", "command", "app", "dmg", "pkg", "apk", "one", "library-ms", "settingcontent-ms", "website",
        // Outlook's blocked list beyond the above, and the shortcuts of recent campaigns (remote desktop, saved searches).
        "ws", "appref-ms", "diagcab", "msh", "msh1", "msh2", "mshxml", "msh1xml", "msh2xml", "mde", "ade", "adp", "jnlp",
        "hlp", "xbap", "printerexport", "theme", "themepack", "msu", "mst", "ps1xml", "ps2", "ps2xml", "psc1", "psc2",
        "psd1", "vb", "wsb", "rdp", "search-ms", "searchconnector-ms", "shb", "xnk", "ins", "isp", "its", "mcf", "prf",
        "pcd", "fxp", "prg", "vsmacros", "vsw", "hpj", "cnt", "shs", "grp", "crx", "mmc",
        "bas", "csh", "ksh", "htc", "pl", "mdb", "accde", "appinstaller", "iqy", "slk",
    };

    private static readonly HashSet<string> DocumentLike = new(StringComparer.OrdinalIgnoreCase)
    {
        "pdf", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "rtf", "txt", "csv", "jpg", "jpeg", "png", "gif",
        "tif", "tiff", "bmp", "dcm", "zip", "rar", "7z", "htm", "html", "odt", "ods", "mp3", "mp4", "wav", "eml", "xml", "json",
        "ics", "msg", "heic", "heif", "webp", "dicom", "odp", "pps", "ppsx", "xlsb", "mov", "avi", "svg", "vcf", "hl7", "p7m",
    };

    public static bool IsDangerousExtension(string? extension) => extension is not null && Dangerous.Contains(extension);

    /// <summary>The extension after the last dot, without it; null when there is none.</summary>
    public static string? Extension(string name)
    {
        var trimmed = name.TrimEnd(' ', '.');
        var slash = Math.Max(trimmed.LastIndexOf('/'), trimmed.LastIndexOf('\\'));
        var dot = trimmed.LastIndexOf('.');
        return dot > slash + 0 && dot < trimmed.Length - 1 ? trimmed[(dot + 1)..] : null;
    }

    /// <summary>
    /// What a name would fool its reader with, or let them run with a double-click: (rule, message) pairs. A name that
    /// hides its extension (a right-to-left override, a document's extension before a dangerous one) deceives anywhere;
    /// a merely dangerous extension counts where <paramref name="delivered"/> says the file came to a person by mail.
    /// </summary>
    public static IEnumerable<(string Rule, string Message)> DangerousNameReasons(string fileName, bool delivered)
    {
        var shown = Inspector.SanitiseName(fileName);
        if (fileName.Any(c => c is '\u202E' or '\u202D' or '\u2066' or '\u2067' or '\u2068'))
        {
            yield return (Rules.MailFilenameRtlo, $"'{shown}' hides its real extension with a right-to-left override character");
        }

        if (DoubleExtension(fileName) is { } pair)
        {
            yield return (Rules.MailDoubleExtension, $"'{shown}' shows .{pair.Shown} but is a .{pair.Real}");
        }
        else if (delivered && Extension(fileName) is { } extension && IsDangerousExtension(extension))
        {
            yield return (Rules.MailDangerousExtension, $"'{shown}' has the dangerous extension .{extension.ToLowerInvariant()}");
        }
    }

    /// <summary>"invoice.pdf.exe": a document-like extension followed by a dangerous one. Returns the pair, or null.</summary>
    public static (string Shown, string Real)? DoubleExtension(string name)
    {
        var trimmed = name.TrimEnd(' ', '.');
        var real = Extension(trimmed);
        if (!IsDangerousExtension(real))
        {
            return null;
        }

        // Any spacing between the two: no-break, ideographic and zero-width spaces push ".js" out of sight as well as
        // ASCII ones (they hid it until 2026-12-07).
        var stem = trimmed[..^(real!.Length + 1)];
        var end = stem.Length;
        while (end > 0 && (char.IsWhiteSpace(stem[end - 1]) || stem[end - 1] is '_' or '-' or '\u200B' or '\u200C' or '\u200D' or '\u2060' or '\uFEFF' or '\u00AD'))
        {
            end--;
        }

        stem = stem[..end];
        var shown = Extension(stem);
        return shown is not null && DocumentLike.Contains(shown) ? (shown, real) : null;
    }
}
