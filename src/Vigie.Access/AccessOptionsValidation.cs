using System.Net;
using Microsoft.Extensions.Options;
using Vigie.Dicom.Network;

namespace Vigie.Access;

/// <summary>
/// Checks the allow-list when the node starts. A rule whose network does not parse used to be accepted and then never
/// matched: the modality was rejected as "not allowed from" its address and nothing pointed at the typo.
/// </summary>
internal sealed class AccessOptionsValidation : IValidateOptions<AccessOptions>
{
    public ValidateOptionsResult Validate(string? name, AccessOptions options)
    {
        var problems = new List<string>();
        var firstOfTitle = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < options.DicomNodes.Count; i++)
        {
            var rule = options.DicomNodes[i];
            var at = $"Access:DicomNodes:{i}";
            // The first entry that matches a caller decides: a second one for the same title with other rights only
            // applies from networks the first does not cover, which reads as something else (before 2026-12-06 accepted).
            if (rule.AETitle != "*" && firstOfTitle.TryGetValue(rule.AETitle, out var first)
                && (options.DicomNodes[first].Rights != rule.Rights || options.DicomNodes[first].RequireUser != rule.RequireUser))
            {
                problems.Add($"{at} repeats AE title '{rule.AETitle}' of Access:DicomNodes:{first} with other rights: the first entry matching a caller "
                    + "decides, so give each title one entry (its networks together) or the same rights");
            }

            firstOfTitle.TryAdd(rule.AETitle, i);
            if (rule.AETitle != "*" && AETitles.Problem(rule.AETitle) is { } title)
            {
                problems.Add($"{at}:AETitle '{rule.AETitle}' {title} ({AETitles.Rule}, or \"*\")");
            }

            if ((rule.Rights & ~DicomRights.All) != 0)
            {
                problems.Add($"{at}:Rights {(int)rule.Rights} is not a combination of Store, Query and Retrieve");
            }

            if (rule.Networks.Count == 0)
            {
                problems.Add($"{at}:Networks is empty: the rule would match no caller");
            }

            for (var j = 0; j < rule.Networks.Count; j++)
            {
                if (NetworkProblem(rule.Networks[j]) is { } problem)
                {
                    problems.Add($"{at}:Networks:{j} {problem}");
                }
            }
        }

        for (var i = 0; i < options.DicomUsers.Count; i++)
        {
            var user = options.DicomUsers[i];
            if (string.IsNullOrEmpty(user.Name) || !PasswordHashing.IsWellFormed(user.PasswordHash))
            {
                problems.Add($"Access:DicomUsers:{i} needs a Name and a PasswordHash made by 'vigie access hash-password'");
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    private static string? NetworkProblem(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (!IPAddressText.TryParse(slash < 0 ? text : text[..slash], out var address))
        {
            return $"'{text}' is not an IP address or a network such as 10.1.2.0/24 ({IPAddressText.Expected})";
        }

        if (slash < 0)
        {
            return null;
        }

        var bits = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
        if (!int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix)
            || prefix > bits)
        {
            return $"'{text}' has a prefix length that is not 0 to {bits}";
        }

        // An address with bits set past the prefix (10.1.2.5/24) names no network, so the rule would never match.
        var network = new IPAddress(Masked(address.GetAddressBytes(), prefix));
        return network.Equals(address) ? null : $"'{text}' has bits set past its prefix: write {network}/{prefix}";
    }

    private static byte[] Masked(byte[] bytes, int prefix)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(prefix - (i * 8), 0, 8);
            bytes[i] &= (byte)(0xFF << (8 - keep));
        }

        return bytes;
    }
}
