using System.Globalization;
using System.Net;
using System.Text;

namespace Vigie.Inspection.Engine;

/// <summary>What a link points to: its host, whether that host is a raw IP, whether the path names a program.</summary>
internal static class UrlChecks
{
    /// <summary>
    /// The host a browser (or Windows, for a UNC path or a file: URL) reaches through a link, lower case; null for a
    /// relative link or one without a host. Read as WHATWG's URL parser reads it, since a link that parses
    /// differently here slipped past the checks until 2026-12-07: C0 controls and spaces trimmed, tabs and newlines
    /// removed anywhere, a backslash a slash and any run of slashes after a special scheme ("http:\\ip\",
    /// "https:ip/"), "//host/" and "\\host\share" count, and the host is percent-decoded and mapped (NFKC, ideographic full stops).
    /// </summary>
    public static string? Host(string url)
    {
        var text = Clean(url);
        string rest;
        if (text.StartsWith("www.", StringComparison.OrdinalIgnoreCase))
        {
            rest = text;
        }
        else if (text.Length > 1 && text[0] is '/' or '\\' && text[1] is '/' or '\\')
        {
            // Protocol-relative, or a UNC path that Windows opens (and sends NTLM credentials to).
            rest = text.TrimStart('/', '\\');
        }
        else if (SchemeLength(text) is > 0 and var length)
        {
            var scheme = text[..length].ToLowerInvariant();
            var after = text[(length + 1)..];
            var slashes = after.Length - after.TrimStart('/', '\\').Length;
            switch (scheme)
            {
                case "http" or "https" or "ftp" or "ws" or "wss":
                    rest = after[slashes..];
                    break;

                // file://server/share and file:///\\server\share (Outlook's MonikerLink) name a server; file:///C:/ does not.
                case "file" when slashes == 2 || slashes >= 4:
                    rest = after[slashes..];
                    break;
                case "file":
                    return null;
                default:
                    if (!after.StartsWith("//", StringComparison.Ordinal))
                    {
                        return null;
                    }

                    rest = after[2..];
                    break;
            }
        }
        else
        {
            return null;
        }

        var end = rest.IndexOfAny(['/', '?', '#', '\\']);
        var authority = end < 0 ? rest : rest[..end];
        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            authority = authority[(at + 1)..];
        }

        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']');
            return close > 0 ? authority[1..close].ToLowerInvariant() : null;
        }

        var colon = authority.LastIndexOf(':');
        if (colon >= 0)
        {
            authority = authority[..colon];
        }

        authority = MapHost(authority).TrimEnd('.');
        return authority.Length == 0 ? null : authority;
    }

    /// <summary>A link as a browser reads it: C0 controls and spaces trimmed at both ends, tabs and newlines removed anywhere.</summary>
    public static string Clean(string url)
    {
        var text = url.Trim(C0AndSpace);
        return text.AsSpan().IndexOfAny('\t', '\n', '\r') < 0 ? text : text.Replace("\t", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal).Replace("\r", "", StringComparison.Ordinal);
    }

    private static readonly char[] C0AndSpace = [.. Enumerable.Range(0, 0x21).Select(c => (char)c)];

    /// <summary>The length of a URL's scheme (the part before ':'), or 0 when it has none.</summary>
    private static int SchemeLength(string text)
    {
        if (text.Length == 0 || !char.IsAsciiLetter(text[0]))
        {
            return 0;
        }

        for (var i = 1; i < text.Length; i++)
        {
            var c = text[i];
            if (c == ':')
            {
                return i;
            }

            if (!char.IsAsciiLetterOrDigit(c) && c is not '+' and not '-' and not '.')
            {
                return 0;
            }
        }

        return 0;
    }

    /// <summary>
    /// A host as IDNA maps it: percent-decoded, NFKC (full-width digits and dots), ideographic full stops as dots,
    /// characters IDNA ignores (soft hyphen, zero-width) removed, lower case.
    /// </summary>
    private static string MapHost(string host)
    {
        if (host.Contains('%', StringComparison.Ordinal))
        {
            host = Uri.UnescapeDataString(host);
        }

        if (!host.AsSpan().ContainsAnyExceptInRange((char)0, (char)0x7F))
        {
            return host.ToLowerInvariant();
        }

        try
        {
            host = host.Normalize(NormalizationForm.FormKC);
        }
        catch (ArgumentException)
        {
            // A lone surrogate: kept as it is.
        }

        var builder = new StringBuilder(host.Length);
        foreach (var c in host)
        {
            if (c is '\u3002' or '\uFF0E' or '\uFF61')
            {
                builder.Append('.');
            }
            else if (c is not ('\u00AD' or '\u034F' or (>= '\u180B' and <= '\u180F') or (>= '\u200B' and <= '\u200D') or '\u2060' or (>= '\uFE00' and <= '\uFE0F') or '\uFEFF'))
            {
                builder.Append(char.ToLowerInvariant(c));
            }
        }

        return builder.ToString();
    }

    /// <summary>An IPv4/IPv6 literal, including the integer and hex spellings browsers accept (http://3232235777/).</summary>
    /// <summary>
    /// True for an address written plainly (dotted decimal, or IPv6) in a private, loopback or link-local range: an
    /// intranet server. An obfuscated form (hex, octal, one number) is never counted as private.
    /// </summary>
    public static bool IsPrivateAddress(string host)
    {
        var plain = host.Trim('[', ']');
        if (!IPAddress.TryParse(plain, out var address) || (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && address.ToString() != plain))
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] == 10 || b[0] == 127 || (b[0] == 172 && b[1] is >= 16 and <= 31) || (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254);
        }

        return IPAddress.IsLoopback(address) || address.IsIPv6LinkLocal || address.IsIPv6UniqueLocal;
    }

    public static bool IsRawIp(string host)
    {
        if (host.Contains(':') && IPAddress.TryParse(host, out _))
        {
            return true;
        }

        var parts = host.Split('.');
        if (parts.Length is < 1 or > 4)
        {
            return false;
        }

        foreach (var part in parts)
        {
            if (part.Length == 0)
            {
                return false;
            }

            var isHex = part.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
            var digits = isHex ? part[2..] : part;
            var ok = isHex
                ? digits.Length > 0 && ulong.TryParse(digits, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _)
                : digits.All(char.IsAsciiDigit);
            if (!ok)
            {
                return false;
            }
        }

        // A single all-digit label is a dword address only when it is big enough to be one.
        return parts.Length > 1 || host.Length >= 8 || host.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The dangerous extension of the last path segment ("…/setup.exe?x=1"), or null.</summary>
    public static string? ExecutableExtension(string url)
    {
        var text = url.Trim();
        var cut = text.IndexOfAny(['?', '#']);
        if (cut >= 0)
        {
            text = text[..cut];
        }

        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0)
        {
            var path = text.IndexOf('/', scheme + 3);
            if (path < 0)
            {
                return null;
            }

            text = text[path..];
        }

        var extension = NameChecks.Extension(Uri.UnescapeDataString(text));
        return NameChecks.IsDangerousExtension(extension) ? extension!.ToLowerInvariant() : null;
    }
}
