using Vigie.Audit.Signing;

namespace Vigie.Audit.Model;

/// <summary>A stored entry as queries return it. <see cref="Details"/> is filled only when the caller asked to unseal.</summary>
public sealed record AuditEntry
{
    public required long Sequence { get; init; }
    public required DateTimeOffset Time { get; init; }
    public required AuditCode EventId { get; init; }
    public required IReadOnlyList<AuditCode> EventTypes { get; init; }
    public required AuditAction Action { get; init; }
    public required AuditOutcome Outcome { get; init; }
    public required string UserId { get; init; }
    public required IReadOnlyList<AuditParticipant> Participants { get; init; }
    public AuditCode? PurposeOfUse { get; init; }
    public string? PatientRef { get; init; }
    public required string SourceId { get; init; }
    public string? SealKeyId { get; init; }
    public byte[]? Sealed { get; init; }
    public required byte[] LeafHash { get; init; }
    public AuditDetails? Details { get; init; }
}

/// <summary>Filters for <c>vigie audit show</c> and the patient portal. Paging is by sequence number (keyset).</summary>
public sealed record AuditQuery
{
    public string? PatientRef { get; init; }

    /// <summary>
    /// Entries about any of these patients (one Patient ID under each issuer it is known by), besides <see cref="PatientRef"/>.
    /// </summary>
    public IReadOnlyList<string>? PatientRefs { get; init; }

    public string? UserId { get; init; }
    public DateTimeOffset? From { get; init; }
    public DateTimeOffset? To { get; init; }

    /// <summary>EventID code, for example "110110".</summary>
    public string? EventId { get; init; }

    /// <summary>EventTypeCode code, for example "110122".</summary>
    public string? EventType { get; init; }
    public AuditOutcome? Outcome { get; init; }

    /// <summary>Newest first (default) or oldest first.</summary>
    public bool Ascending { get; init; }

    /// <summary>The <see cref="AuditPage.NextCursor"/> of the previous page.</summary>
    public long? Cursor { get; init; }
    public int Limit { get; init; } = 100;

    /// <summary>Open the sealed details (needs the host's sealer; the caller must be allowed to see them).</summary>
    public bool Unseal { get; init; }
}

public sealed record AuditPage(IReadOnlyList<AuditEntry> Entries, long? NextCursor);

/// <summary>An inclusion proof with the signed tree head it is against.</summary>
public sealed record AuditInclusionProof(long Sequence, long TreeSize, byte[] LeafHash, IReadOnlyList<byte[]> AuditPath, SignedTreeHead TreeHead)
{
    public bool Verify() => Merkle.MerkleProofs.VerifyInclusion(Sequence, TreeSize, LeafHash, AuditPath, TreeHead.RootHash);
}

/// <summary>A consistency proof between two signed tree heads.</summary>
public sealed record AuditConsistencyProof(SignedTreeHead First, SignedTreeHead Second, IReadOnlyList<byte[]> Proof)
{
    public bool Verify() => Merkle.MerkleProofs.VerifyConsistency(First.TreeSize, Second.TreeSize, First.RootHash, Second.RootHash, Proof);
}

/// <summary>Raised when stored data contradicts itself while serving a request; run verification to locate it.</summary>
public sealed class AuditIntegrityException(string message) : Exception(message);
