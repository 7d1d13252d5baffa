using System.Globalization;
using System.Text;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Scrub;

/// <summary>What is wrong with an object.</summary>
public enum ScrubFindingKind
{
    /// <summary>The index references an object whose file is gone.</summary>
    Missing,

    /// <summary>The file is ours but does not verify: altered, truncated, swapped, or disagreeing with the index.</summary>
    Corrupted,

    /// <summary>The file is not in our format, or is encrypted under a key we do not hold (the ransomware case).</summary>
    Foreign,

    /// <summary>A valid object that no index row references (a crash between the file commit and the index commit).</summary>
    Orphan,

    /// <summary>
    /// Index rows altered in the database (since 2026-12-07): a row that does not open bound to its parent (moved under
    /// another patient, study or series), a version row naming another instance's object, versions that disagree with the
    /// instance's current version, a scheduled deletion of a file the index still names (since 2026-12-08). Named by row ids.
    /// </summary>
    IndexTampered,
}

/// <summary>Where the index refers to an object: an instance version, or a quarantine record. Row ids, and identifiers only on request.</summary>
public sealed record ScrubIndexReference(
    long? PatientRowId,
    long? StudyRowId,
    long? SeriesRowId,
    long? InstanceRowId,
    int? Version,
    string? QuarantineId,
    string? SopInstanceUid = null,
    string? StudyInstanceUid = null)
{
    public override string ToString()
    {
        if (QuarantineId is not null)
        {
            return $"quarantine {QuarantineId}";
        }

        var text = string.Create(CultureInfo.InvariantCulture,
            $"instance #{InstanceRowId} v{Version} (series #{SeriesRowId}, study #{StudyRowId}, patient #{PatientRowId})");
        return SopInstanceUid is null ? text : text + $" SOP Instance UID {SopInstanceUid}, Study Instance UID {StudyInstanceUid}";
    }
}

/// <param name="Location">The file, relative to the data folder (objects/abc/&lt;id&gt; or quarantine/&lt;id&gt;.vobj).</param>
/// <param name="Problem">The reader's verdict when a file was read.</param>
public sealed record ScrubFinding(
    ScrubFindingKind Kind,
    string Location,
    ObjectId? ObjectId,
    ObjectProblem? Problem,
    string Reason,
    IReadOnlyList<ScrubIndexReference> References)
{
    public override string ToString()
    {
        var builder = new StringBuilder().Append(Kind.ToString().ToUpperInvariant()).Append(' ').Append(Location);
        if (ObjectId is { } id)
        {
            builder.Append(" object ").Append(id);
        }

        builder.Append(": ").Append(Reason);
        foreach (var reference in References)
        {
            builder.Append("; referenced by ").Append(reference);
        }

        return builder.ToString();
    }
}

/// <summary>The result of a scrub. The CLI prints <see cref="Summary"/> and the findings, and exits with <see cref="ExitCode"/>.</summary>
public sealed record ScrubReport(
    long ObjectsChecked,
    long QuarantinedChecked,
    long BytesVerified,
    long Healthy,
    long Missing,
    long Corrupted,
    long Foreign,
    long Orphans,
    IReadOnlyList<ScrubFinding> Findings,
    bool FindingsTruncated,
    TimeSpan Duration)
{
    /// <summary>
    /// Not clean either when maintenance scheduled orphans for deletion: before 2026-12-07 that counted as clean, and
    /// the acknowledged objects an older index no longer knew were deleted without an alert.
    /// </summary>
    public bool IsClean => Missing == 0 && Corrupted == 0 && Foreign == 0 && Orphans == 0 && OrphansScheduled == 0 && IndexTampered == 0;

    /// <summary>Index rows that fail their check (see <see cref="ScrubFindingKind.IndexTampered"/>).</summary>
    public long IndexTampered { get; init; }

    /// <summary>Unreferenced objects younger than the orphan grace: commits in flight, or interrupted moments ago (never acknowledged).</summary>
    public long InFlight { get; init; }

    /// <summary>Old orphans handed to the deletion schedule (maintenance runs only), each one audited.</summary>
    public long OrphansScheduled { get; init; }

    /// <summary>Old orphans that were valid instances the index did not know (an older index restored), filed again (maintenance runs only).</summary>
    public long OrphansFiled { get; init; }

    /// <summary>Quarantine files without a record whose record was rebuilt from their sealed reason (maintenance only).</summary>
    public long QuarantineRecordsRestored { get; init; }

    /// <summary>Objects waiting for their deletion grace to pass (not counted healthy).</summary>
    public long PendingDeletion { get; init; }

    /// <summary>Patient and study rows whose search terms were rewritten from their sealed attributes (maintenance runs only; since 2026-12-07).</summary>
    public long TermsRepaired { get; init; }

    /// <summary>0 when everything verified, 1 when anything is wrong.</summary>
    public int ExitCode => IsClean ? 0 : 1;

    public string Summary => string.Create(CultureInfo.InvariantCulture,
        $"{ObjectsChecked} objects and {QuarantinedChecked} quarantined files checked ({BytesVerified} bytes verified) in {Duration.TotalSeconds:F1} s: {Healthy} healthy, {Missing} missing, {Corrupted} corrupted, {Foreign} foreign, {Orphans} orphans{(IndexTampered > 0 ? $", {IndexTampered} index rows tampered with" : "")}{(InFlight > 0 ? $", {InFlight} in flight" : "")}{(PendingDeletion > 0 ? $", {PendingDeletion} pending deletion" : "")}{(OrphansFiled > 0 ? $", {OrphansFiled} orphans filed again" : "")}{(QuarantineRecordsRestored > 0 ? $", {QuarantineRecordsRestored} quarantine records rebuilt" : "")}{(OrphansScheduled > 0 ? $", {OrphansScheduled} orphans scheduled for deletion" : "")}{(TermsRepaired > 0 ? $", search terms of {TermsRepaired} index rows rewritten" : "")}.{(FindingsTruncated ? " (Finding list truncated.)" : "")}");
}

/// <summary>How a scrub runs.</summary>
public sealed record ScrubRequest
{
    /// <summary>Decrypt every segment and check the content hash (false: header, key and trailer only, much faster).</summary>
    public bool VerifyContent { get; init; } = true;

    /// <summary>Put decrypted SOP Instance and Study Instance UIDs into the references, for the operator who must re-fetch them.</summary>
    public bool RevealIdentifiers { get; init; }

    /// <summary>Check quarantine too.</summary>
    public bool IncludeQuarantine { get; init; } = true;

    /// <summary>
    /// Schedule the deletion of orphans older than the grace instead of reporting them (maintenance): those
    /// <see cref="FileOrphan"/> does not file, each audited, unless they exceed <see cref="ArchiveOptions.OrphanMaxShare"/>.
    /// </summary>
    public bool ScheduleOrphanDeletion { get; init; }

    /// <summary>
    /// Files an old orphan again when it is a valid instance the index does not know (true), oldest first, before any is
    /// scheduled for deletion. Before 2026-12-07 maintenance deleted them: after an older index was restored on
    /// PostgreSQL, that was every object acknowledged since the backup.
    /// </summary>
    public Func<WrittenObject, CancellationToken, ValueTask<bool>>? FileOrphan { get; init; }

    /// <summary>
    /// Rewrite the search terms of a patient or study row that has missing or extra ones, from its sealed attributes
    /// (maintenance; since 2026-12-07). The row is still reported, so the run is not clean and is audited.
    /// </summary>
    public bool RepairTerms { get; init; }

    /// <summary>
    /// Checks of records kept beside the index by other modules (the gateway's withheld flags, since 2026-12-08): their
    /// findings join the report.
    /// </summary>
    public Func<CancellationToken, ValueTask<IReadOnlyList<ScrubFinding>>>? CheckRecords { get; init; }
}
