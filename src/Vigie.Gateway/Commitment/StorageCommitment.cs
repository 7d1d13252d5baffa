using System.Text.Json;
using System.Text.Json.Serialization;
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
    [property: JsonPropertyName("at")] DateTimeOffset RequestedAt);

/// <summary>
/// Storage Commitment Push Model SCP (PS3.4 J), the IHE "Storage Commitment" transaction (RAD-10): a modality asks
/// whether Vigie took responsibility for the instances it sent, and deletes its copies on a yes. Vigie answers yes for
/// an instance once it is in the archive: stored, synced and indexed, which is already so when its C-STORE was answered.
/// The request is kept in the outbox (sealed: it lists UIDs) and the result goes back by N-EVENT-REPORT on an
/// association Vigie opens to the requestor, as most modalities and IHE expect; a modality that is off retries later.
/// </summary>
internal sealed class StorageCommitmentService(Outbox outbox, IVigieDatabase database, IArchiveKeyService keys, IOptionsMonitor<GatewayOptions> options,
    TimeProvider time)
{
    public const string Topic = "storage-commitment";

    /// <summary>Most instances one request may name; a CT study of several thousand images fits many times over.</summary>
    public const int MaxReferences = 50_000;

    /// <summary>The storage commitment action (PS3.4 J.3.2): "Request Storage Commitment".</summary>
    public const ushort RequestAction = 1;

    private static ReadOnlySpan<byte> SealContext => "vigie:outbox:storage-commitment"u8;

    /// <summary>Checks an N-ACTION-RQ and queues its report; the result is the N-ACTION-RSP status.</summary>
    public async ValueTask<DimseResult> RequestAsync(string requestorAE, DimseMessage request, DicomDataset? information, CancellationToken cancellationToken)
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

        // The report goes back on an association Vigie opens: without the requestor's address it could never arrive,
        // and the modality would wait for it for hours. Refusing now shows the gap at once.
        if (options.CurrentValue.FindDestination(requestorAE) is null)
        {
            return new DimseResult(DimseStatus.ProcessingFailure, $"no address for {requestorAE} to report to (Gateway:Destinations)");
        }

        var payload = JsonSerializer.SerializeToUtf8Bytes(new CommitmentRequest(requestorAE, transactionUid, references, time.GetUtcNow()));
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false))
        {
            await outbox.EnqueueAsync(connection, transaction, Topic, keys.Seal(payload, SealContext), cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        outbox.Notify(Topic);
        CommitmentReporter.Requests.Add(1);
        return DimseResult.Success;
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
