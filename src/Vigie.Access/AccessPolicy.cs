using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Dicom.Network;

namespace Vigie.Access;

/// <summary>
/// The policy decision point. DICOM nodes: an allow-list of calling AE titles bound to networks, each with rights;
/// the first rule that names the caller's title and address decides, unknown callers are denied.
/// </summary>
internal sealed class AccessPolicy(IOptionsMonitor<AccessOptions> options) : IPolicyDecisionPoint
{
    private static readonly Meter Meter = new("Vigie.Access");
    private static readonly Counter<long> Decisions = Meter.CreateCounter<long>("vigie.access.decisions", description: "Access decisions by action and outcome");

    public ValueTask<AccessDecision> DecideAsync(AccessRequest request, CancellationToken cancellationToken)
    {
        var decision = request.Subject switch
        {
            DicomNodeSubject node => DecideDicom(node, request.Action),
            _ => AccessDecision.Deny("no rule covers this kind of subject"),
        };
        Decisions.Add(1, new KeyValuePair<string, object?>("action", request.Action.ToString()), new KeyValuePair<string, object?>("permitted", decision.Permitted));
        return ValueTask.FromResult(decision);
    }

    public ValueTask<(DicomRights Rights, AccessDecision Decision)> DicomRightsAsync(DicomNodeSubject subject, CancellationToken cancellationToken)
    {
        var (rule, reason) = Match(subject);
        if (rule is null)
        {
            return ValueTask.FromResult((DicomRights.None, AccessDecision.Deny(reason)));
        }

        if (rule.RequireUser && subject.UserName is null)
        {
            return ValueTask.FromResult((DicomRights.None, AccessDecision.Deny($"rule {rule} requires a user identity", rule.ToString())));
        }

        return ValueTask.FromResult((rule.Rights, AccessDecision.Permit($"rule {rule}", rule.ToString())));
    }

    /// <summary>
    /// Checks a username and passcode against the configured DICOM users (constant-time comparison). An unknown name
    /// costs the same PBKDF2 as a known one, against a fixed salt, so the answer's time does not tell which names exist
    /// (before 2026-12-07 an unknown name was refused in 3.6 ms, a known one in 50 ms).
    /// </summary>
    public bool VerifyDicomUser(string name, string passcode)
    {
        var users = options.CurrentValue.DicomUsers;
        var user = users.Find(u => string.Equals(u.Name, name, StringComparison.Ordinal));
        var matches = PasswordHashing.Verify(passcode, user?.PasswordHash ?? PasswordHashing.Unmatchable(users.Select(u => u.PasswordHash)));
        return user is not null && matches;
    }

    /// <summary>
    /// An address or CIDR network, strictly (see <see cref="IPAddressText"/>). An IPv4-mapped IPv6 network
    /// (::ffff:10.1.2.0/120) is its IPv4 network, which is how callers are matched; before 2026-12-06 it matched nobody.
    /// </summary>
    internal static IPNetwork ParseNetwork(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (IPAddressText.TryParse(slash < 0 ? text : text[..slash], out var address))
        {
            var bits = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
            var prefix = bits;
            if (slash < 0 || (int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out prefix)
                              && prefix <= bits))
            {
                if (address.IsIPv4MappedToIPv6 && prefix >= 96)
                {
                    return new IPNetwork(address.MapToIPv4(), prefix - 96);
                }

                if (IPNetwork.TryParse($"{address}/{prefix}", out var network))
                {
                    return network;
                }
            }
        }

        throw new FormatException($"'{text}' is not an IP address or network (an address, or CIDR such as 10.1.2.0/24).");
    }

    private AccessDecision DecideDicom(DicomNodeSubject node, AccessAction action)
    {
        var (rule, reason) = Match(node);
        if (rule is null)
        {
            return AccessDecision.Deny(reason);
        }

        if (rule.RequireUser && node.UserName is null)
        {
            return AccessDecision.Deny($"rule {rule} requires a user identity", rule.ToString());
        }

        var needed = action switch
        {
            AccessAction.DicomAssociate => DicomRights.None,
            AccessAction.DicomStore => DicomRights.Store,
            AccessAction.DicomQuery => DicomRights.Query,
            AccessAction.DicomRetrieve => DicomRights.Retrieve,
            _ => DicomRights.All,
        };
        return (rule.Rights & needed) == needed
            ? AccessDecision.Permit($"rule {rule}", rule.ToString())
            : AccessDecision.Deny($"rule {rule} does not grant {needed}", rule.ToString());
    }

    private (DicomNodeRule? Rule, string Reason) Match(DicomNodeSubject node)
    {
        var rules = options.CurrentValue.DicomNodes;
        var titleKnown = false;
        foreach (var rule in rules)
        {
            if (rule.AETitle != "*" && !string.Equals(rule.AETitle, node.CallingAE, StringComparison.Ordinal))
            {
                continue;
            }

            titleKnown |= rule.AETitle != "*";
            if (node.Address is not null && rule.Networks.Exists(n => Contains(n, node.Address)))
            {
                return (rule, string.Empty);
            }
        }

        return (null, titleKnown
            ? $"calling AE '{node.CallingAE}' is not allowed from {node.Address}"
            : $"calling AE '{node.CallingAE}' is not in the allow-list");
    }

    private static bool Contains(string network, IPAddress address)
    {
        var candidate = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        try
        {
            return ParseNetwork(network).Contains(candidate);
        }
        catch (FormatException)
        {
            return false;
        }
    }
}

/// <summary>PBKDF2-SHA256 passcode hashes: "pbkdf2-sha256$iterations$salt$hash".</summary>
public static class PasswordHashing
{
    private const int Iterations = 210_000;

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, 32);
        return string.Create(CultureInfo.InvariantCulture, $"pbkdf2-sha256${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}");
    }

    public static bool Verify(string password, string encoded)
    {
        if (!TryParse(encoded, out var iterations, out var salt, out var expected))
        {
            return false;
        }

        var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    /// <summary>
    /// A well-formed hash no passcode is known to match (a fixed salt, a hash of zeros), as costly as the costliest of
    /// <paramref name="hashes"/> (the default when there are none): checked for a name nobody has, it takes the time a
    /// known name takes.
    /// </summary>
    internal static string Unmatchable(IEnumerable<string> hashes)
    {
        var iterations = Iterations;
        foreach (var hash in hashes)
        {
            if (TryParse(hash, out var cost, out _, out _))
            {
                iterations = Math.Max(iterations, cost);
            }
        }

        return string.Create(CultureInfo.InvariantCulture, $"pbkdf2-sha256${iterations}${UnmatchableSalt}${UnmatchableHash}");
    }

    private static readonly string UnmatchableSalt = Convert.ToBase64String(Encoding.ASCII.GetBytes("vigie-no-such-us"));

    private static readonly string UnmatchableHash = Convert.ToBase64String(new byte[32]);

    /// <summary>True when <paramref name="encoded"/> is a hash <see cref="Verify"/> can check (checked at start for each DICOM user).</summary>
    public static bool IsWellFormed(string encoded) => TryParse(encoded, out _, out _, out _);

    private static bool TryParse(string encoded, out int iterations, out byte[] salt, out byte[] expected)
    {
        (salt, expected) = ([], []);
        var parts = encoded.Split('$');
        if (parts.Length != 4 || parts[0] != "pbkdf2-sha256" || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out iterations)
            || iterations is < 10_000 or > 10_000_000)
        {
            iterations = 0;
            return false;
        }

        try
        {
            salt = Convert.FromBase64String(parts[2]);
            expected = Convert.FromBase64String(parts[3]);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
