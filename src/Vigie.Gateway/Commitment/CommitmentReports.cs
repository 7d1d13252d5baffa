using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
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
    IAuditLog audit,
    IOptionsMonitor<DicomServerOptions> server,
    IOptionsMonitor<GatewayOptions> gateway,
    ILogger<CommitmentReports> logger,
    TimeProvider time)
{
    /// <summary>Event Type ID of an N-EVENT-REPORT (PS3.4 J.3.3): every instance committed, or some failed.</summary>
    public const ushort AllCommitted = 1;

    public const ushort FailuresExist = 2;

    /// <summary>Checks each instance against the index now, and builds the report.</summary>
    public async Task<CommitmentReport> BuildAsync(CommitmentRequest request, CancellationToken cancellationToken)
    {
        var committed = new List<CommitmentReference>();
        var failed = new List<CommitmentFailure>();
        var stored = await index.FindSopClassesAsync(request.References.Select(r => r.SopInstanceUid).Distinct(StringComparer.Ordinal).ToList(), cancellationToken)
            .ConfigureAwait(false);
        foreach (var reference in request.References)
        {
            if (!stored.TryGetValue(reference.SopInstanceUid, out var storedClass))
            {
                failed.Add(new CommitmentFailure(reference,
                    gateway.CurrentValue.IsStorageClass(reference.SopClassUid) ? DimseStatus.NoSuchObjectInstance : DimseStatus.SopClassNotSupported));
            }
            else if (!string.Equals(storedClass, reference.SopClassUid, StringComparison.Ordinal))
            {
                // Held, but as another kind of object: committing would let the modality delete what Vigie does not hold.
                failed.Add(new CommitmentFailure(reference, DimseStatus.ClassInstanceConflict));
            }
            else
            {
                committed.Add(reference);
            }
        }

        return new CommitmentReport(failed.Count == 0 ? AllCommitted : FailuresExist, EventInformation(request.TransactionUid, committed, failed), committed.Count,
            failed.Count);
    }

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
