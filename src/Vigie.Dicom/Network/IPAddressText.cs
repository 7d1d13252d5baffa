using System.Net;

namespace Vigie.Dicom.Network;

/// <summary>
/// Addresses as an administrator writes them: IPv6, or IPv4 as four decimal numbers. The runtime's parser also takes
/// the legacy forms inet_aton does (0177.0.0.1 as octal, 0x7f.0.0.1, 127.1, 2130706433), so a zero-padded address from
/// an inventory (010.1.2.0/24) silently meant another network (8.1.2.0/24); before 2026-12-06 these were accepted.
/// </summary>
public static class IPAddressText
{
    public static bool TryParse(string? text, out IPAddress address)
    {
        address = IPAddress.None;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            if (!IPAddress.TryParse(text, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                return false;
            }

            address = v6;
            return true;
        }

        var parts = text.Split('.');
        if (parts.Length != 4)
        {
            return false;
        }

        foreach (var part in parts)
        {
            if (part.Length is 0 or > 3 || (part.Length > 1 && part[0] == '0') || !part.All(char.IsAsciiDigit) || int.Parse(part, System.Globalization.CultureInfo.InvariantCulture) > 255)
            {
                return false;
            }
        }

        address = IPAddress.Parse(text);
        return true;
    }

    /// <summary>What <see cref="TryParse"/> wants, for messages.</summary>
    public const string Expected = "an IPv4 address as four decimal numbers without leading zeros (10.1.2.3) or an IPv6 address";
}
