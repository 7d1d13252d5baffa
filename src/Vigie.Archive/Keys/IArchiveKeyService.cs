namespace Vigie.Archive.Keys;

/// <summary>
/// The keys derived from the archive's root key, for the modules that store details next to the index
/// (the audit trail): sealing bytes and hashing identifiers the same way the index does, so an audit entry can be
/// matched to a patient without either holding the identifier in plain.
/// </summary>
public interface IArchiveKeyService
{
    /// <summary>Bytes of <see cref="HashIdentifier"/>'s output.</summary>
    int IdentifierHashLength { get; }

    /// <summary>Loads (on first start: creates) the keys. Every other member needs it done.</summary>
    ValueTask EnsureLoadedAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Keys this process holds in memory that a restart would not find again: the key-encryption key file or the root
    /// key gone or unreadable. Empty when all is in place (or nothing is loaded yet).
    /// </summary>
    IReadOnlyList<string> FindCustodyProblems();

    /// <summary>
    /// The same, after looking at the key file again when due (as a store does): on an idle node a replaced file went
    /// unreported, and a refusal stayed after the right file was back, until the next store (before 2026-12-06).
    /// </summary>
    async ValueTask<IReadOnlyList<string>> FindCustodyProblemsAsync(CancellationToken cancellationToken)
    {
        await RefreshKeyFileAsync(cancellationToken).ConfigureAwait(false);
        return FindCustodyProblems();
    }

    /// <summary>Looks at the key-encryption key file again if it is due.</summary>
    ValueTask RefreshKeyFileAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>AES-256-GCM under the sealing key, random nonce; <paramref name="context"/> is bound as associated data.</summary>
    byte[] Seal(ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> context);

    /// <summary>Opens what <see cref="Seal"/> made with the same context; throws <see cref="System.Security.Cryptography.CryptographicException"/> otherwise.</summary>
    byte[] Open(ReadOnlySpan<byte> sealedData, ReadOnlySpan<byte> context);

    /// <summary>
    /// HMAC-SHA256 under the index key of (<paramref name="kind"/>, <paramref name="value"/>), truncated to
    /// <see cref="IdentifierHashLength"/> bytes. Use <see cref="IdentifierKinds"/> and the normalisation the index uses
    /// (<see cref="Index.IndexNormalizer"/>) to get the index's own values.
    /// </summary>
    byte[] HashIdentifier(string kind, string value);
}

/// <summary>The kinds of identifiers the index hashes. The kind is part of the hash: the same string under two kinds hashes apart.</summary>
public static class IdentifierKinds
{
    /// <summary>Issuer of Patient ID + NUL + Patient ID: one patient.</summary>
    public const string Patient = "patient";
    public const string PatientId = "patient-id";
    public const string PatientName = "patient-name";
    public const string PatientNamePrefix = "patient-name-prefix";
    public const string PatientBirthDate = "patient-birth-date";
    public const string StudyInstanceUid = "study-uid";
    public const string SeriesInstanceUid = "series-uid";
    public const string SopInstanceUid = "sop-uid";
    public const string AccessionNumber = "accession";
    public const string StudyMonth = "study-month";
    public const string ReferringPhysicianName = "referring-name";
    public const string ReferringPhysicianNamePrefix = "referring-name-prefix";
}
