using System.Net;

namespace Vigie.Gateway.Ingest;

/// <summary>How an object entered: DIMSE C-STORE, DICOMweb STOW-RS, or a local import.</summary>
public enum IngestChannel
{
    Dimse,
    Stow,
    Import,

    /// <summary>Filed again from the archive after a power cut took the index rows of objects already acknowledged.</summary>
    Recovery,
}

/// <summary>Who sent an object, for the audit trail and the index's sealed source record.</summary>
public sealed record IngestSource(IngestChannel Channel, string CallingAE, IPAddress? Address, string? UserName = null, string? CalledAE = null);

/// <summary>What happened to one object.</summary>
public enum IngestOutcome
{
    /// <summary>Stored as a new instance or a new version.</summary>
    Stored,

    /// <summary>The same content was already stored: nothing changed.</summary>
    AlreadyStored,

    /// <summary>Inspection found a threat: quarantined, refused to the sender.</summary>
    Quarantined,

    /// <summary>Not a usable DICOM object (unreadable, required UIDs missing, not the instance announced): refused, nothing kept.</summary>
    Refused,
}

/// <summary>The outcome with the DIMSE status and Error Comment to answer, and what inspection found.</summary>
public sealed record IngestResult(IngestOutcome Outcome, ushort Status, string? Comment, Inspection.Verdict? Verdict, string? QuarantineId = null);
