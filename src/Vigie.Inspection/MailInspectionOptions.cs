namespace Vigie.Inspection;

/// <summary>What the mail analyser knows about the hospital's own addresses. Bound from "Inspection:Mail".</summary>
public sealed class MailInspectionOptions
{
    public const string Section = "Inspection:Mail";

    /// <summary>The organisation's own mail domains (subdomains included). A sender outside them is external.</summary>
    public List<string> InternalDomains { get; set; } = [];

    /// <summary>Names of internal people or services whose use as a display name by an external sender is spoofing.</summary>
    public List<string> InternalDisplayNames { get; set; } = [];

    /// <summary>Domains that look-alike links are compared with; the internal domains are always included.</summary>
    public List<string> ProtectedDomains { get; set; } = [];

    /// <summary>Largest edit distance at which a link's domain counts as a look-alike of a protected one.</summary>
    public int LookalikeMaxDistance { get; set; } = 2;

    /// <summary>Most links checked in one message.</summary>
    public int MaxLinks { get; set; } = 2_000;

    /// <summary>Most bytes of one body read for link and smuggling checks.</summary>
    public int MaxBodyBytes { get; set; } = 8 * 1024 * 1024;
}
