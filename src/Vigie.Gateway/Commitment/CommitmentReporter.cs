using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Outbox;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Gateway.Forwarding;

namespace Vigie.Gateway.Commitment;

/// <summary>
/// Sends the results of storage commitment requests (N-EVENT-REPORT, PS3.4 J.3.3) from the outbox: checks each
/// instance against the index when the report is made, opens an association to the requestor proposing the SCP role
/// of the Storage Commitment Push Model, and retries with back-off while the modality is unreachable, up to
/// <see cref="GatewayOptions.CommitmentReportExpiry"/>. Each report is audited.
/// </summary>
internal sealed class CommitmentReporter(
    Outbox outbox,
    StorageCommitmentService commitments,
    CommitmentReports reports,
    IAuditLog audit,
    IOptionsMonitor<GatewayOptions> options,
    IOptionsMonitor<DicomServerOptions> server,
    ILogger<CommitmentReporter> logger,
    TimeProvider time) : OutboxConsumer(outbox, StorageCommitmentService.Topic, logger, time)
{
    private static readonly Meter Meter = new("Vigie.Gateway.Commitment");

    internal static readonly Counter<long> Requests = Meter.CreateCounter<long>("vigie.gateway.commitment.requests", "{request}",
        "Storage commitment requests accepted");

    internal static readonly Counter<long> Reports = Meter.CreateCounter<long>("vigie.gateway.commitment.reports", "{report}",
        "Storage commitment reports, by outcome (delivered, retry, given-up)");

    private readonly string _consumer = $"{Environment.MachineName}-{Environment.ProcessId}-commitment-{Guid.NewGuid():N}";

    protected override string RoundName => "Storage commitment round";

    /// <summary>Claims and reports a few requests; returns how many it took.</summary>
    public override async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var settings = options.CurrentValue;
        // A report an earlier process of this node had claimed when it stopped (in the middle of an attempt) would
        // otherwise wait out the claim's lease (5 min) before this process could send it.
        if (await ReleaseAbandonedOnceAsync(_consumer, cancellationToken).ConfigureAwait(false) is var released and > 0)
        {
            logger.LogInformation("{Count} storage commitment reports an earlier process of this node had taken go back in the queue", released);
        }

        var batch = await Queue.ClaimAsync(StorageCommitmentService.Topic, _consumer, 8, settings.Forwarding.Lease, cancellationToken).ConfigureAwait(false);
        foreach (var message in batch)
        {
            await ReportAsync(message, settings, cancellationToken).ConfigureAwait(false);
        }

        return batch.Count;
    }

    private async Task ReportAsync(OutboxMessage message, GatewayOptions settings, CancellationToken cancellationToken)
    {
        CommitmentRequest request;
        try
        {
            request = commitments.Open(message.Payload);
        }
        catch (Exception e) when (e is FormatException or System.Text.Json.JsonException or System.Security.Cryptography.CryptographicException)
        {
            await GiveUpAsync(message, null, $"unreadable request: {e.GetType().Name}", cancellationToken).ConfigureAwait(false);
            return;
        }

        var destination = settings.FindDestination(request.RequestorAE);
        if (destination is null)
        {
            // A requestor without an address could only take its report on its own association, and that failed.
            await GiveUpAsync(message, request, request.ReportHere
                    ? $"{request.RequestorAE} did not take the report on its association, and has no address in Gateway:Destinations"
                    : $"{request.RequestorAE} is no longer configured in Gateway:Destinations",
                cancellationToken).ConfigureAwait(false);
            return;
        }

        // Checked now rather than at the request: an instance still arriving on another association when the request
        // came is committed if it is in by the time the report goes.
        var report = await reports.BuildAsync(request, cancellationToken).ConfigureAwait(false);
        var contexts = new[] { new PresentationContext(1, DicomUids.StorageCommitmentPushModel, [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian]) };
        // Vigie opens this association but keeps the SCP role of the SOP class (PS3.4 J.3.3): it says so by role selection.
        var roles = new[] { new RoleSelection(DicomUids.StorageCommitmentPushModel, ScuRole: false, ScpRole: true) };
        DimseResult result;
        try
        {
            await using var client = await DicomClient.ConnectAsync(Destinations.ClientOptions(destination, server.CurrentValue.AETitle), contexts, cancellationToken, roles)
                .ConfigureAwait(false);
            if (client.Association.FindAcceptedContext(DicomUids.StorageCommitmentPushModel) is null)
            {
                await GiveUpAsync(message, request, $"{destination.AETitle} does not accept storage commitment reports", cancellationToken).ConfigureAwait(false);
                return;
            }

            result = await client.EventReportAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance,
                report.EventTypeId, report.Information, cancellationToken).ConfigureAwait(false);
            try
            {
                await client.ReleaseAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (PeerFailures.IsTransient(e))
            {
                // The report was answered: a release that fails does not make it undelivered (and sending it twice would
                // confuse the modality).
                logger.LogDebug("Release from {AE} after a storage commitment report failed: {Reason}", destination.AETitle, e.Message);
            }
        }
        catch (Exception e) when (PeerFailures.IsTransient(e))
        {
            await RetryAsync(message, request, $"cannot report to {destination.AETitle} ({destination.Host}:{destination.Port}): {e.Message}", settings, cancellationToken)
                .ConfigureAwait(false);
            return;
        }

        if (result.Status != DimseStatus.Success && (result.Status & 0xF000) != 0xB000)
        {
            await RetryAsync(message, request, $"{destination.AETitle} answered the report with status 0x{result.Status:X4}", settings, cancellationToken)
                .ConfigureAwait(false);
            return;
        }

        if (!await Queue.CompleteAsync(message.Id, _consumer, cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        await reports.DeliveredAsync(request, destination.Host, report, "a new association", cancellationToken).ConfigureAwait(false);
    }

    private async Task RetryAsync(OutboxMessage message, CommitmentRequest request, string reason, GatewayOptions settings, CancellationToken cancellationToken)
    {
        // A modality waits for its report for a while, then asks again or warns its operator: past the expiry, a report
        // is no use to it.
        if (Clock.GetUtcNow() - request.RequestedAt > settings.CommitmentReportExpiry)
        {
            await GiveUpAsync(message, request, $"not delivered within {settings.CommitmentReportExpiry}: {reason}", cancellationToken).ConfigureAwait(false);
            return;
        }

        var delay = PeerFailures.RetryDelay(message.Attempts, settings.Forwarding);
        Reports.Add(1, new KeyValuePair<string, object?>("outcome", "retry"));
        logger.LogWarning("Storage commitment report to {AE} waits {Delay}: {Reason}", request.RequestorAE, delay, reason);
        await Queue.RetryLaterAsync(message.Id, _consumer, delay, reason, cancellationToken).ConfigureAwait(false);
    }

    private async Task GiveUpAsync(OutboxMessage message, CommitmentRequest? request, string reason, CancellationToken cancellationToken)
    {
        if (!await Queue.DeadLetterAsync(message.Id, _consumer, reason, cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        // Nothing to retry later: by now the modality has stopped waiting. Dismissed, the message is purged like done ones.
        await Queue.DismissDeadAsync(StorageCommitmentService.Topic, [message.Id], cancellationToken).ConfigureAwait(false);

        Reports.Add(1, new KeyValuePair<string, object?>("outcome", "given-up"));
        logger.LogWarning("Storage commitment report {Id} given up: {Reason}. The modality keeps its copies and may ask again", message.Id, reason);
        await audit.AppendAsync(reports.Record(request?.RequestorAE ?? "(unknown)", null, AuditOutcome.SeriousFailure, "storage commitment not reported: " + reason),
            cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>An instance the report does not commit, and why (a PS3.4 J.3.3.1 Failure Reason).</summary>
internal sealed record CommitmentFailure(CommitmentReference Reference, ushort Reason);
