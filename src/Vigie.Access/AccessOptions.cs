namespace Vigie.Access;

/// <summary>Access rules (configuration section "Access").</summary>
public sealed class AccessOptions
{
    public const string Section = "Access";

    /// <summary>Calling AE titles allowed to associate, each bound to networks, with their rights. Unknown callers are rejected.</summary>
    public List<DicomNodeRule> DicomNodes { get; set; } = [];

    /// <summary>DICOM users for User Identity Negotiation (username and passcode).</summary>
    public List<DicomUser> DicomUsers { get; set; } = [];
}

/// <summary>"CT1 from 10.1.2.0/24 may store": an allow-list entry.</summary>
public sealed class DicomNodeRule
{
    /// <summary>Calling AE title; "*" for any title from the networks.</summary>
    public string AETitle { get; set; } = string.Empty;

    /// <summary>CIDR networks or single addresses the AE may call from.</summary>
    public List<string> Networks { get; set; } = [];

    public DicomRights Rights { get; set; } = DicomRights.Store;

    /// <summary>When set, the association must carry a verified user identity (username and passcode).</summary>
    public bool RequireUser { get; set; }

    /// <summary>Parses the command-line form AE@CIDR (rights: store, query and retrieve).</summary>
    public static DicomNodeRule Parse(string text)
    {
        var at = text.LastIndexOf('@');
        if (at <= 0 || at == text.Length - 1)
        {
            throw new FormatException($"'{text}' is not AE@CIDR (for example CT1@10.0.0.0/24).");
        }

        var rule = new DicomNodeRule { AETitle = text[..at], Networks = [text[(at + 1)..]], Rights = DicomRights.All };
        _ = AccessPolicy.ParseNetwork(rule.Networks[0]);
        return rule;
    }

    public override string ToString() => $"{AETitle}@{string.Join(',', Networks)} [{Rights}]";
}

/// <summary>A DICOM user: name and a PBKDF2 hash of the passcode (see `vigie access hash-password`).</summary>
public sealed class DicomUser
{
    public string Name { get; set; } = string.Empty;

    /// <summary>pbkdf2-sha256$iterations$salt(base64)$hash(base64).</summary>
    public string PasswordHash { get; set; } = string.Empty;
}
