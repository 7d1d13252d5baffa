using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Core.Data;
using Vigie.Core.Outbox;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Commitment;

/// <summary>One instance a storage commitment request names.</summary>
internal sealed record CommitmentReference([property: JsonPropertyName("c")] string SopClassUid, [property: JsonPropertyName("i")] string SopInstanceUid);

/// <summary>A storage commitment request accepted and waiting for its report: who asked, the transaction, the instances.</summary>
internal sealed record CommitmentRequest(
    [property: JsonPropertyName("ae")] string RequestorAE,
    [property: JsonPropertyName("tx")] string TransactionUid,
    [property: JsonPropertyName("refs")] IReadOnlyList<CommitmentReference> References,
    [property: JsonPropertyName("at")] DateTimeOffset RequestedAt,
    [property: JsonPropertyName("here")] bool ReportHere = false);

/// <summary>
/// Storage Commitment Push Model SCP (PS3.4 J), the IHE "Storage Commitment" transaction (RAD-10): a modality asks
/// whether Vigie took responsibility for the instances it sent, and deletes its copies on a yes. Vigie answers yes for
/// an instance once it is in the archive: stored, synced and indexed, which is already so when its C-STORE was answered.
/// The request is kept in the outbox (sealed: it lists UIDs) and the result goes back by N-EVENT-REPORT: at once on
/// the requesting association when the requestor took the SCP role of the SOP class there, else (or when it does not
/// answer there) on an association Vigie opens to the requestor, as most modalities and IHE expect, retried while the
/// modality is off.
/// </summary>
internal sealed class StorageCommitmentService(Outbox outbox, IVigieDatabase database, IArchiveKeyService keys, CommitmentReports reports,
    IOptionsMonitor<GatewayOptions> options, IOptionsMonitor<DicomServerOptions> server, TimeProvider time, ILogger<StorageCommitmentService> logger)
{
    private readonly string _heldBy = $"{Environment.MachineName}-{Environment.ProcessId}-commitment-association-{Guid.NewGuid():N}";

    public const string Topic = "storage-commitment";

    /// <summary>Most instances one request may name; a CT study of several thousand images fits many times over.</summary>
    public const int MaxReferences = 50_000;

    /// <summary>The storage commitment action (PS3.4 J.3.2): "Request Storage Commitment".</summary>
    public const ushort RequestAction = 1;

    private static ReadOnlySpan<byte> SealContext => "vigie:outbox:storage-commitment"u8;

    /// <summary>
    /// Checks an N-ACTION-RQ and queues its report; the result is the N-ACTION-RSP status, with the report to send on the
    /// requesting association when <paramref name="reportHere"/> (the requestor took the SCP role).
    /// </summary>
    public async ValueTask<DimseResult> RequestAsync(string requestorAE, string? requestorHost, bool reportHere, DimseMessage request, DicomDataset? information,
        CancellationToken cancellationToken)
    {
        if (request.RequestedSopInstanceUid != DicomUids.StorageCommitmentPushModelInstance)
        {
            return new DimseResult(DimseStatus.NoSuchObjectInstance, "storage commitment is addressed to the well-known instance 1.2.840.10008.1.20.1.1");
        }

        if (request.ActionTypeId != RequestAction)
        {
            return new DimseResult(DimseStatus.NoSuchActionType, $"action type {request.ActionTypeId} is not Request Storage Commitment (1)");
        }

        if (!TryRead(information, out var transactionUid, out var references, out var problem))
        {
            return new DimseResult(DimseStatus.InvalidArgumentValue, problem);
        }

        // Unless the requestor takes the report on this association, it goes back on one Vigie opens: without the
        // requestor's address it could never arrive, and the modality would wait for it for hours. Refusing now shows
        // the gap at once.
        if (!reportHere && options.CurrentValue.FindDestination(requestorAE) is null)
        {
            return new DimseResult(DimseStatus.ProcessingFailure, $"no address for {requestorAE} to report to (Gateway:Destinations)");
        }

        var queued = new CommitmentRequest(requestorAE, transactionUid, references, time.GetUtcNow(), reportHere);
        var payload = keys.Seal(JsonSerializer.SerializeToUtf8Bytes(queued), SealContext);
        long held = 0;
        await using (var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        await using (var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false))
        {
            if (reportHere)
            {
                // Kept from the reporter past the read timeout the association waits for the answer (should the node die
                // meanwhile, the reporter sends it after this).
                var hold = server.CurrentValue.Association.ReadTimeout + TimeSpan.FromMinutes(2);
                held = await outbox.EnqueueClaimedAsync(connection, transaction, Topic, payload, _heldBy, hold, cancellationToken, subject: requestorAE)
                    .ConfigureAwait(false);
            }
            else
            {
                await outbox.EnqueueAsync(connection, transaction, Topic, payload, cancellationToken, subject: requestorAE).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        CommitmentReporter.Requests.Add(1);
        if (!reportHere)
        {
            outbox.Notify(Topic);
            return DimseResult.Success;
        }

        CommitmentReport report;
        try
        {
            report = await reports.BuildAsync(queued, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException)
        {
            // Queued all the same: the reporter builds it again and sends it on a new association.
            await HandOverAsync(held, $"the report could not be built at the request: {e.GetType().Name}").ConfigureAwait(false);
            return DimseResult.Success;
        }

        return DimseResult.Success with
        {
            Report = new EventReport(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, report.EventTypeId, report.Information,
                (answer, ct) => DeliveredHereAsync(held, queued, requestorHost, report, answer, ct)),
        };
    }

    private async ValueTask DeliveredHereAsync(long held, CommitmentRequest request, string? host, CommitmentReport report, DimseResult? answer,
        CancellationToken cancellationToken)
    {
        if (answer is { } result && DimseStatus.IsSuccessOrWarning(result.Status))
        {
            if (await outbox.CompleteAsync(held, _heldBy, cancellationToken).ConfigureAwait(false))
            {
                await reports.DeliveredAsync(request, host, report, "the requesting association", cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        await HandOverAsync(held, answer is null
            ? $"{request.RequestorAE} did not answer the report on the requesting association"
            : $"{request.RequestorAE} answered the report with status 0x{answer.Status:X4} on the requesting association").ConfigureAwait(false);
    }

    /// <summary>Leaves the report to the reporter, at once (a new association to the requestor).</summary>
    private async Task HandOverAsync(long held, string reason)
    {
        logger.LogInformation("Storage commitment report {Id}: {Reason}; it goes on a new association", held, reason);
        await outbox.RetryLaterAsync(held, _heldBy, TimeSpan.Zero, reason, CancellationToken.None).ConfigureAwait(false);
        outbox.Notify(Topic);
    }

    /// <summary>The request a queued payload holds.</summary>
    public CommitmentRequest Open(byte[] payload) =>
        JsonSerializer.Deserialize<CommitmentRequest>(keys.Open(payload, SealContext)) ?? throw new FormatException("empty storage commitment request");

    /// <summary>Reads the Action Information: a Transaction UID and a non-empty Referenced SOP Sequence of class and instance UIDs.</summary>
    internal static bool TryRead(DicomDataset? information, out string transactionUid, out List<CommitmentReference> references, out string problem)
    {
        transactionUid = string.Empty;
        references = [];
        if (information is null)
        {
            problem = "no Action Information";
            return false;
        }

        transactionUid = DicomText.TrimUid(information.GetString(DicomTags.TransactionUID) ?? string.Empty);
        if (!IsUid(transactionUid))
        {
            problem = "Transaction UID (0008,1195) missing or not a UID";
            return false;
        }

        var sequence = information.GetSequence(DicomTags.ReferencedSOPSequence);
        if (sequence is null || sequence.Items.Count == 0)
        {
            problem = "Referenced SOP Sequence (0008,1199) missing or empty";
            return false;
        }

        if (sequence.Items.Count > MaxReferences)
        {
            problem = $"{sequence.Items.Count} instances in one request; at most {MaxReferences}";
            return false;
        }

        for (var i = 0; i < sequence.Items.Count; i++)
        {
            var item = sequence.Items[i];
            var sopClass = DicomText.TrimUid(item.GetString(DicomTags.ReferencedSOPClassUID) ?? string.Empty);
            var sopInstance = DicomText.TrimUid(item.GetString(DicomTags.ReferencedSOPInstanceUID) ?? string.Empty);
            if (!IsUid(sopClass) || !IsUid(sopInstance))
            {
                problem = $"Referenced SOP Sequence item {i + 1}: SOP class or instance UID missing or not a UID";
                return false;
            }

            references.Add(new CommitmentReference(sopClass, sopInstance));
        }

        problem = string.Empty;
        return true;
    }

    private static bool IsUid(string text) => text.Length is > 0 and <= 64 && text.AsSpan().IndexOfAnyExcept("0123456789.") < 0 && text[0] != '.' && text[^1] != '.';
}
