using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Inspection;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Ingest;

/// <summary>What a re-inspection of the archive should do.</summary>
public sealed record RescanRequest
{
    /// <summary>Name flagged objects by their decrypted SOP Instance and Study Instance UIDs, to find the study.</summary>
    public bool RevealIdentifiers { get; init; }

    /// <summary>Only objects written at or after this time (a campaign's known start); all of them when null.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Objects inspected at once (cores).</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>How many objects the index holds, when the caller counted them already (for its progress bar).</summary>
    public long? IndexedObjects { get; init; }
}

/// <summary>One archived object that today's rules find malicious (or suspicious, where the gateway quarantines those).</summary>
public sealed record RescanHit(ObjectId ObjectId, VerdictKind Verdict, IReadOnlyList<Finding> Findings, string? SopInstanceUid, string? StudyInstanceUid);

/// <summary>
/// The outcome of a re-inspection: how much was read, what was flagged, what could not be read, and how many indexed
/// objects had no file to read (a whole run only).
/// </summary>
public sealed record RescanReport(long Objects, long Bytes, IReadOnlyList<RescanHit> Hits, IReadOnlyList<(ObjectId ObjectId, string Problem)> Unreadable,
    TimeSpan Duration, long NotFound = 0)
{
    /// <summary>0 nothing found, 1 something flagged, 2 objects that could not be read or were not there (scrub says more).</summary>
    public int ExitCode => Unreadable.Count > 0 || NotFound > 0 ? 2 : Hits.Count > 0 ? 1 : 0;

    /// <summary>Objects withheld by an earlier run that this whole run no longer flags, released.</summary>
    public int Released { get; init; }

    /// <summary>Objects this run no longer flags that stay withheld: another rules folder's run flagged them too.</summary>
    public int HeldByOtherRules { get; init; }

    /// <summary>The counts in one line, for the trail, the log and the terminal alike.</summary>
    public string Summary => $"{Objects} objects, {Hits.Count} flagged (withheld from forwarding and retrieval), {Unreadable.Count} unreadable"
        + (NotFound > 0 ? $", {NotFound} indexed but not found on disk" : string.Empty)
        + (Released > 0 ? $", {Released} no longer flagged and released" : string.Empty)
        + (HeldByOtherRules > 0 ? $", {HeldByOtherRules} no longer flagged by these rules but still withheld by another rules folder's rescan" : string.Empty);
}

/// <summary>
/// Inspects every archived object again with today's rules: a signature published after an object was accepted (a
/// new indicator of compromise) finds it where it already sits. Flagged objects stay where they are (the archive is
/// immutable): each is audited as a security alert under its patient, so that the security officer can follow up
/// the study, and the run itself is audited.
/// </summary>
public sealed class ArchiveRescan(IObjectStore store, IArchiveIndex index, WithheldObjects withheld, Inspector inspector, IAuditLog audit, IArchiveKeyService keys, IOptionsMonitor<GatewayOptions> options,
    IOptions<Vigie.Inspection.Signatures.SignatureOptions> signatures, TimeProvider time, ILogger<ArchiveRescan> logger)
{
    private static readonly DicomReadOptions HeaderRead = new() { StopAtTag = DicomTags.PixelData };

    public async Task<RescanReport> RunAsync(RescanRequest request, string operatorName, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        // The flags this run raises or lifts are those of its rules folder: another campaign's folder lifts none of them.
        // One name per folder: a trailing slash or a link made the same folder another one, whose flags it could not lift.
        var source = string.IsNullOrWhiteSpace(signatures.Value.RulesDirectory) ? WithheldObjects.BuiltInOnly : WithheldObjects.SourceOf(signatures.Value.RulesDirectory);
        var hits = new ConcurrentBag<RescanHit>();
        var unreadable = new ConcurrentBag<(ObjectId, string)>();
        long objects = 0, bytes = 0;
        var quarantineSuspicious = options.CurrentValue.QuarantineSuspicious;
        var inMemoryLimit = options.CurrentValue.InMemoryInspectionLimit;
        // The run reads the files it finds: an object whose file is gone would simply not be read, and the count look
        // whole (before 2026-12-06). Everything indexed before the start has its file by then.
        var indexed = request.Since is null ? request.IndexedObjects ?? (await index.GetStatsAsync(cancellationToken).ConfigureAwait(false)).Objects : 0;
        await Parallel.ForEachAsync(store.ListWrittenSinceAsync(request.Since ?? DateTimeOffset.MinValue, cancellationToken),
            new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, request.Parallelism), CancellationToken = cancellationToken },
            async (written, ct) =>
            {
                try
                {
                    await using var reader = await store.OpenReadAsync(written.Id, ct).ConfigureAwait(false);
                    reader.ReleasePagesWhenDone();
                    using var content = await ContentFromAsync(reader, inMemoryLimit, ct).ConfigureAwait(false);
                    var verdict = await inspector.InspectAsync(content, null, ct).ConfigureAwait(false);
                    Interlocked.Add(ref bytes, reader.Length);
                    if (verdict.Kind is VerdictKind.Malicious or VerdictKind.Error || (verdict.Kind == VerdictKind.Suspicious && quarantineSuspicious))
                    {
                        var header = await ReadHeaderAsync(content, ct).ConfigureAwait(false);
                        var findings = verdict.Findings.Where(f => f.Severity > Severity.Info).ToList();
                        var hit = new RescanHit(written.Id, verdict.Kind, findings, request.RevealIdentifiers ? Uid(header, DicomTags.SOPInstanceUID) : null,
                            request.RevealIdentifiers ? Uid(header, DicomTags.StudyInstanceUID) : null);
                        // Audited as found: a long run stopped half-way still leaves what it found in the trail.
                        await audit.AppendAsync(HitRecord(hit, header, operatorName), ct).ConfigureAwait(false);
                        await withheld.WithholdAsync(written.Id, source, FlagRules(findings), ct).ConfigureAwait(false);
                        hits.Add(hit);
                    }
                }
                catch (Exception e) when (e is ObjectFormatException or IOException or EndOfStreamException)
                {
                    unreadable.Add((written.Id, e.Message));
                }

                // Counted apart: with no progress to report, `progress?.Report(...)` would not evaluate its argument.
                var done = Interlocked.Increment(ref objects);
                progress?.Report(done);
            }).ConfigureAwait(false);

        // A whole run with today's rules is the judgement: what it no longer flags is released (a rule withdrawn).
        var (released, heldByOtherRules) = request.Since is null && unreadable.IsEmpty
            ? await withheld.ReleaseAllButAsync(hits.Select(h => h.ObjectId).ToHashSet(), source, cancellationToken).ConfigureAwait(false)
            : (0, 0);
        var report = new RescanReport(objects, bytes, [.. hits.OrderBy(h => h.ObjectId)], [.. unreadable.OrderBy(u => u.Item1)],
            Stopwatch.GetElapsedTime(started), Math.Max(0, indexed - objects)) { Released = released, HeldByOtherRules = heldByOtherRules };
        // A Security Alert typed Use of Restricted Function, informative (outcome 0) when clean, PS3.15 A.5.3.11. Before
        // 2026-12-07 an Application Activity of that type, which A.5.3.1 does not allow.
        await audit.AppendAsync(new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
            Action = AuditAction.Execute,
            Outcome = report.ExitCode == 0 ? AuditOutcome.Success : AuditOutcome.MinorFailure,
            Participants = [AuditParticipant.LocalOperator(operatorName)],
            Details = new AuditDetails
            {
                OutcomeDescription = $"archive re-inspected{(request.Since is { } since ? $" (objects written since {since:O})" : string.Empty)}: {report.Summary}",
            },
        }, cancellationToken).ConfigureAwait(false);
        logger.LogInformation("{Operator} re-inspected the archive: {Summary}", operatorName, report.Summary);
        return report;
    }

    /// <summary>An object read back decrypted: into memory when small (the common case), else by ranges.</summary>
    private static async ValueTask<ContentSource> ContentFromAsync(ArchiveObjectReader reader, int inMemoryLimit, CancellationToken cancellationToken)
    {
        if (reader.Length <= inMemoryLimit)
        {
            var bytes = GC.AllocateUninitializedArray<byte>((int)reader.Length);
            var filled = 0;
            while (filled < bytes.Length)
            {
                var read = await reader.ReadAsync(filled, bytes.AsMemory(filled), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new EndOfStreamException("The spool is shorter than its trailer says.");
                }

                filled += read;
            }

            return ContentSource.FromMemory(bytes);
        }

        return new ObjectContentSource(reader);
    }

    private AuditRecord HitRecord(RescanHit hit, DicomDataset? header, string operatorName)
    {
        var rules = string.Join(", ", hit.Findings.Select(f => f.Rule).Distinct(StringComparer.Ordinal));
        return UnderPatient(new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
            Action = AuditAction.Read,
            Outcome = AuditOutcome.SeriousFailure,
            Participants = [AuditParticipant.LocalOperator(operatorName)],
            Details = new AuditDetails { OutcomeDescription = $"archived object {hit.ObjectId} flagged by re-inspection ({hit.Verdict}): {rules}" },
        }, header);
    }

    /// <summary>The record filed under the patient and study the object's header names, as the flag was.</summary>
    private AuditRecord UnderPatient(AuditRecord record, DicomDataset? header)
    {
        var patientId = header?.GetString(DicomTags.PatientID) ?? string.Empty;
        var study = Uid(header, DicomTags.StudyInstanceUID);
        return record with
        {
            PatientRef = header is null ? null : GatewayAudit.PatientRef(keys, patientId, header.GetString(DicomTags.IssuerOfPatientID)),
            Details = record.Details! with
            {
                Objects = header is null || study is null
                    ? []
                    :
                    [
                        GatewayAudit.Study(study, Uid(header, DicomTags.SOPClassUID), accession: header.GetString(DicomTags.AccessionNumber)),
                        GatewayAudit.Patient(patientId, header.GetString(DicomTags.PatientName)),
                    ],
            },
        };
    }

    /// <summary>
    /// An officer's release of a withheld object: every flag lifted, and the release audited under the object's patient,
    /// where the flag is (it named no patient until 2026-12-07). Returns how many flags were lifted (0: not withheld).
    /// </summary>
    public async Task<int> ReleaseAsync(ObjectId id, string reason, string operatorName, CancellationToken cancellationToken)
    {
        var lifted = await withheld.ReleaseAsync(id, cancellationToken).ConfigureAwait(false);
        if (lifted == 0)
        {
            return 0;
        }

        DicomDataset? header = null;
        try
        {
            await using var reader = await store.OpenReadAsync(id, cancellationToken).ConfigureAwait(false);
            using var content = await ContentFromAsync(reader, options.CurrentValue.InMemoryInspectionLimit, cancellationToken).ConfigureAwait(false);
            header = await ReadHeaderAsync(content, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectFormatException or IOException or EndOfStreamException)
        {
            // Released all the same; the record then names the object only.
            logger.LogWarning("Released object {ObjectId} could not be read for its patient: {Error}", id, e.Message);
        }

        await audit.AppendAsync(UnderPatient(new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
            Action = AuditAction.Execute,
            Participants = [AuditParticipant.LocalOperator(operatorName)],
            Details = new AuditDetails { OutcomeDescription = $"archived object {id} released from withholding ({lifted} flag(s) lifted): {reason}" },
        }, header), cancellationToken).ConfigureAwait(false);
        return lifted;
    }

    /// <summary>The rules a flag keeps: the rule ids, and for signatures the indicator's name (no patient data in either).</summary>
    private static string FlagRules(IReadOnlyList<Finding> findings) => string.Join(", ", findings
        .Select(f => f.Rule.StartsWith("signature.", StringComparison.Ordinal) ? $"{f.Rule} ({(f.Message.Length > 120 ? f.Message[..120] + "…" : f.Message)})" : f.Rule)
        .Distinct(StringComparer.Ordinal).Take(8));

    private static async ValueTask<DicomDataset?> ReadHeaderAsync(ContentSource content, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = content.OpenStream();
            return (await DicomReader.ReadFileAsync(stream, HeaderRead, cancellationToken).ConfigureAwait(false)).Dataset;
        }
        catch (DicomParseException)
        {
            return null;
        }
    }

    private static string? Uid(DicomDataset? header, DicomTag tag) => header?.GetString(tag) is { } value ? DicomText.TrimUid(value) : null;
}
