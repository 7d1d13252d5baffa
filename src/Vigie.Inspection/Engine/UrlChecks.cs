using System.Globalization;
using System.Net;

namespace Vigie.Inspection.Engine;

/// <summary>What a link points to: its host, whether that host is a raw IP, whether the path names a program.</summary>
internal static class UrlChecks
{
    /// <summary>The host of an absolute URL (or of "host/path" without scheme), lower case; null when there is none.</summary>
    public static string? Host(string url)
    {
        var text = url.Trim();
        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0)
        {
            if (text.StartsWith("mailto:", StringComparison.OrdinalIgnoreCase) || text.StartsWith('#') || text.StartsWith('/'))
            {
                return null;
            }

            if (!text.StartsWith("www.", StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }
        }

        var rest = scheme < 0 ? text : text[(scheme + 3)..];
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

        authority = authority.TrimEnd('.');
        return authority.Length == 0 ? null : authority.ToLowerInvariant();
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
