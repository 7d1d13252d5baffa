using Vigie.Audit.Signing;

namespace Vigie.Audit.Verification;

public enum AuditProblemKind
{
    /// <summary>An entry's columns no longer hash to its stored leaf hash.</summary>
    EntryModified,

    /// <summary>An entry's leaf hash was rewritten, but the next entry still chains to the original.</summary>
    ChainBroken,

    /// <summary>Sequence numbers skip: entries were deleted.</summary>
    EntryMissing,

    /// <summary>An entry was inserted and the ones after it renumbered.</summary>
    EntryInserted,

    /// <summary>An entry was removed and the ones after it renumbered.</summary>
    EntryRemoved,

    /// <summary>Entries traded places (a swap or a rotation): each is whole, but stored under another sequence number.</summary>
    EntryMoved,

    /// <summary>A row cannot even be read (a column has the wrong type).</summary>
    EntryUnreadable,

    /// <summary>A stored subtree hash disagrees with the entries (proofs served from it would fail).</summary>
    NodeMismatch,
    NodeMissing,
    NodeUnexpected,

    /// <summary>The entries do not hash to a signed tree head's root.</summary>
    TreeHeadMismatch,

    /// <summary>A tree head's signature does not verify.</summary>
    TreeHeadSignature,

    /// <summary>A tree head is signed by a key the verifier does not trust.</summary>
    TreeHeadUntrustedKey,

    /// <summary>A signed tree head is larger than the log: entries at the end were removed.</summary>
    Truncated,

    /// <summary>The append state (size, frontier, last leaf) disagrees with the entries.</summary>
    StateMismatch,

    /// <summary>The patient index (runs of entries per patient) disagrees with the entries: a patient's view would miss some.</summary>
    PatientIndexMismatch,

    /// <summary>The time index (runs of entries per minute) disagrees with the entries: a search by time would miss some.</summary>
    TimeIndexMismatch,
}

/// <summary>One problem, naming the entry (sequence number) or tree head it concerns, with a reason.</summary>
public sealed record AuditProblem(AuditProblemKind Kind, long? Sequence, long? TreeSize, string Reason)
{
    public override string ToString() =>
        (Sequence is not null ? $"entry {Sequence}: " : TreeSize is not null ? $"tree head {TreeSize}: " : "") + $"{Kind}: {Reason}";
}

public sealed record AuditVerificationReport(
    long EntriesChecked,
    long TreeSize,
    int TreeHeadsChecked,
    SignedTreeHead? LatestVerifiedHead,
    IReadOnlyList<AuditProblem> Problems,
    int ProblemCount,
    TimeSpan Elapsed)
{
    public bool IsValid => ProblemCount == 0;

    /// <summary>Entries appended while verification ran (a node serving): not checked, left for the next run.</summary>
    public long AppendedMeanwhile { get; init; }

    /// <summary>
    /// The latest head this node signed, as recorded beside its signing key (checked as a witnessed head), or null when
    /// there is no such record (since 2026-12-07).
    /// </summary>
    public SignedTreeHead? RecordedHead { get; init; }

    /// <summary>The size of the largest tree head with a trusted signature, whether the entries then match it or not.</summary>
    public long SignedTreeSize { get; init; }

    /// <summary>
    /// Entries under no signed tree head: protected by the chain only until the next head. Entries under a head that
    /// fails are signed (and reported as altered), not unsigned: before 2026-12-08 a tampered trail counted them all here.
    /// </summary>
    public long UnsignedEntries => Math.Max(0, TreeSize - Math.Max(LatestVerifiedHead?.TreeSize ?? 0, Math.Min(TreeSize, SignedTreeSize)));
}

/// <summary>What verification trusts beyond the database.</summary>
public sealed record AuditVerifyOptions
{
    /// <summary>Public keys accepted for tree heads; defaults to the signing key and <see cref="AuditOptions.TrustedPublicKeys"/>.</summary>
    public IReadOnlyList<AuditPublicKey>? TrustedKeys { get; init; }

    /// <summary>Public keys trusted besides those (an auditor's copy holds no private key: it is given the public one).</summary>
    public IReadOnlyList<AuditPublicKey> AdditionalTrustedKeys { get; init; } = [];

    /// <summary>A tree head kept outside the database (SIEM, printout, another node): detects truncation of the heads themselves.</summary>
    public IReadOnlyList<SignedTreeHead> WitnessedHeads { get; init; } = [];

    /// <summary>
    /// Leaves out the record of the last head this node signed (beside its key), which is otherwise checked as a witnessed
    /// head: to check a deliberately restored log by itself before accepting it.
    /// </summary>
    public bool IgnoreOwnWitness { get; init; }
}
