using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Commitment;

/// <summary>A storage commitment result ready to send: its Event Type and Event Information, and the counts for the audit.</summary>
internal sealed record CommitmentReport(ushort EventTypeId, DicomDataset Information, int Committed, int Failed);

/// <summary>
/// What a storage commitment report says and how its delivery is recorded, whichever association carries it: the
/// requestor's own (when it took the SCP role) or one Vigie opens back to it.
/// </summary>
internal sealed class CommitmentReports(
    IArchiveIndex index,
    IObjectStore store,
    Dimse.RetrieveIntegrity integrity,
    IAuditLog audit,
    IOptionsMonitor<DicomServerOptions> server,
    IOptionsMonitor<GatewayOptions> gateway,
    ILogger<CommitmentReports> logger,
    TimeProvider time)
{
    /// <summary>Event Type ID of an N-EVENT-REPORT (PS3.4 J.3.3): every instance committed, or some failed.</summary>
    public const ushort AllCommitted = 1;

    public const ushort FailuresExist = 2;

    /// <summary>
    /// Plaintext bytes a report reads whole (every segment authenticated, the content hash checked) before it only looks
    /// at the files: a study's worth of objects just stored, still in the page cache, without letting a 50,000-instance
    /// request read the archive.
    /// </summary>
    internal const long WholeCheckBytes = 64L << 20;

    /// <summary>
    /// Checks each instance against the index and its object in the store now, and builds the report. An instance whose
    /// object is missing, cut or fails its check is not committed (0110 processing failure): the modality keeps its
    /// copy and sends it again, which heals the archive. Before 2026-12-07 the index row alone decided.
    /// </summary>
    public async Task<CommitmentReport> BuildAsync(CommitmentRequest request, CancellationToken cancellationToken)
    {
        var committed = new List<CommitmentReference>();
        var failed = new List<CommitmentFailure>();
        var damaged = new List<(ObjectId Id, string Problem)>();
        var stored = await index.FindStoredInstancesAsync(request.References.Select(r => r.SopInstanceUid).Distinct(StringComparer.Ordinal).ToList(), cancellationToken)
            .ConfigureAwait(false);
        var wholeBudget = WholeCheckBytes;
        var checkedObjects = new Dictionary<ObjectId, string?>();
        foreach (var reference in request.References)
        {
            if (!stored.TryGetValue(reference.SopInstanceUid, out var instance))
            {
                failed.Add(new CommitmentFailure(reference,
                    gateway.CurrentValue.IsStorageClass(reference.SopClassUid) ? DimseStatus.NoSuchObjectInstance : DimseStatus.SopClassNotSupported));
            }
            else if (!string.Equals(instance.SopClassUid, reference.SopClassUid, StringComparison.Ordinal))
            {
                // Held, but as another kind of object: committing would let the modality delete what Vigie does not hold.
                failed.Add(new CommitmentFailure(reference, DimseStatus.ClassInstanceConflict));
            }
            else
            {
                if (!checkedObjects.TryGetValue(instance.ObjectId, out var problem))
                {
                    // One found damaged before is read whole whatever the budget: committed only if it is whole again.
                    var suspect = integrity.FoundDamaged(instance.ObjectId);
                    var whole = suspect || instance.Length <= wholeBudget;
                    if (whole && !suspect)
                    {
                        wholeBudget -= instance.Length;
                    }

                    problem = await store.FindProblemAsync(instance.ObjectId, instance.Length, whole, cancellationToken).ConfigureAwait(false);
                    if (problem is null && whole)
                    {
                        integrity.Forget(instance.ObjectId);
                    }

                    checkedObjects[instance.ObjectId] = problem;
                    if (problem is not null)
                    {
                        damaged.Add((instance.ObjectId, problem));
                    }
                }

                if (problem is null)
                {
                    committed.Add(reference);
                }
                else
                {
                    failed.Add(new CommitmentFailure(reference, DimseStatus.ProcessingFailure));
                }
            }
        }

        if (damaged.Count > 0)
        {
            await ObjectsFailedTheirCheckAsync(request, damaged, cancellationToken).ConfigureAwait(false);
        }

        return new CommitmentReport(failed.Count == 0 ? AllCommitted : FailuresExist, EventInformation(request.TransactionUid, committed, failed), committed.Count,
            failed.Count);
    }

    /// <summary>
    /// Logged, and audited as a Security Alert (once an hour per object, as a retrieve does): objects named by their
    /// content address only, never an identifier.
    /// </summary>
    private async Task ObjectsFailedTheirCheckAsync(CommitmentRequest request, List<(ObjectId Id, string Problem)> damaged, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var listed = string.Join(", ", damaged.Take(10).Select(d => $"{d.Id}: {d.Problem}")) + (damaged.Count > 10 ? $" and {damaged.Count - 10} more" : "");
        logger.LogError("Storage commitment for {AE}: {Count} stored objects failed their check and their instances are not committed (0x0110) ({Objects}). "
            + "The modality keeps its copies; sending them again heals the archive. Run vigie scrub", request.RequestorAE, damaged.Count, listed);
        foreach (var (id, problem) in damaged)
        {
            RetrieveIntegrityFailures(problem);
            integrity.Failed(now, $"object {id}: {problem}");
        }

        if (!damaged.Any(d => integrity.DueForAlert(d.Id, now)))
        {
            return;
        }

        await audit.AppendAsync(GatewayAudit.IntegrityAlert(time, server.CurrentValue.AETitle,
                $"{damaged.Count} stored objects failed their check when asked for storage commitment by {request.RequestorAE} (transaction {request.TransactionUid}): "
                + $"{listed}; their instances were not committed (0x0110), so the modality keeps its copies. Run vigie scrub; sending the images again heals them",
                [GatewayAudit.Self(server.CurrentValue.AETitle, requestor: false, AuditRoles.Source), GatewayAudit.Destination(request.RequestorAE)]),
            cancellationToken).ConfigureAwait(false);
    }

    private static void RetrieveIntegrityFailures(string problem) =>
        Dimse.RetrieveIntegrity.Failures.Add(1, new KeyValuePair<string, object?>("problem", problem));

    /// <summary>Counts, logs and audits a report the requestor answered with success.</summary>
    public async Task DeliveredAsync(CommitmentRequest request, string? host, CommitmentReport report, string how, CancellationToken cancellationToken)
    {
        CommitmentReporter.Reports.Add(1, new KeyValuePair<string, object?>("outcome", "delivered"));
        logger.LogInformation("Storage commitment reported to {AE} on {How}: {Committed} instances committed, {Failed} not committed", request.RequestorAE, how,
            report.Committed, report.Failed);
        await audit.AppendAsync(Record(request.RequestorAE, host, report.Failed == 0 ? AuditOutcome.Success : AuditOutcome.MinorFailure,
            $"storage commitment reported: {report.Committed} instances committed, {report.Failed} not committed (transaction {request.TransactionUid}, on {how})"),
            cancellationToken).ConfigureAwait(false);
    }

    public AuditRecord Record(string requestorAE, string? host, AuditOutcome outcome, string description) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.DicomInstancesAccessed,
        Action = AuditAction.Read,
        Outcome = outcome,
        Participants =
        [
            GatewayAudit.Self(server.CurrentValue.AETitle, requestor: true, AuditRoles.Source),
            GatewayAudit.Destination(requestorAE, host),
        ],
        Details = new AuditDetails { OutcomeDescription = description },
    };

    /// <summary>
    /// The Event Information (PS3.4 J.3.3.1): the transaction, the instances committed, and those not committed with
    /// their reason (the modality keeps them and may send them again).
    /// </summary>
    internal static DicomDataset EventInformation(string transactionUid, IReadOnlyList<CommitmentReference> committed, IReadOnlyList<CommitmentFailure> failed)
    {
        var information = new DicomDataset();
        information.SetString(DicomTags.TransactionUID, DicomVR.UI, transactionUid);
        if (committed.Count > 0)
        {
            information.AddOrUpdate(Sequence(DicomTags.ReferencedSOPSequence, committed.Select(r => (r, (ushort?)null))));
        }

        if (failed.Count > 0)
        {
            information.AddOrUpdate(Sequence(DicomTags.FailedSOPSequence, failed.Select(f => (f.Reference, (ushort?)f.Reason))));
        }

        return information;
    }

    private static DicomSequence Sequence(DicomTag tag, IEnumerable<(CommitmentReference Reference, ushort? FailureReason)> items)
    {
        var sequence = new DicomSequence(tag);
        foreach (var (reference, failureReason) in items)
        {
            var item = new DicomDataset();
            item.SetString(DicomTags.ReferencedSOPClassUID, DicomVR.UI, reference.SopClassUid);
            item.SetString(DicomTags.ReferencedSOPInstanceUID, DicomVR.UI, reference.SopInstanceUid);
            if (failureReason is { } reason)
            {
                item.SetUInt16(DicomTags.FailureReason, reason);
            }

            sequence.Items.Add(item);
        }

        return sequence;
    }
}
