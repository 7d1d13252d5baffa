using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Inspection;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// The one ingest path. Every object, whatever its channel, is spooled (encrypted as it arrives), inspected from
/// the spool, then either committed (blob durable, then one transaction: index rows, audit entry, outbox events)
/// or quarantined (still encrypted, with a security alert) before the sender gets its answer.
/// </summary>
public sealed class IngestPipeline(
    IObjectStore store,
    IArchiveIndex index,
    Inspector inspector,
    IngestCommitter committer,
    Core.Outbox.Outbox outbox,
    IArchiveKeyService keys,
    ClockStepGuard clock,
    IOptionsMonitor<GatewayOptions> options,
    IAuditLog audit,
    Dimse.RetrieveIntegrity retrieveIntegrity,
    ILogger<IngestPipeline> logger,
    TimeProvider time)
{
    public const string ForwardTopic = "forward";
    public const string DetectionTopic = "detection";

    internal static readonly ActivitySource Source = new("Vigie.Gateway");
    private static readonly Meter Meter = new("Vigie.Gateway");
    private static readonly Counter<long> Objects = Meter.CreateCounter<long>("vigie.gateway.objects", description: "Objects ingested, by outcome");
    private static readonly Histogram<double> Duration = Meter.CreateHistogram<double>("vigie.gateway.ingest.duration", unit: "ms",
        description: "From the last byte received to the answer");
    private static readonly Histogram<double> InspectDuration = Meter.CreateHistogram<double>("vigie.gateway.ingest.inspect", unit: "ms",
        description: "Inspection and the index parse of one object");
    private static readonly Histogram<double> SpoolDuration = Meter.CreateHistogram<double>("vigie.gateway.ingest.spool", unit: "ms",
        description: "Completing one object's spool: its last segment, its trailer and the write of what was still buffered");

    /// <summary>An object refused before it was received (ArchiveFull: under the free-space floor; SpoolFailed: no spool could be written).</summary>
    internal static void CountRefused(IngestChannel channel, string outcome) =>
        Objects.Add(1, new KeyValuePair<string, object?>("outcome", outcome), new KeyValuePair<string, object?>("channel", channel.ToString()));

    /// <summary>
    /// What the index needs of an object: everything before the pixel data (also what recovery reads back). It keeps
    /// top-level attributes of groups 0008-0028, which come before the bulk of a real object, and values of 64 bytes or
    /// less (UIDs, IDs, dates) are loaded whatever the budget: a quarter of it is plenty. Inspection's copy of the data set
    /// is still uncollected garbage when this one is read, so the node's peak per object is the sum of both budgets.
    /// </summary>
    internal static readonly DicomReadOptions IndexRead = new() { StopAtTag = DicomTags.PixelData, DropLargeValues = true, MaxLoadedBytes = 16L * 1024 * 1024 };

    /// <summary>Objects up to this size join the shared index transaction while their file is still being synced.</summary>
    private const long OverlapSyncLimit = 16L * 1024 * 1024;

    /// <summary>Starts receiving an object. For DIMSE the data set arrives without meta information: pass the header to prepend.</summary>
    public async ValueTask<IngestSession> BeginAsync(IngestSource source, ReadOnlyMemory<byte> header, CancellationToken cancellationToken)
    {
        var spool = await store.CreateSpoolAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var session = new IngestSession(this, spool, source);
            if (!header.IsEmpty)
            {
                // Through the session, so that the plaintext copy inspection and indexing read starts with the meta
                // information like the stored file: without it the transfer syntax was guessed from the data set.
                await session.WriteAsync(header, cancellationToken).ConfigureAwait(false);
            }

            return session;
        }
        catch
        {
            await spool.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Ingests a whole Part 10 stream (STOW-RS part, `vigie import`).</summary>
    public async ValueTask<IngestResult> IngestAsync(Stream part10, IngestSource source, CancellationToken cancellationToken)
    {
        await using var session = await BeginAsync(source, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        var buffer = ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            int read;
            while ((read = await part10.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                await session.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return await session.CompleteAsync(null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Preamble, "DICM" and the meta group for a data set received over DIMSE. It does not name the sender (Source
    /// Application Entity Title): the same data set sent by another AE is then the same content, already stored, not a
    /// new version forwarded again (until 2026-12-07 it was). The sender is sealed with the version and audited.
    /// </summary>
    public static byte[] Part10Header(string sopClassUid, string sopInstanceUid, string transferSyntaxUid)
    {
        var meta = new DicomDataset();
        meta.SetBytes(DicomTags.FileMetaInformationVersion, DicomVR.OB, new byte[] { 0, 1 });
        meta.SetString(DicomTags.MediaStorageSOPClassUID, DicomVR.UI, sopClassUid);
        meta.SetString(DicomTags.MediaStorageSOPInstanceUID, DicomVR.UI, sopInstanceUid);
        meta.SetString(DicomTags.TransferSyntaxUID, DicomVR.UI, transferSyntaxUid);
        meta.SetString(DicomTags.ImplementationClassUID, DicomVR.UI, DicomImplementation.ClassUid);
        meta.SetString(DicomTags.ImplementationVersionName, DicomVR.SH, DicomImplementation.VersionName);

        var body = DicomWriter.Encode(meta, TransferSyntax.ExplicitVRLittleEndian);
        var header = new byte[132 + 12 + body.Length];
        "DICM"u8.CopyTo(header.AsSpan(128));
        // (0002,0000) UL, written by hand: the encoder recomputes a group length from the elements that follow it in the
        // same data set, and there are none in a data set of its own (every stored object's header said 0).
        "\u0002\0\0\0UL\u0004\0"u8.CopyTo(header.AsSpan(132));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(140), (uint)body.Length);
        body.CopyTo(header, 144);
        return header;
    }

    /// <summary>Objects up to this size keep a plaintext copy in memory while spooled, so inspection never decrypts them back.</summary>
    internal int InMemoryLimit => options.CurrentValue.InMemoryInspectionLimit;

    /// <summary>
    /// What those copies hold together, across associations, with what inspections hold in memory (inflated data sets,
    /// extracted inner objects): one budget, Gateway:InMemoryInspectionTotal.
    /// </summary>
    internal InspectionMemory Memory => inspector.Memory;

    /// <summary>Objects inspected from their spool, by reason: "size" (past the per-object limit) or "memory" (the node's total).</summary>
    internal static readonly Counter<long> ReadBack = Meter.CreateCounter<long>("vigie.gateway.ingest.read_back",
        description: "Objects inspected from their encrypted spool rather than from memory, by reason (size, memory)");

    internal async Task<IngestResult> CompleteAsync(SpoolWriter writer, IngestSource source, string? expectedSopInstanceUid, ReadOnlyMemory<byte>? plaintext,
        CancellationToken cancellationToken, Action<DicomDataset>? headerRead = null)
    {
        var started = Stopwatch.GetTimestamp();
        using var activity = Source.StartActivity("ingest");
        await using var spooled = await writer.CompleteAsync(cancellationToken).ConfigureAwait(false);
        if (plaintext is { } copy && copy.Length != spooled.Length)
        {
            throw new InvalidOperationException($"The plaintext kept for inspection holds {copy.Length} bytes, the spool {spooled.Length}.");
        }

        spooled.StartSync();
        SpoolDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        Verdict verdict;
        var threat = false;
        DicomFile? file = null;
        (string? PatientRef, List<AuditObject> Objects) about = (null, []);
        string? unreadable = null;
        ArchiveObjectReader? reader = null;
        var inspecting = Stopwatch.GetTimestamp();
        try
        {
            // The common case reads the plaintext kept while spooling. Objects that could not keep one (too large, or the
            // node's inspection memory spent) are read back from the spool by ranges, never loaded whole.
            reader = plaintext is null ? await spooled.OpenReaderAsync(cancellationToken).ConfigureAwait(false) : null;
            // The spool hashed the plaintext as it arrived; hash lists reuse that digest.
            using var content = (plaintext is { } bytes ? ContentSource.FromMemory(bytes) : new ObjectContentSource(reader!))
                .WithKnownSha256(spooled.ContentSha256);
            verdict = await inspector.InspectAsync(content, null, cancellationToken).ConfigureAwait(false);
            if (verdict.ResourceShortage is { } shortage)
            {
                // Not a finding about the object: quarantined, it was refused for good (0124) and raised a false security
                // alert. The sender keeps it and retries (A700), as for a full archive disk.
                throw new IOException($"inspection could not finish for lack of resources ({shortage})");
            }

            threat = verdict.Kind is VerdictKind.Malicious or VerdictKind.Error
                || (verdict.Kind == VerdictKind.Suspicious && options.CurrentValue.QuarantineSuspicious);
            // Only what will be stored is read for the index: a refused bomb or a data set that timed out inspection was
            // parsed a second time here, without inspection's budget (1.6 GB, 159 s).
            if (!threat)
            {
                try
                {
                    await using var stream = content.OpenStream();
                    file = await DicomReader.ReadFileAsync(stream, IndexRead, cancellationToken).ConfigureAwait(false);
                }
                catch (DicomParseException e)
                {
                    unreadable = e.Reason;
                }
            }
            else
            {
                // Only as far as the study, bounded: the quarantine is audited under the patient it concerns.
                await using var stream = content.OpenStream();
                about = await GatewayAudit.AboutAsync(keys, stream, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (reader is not null)
            {
                await reader.DisposeAsync().ConfigureAwait(false);
            }
        }

        InspectDuration.Record(Stopwatch.GetElapsedTime(inspecting).TotalMilliseconds);
        if (file is not null)
        {
            headerRead?.Invoke(file.Dataset);
        }

        IngestResult result;
        if (threat)
        {
            result = await QuarantineAsync(spooled, source, verdict, about, cancellationToken).ConfigureAwait(false);
        }
        else if (file is null || verdict.ContentType != nameof(ContentType.Dicom))
        {
            result = new IngestResult(IngestOutcome.Refused, DimseStatus.CannotUnderstand, Truncate($"not a DICOM object: {unreadable ?? verdict.ContentType}"), verdict);
            await AuditRefusalAsync(source, file, result.Comment!, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            result = await StoreAsync(spooled, file, source, expectedSopInstanceUid, verdict, cancellationToken).ConfigureAwait(false);
            if (result.Outcome == IngestOutcome.Refused)
            {
                await AuditRefusalAsync(source, file, result.Comment!, cancellationToken).ConfigureAwait(false);
            }
        }

        Objects.Add(1, new KeyValuePair<string, object?>("outcome", result.Outcome.ToString()), new KeyValuePair<string, object?>("channel", source.Channel.ToString()));
        Duration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        activity?.SetTag("vigie.outcome", result.Outcome.ToString());
        return result;
    }

    private async Task<IngestResult> StoreAsync(SpooledObject spooled, DicomFile file, IngestSource source, string? expectedSopInstanceUid, Verdict verdict,
        CancellationToken cancellationToken)
    {
        var entry = IndexedAttributes.ToEntry(file, spooled.Id, spooled.Length, SourceAttributes(source), out var problem);
        if (entry is null)
        {
            return new IngestResult(IngestOutcome.Refused, DimseStatus.DataSetDoesNotMatchSopClass, Truncate(problem!), verdict);
        }

        if (expectedSopInstanceUid is not null && entry.Instance.SopInstanceUid != expectedSopInstanceUid)
        {
            return new IngestResult(IngestOutcome.Refused, DimseStatus.DataSetDoesNotMatchSopClass,
                "SOP Instance UID of the data set differs from the command", verdict);
        }

        // A study, series or instance already filed under another parent: filed as it came, its new content would be
        // served under the old patient (the existing links win in the index). Refused before anything is stored; a
        // change of identity is a workflow (IHE PIR), not a resend. Two conflicting stores racing past this check are
        // told apart in the index transaction, where the second is refused (HierarchyConflictException).
        var conflicts = await index.FindHierarchyConflictsAsync(entry, cancellationToken).ConfigureAwait(false);
        if (conflicts != HierarchyConflict.None)
        {
            return new IngestResult(IngestOutcome.Refused, DimseStatus.CannotUnderstand, Truncate("refused: " + ConflictComment(conflicts)), verdict);
        }

        // The object is made durable (file and folder synced) while its index rows are written; the transaction that
        // makes them visible commits only once it is. A large object's sync can take long, and the shared transaction
        // would wait for it with every other association's objects: it is awaited before joining. The commit itself is
        // not synced: the archive is the record, and after a power cut ArchiveRecovery files again what the index lost.
        // The floor is checked when a store begins; an object large enough to take the disk under it on its own is refused
        // once written, before it is kept (it was acknowledged, leaving the index and the audit trail short, until 2026-12-07).
        if (store.Space.IsFull)
        {
            return new IngestResult(IngestOutcome.Refused, DimseStatus.OutOfResources,
                Truncate($"Vigie archive disk full: retry later (this object would leave the data folder under Archive:MinFreeSpace, {store.Space.MinFreeBytes >> 20} MiB)"), verdict);
        }

        var durable = store.CommitAsync(spooled, cancellationToken).AsTask();
        if (spooled.Length > OverlapSyncLimit)
        {
            await durable.ConfigureAwait(false);
        }

        // A deferred commit relies on recovery finding this file by its time: a clock that stepped back must be noted first.
        await clock.BeforeStoreAsync(time.GetUtcNow(), cancellationToken).ConfigureAwait(false);
        IndexWriteResult written;
        try
        {
            written = await IndexAsync(entry, spooled.Id, source, durable, CommitDurability.Deferred, null, cancellationToken, refuseConflicts: true)
                .ConfigureAwait(false);
        }
        catch (HierarchyConflictException conflict)
        {
            // Its rows were rolled back; its file, stored meanwhile and referenced by nothing, goes after the deletion grace.
            if (!(await durable.ConfigureAwait(false)).AlreadyStored)
            {
                await index.ScheduleUnreferencedObjectDeletionAsync(spooled.Id, cancellationToken).ConfigureAwait(false);
            }

            return new IngestResult(IngestOutcome.Refused, DimseStatus.CannotUnderstand, Truncate("refused: " + ConflictComment(conflict.Conflicts)), verdict);
        }

        var committed = await durable.ConfigureAwait(false);
        if (committed.ReplacedDamagedCopy is { } damage)
        {
            // Whole again: if it is damaged again, the next retrieve that meets it is an alert of its own.
            retrieveIntegrity.Forget(committed.Id);
            await AuditRepairAsync(source, entry, committed.Id, damage, cancellationToken).ConfigureAwait(false);
        }

        if (committed.AlreadyStored)
        {
            // The stored copy may have been due for deletion and purged before this commit claimed it back: the kept
            // spool then takes its place.
            await store.ConfirmStoredAsync(spooled, cancellationToken).ConfigureAwait(false);
            // The file was already in the archive, so its time is old: after a power cut, recovery would not look at it,
            // and if it was an orphan (an earlier attempt whose index write failed) or due for deletion, the scrub would
            // then remove an acknowledged object. Such a commit is synced before the answer.
            await committer.SyncLogAsync(cancellationToken).ConfigureAwait(false);
        }

        return written.Outcome == IndexOutcome.AlreadyStored
            ? new IngestResult(IngestOutcome.AlreadyStored, DimseStatus.Success, null, verdict)
            : new IngestResult(IngestOutcome.Stored, DimseStatus.Success, null, verdict);
    }

    /// <summary>A store whose identifiers disagree with what the index holds, found inside its transaction (rolled back).</summary>
    private sealed class HierarchyConflictException(HierarchyConflict conflicts) : Exception($"identifiers disagree with the index: {conflicts}")
    {
        public HierarchyConflict Conflicts { get; } = conflicts;
    }

    private static string ConflictComment(HierarchyConflict conflicts) =>
        (conflicts & HierarchyConflict.StudyUnderOtherPatient) != 0 ? "study is filed under another patient"
        : (conflicts & HierarchyConflict.SeriesUnderOtherStudy) != 0 ? "series is filed under another study"
        : "instance is filed under another series";

    /// <summary>
    /// A refused object (not DICOM Vigie can read, a key missing, a UID that disagrees with the command or the index):
    /// a failed transfer from its sender, under its patient when the data set named one, and one log line a minute.
    /// </summary>
    private async Task AuditRefusalAsync(IngestSource source, DicomFile? file, string reason, CancellationToken cancellationToken)
    {
        var (patientRef, objects) = file is null ? (null, []) : GatewayAudit.About(keys, file.Dataset);
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.DicomInstancesTransferred,
            Action = AuditAction.Create,
            Outcome = AuditOutcome.SeriousFailure,
            Participants = GatewayAudit.SenderToSelf(source),
            PatientRef = patientRef,
            Details = new AuditDetails
            {
                OutcomeDescription = reason.StartsWith("refused", StringComparison.Ordinal) ? reason : "refused: " + reason,
                Objects = objects,
            },
        };
        if (Dimse.GatewayServiceProvider.DueForLog(ref _lastRefusalLog, time.GetUtcNow()))
        {
            logger.LogWarning("Refused an object from {CallingAE}: {Reason}", source.CallingAE, reason);
        }

        try
        {
            await audit.AppendAsync(record, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError(e, "A refused store from {CallingAE} could not be audited", source.CallingAE);
        }
    }

    private DateTimeOffset _lastRefusalLog;

    /// <summary>
    /// A stored copy found damaged when its content arrived again, and replaced: an integrity alert in the trail, where
    /// the security officer (and the SIEM, through the export) sees it with the scrub's, not only in the node's log.
    /// </summary>
    private async Task AuditRepairAsync(IngestSource source, InstanceIndexEntry entry, ObjectId id, string problem, CancellationToken cancellationToken)
    {
        try
        {
            await audit.AppendAsync(GatewayAudit.IntegrityAlert(time, source.CalledAE ?? "VIGIE",
                $"stored object {id} failed its check ({problem}); the same content, received again, replaced it (the damaged file is kept in the data folder's damaged/)",
                GatewayAudit.SenderToSelf(source),
                GatewayAudit.PatientRef(keys, entry.Patient.PatientId, entry.Patient.IssuerOfPatientId),
                [GatewayAudit.Study(entry.Study.StudyInstanceUid, entry.Instance.SopClassUid, 1, entry.Study.Attributes.First(DicomTags.AccessionNumber.Value))]),
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The object is stored and the repair logged by the archive: the sender still gets its success.
            logger.LogError(e, "The repair of archive object {ObjectId} could not be audited", id);
        }
    }

    /// <summary>Who a data set read for the index is about, for the audit entry of a store that then failed.</summary>
    internal (string? PatientRef, List<AuditObject> Objects) About(DicomDataset dataset) =>
        string.IsNullOrWhiteSpace(dataset.GetString(DicomTags.PatientID)) ? (null, []) : GatewayAudit.About(keys, dataset);

    /// <summary>The sender, sealed with the version: Source AE Title, and (in a private group) the channel and address.</summary>
    internal static AttributeSet SourceAttributes(IngestSource source) =>
        AttributeSet.From((0x0002_0016, source.CallingAE), (0x0009_0001, source.Channel.ToString()), (0x0009_0002, source.Address?.ToString()));

    /// <summary>
    /// Files an object whose file is durable (or becoming so, <paramref name="durable"/>): its index rows, the forward
    /// events it calls for and its audit entry, in one transaction. <paramref name="note"/> replaces the audit outcome.
    /// </summary>
    internal async Task<IndexWriteResult> IndexAsync(InstanceIndexEntry entry, ObjectId id, IngestSource source, Task durable, CommitDurability durability,
        string? note, CancellationToken cancellationToken, bool refuseConflicts = false)
    {
        // PS3.15 A.5.3.4: C when Vigie did not hold the instance, U when it keeps a new version, R when it held this very
        // content and changed nothing. Since 2026-12-07; before, every receipt was C, and exported as BALP PatientCreate.
        AuditRecord Record(IndexWriteResult result) => new()
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.DicomInstancesTransferred,
            Action = result.Outcome switch
            {
                IndexOutcome.AlreadyStored => AuditAction.Read,
                IndexOutcome.NewVersion => AuditAction.Update,
                _ => AuditAction.Create,
            },
            Outcome = AuditOutcome.Success,
            Participants = GatewayAudit.SenderToSelf(source),
            PatientRef = GatewayAudit.PatientRef(keys, entry.Patient.PatientId, entry.Patient.IssuerOfPatientId),
            Details = new AuditDetails
            {
                OutcomeDescription = note ?? result.Outcome switch
                {
                    IndexOutcome.AlreadyStored => "already stored",
                    IndexOutcome.NewVersion => "stored as a new version",
                    _ => "stored",
                },
                Objects =
                [
                    GatewayAudit.Study(entry.Study.StudyInstanceUid, entry.Instance.SopClassUid, 1, entry.Study.Attributes.First(DicomTags.AccessionNumber.Value)),
                    GatewayAudit.Patient(entry.Patient.PatientId, entry.Patient.Attributes.First(DicomTags.PatientName.Value)),
                ],
            },
        };

        var forward = options.CurrentValue.Destinations.Where(d => d.Forward).ToList();
        var written = await committer.CommitAsync(async (connection, transaction, ct) =>
        {
            var result = await index.StoreInstanceAsync(connection, transaction, entry, ct).ConfigureAwait(false);
            if (refuseConflicts && result.Conflicts != HierarchyConflict.None)
            {
                throw new HierarchyConflictException(result.Conflicts);
            }

            if (result.Outcome != IndexOutcome.AlreadyStored)
            {
                foreach (var destination in forward)
                {
                    var payload = JsonSerializer.SerializeToUtf8Bytes(new ForwardRequest(destination.AETitle, id.ToString(), result.InstanceRowId));
                    await outbox.EnqueueAsync(connection, transaction, ForwardTopic, payload, ct, subject: destination.AETitle).ConfigureAwait(false);
                }
            }

            return result;
        }, result => [Record(result)], durable, durability, cancellationToken).ConfigureAwait(false);

        if (forward.Count > 0 && written.Outcome != IndexOutcome.AlreadyStored)
        {
            outbox.Notify(ForwardTopic);
        }

        if (written.Conflicts != HierarchyConflict.None)
        {
            // No identifiers in logs: the row ids are enough for an administrator to look the case up.
            logger.LogWarning("Stored instance row {InstanceRow} disagrees with the existing hierarchy: {Conflicts}", written.InstanceRowId, written.Conflicts);
        }

        return written;
    }

    // Where a quarantine record keeps the rules, the verdict and the caller (private-group tags of the index's attribute sets).
    internal const uint QuarantineRulesTag = 0x0009_0010;
    internal const uint QuarantineVerdictTag = 0x0009_0011;
    internal const uint QuarantineCallerTag = 0x0009_0012;

    /// <summary>The security alert of an object inspection refused, from its sender, under the patient it names.</summary>
    private AuditRecord ThreatAlert(IngestSource source, string? patientRef, AuditDetails details) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.SecurityAlert,
        EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
        Action = AuditAction.Execute,
        Outcome = AuditOutcome.SeriousFailure,
        Participants = GatewayAudit.SenderToSelf(source),
        PatientRef = patientRef,
        Details = details,
    };

    private async Task<IngestResult> QuarantineAsync(SpooledObject spooled, IngestSource source, Verdict verdict, (string? PatientRef, List<AuditObject> Objects) about,
        CancellationToken cancellationToken)
    {
        var worst = verdict.Findings.OrderByDescending(f => f.Severity).FirstOrDefault();
        var reason = worst is null ? $"inspection {verdict.Kind}" : $"{worst.Rule}: {worst.Message}";
        var rules = verdict.Findings.Where(f => f.Severity > Severity.Info).Select(f => f.Rule).Distinct(StringComparer.Ordinal).ToList();
        if (store.Space.IsFull)
        {
            // Refused all the same, but not kept: a hostile object must not eat the room kept for the index and the audit
            // trail (it did, until 2026-12-07). The alert says so, under the patient the object names.
            await audit.AppendAsync(ThreatAlert(source, about.PatientRef, new AuditDetails
            {
                OutcomeDescription = $"refused, not quarantined (the data folder is under Archive:MinFreeSpace): {string.Join(", ", rules)}",
                Objects = about.Objects,
            }), cancellationToken).ConfigureAwait(false);
            return new IngestResult(IngestOutcome.Refused, DimseStatus.NotAuthorized, Truncate("refused by Vigie: " + (worst?.Rule ?? verdict.Kind.ToString()) + " (not kept: archive disk full)"),
                verdict);
        }

        var quarantined = await store.QuarantineAsync(spooled, reason, cancellationToken).ConfigureAwait(false);
        var details = AttributeSet.From((QuarantineRulesTag, string.Join('\\', rules)), (QuarantineVerdictTag, verdict.Kind.ToString()),
            (QuarantineCallerTag, source.CallingAE));
        var record = ThreatAlert(source, about.PatientRef, new AuditDetails
            {
                OutcomeDescription = $"quarantined {quarantined.QuarantineId}: {string.Join(", ", rules)}",
                Objects =
                [
                    .. about.Objects,
                    new AuditObject
                    {
                        Type = AuditObjectType.SystemObject,
                        Role = AuditObjectRole.Resource,
                        IdType = AuditObjectIdTypes.NodeId,
                        Id = quarantined.QuarantineId,
                        Details = verdict.Findings.Where(f => f.Severity > Severity.Info).Take(20)
                            .Select(f => new KeyValuePair<string, string>(f.Rule, $"{f.Severity}: {f.Message}")).ToList(),
                    },
                ],
            });
        var detection = JsonSerializer.SerializeToUtf8Bytes(new Detection(quarantined.QuarantineId, verdict.Kind.ToString(), rules, source.Channel.ToString(),
            source.CallingAE, time.GetUtcNow()));
        await committer.CommitAsync(async (connection, transaction, ct) =>
        {
            await index.AddQuarantineAsync(connection, transaction,
                new QuarantineEntry(quarantined.QuarantineId, quarantined.Id, quarantined.Length, reason, quarantined.QuarantinedAt, details), ct).ConfigureAwait(false);
            await outbox.EnqueueAsync(connection, transaction, DetectionTopic, detection, ct).ConfigureAwait(false);
            return true;
        }, [record], cancellationToken).ConfigureAwait(false);

        outbox.Notify(DetectionTopic);
        logger.LogWarning("Quarantined object {QuarantineId} from {CallingAE}: {Verdict} ({Rules})", quarantined.QuarantineId, source.CallingAE, verdict.Kind,
            string.Join(", ", rules));
        return new IngestResult(IngestOutcome.Quarantined, DimseStatus.NotAuthorized, Truncate("refused by Vigie: " + (worst?.Rule ?? verdict.Kind.ToString())), verdict,
            quarantined.QuarantineId);
    }

    private static string Truncate(string comment) => comment.Length <= 64 ? comment : comment[..64];

    internal sealed record ForwardRequest(string Destination, string ObjectId, long InstanceRowId);

    internal sealed record Detection(string QuarantineId, string Verdict, IReadOnlyList<string> Rules, string Channel, string CallingAE, DateTimeOffset At);
}
