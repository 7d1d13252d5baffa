using System.Net;

namespace Vigie.Access;

/// <summary>Who asks. Every entry point (DIMSE, DICOMweb, portals, CLI) describes its caller as a subject.</summary>
public abstract record Subject
{
    /// <summary>A human-readable name for the audit trail.</summary>
    public abstract string Describe();
}

/// <summary>A DICOM application entity calling from an address, possibly with a verified user identity.</summary>
public sealed record DicomNodeSubject(string CallingAE, IPAddress? Address, string? UserName = null, string? CertificateSubject = null) : Subject
{
    public override string Describe() => $"{CallingAE}@{Address}{(UserName is null ? "" : $" ({UserName})")}";
}

/// <summary>What the subject wants to do.</summary>
public enum AccessAction
{
    /// <summary>Open a DICOM association at all.</summary>
    DicomAssociate,
    DicomStore,
    DicomQuery,
    DicomRetrieve,
}

/// <summary>A DICOM node's rights, in configuration ("Store", "Query", "Retrieve").</summary>
[Flags]
public enum DicomRights
{
    None = 0,
    Store = 1,
    Query = 2,
    Retrieve = 4,
    All = Store | Query | Retrieve,
}

public sealed record AccessRequest(Subject Subject, AccessAction Action, string? Resource = null);

/// <summary>The answer, with the reason and the rule that decided: both go to the audit trail.</summary>
public sealed record AccessDecision(bool Permitted, string Reason, string? Rule)
{
    public static AccessDecision Permit(string reason, string rule) => new(true, reason, rule);

    public static AccessDecision Deny(string reason, string? rule = null) => new(false, reason, rule);
}

/// <summary>The one place that decides whether a subject may act on a resource.</summary>
public interface IPolicyDecisionPoint
{
    ValueTask<AccessDecision> DecideAsync(AccessRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// Every DICOM right the node rules grant this subject (for presentation context negotiation). A refusal without a
    /// <see cref="AccessDecision.Rule"/> means no rule names this AE title from this address: the caller is unknown,
    /// whatever user it claims, so its user identity need not be checked.
    /// </summary>
    ValueTask<(DicomRights Rights, AccessDecision Decision)> DicomRightsAsync(DicomNodeSubject subject, CancellationToken cancellationToken);
}
