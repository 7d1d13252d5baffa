using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Access;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Gateway.Commitment;
using Vigie.Gateway.Forwarding;
using Vigie.Gateway.Ingest;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Dimse;

/// <summary>What Vigie decided about one association, kept on it.</summary>
internal sealed record GatewayAssociationState(DicomNodeSubject Subject, DicomRights Rights, string Rule);

/// <summary>
/// The DICOM node's application side: every association asks the policy decision point, every C-STORE goes through
/// the ingest pipeline, C-FIND answers from the index, C-GET and C-MOVE read from the archive, and all of it is audited.
/// </summary>
internal sealed class GatewayServiceProvider(
    IPolicyDecisionPoint policy,
    IDicomUserVerifier users,
    IngestPipeline ingest,
    IArchiveIndex index,
    IObjectStore store,
    StorageCommitmentService commitments,
    IAuditLog audit,
    IArchiveKeyService keys,
    IOptionsMonitor<GatewayOptions> options,
    IOptionsMonitor<DicomServerOptions> serverOptions,
    NegotiationStatus negotiation,
    StoreStatus stores,
    RetrieveIntegrity retrieveIntegrity,
    Ingest.WithheldObjects withheld,
    ILogger<GatewayServiceProvider> logger,
    TimeProvider time) : IDicomServiceProvider
{
    /// <summary>Marks an association the policy refused (already audited).</summary>
    private static readonly object Refused = new();

    private DateTimeOffset _lastFullWarning = DateTimeOffset.MinValue;
    private DateTimeOffset _lastSpoolFailure = DateTimeOffset.MinValue;
    private DateTimeOffset _lastAuditFailure = DateTimeOffset.MinValue;
    private DateTimeOffset _lastInvalidRecord = DateTimeOffset.MinValue;
    private DateTimeOffset _lastInternalError = DateTimeOffset.MinValue;
    private DateTimeOffset _lastOperationFailure = DateTimeOffset.MinValue;
    private readonly UnassociatedConnections _unassociated = new();
    private DateTimeOffset _lastTransientRefusal = DateTimeOffset.MinValue;
    private DateTimeOffset _lastIntegrityFailure = DateTimeOffset.MinValue;

    private string OurAE => serverOptions.CurrentValue.AETitle;

    /// <summary>
    /// Longest wait for the audit trail and the policy's data before an association is refused as transient. A hung
    /// database (stopped by SIGSTOP, a locked SQLite file) otherwise held each association until the sender's own
    /// timeout, which it reports as a network failure rather than a refusal to retry later.
    /// </summary>
    internal static readonly TimeSpan NegotiationLimit = TimeSpan.FromSeconds(10);

    public async ValueTask<AssociationDecision> NegotiateAsync(DicomAssociation association, DicomConnectionInfo connection, CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(NegotiationLimit);
        try
        {
            var decision = await DecideAsync(association, connection, limit.Token).ConfigureAwait(false);
            negotiation.Decided();
            return decision;
        }
        catch (AuditRecordException e)
        {
            // A record the trail refuses as invalid is a bug or hostile input, not an outage: before 2026-12-07 it was
            // answered "transient, temporary congestion" (so the peer retried for ever), turned /health Unhealthy and
            // went to the spill as if the database were down. The peer is refused for good, as any caller not let in.
            return await RefuseOnInvalidRecordAsync(association, connection, e).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested))
        {
            var cause = limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested
                ? $"no answer within {NegotiationLimit.TotalSeconds:0} s"
                : e.GetType().Name;
            negotiation.Refused(time.GetUtcNow(), $"the audit trail or the access policy is unavailable ({cause})");
            // Nothing is served that cannot be audited. With the audit trail or the policy's data out of reach (a database
            // restarting, a full disk) the association is refused as transient, so the modality retries later, instead
            // of seeing its connection dropped without an answer.
            association.State = Refused;
            // The trail cannot take the refusal now: it waits in the spill, and is appended once the database answers.
            await audit.KeepForLaterAsync(AssociationRecord(association.Parameters, connection, AuditEventIds.SecurityAlert, AuditEventTypes.NodeAuthentication,
                AuditOutcome.MinorFailure, $"association refused for now (A-ASSOCIATE-RJ transient, temporary congestion): the audit trail is unavailable ({cause})",
                association.UserName), CancellationToken.None).ConfigureAwait(false);
            // Once a minute at most: every modality retries, and an outage would otherwise write a line per attempt.
            if (DueForLog(ref _lastTransientRefusal, time.GetUtcNow()))
            {
                logger.LogError("Association from {CallingAE} at {Address} refused for now: the audit trail is unavailable ({Reason})", association.Parameters.CallingAE,
                    connection.Remote?.Address, $"{cause}: {e.Message}");
            }

            return AssociationDecision.Reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReasons.TemporaryCongestion,
                "audit trail unavailable: " + cause);
        }
    }

    /// <summary>
    /// An association whose audit record was invalid: refused for good (1, 1, 3) and audited without the peer's text
    /// the record could not hold; the log names the field (never its value), once a minute at most.
    /// </summary>
    private async ValueTask<AssociationDecision> RefuseOnInvalidRecordAsync(DicomAssociation association, DicomConnectionInfo connection, AuditRecordException e)
    {
        association.State = Refused;
        association.UserName = null;
        var reason = $"association refused: its audit record was invalid ({e.Field})";
        var failure = await AppendOrKeepAsync(AssociationRecord(association.Parameters, connection, AuditEventIds.SecurityAlert, AuditEventTypes.NodeAuthentication,
            AuditOutcome.MinorFailure, reason, user: null), CancellationToken.None).ConfigureAwait(false);
        if (DueForLog(ref _lastInvalidRecord, time.GetUtcNow()))
        {
            logger.LogError("Association from {CallingAE} at {Address} refused: its audit record was invalid ({Reason}){Unaudited}", association.Parameters.CallingAE,
                connection.Remote?.Address, e.Message, failure is null ? "" : $"; the refusal could not be audited either ({failure.GetType().Name})");
        }

        return AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CallingAENotRecognized, reason);
    }

    private async ValueTask<AssociationDecision> DecideAsync(DicomAssociation association, DicomConnectionInfo connection, CancellationToken cancellationToken)
    {
        var request = association.Parameters;
        var identity = request.UserIdentity is { Type: UserIdentityType.UsernameAndPasscode } given ? given : null;
        var name = identity is null ? null : System.Text.Encoding.UTF8.GetString(identity.PrimaryField);
        // The name as the trail and the log may hold it: the peer's bytes, bounded and without control characters.
        var shownName = name is null ? null : GatewayAudit.PeerText(name);

        // The allow-list (AE title × address) first, before any passcode is hashed: an unknown caller is refused as an
        // unknown node (110113), and costs no PBKDF2. Before 2026-12-07 the passcode was checked first, so an unknown
        // caller with a wrong one was audited as a failed login only, and anyone could make the node hash for 50 ms.
        var subject = new DicomNodeSubject(request.CallingAE, connection.Remote?.Address, null, connection.ClientCertificateSubject);
        var (rights, decision) = await policy.DicomRightsAsync(subject, cancellationToken).ConfigureAwait(false);
        string? user = null;
        if (decision.Rule is not null && identity is not null)
        {
            if (!users.Verify(name!, System.Text.Encoding.UTF8.GetString(identity.SecondaryField)))
            {
                await AuditAssociationAsync(request, connection, AuditEventIds.UserAuthentication, AuditEventTypes.Login, AuditOutcome.MinorFailure,
                    $"user identity '{shownName}' refused", shownName, cancellationToken).ConfigureAwait(false);
                LogRefusal(request.CallingAE, connection, "its user identity was refused");
                association.State = Refused;
                // The same answer as a caller not on the allow-list, or one that owes a user identity and sent none: from
                // outside, nothing tells which (no oracle for titles, users or passwords); the audit trail says.
                return AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CallingAENotRecognized,
                    $"user identity '{shownName}' refused");
            }

            user = shownName;
            subject = subject with { UserName = user };
            (rights, decision) = await policy.DicomRightsAsync(subject, cancellationToken).ConfigureAwait(false);
        }

        if (!decision.Permitted)
        {
            // A node the policy does not let in: a node-authentication failure (PS3.15 A.5.3.11, IHE ATNA), like the node's own refusals.
            // A user identity it sent was not checked: the trail names it as claimed, not as the user who acted.
            var reason = decision.Rule is null && shownName is not null ? $"{decision.Reason} (user identity '{shownName}' claimed, not checked)" : decision.Reason;
            await AuditAssociationAsync(request, connection, AuditEventIds.SecurityAlert, AuditEventTypes.NodeAuthentication, AuditOutcome.MinorFailure,
                reason, user, cancellationToken).ConfigureAwait(false);
            LogRefusal(request.CallingAE, connection, decision.Reason);
            association.State = Refused;
            return AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CallingAENotRecognized, decision.Reason);
        }

        // Storage contexts are for sending to Vigie (Store), or for receiving C-GET results when the requestor takes the SCP role.
        var getRoles = request.RoleSelections.Where(r => r.ScpRole).Select(r => r.SopClassUid).ToHashSet(StringComparer.Ordinal);
        // A context for C-GET results alone gets the syntax Vigie sends best; one the requestor also stores on (both roles,
        // and the right to store) the first uncompressed one it proposes, else the first Vigie stores. Before 2026-12-06
        // both roles counted as C-GET only, and a deflated or big-endian context was refused.
        var getOnly = request.RoleSelections.Where(r => r.ScpRole && (!r.ScuRole || (rights & DicomRights.Store) == 0)).Select(r => r.SopClassUid)
            .ToHashSet(StringComparer.Ordinal);
        var bothWays = request.RoleSelections.Where(r => r.ScpRole && r.ScuRole && (rights & DicomRights.Store) != 0 && (rights & DicomRights.Retrieve) != 0)
            .Select(r => r.SopClassUid).ToHashSet(StringComparer.Ordinal);
        var gateway = options.CurrentValue;
        PresentationContextNegotiator.Answer(request,
            uid => uid == DicomUids.Verification || gateway.IsStorageClass(uid) || SopClasses.Find.Contains(uid) || SopClasses.Get.Contains(uid) || SopClasses.Move.Contains(uid)
                || uid == DicomUids.StorageCommitmentPushModel,
            uid => uid == DicomUids.Verification
                || (gateway.IsStorageClass(uid) && ((rights & DicomRights.Store) != 0 || ((rights & DicomRights.Retrieve) != 0 && getRoles.Contains(uid))))
                || (uid == DicomUids.StorageCommitmentPushModel && (rights & DicomRights.Store) != 0)
                || (SopClasses.Find.Contains(uid) && (rights & DicomRights.Query) != 0)
                || ((SopClasses.Get.Contains(uid) || SopClasses.Move.Contains(uid)) && (rights & DicomRights.Retrieve) != 0),
            uid => getOnly.Contains(uid) && (rights & DicomRights.Retrieve) != 0,
            bothWays.Contains, gateway.IsStorageClass);
        if ((rights & DicomRights.Store) == 0)
        {
            // Accepted only so that C-GET results come back: the requestor takes the SCP role there, never the SCU's
            // (PS3.7 D.3.3.4), so it cannot send a C-STORE on it.
            foreach (var context in request.PresentationContexts.Where(c => c.IsAccepted && gateway.IsStorageClass(c.AbstractSyntax)))
            {
                context.ScuRole = false;
                context.ScpRole = true;
            }
        }

        association.State = new GatewayAssociationState(subject, rights, decision.Rule ?? "");
        association.UserName = user;
        // The calling application logs in (PS3.16 pairs User Authentication with Login and Logout; Node Authentication is a Security Alert's type).
        await AuditAssociationAsync(request, connection, AuditEventIds.UserAuthentication, AuditEventTypes.Login, AuditOutcome.Success,
            $"association accepted ({decision.Reason})", user, cancellationToken).ConfigureAwait(false);
        return AssociationDecision.Accepted;
    }

    public async ValueTask OperationRefusedAsync(DicomAssociation association, DimseMessage request, DimseResult refusal, CancellationToken cancellationToken)
    {
        // A service reached through a context it does not belong to: an attempt to use a function this caller was not given.
        var context = association.AcceptedContext(request.PresentationContextId);
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
            Action = AuditAction.Execute,
            Outcome = AuditOutcome.MinorFailure,
            Participants =
            [
                GatewayAudit.Requestor(Source(association), AuditRoles.Source),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Destination),
            ],
            Details = new AuditDetails
            {
                OutcomeDescription = Truncate($"{request.Field} refused (0x{refusal.Status:X4}) on the context of {context?.AbstractSyntax}: {refusal.ErrorComment}", 1000),
                Objects =
                [
                    new AuditObject
                    {
                        Type = AuditObjectType.SystemObject,
                        Role = AuditObjectRole.Resource,
                        IdType = AuditObjectIdTypes.SopClassUid,
                        Id = request.AffectedSopClassUid ?? request.RequestedSopClassUid ?? "",
                    },
                ],
            },
        };
        if (await AppendOrKeepAsync(record, cancellationToken).ConfigureAwait(false) is { } e && DueForLog(ref _lastAuditFailure, time.GetUtcNow()))
        {
            logger.LogError(e, "A refused {Command} from {CallingAE} could not be audited", request.Field, association.CallingAE);
        }

        logger.LogWarning("{Command} from {CallingAE} refused: {Reason}", request.Field, association.CallingAE, refusal.ErrorComment);
    }

    /// <summary>
    /// The right a service needs, checked again on each request (not only when its context was accepted): a request that
    /// reached a service some other way is refused 0124 and audited.
    /// </summary>
    private async ValueTask RequireRightAsync(DicomAssociation association, DimseMessage request, DicomRights right, CancellationToken cancellationToken)
    {
        if (association.State is GatewayAssociationState state && (state.Rights & right) != 0)
        {
            return;
        }

        var refusal = new DimseResult(DimseStatus.NotAuthorized, $"the calling AE has no {right.ToString().ToLowerInvariant()} right");
        await OperationRefusedAsync(association, request, refusal, cancellationToken).ConfigureAwait(false);
        throw new DicomStatusException(refusal.Status, refusal.ErrorComment);
    }

    public async ValueTask<DimseResult> ActionAsync(DicomAssociation association, DimseMessage request, DicomDataset? information, CancellationToken cancellationToken)
    {
        // Negotiation accepts no other SOP class with N-ACTION.
        if (request.RequestedSopClassUid != DicomUids.StorageCommitmentPushModel)
        {
            return new DimseResult(DimseStatus.UnrecognizedOperation, "N-ACTION is served for storage commitment only");
        }

        DimseResult result;
        try
        {
            // A requestor that took the SCP role of the SOP class can be sent its report on this very association.
            var reportHere = association.FindContextWhereRequestorIsScp(DicomUids.StorageCommitmentPushModel) is not null;
            result = await commitments.RequestAsync(association.CallingAE, (association.RemoteEndPoint as System.Net.IPEndPoint)?.Address.ToString(), reportHere,
                request, information, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException)
        {
            // Not queued, so not accepted: the modality keeps its copies and asks again.
            logger.LogError("Storage commitment request from {CallingAE} could not be queued: {Reason}", association.CallingAE, $"{e.GetType().Name}: {e.Message}");
            return new DimseResult(DimseStatus.ProcessingFailure, "Vigie could not queue the request: retry later");
        }

        if (result.Status != DimseStatus.Success)
        {
            logger.LogWarning("Storage commitment request from {CallingAE} refused (0x{Status:X4}): {Reason}", association.CallingAE, result.Status, result.ErrorComment);
        }

        return result;
    }

    public ValueTask<DimseResult> EchoAsync(DicomAssociation association, DimseMessage request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(DimseResult.Success);

    public async ValueTask<IStoreOperation> BeginStoreAsync(DicomAssociation association, DimseMessage request, string transferSyntaxUid, CancellationToken cancellationToken)
    {
        if (!options.CurrentValue.IsStorageClass(request.AffectedSopClassUid ?? ""))
        {
            var refusal = new DimseResult(DimseStatus.SopClassNotSupported, "not a storage SOP class this node accepts");
            await OperationRefusedAsync(association, request, refusal, cancellationToken).ConfigureAwait(false);
            throw new DicomStatusException(refusal.Status, refusal.ErrorComment);
        }

        await RequireRightAsync(association, request, DicomRights.Store, cancellationToken).ConfigureAwait(false);
        var source = Source(association);
        var header = IngestPipeline.Part10Header(request.AffectedSopClassUid!, request.AffectedSopInstanceUid!, transferSyntaxUid);
        IngestSession session;
        try
        {
            session = await ingest.BeginAsync(source, header, cancellationToken).ConfigureAwait(false);
        }
        catch (ArchiveFullException e)
        {
            IngestPipeline.CountRefused(IngestChannel.Dimse, "ArchiveFull");
            if (DueForLog(ref _lastFullWarning, time.GetUtcNow()))
            {
                logger.LogError("Stores are refused (A700): {Reason}. Queries and retrieves go on; free space on the data folder's disk.", e.Message);
            }

            await AuditRefusedStoreAsync(source, request.AffectedSopClassUid, request.AffectedSopInstanceUid, e.Message, default, cancellationToken).ConfigureAwait(false);
            throw new DicomStatusException(DimseStatus.OutOfResources, "Vigie archive disk full: retry later");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No spool could be made (a data folder turned read-only after disk errors, wrong permissions): the sender
            // keeps its copy and retries; the association goes on.
            await StoreFailedAsync(source, request.AffectedSopClassUid, request.AffectedSopInstanceUid, e, "no spool file can be written in the data folder", default,
                cancellationToken).ConfigureAwait(false);
            throw new DicomStatusException(DimseStatus.OutOfResources, "Vigie could not write the object: retry later");
        }

        return new StoreOperation(this, session, source, request.AffectedSopClassUid, request.AffectedSopInstanceUid!);
    }

    /// <summary>
    /// A store that could not be kept (the data folder under its free-space floor, no spool file, a write or sync that
    /// failed): audited as a failed transfer from its sender, since the sender was told to retry. The floor keeps room
    /// for the audit trail; when even that append fails, the log says so and the answer stays A700.
    /// </summary>
    /// Since 2026-12-07 it names the SOP Instance UID of the request, and the patient and study when the header was read
    /// before the failure (a commit the database refused): before, it had only the SOP class, and was in no patient's history.
    private async ValueTask AuditRefusedStoreAsync(IngestSource source, string? sopClassUid, string? sopInstanceUid, string reason,
        (string? PatientRef, List<AuditObject>? Objects) about, CancellationToken cancellationToken)
    {
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.DicomInstancesTransferred,
            Action = AuditAction.Create,
            Outcome = AuditOutcome.SeriousFailure,
            Participants =
            [
                GatewayAudit.Requestor(source, AuditRoles.Source),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Destination),
            ],
            PatientRef = about.PatientRef,
            Details = new AuditDetails
            {
                OutcomeDescription = "refused: " + reason,
                Objects =
                [
                    new AuditObject
                    {
                        Type = AuditObjectType.SystemObject,
                        Role = AuditObjectRole.Resource,
                        IdType = AuditObjectIdTypes.SopClassUid,
                        Id = sopClassUid ?? "",
                        // Bounded by the network layer's UI length; which image failed, for the sender's retry.
                        Details = sopInstanceUid is { Length: > 0 and <= 64 } ? [new KeyValuePair<string, string>("SOPInstanceUID", sopInstanceUid)] : [],
                    },
                    .. about.Objects ?? [],
                ],
            },
        };
        if (await AppendOrKeepAsync(record, cancellationToken).ConfigureAwait(false) is { } e && DueForLog(ref _lastAuditFailure, time.GetUtcNow()))
        {
            logger.LogError(e, "A refused store from {CallingAE} could not be audited", source.CallingAE);
        }
    }

    public async IAsyncEnumerable<DicomDataset> FindAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await RequireRightAsync(association, request, DicomRights.Query, cancellationToken).ConfigureAwait(false);
        if (!QueryTranslator.TryLevel(identifier, request.AffectedSopClassUid ?? "", out var level, out var problem))
        {
            // A refused query is still an attempt to look someone up: audited, as the store refusals are.
            await AuditQueryAsync(association, request, identifier, [], AuditOutcome.MinorFailure, "refused (A900): " + problem, cancellationToken).ConfigureAwait(false);
            throw new DicomStatusException(DimseStatus.IdentifierDoesNotMatchSopClass, problem);
        }

        if (KeyedPatients(identifier).Count > MaxQueriedPatientIds)
        {
            // Each exact ID is a record in that patient's history: a list is bounded so that the trail stays so.
            problem = $"a C-FIND may list at most {MaxQueriedPatientIds} Patient IDs";
            await AuditQueryAsync(association, request, identifier, [], AuditOutcome.MinorFailure, "refused (A900): " + problem, cancellationToken).ConfigureAwait(false);
            throw new DicomStatusException(DimseStatus.IdentifierDoesNotMatchSopClass, problem);
        }

        var query = QueryTranslator.ToQuery(identifier, level, options.CurrentValue.MaxFindResults);
        var result = await index.QueryAsync(query, cancellationToken).ConfigureAwait(false);
        await ReportTamperedRowsAsync(association, result, cancellationToken).ConfigureAwait(false);
        await AuditQueryAsync(association, request, identifier, result.Matches, AuditOutcome.Success, $"{result.Matches.Count} matches", cancellationToken).ConfigureAwait(false);
        foreach (var match in result.Matches)
        {
            yield return QueryTranslator.ToResponse(identifier, match, OurAE);
        }

        if (result.Incomplete)
        {
            logger.LogWarning("C-FIND from {CallingAE} was cut at {Count} matches", association.CallingAE, result.Matches.Count);
        }
    }

    public ushort FindPendingStatus(DicomAssociation association, DimseMessage request, DicomDataset identifier) =>
        QueryTranslator.TryLevel(identifier, request.AffectedSopClassUid ?? "", out var level, out _) && QueryTranslator.HasUnmatchedKeys(identifier, level)
            ? DimseStatus.PendingWithWarnings
            : DimseStatus.Pending;

    public async ValueTask<IReadOnlyList<RetrieveItem>> RetrieveAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier,
        CancellationToken cancellationToken)
    {
        await RequireRightAsync(association, request, DicomRights.Retrieve, cancellationToken).ConfigureAwait(false);
        var query = QueryTranslator.TryLevel(identifier, request.AffectedSopClassUid ?? "", out var level, out var problem)
            ? QueryTranslator.ToRetrieveQuery(identifier, level, options.CurrentValue.MaxRetrieveInstances, out problem)
            : null;
        if (query is null)
        {
            await AuditRetrieveAsync(association, request, [], "refused (A900): " + problem, cancellationToken, identifier).ConfigureAwait(false);
            throw new DicomStatusException(DimseStatus.IdentifierDoesNotMatchSopClass, problem);
        }

        var result = await index.QueryAsync(query, cancellationToken).ConfigureAwait(false);
        await ReportTamperedRowsAsync(association, result, cancellationToken).ConfigureAwait(false);
        var items = new RetrievedItems(result.Matches);
        foreach (var match in result.Matches)
        {
            if (match.ObjectId is not { } id)
            {
                continue;
            }

            var sopClass = match.Attributes.First(DicomTags.SOPClassUID.Value);
            var sopInstance = match.Attributes.First(DicomTags.SOPInstanceUID.Value);
            var syntax = match.Attributes.First(IndexedAttributes.TransferSyntax.Value) ?? DicomUids.ExplicitVRLittleEndian;
            if (sopClass is null || sopInstance is null)
            {
                continue;
            }

            var about = new RetrievedObject(id, Source(association), match);
            items.Add(new RetrieveItem(sopClass, sopInstance, syntax, ct => OpenDataSetAsync(about, syntax, sopInstance, ct)));
        }

        await AuditRetrieveAsync(association, request, result.Matches, refusal: null, cancellationToken).ConfigureAwait(false);
        return items;
    }

    public async ValueTask<IMoveDestination?> OpenMoveDestinationAsync(DicomAssociation association, DimseMessage request, string destinationAE,
        IReadOnlyList<RetrieveItem> items,
        CancellationToken cancellationToken)
    {
        var destination = options.CurrentValue.FindDestination(destinationAE, d => d.MoveDestination);
        if (destination is null)
        {
            return null;
        }

        // One context per SOP class and syntax (the destination accepts one syntax per context), with the other
        // uncompressed syntax for uncompressed objects. What does not fit the 128 contexts fails its sub-operation.
        var contexts = new List<PresentationContext>();
        byte id = 1;
        foreach (var (sopClass, syntax) in items
                     .SelectMany(i => UncompressedSyntax.Alternatives(i.TransferSyntaxUid).Prepend(i.TransferSyntaxUid).Select(syntax => (i.SopClassUid, syntax)))
                     .Distinct().Take(128))
        {
            contexts.Add(new PresentationContext(id, sopClass, [syntax]));
            id += 2;
        }

        if (contexts.Count == 0)
        {
            contexts.Add(new PresentationContext(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian]));
        }

        try
        {
            var client = await DicomClient.ConnectAsync(Destinations.ClientOptions(destination, OurAE), contexts, cancellationToken).ConfigureAwait(false);
            return new MoveDestination(client, association.CallingAE, request.MessageId, destinationAE, logger);
        }
        catch (Exception e) when (PeerFailures.IsTransient(e))
        {
            // The same judgement as the forwarder's; a C-CANCEL during the connection is not one of these, and ends FE00.
            logger.LogWarning("C-MOVE from {CallingAE} to {Destination} ({Host}:{Port}) failed: {Reason}", association.CallingAE, destinationAE, destination.Host,
                destination.Port, e.Message);
            // In the operator's words, not a .NET type name (before 2026-12-06 "cannot reach SCMOD: DicomAssociationRejectedException").
            throw new DicomStatusException(DimseStatus.OutOfResourcesSubOperations, e switch
            {
                DicomAssociationRejectedException rejected => $"{destinationAE} rejected the association ({rejected.Message})",
                System.Net.Sockets.SocketException socket => $"cannot reach {destinationAE}: {socket.SocketErrorCode}",
                TimeoutException => $"cannot reach {destinationAE}: no answer in time",
                DicomClientCertificateRefusedException => $"{destinationAE} refused Vigie's TLS client certificate",
                System.Security.Authentication.AuthenticationException => $"cannot reach {destinationAE}: TLS handshake failed",
                _ => $"cannot reach {destinationAE}: {e.Message}",
            });
        }
    }

    // The listener calls this at most once a minute.
    public void ConnectionRefused(IPAddress address, string reason) =>
        logger.LogWarning("Connections from {Remote} refused at once: {Reason}", address, reason);

    // The listener calls this at most once a minute.
    public void AcceptFailed(System.Net.Sockets.SocketError error, string message) =>
        logger.LogError("The DICOM listener cannot accept connections ({Error}: {Message}); it tries again every 250 ms{Advice}", error, message,
            error == System.Net.Sockets.SocketError.TooManyOpenSockets ? ". Out of file descriptors, raise LimitNOFILE" : "");

    public void OperationFailed(DicomAssociation association, DimseMessage request, Exception exception)
    {
        if (DueForLog(ref _lastOperationFailure, time.GetUtcNow()))
        {
            // The type and where it was thrown, not the message: a message may quote a value of the request.
            var site = exception.StackTrace?.Split('\n', StringSplitOptions.TrimEntries).FirstOrDefault(l => l.Contains("Vigie.", StringComparison.Ordinal));
            logger.LogError("A {Command} from {CallingAE} failed on an internal error ({Exception} {Site}), answered 0110; the node goes on serving",
                Enum.IsDefined(request.Field) ? request.Field.ToString() : "command", association.Parameters.CallingAE, exception.GetType().Name, site);
        }
    }

    public async ValueTask AssociationEndedAsync(DicomAssociation? association, DicomConnectionInfo connection, AssociationEnd end, string detail)
    {
        if (end == AssociationEnd.Released)
        {
            return;
        }

        if (end == AssociationEnd.Rejected)
        {
            // The policy's own rejections were audited when it decided; these are the node's (called AE, limits, protocol).
            if (association?.State is null)
            {
                await AuditAssociationAsync(association?.Parameters ?? new AssociationParameters { CallingAE = "", CalledAE = "" }, connection,
                    AuditEventIds.SecurityAlert, AuditEventTypes.NodeAuthentication, AuditOutcome.MinorFailure, detail, association?.UserName, CancellationToken.None)
                    .ConfigureAwait(false);
            }

            return;
        }

        if (end == AssociationEnd.InternalError && DueForLog(ref _lastInternalError, time.GetUtcNow()))
        {
            // Vigie's own fault, not the peer's: the operators must hear of it, not only the audit trail.
            logger.LogError("An association from {CallingAE} at {Remote} was aborted on an internal error ({Detail}); the node goes on serving",
                association?.Parameters.CallingAE, connection.Remote, detail);
        }

        var description = $"association {end}: {detail}";
        if (association is { ByteReceived: false } || connection.SentNothing)
        {
            // A connection that sent not one byte names nobody, and costs its sender nothing: audited once a minute per
            // address, with the count of the others, so that a flood cannot swell the trail. Anything sent (garbage, a
            // slow or broken request) is audited each time, as every misbehaving peer is.
            if (!_unassociated.Admit(connection.Remote?.Address, time.GetUtcNow(), out var others, out var since))
            {
                return;
            }

            description = others == 0
                ? $"connection that sent nothing ({end}: {detail})"
                : string.Create(CultureInfo.InvariantCulture,
                    $"connection that sent nothing ({end}: {detail}); {others} more from this address since {since:u} not audited one by one");
        }

        else if (association is null && connection.IsTls)
        {
            LogTlsRefusal(connection, detail);
        }

        // Aborts and lost connections: a misbehaving or hostile peer is a security event.
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            EventTypes = [AuditEventTypes.NodeAuthentication],
            Action = AuditAction.Execute,
            Outcome = AuditOutcome.MinorFailure,
            Participants =
            [
                GatewayAudit.Node(association is { RequestReceived: true, Parameters.CallingAE: { Length: > 0 } ae } ? ae : "(unknown)", connection.Remote?.Address,
                    requestor: true, AuditRoles.Source, association?.UserName),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Destination),
            ],
            Details = new AuditDetails { OutcomeDescription = Truncate(description, 1000) },
        };
        if (await AppendOrKeepAsync(record, CancellationToken.None).ConfigureAwait(false) is { } e && DueForLog(ref _lastAuditFailure, time.GetUtcNow()))
        {
            logger.LogError(e, "Could not audit the end of an association from {Remote}", connection.Remote);
        }
    }

    /// <summary>What an integrity alert about an object read for a retrieve names: the object, who asked, the match's patient and study.</summary>
    private sealed record RetrievedObject(ObjectId Id, IngestSource Requestor, QueryMatch Match);

    private async ValueTask<Stream> OpenDataSetAsync(RetrievedObject about, string indexedSyntax, string indexedInstance, CancellationToken cancellationToken)
    {
        var id = about.Id;
        if (await withheld.ReasonAsync(id, cancellationToken).ConfigureAwait(false) is { } reason)
        {
            throw new InvalidDataException(reason);
        }

        ArchiveObjectReader reader;
        try
        {
            reader = await store.OpenReadAsync(id, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (RetrieveIntegrity.Problem(e) is { } problem)
        {
            ObjectFailedItsCheck(about, problem);
            throw;
        }

        var stream = reader.OpenStream();
        try
        {
            var file = await DicomReader.ReadFileAsync(stream, new DicomReadOptions { StopAtTag = new DicomTag(0x0003, 0x0000) }, cancellationToken).ConfigureAwait(false);
            if (DicomText.TrimUid(file.Meta.GetString(DicomTags.MediaStorageSOPInstanceUID) ?? "") != DicomText.TrimUid(indexedInstance))
            {
                // An index row pointed at another object (altered in the database): sending it would hand over another
                // patient's image under the name asked for. The object id only: no identifier in the log.
                logger.LogError("Archive object {ObjectId} does not hold the instance its index row names; not sent. Run vigie scrub", id);
                throw new InvalidDataException("the archive object does not hold the instance the index names");
            }

            if (file.TransferSyntax.Uid != indexedSyntax)
            {
                // Announcing one syntax and sending another hands the receiver unreadable data: fail this sub-operation instead.
                throw new InvalidDataException($"the index says {indexedSyntax} but the object is stored in {file.TransferSyntax.Uid}");
            }

            stream.Position = file.DatasetOffset;
            return new OwningStream(stream, reader, e => ObjectFailedItsCheck(about, e.Problem.ToString()));
        }
        catch (Exception e) when (RetrieveIntegrity.Problem(e) is { } problem)
        {
            ObjectFailedItsCheck(about, problem);
            await stream.DisposeAsync().ConfigureAwait(false);
            await reader.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            await reader.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Counted, kept for /health and logged (once a minute): a retrieve is often the first to meet a damaged object.</summary>
    private void ObjectFailedItsCheck(RetrievedObject about, string problem)
    {
        var id = about.Id;
        var now = time.GetUtcNow();
        RetrieveIntegrity.Failures.Add(1, new KeyValuePair<string, object?>("problem", problem));
        retrieveIntegrity.Failed(now, $"object {id}: {problem}");
        if (retrieveIntegrity.DueForAlert(id, now))
        {
            // Not awaited: this runs inside the read that failed (a stream's callback), and the sub-operation's failure
            // does not wait for the trail.
            _ = AuditIntegrityFailureAsync(about, problem);
        }

        if (DueForLog(ref _lastIntegrityFailure, now))
        {
            logger.LogError("Archive object {ObjectId} failed its check when read for a retrieve ({Problem}); its sub-operation failed. "
                + "Run vigie scrub; sending the image again heals it", id, problem);
        }
    }

    private async Task AuditIntegrityFailureAsync(RetrievedObject about, string problem)
    {
        var (id, requestor, match) = about;
        try
        {
            // Who asked and whose images: the alert shows in that patient's history, beside the retrieve it broke
            // (before 2026-12-06 it named neither).
            var patientId = match.Attributes.First(DicomTags.PatientID.Value);
            // The requestor without a role: for a C-MOVE the images were bound for a third node.
            var failure = await AppendOrKeepAsync(GatewayAudit.IntegrityAlert(time, OurAE, $"stored object {id} failed its check when read for a retrieve ({problem}); "
                    + "its sub-operation failed. Run vigie scrub; sending the image again heals it",
                    [GatewayAudit.Requestor(requestor, AuditRoles.Destination) with { Roles = [] }, GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Source)],
                    patientId is null ? null : GatewayAudit.PatientRef(keys, patientId, match.Attributes.First(DicomTags.IssuerOfPatientID.Value)),
                    StudiesAndPatient([match])),
                CancellationToken.None).ConfigureAwait(false);
            if (failure is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (DueForLog(ref _lastAuditFailure, time.GetUtcNow()))
            {
                logger.LogError(e, "Could not audit archive object {ObjectId}'s failed check", id);
            }
        }
    }

    /// <summary>
    /// Index rows the query left out because they fail their check (moved under another parent or rolled back in the
    /// database, since 2026-12-07): nothing of theirs was answered or sent, and the association goes on. Logged and
    /// alerted by row ids only: what such a row holds, and whose it is, cannot be trusted.
    /// </summary>
    private async ValueTask ReportTamperedRowsAsync(DicomAssociation association, QueryResult result, CancellationToken cancellationToken)
    {
        if (result.Tampered.Count == 0)
        {
            return;
        }

        var rows = string.Join(", ", result.Tampered.Take(20)) + (result.Tampered.Count > 20 ? $" and {result.Tampered.Count - 20} more" : "");
        var now = time.GetUtcNow();
        retrieveIntegrity.Failed(now, $"index rows {rows} fail their check");
        logger.LogError("Index rows {Rows} fail their check (moved or altered in the database): left out of the answer to {CallingAE}. Run vigie scrub",
            rows, association.CallingAE);
        var failure = await AppendOrKeepAsync(GatewayAudit.IntegrityAlert(time, OurAE,
                $"index rows {rows} do not open bound to their parent (moved or altered in the database): left out of a query or retrieve. Run vigie scrub",
                [GatewayAudit.Requestor(Source(association), AuditRoles.Destination) with { Roles = [] }, GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Source)]),
            cancellationToken).ConfigureAwait(false);
        if (failure is not null && DueForLog(ref _lastAuditFailure, now))
        {
            logger.LogError(failure, "Could not audit index rows that fail their check");
        }
    }

    private static IngestSource Source(DicomAssociation association)
    {
        var state = association.State as GatewayAssociationState;
        return new IngestSource(IngestChannel.Dimse, association.CallingAE, state?.Subject.Address, association.UserName, association.CalledAE);
    }

    private async ValueTask AuditAssociationAsync(AssociationParameters request, DicomConnectionInfo connection, AuditCode eventId, AuditCode eventType,
        AuditOutcome outcome, string description, string? user, CancellationToken cancellationToken) =>
        await audit.AppendAsync(AssociationRecord(request, connection, eventId, eventType, outcome, description, user), cancellationToken).ConfigureAwait(false);

    private AuditRecord AssociationRecord(AssociationParameters request, DicomConnectionInfo connection, AuditCode eventId, AuditCode eventType,
        AuditOutcome outcome, string description, string? user) =>
        new()
        {
            Time = time.GetUtcNow(),
            EventId = eventId,
            EventTypes = [eventType],
            Action = AuditAction.Execute,
            Outcome = outcome,
            Participants =
            [
                GatewayAudit.Node(request.CallingAE, connection.Remote?.Address, requestor: true, AuditRoles.Source, user),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Destination),
            ],
            Details = new AuditDetails { OutcomeDescription = Truncate(description, 1000) },
        };

    /// <summary>
    /// Appends a record of something already done or refused (an end, a refusal, an alert): when the trail is out of
    /// reach it is kept in the spill, and appended once the database answers (before 2026-12-07 it was lost, with a log
    /// line). Returns the failure when it could be neither appended nor kept.
    /// </summary>
    private async ValueTask<Exception?> AppendOrKeepAsync(AuditRecord record, CancellationToken cancellationToken)
    {
        try
        {
            await audit.AppendAsync(record, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (AuditRecordException e)
        {
            // Invalid, not unreachable: the spill would refuse it too, and the database is not at fault.
            return e;
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            return await audit.KeepForLaterAsync(record, CancellationToken.None).ConfigureAwait(false) ? null : e;
        }
    }

    private async ValueTask AuditQueryAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier, IReadOnlyList<QueryMatch> matches,
        AuditOutcome outcome, string description, CancellationToken cancellationToken)
    {
        var syntax = TransferSyntax.Lookup(association.AcceptedContext(request.PresentationContextId)?.AcceptedTransferSyntax ?? DicomUids.ImplicitVRLittleEndian);
        // A query keyed on one patient is part of that patient's history (IHE BALP PatientQuery): before 2026-12-06 it
        // was not linked to the patient, so "who looked me up" missed every query. Each exact ID of a list counts too
        // (since 2026-12-07; before, `PAT100\PAT100` was filed under nobody).
        var patientIds = KeyedPatients(identifier);
        var query = new AuditObject
        {
            Type = AuditObjectType.SystemObject,
            Role = AuditObjectRole.Report,
            IdType = AuditObjectIdTypes.SopClassUid,
            Id = request.AffectedSopClassUid ?? "",
            Query = AuditedQuery(identifier, syntax, out var shortened),
            // PS3.15 A.5.3.10: the syntax the query bytes are encoded in.
            Details = [new KeyValuePair<string, string>("TransferSyntax", syntax.Uid), .. shortened],
        };
        if (shortened.Count > 0)
        {
            // Said where the trail is read (audit show), not only in the object's details.
            description += "; identifier shortened in this record: "
                + string.Join(", ", shortened.Where(d => d.Key == "QueryShortened").Select(d => d.Value).Take(8));
        }

        // One entry per patient the IDs name: the same ID under two issuers is two patients, each with their own history.
        // A list over the bound is refused (A900), and that refusal filed under no patient.
        var patients = patientIds.Count is 0 or > MaxQueriedPatientIds
            ? [(Id: (string?)null, Issuer: (string?)null)]
            : patientIds.SelectMany(id => QueriedIssuers(identifier, id, matches).Select(issuer => (Id: (string?)id, Issuer: issuer))).ToList();
        var records = patients.Select(patient => new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.Query,
            Action = AuditAction.Execute,
            Outcome = outcome,
            Participants =
            [
                GatewayAudit.Requestor(Source(association), AuditRoles.Source),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Destination),
            ],
            PatientRef = patient.Id is null ? null : GatewayAudit.PatientRef(keys, patient.Id, patient.Issuer),
            Details = new AuditDetails
            {
                OutcomeDescription = description,
                Objects = patient.Id is null ? [query] : [query, GatewayAudit.Patient(patient.Id, QueriedName(patient.Id, patient.Issuer, matches))],
            },
        });
        foreach (var record in records)
        {
            await audit.AppendAsync(record, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The name of the patient a query is keyed on, as the index holds it, when the query found them: the Patient object's
    /// name (PS3.15 A.5.3). The record is sealed; the export may carry it. Before 2026-12-07 the object had none.
    /// </summary>
    private static string? QueriedName(string patientId, string? issuer, IReadOnlyList<QueryMatch> matches)
    {
        var id = IndexNormalizer.Identifier(patientId);
        return matches.Where(m => IndexNormalizer.Identifier(m.Attributes.First(DicomTags.PatientID.Value) ?? "") == id
                                  && (issuer is null || m.Attributes.First(DicomTags.IssuerOfPatientID.Value) == issuer))
            .Select(m => m.Attributes.First(DicomTags.PatientName.Value)).FirstOrDefault(name => !string.IsNullOrWhiteSpace(name));
    }

    /// <summary>The most Patient IDs a C-FIND may list: each is a record in that patient's history.</summary>
    internal const int MaxQueriedPatientIds = 100;

    /// <summary>The largest identifier kept whole in a query's audit record; a larger one is kept shortened.</summary>
    internal const int MaxAuditedQueryBytes = 64 * 1024;

    /// <summary>In a shortened copy, the most bytes kept of one value (whole values of a list, the first ones).</summary>
    private const int MaxAuditedValueBytes = 4 * 1024;

    /// <summary>
    /// The query as the audit record keeps it. An identifier may take 1 MiB (a list of thousands of UIDs), more than a
    /// record's details may (1 MiB of JSON, base64 included): before 2026-12-07 such a query failed 0110. Over
    /// <see cref="MaxAuditedQueryBytes"/>, each longer value keeps its first values (up to 4 KiB), and the record says
    /// how many of how many, with the SHA-256 of the whole identifier as received (encoded in the context's syntax).
    /// </summary>
    private static byte[]? AuditedQuery(DicomDataset identifier, TransferSyntax syntax, out List<KeyValuePair<string, string>> shortened)
    {
        shortened = [];
        var whole = DicomWriter.Encode(identifier, syntax);
        if (whole.Length <= MaxAuditedQueryBytes)
        {
            return whole;
        }

        var copy = new DicomDataset();
        foreach (var element in identifier)
        {
            if (element is not DicomValueElement { Length: > MaxAuditedValueBytes } value)
            {
                copy.AddOrUpdate(element);
                continue;
            }

            var values = DicomVRInfo.IsString(value.VR) ? value.GetStrings(identifier.CharacterSet) : [];
            var kept = 0;
            var length = 0;
            while (kept < values.Length && length + values[kept].Length + 1 <= MaxAuditedValueBytes)
            {
                length += values[kept++].Length + 1;
            }

            copy.AddOrUpdate(new DicomValueElement(value.Tag, value.VR, DicomText.Encode(string.Join('\\', values.Take(kept)), value.VR, identifier.CharacterSet)));
            shortened.Add(new KeyValuePair<string, string>("QueryShortened",
                string.Create(CultureInfo.InvariantCulture, $"{value.Tag}: {kept} of {values.Length} values kept ({value.Length} bytes)")));
        }

        shortened.Add(new KeyValuePair<string, string>("QuerySha256", Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(whole))));
        var encoded = DicomWriter.Encode(copy, syntax);
        if (encoded.Length <= MaxAuditedQueryBytes)
        {
            return encoded;
        }

        // Still too large (thousands of short values in a sequence): the record keeps the digest and says so.
        shortened.Add(new KeyValuePair<string, string>("QueryOmitted", string.Create(CultureInfo.InvariantCulture, $"{whole.Length} bytes")));
        return null;
    }

    /// <summary>The exact Patient IDs an identifier is keyed on (one, or each of a list; none with a wildcard).</summary>
    internal static IReadOnlyList<string> KeyedPatients(DicomDataset identifier) =>
        (identifier.GetString(DicomTags.PatientID) ?? "").Split('\\').Select(id => id.Trim(' ', '\0'))
            .Where(id => id.Length > 0 && id.IndexOfAny(['*', '?']) < 0).Distinct(StringComparer.Ordinal).ToList();

    /// <summary>The Patient ID an identifier is keyed on, when it names one patient (no wildcard, no list).</summary>
    private static string? KeyedPatient(DicomDataset identifier) =>
        (identifier.GetString(DicomTags.PatientID) ?? "").Trim(' ', '\0') is { Length: > 0 } id && id.IndexOfAny(['*', '?', '\\']) < 0 ? id : null;

    /// <summary>
    /// The issuers a query keyed on one Patient ID is filed under: its own, or, when it names none, those of the patients
    /// it found with that ID (none found: the ID alone). A query without the issuer was filed apart from the stores and
    /// retrieves of the same patient (which carry it), so "who looked me up" missed it (before 2026-12-06).
    /// </summary>
    private static IReadOnlyList<string?> QueriedIssuers(DicomDataset identifier, string patientId, IReadOnlyList<QueryMatch> matches)
    {
        if ((identifier.GetString(DicomTags.IssuerOfPatientID) ?? "").Trim(' ', '\0') is { Length: > 0 } asked)
        {
            return [asked];
        }

        var id = IndexNormalizer.Identifier(patientId);
        var issuers = matches.Where(m => IndexNormalizer.Identifier(m.Attributes.First(DicomTags.PatientID.Value) ?? "") == id)
            .Select(m => m.Attributes.First(DicomTags.IssuerOfPatientID.Value)).Distinct().Take(AuditRecord.MaxObjects).ToList();
        return issuers.Count == 0 ? [null] : issuers;
    }

    /// <summary>
    /// Begin Transferring DICOM Instances (PS3.15 A.5.3.3), one record per patient: it names the patient and carries
    /// the patient reference, so that the retrieve shows in that patient's history (who sent their images where).
    /// </summary>
    private async ValueTask AuditRetrieveAsync(DicomAssociation association, DimseMessage request, IReadOnlyList<QueryMatch> matches, string? refusal,
        CancellationToken cancellationToken, DicomDataset? refused = null)
    {
        var (participants, service, destination, unknown) = RetrieveParties(association, request);
        AuditRecord Record(string description, string? patientRef, List<AuditObject> objects) => new()
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.BeginTransferringDicomInstances,
            Action = AuditAction.Execute,
            Outcome = unknown || refusal is not null ? AuditOutcome.MinorFailure : AuditOutcome.Success,
            Participants = participants,
            PatientRef = patientRef,
            Details = new AuditDetails
            {
                OutcomeDescription = refusal is not null ? $"{description}: {refusal}"
                    : unknown ? description + ": refused, unknown move destination (A801)" : description,
                Objects = objects,
            },
        };

        var patients = matches.GroupBy(m => (Id: m.Attributes.First(DicomTags.PatientID.Value) ?? "", Issuer: m.Attributes.First(DicomTags.IssuerOfPatientID.Value)))
            .ToList();
        if (patients.Count == 0)
        {
            var description = refusal is null ? $"{service} of 0 instances to {destination}" : $"{service} to {destination}";
            // A refused retrieve keyed on one patient is filed under that patient, as a refused query is.
            var patientId = refused is null ? null : KeyedPatient(refused);
            await audit.AppendAsync(Record(description,
                patientId is null ? null : GatewayAudit.PatientRef(keys, patientId, refused!.GetString(DicomTags.IssuerOfPatientID)),
                patientId is null ? [] : [GatewayAudit.Patient(patientId, null)]), cancellationToken).ConfigureAwait(false);
            return;
        }

        foreach (var patient in patients)
        {
            var studies = StudiesAndPatient(patient.ToList());
            var description = patients.Count == 1
                ? $"{service} of {matches.Count} instances to {destination}"
                : $"{service} of {patient.Count()} of {matches.Count} instances to {destination}";
            await audit.AppendAsync(Record(description, GatewayAudit.PatientRef(keys, patient.Key.Id, patient.Key.Issuer), studies), cancellationToken)
                .ConfigureAwait(false);
        }
    }

    /// <summary>The studies of one patient's matches (SOP class, instance count, accession) and the patient, as a retrieve's audit names them.</summary>
    private static List<AuditObject> StudiesAndPatient(IReadOnlyList<QueryMatch> matches)
    {
        var objects = matches.GroupBy(m => m.Attributes.First(DicomTags.StudyInstanceUID.Value) ?? "")
            .Take(AuditRecord.MaxObjects - 1)
            .Select(g => GatewayAudit.Study(g.Key.Length == 0 ? "(unknown)" : g.Key, g.First().Attributes.First(DicomTags.SOPClassUID.Value), g.Count(),
                g.First().Attributes.First(DicomTags.AccessionNumber.Value)))
            .ToList();
        if (matches.Count > 0 && matches[0].Attributes.First(DicomTags.PatientID.Value) is { Length: > 0 } patientId)
        {
            objects.Add(GatewayAudit.Patient(patientId, matches[0].Attributes.First(DicomTags.PatientName.Value)));
        }

        return objects;
    }

    /// <summary>
    /// Who a retrieve's audit names. PS3.15 A.5.3.3: the node receiving the data is the Destination. For a C-GET that is
    /// the requestor; for a C-MOVE it is the move destination, and the requestor is a third party (requestor, no role).
    /// </summary>
    private (AuditParticipant[] Participants, string Service, string Destination, bool Unknown) RetrieveParties(DicomAssociation association, DimseMessage request)
    {
        var move = request.Field == DimseCommand.CMoveRequest;
        var destination = move ? request.MoveDestination ?? "" : association.CallingAE;
        // A destination Vigie does not know gets A801, and nothing is sent.
        var known = move ? options.CurrentValue.FindDestination(destination, d => d.MoveDestination) : null;
        AuditParticipant[] participants = move
            ?
            [
                GatewayAudit.Requestor(Source(association), AuditRoles.Destination) with { Roles = [] },
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Source),
                GatewayAudit.Destination(destination.Length == 0 ? "(none)" : destination, known?.Host),
            ]
            :
            [
                GatewayAudit.Requestor(Source(association), AuditRoles.Destination),
                GatewayAudit.Self(OurAE, requestor: false, AuditRoles.Source),
            ];
        return (participants, move ? "C-MOVE" : "C-GET", destination, move && known is null);
    }

    /// <summary>
    /// DICOM Instances Transferred (PS3.15 A.5.3.4) at the end of a retrieve, one per patient: the Begin Transferring entry
    /// said what was to leave, this says what did (outcome 0 when all of it), and what did not and why. Before 2026-12-06 a
    /// move to a destination that could not be reached, or a C-GET released midway, left only "C-MOVE of 50 instances";
    /// before 2026-12-07 a retrieve that sent everything had no end record, so it could not be told from one only begun.
    /// </summary>
    public async ValueTask RetrieveEndedAsync(DicomAssociation association, DimseMessage request, RetrieveEnd end)
    {
        static bool Sent(ushort? status) => status is { } s && (s == DimseStatus.Success || (s & 0xF000) == 0xB000);
        var matches = new Dictionary<string, QueryMatch>(StringComparer.Ordinal);
        foreach (var match in (end.Items as RetrievedItems)?.Matches ?? [])
        {
            if (match.Attributes.First(DicomTags.SOPInstanceUID.Value) is { } uid)
            {
                matches.TryAdd(uid, match);
            }
        }

        var (participants, service, destination, _) = RetrieveParties(association, request);
        var patients = end.Items.Select((item, i) => (Match: matches.GetValueOrDefault(item.SopInstanceUid), Status: end.Statuses[i]))
            .GroupBy(x => (Id: x.Match?.Attributes.First(DicomTags.PatientID.Value) ?? "", Issuer: x.Match?.Attributes.First(DicomTags.IssuerOfPatientID.Value)));
        try
        {
            foreach (var patient in patients)
            {
                var total = patient.Count();
                var sent = patient.Count(x => Sent(x.Status));
                var failed = patient.Count(x => x.Status is not null && !Sent(x.Status));
                var warned = patient.Count(x => x.Status is { } s && (s & 0xF000) == 0xB000);
                // All sent: the reason the association stopped (after the last answer) is no shortfall of this patient's.
                var description = sent == total
                    ? $"{service} to {destination}: {sent} of {total} instances sent" + (warned > 0 ? $", {warned} with a warning" : "")
                    : $"{service} to {destination}: {sent} of {total} instances sent, {failed} failed, {total - sent - failed} not attempted"
                      + (end.StoppedBecause is { } why ? $" ({why})" : "") + (end.FirstFailure is { } first ? $"; first failure {first}" : "");
                var objects = StudiesAndPatient([.. patient.Select(x => x.Match).OfType<QueryMatch>()]);
                var failure = await AppendOrKeepAsync(new AuditRecord
                {
                    Time = time.GetUtcNow(),
                    EventId = AuditEventIds.DicomInstancesTransferred,
                    Action = AuditAction.Read,
                    Outcome = sent == total ? AuditOutcome.Success : sent == 0 ? AuditOutcome.SeriousFailure : AuditOutcome.MinorFailure,
                    Participants = participants,
                    PatientRef = patient.Key.Id.Length > 0 ? GatewayAudit.PatientRef(keys, patient.Key.Id, patient.Key.Issuer) : null,
                    Details = new AuditDetails { OutcomeDescription = Truncate(description, 1000), Objects = objects },
                }, CancellationToken.None).ConfigureAwait(false);
                if (failure is not null)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
                }
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (DueForLog(ref _lastAuditFailure, time.GetUtcNow()))
            {
                logger.LogError(e, "The end of a {Service} from {CallingAE} could not be audited", service, association.CallingAE);
            }
        }
    }

    /// <summary>The items of one retrieve, with the index matches they came from: its end's audit names their patients.</summary>
    private sealed class RetrievedItems(IReadOnlyList<QueryMatch> matches) : List<RetrieveItem>(matches.Count)
    {
        public IReadOnlyList<QueryMatch> Matches { get; } = matches;
    }

    /// <summary>
    /// A caller the policy turned away, in the node's log too (once a minute; every one is audited): an administrator
    /// setting up a modality reads the log first, and found nothing there (before 2026-12-06).
    /// </summary>
    private void LogRefusal(string callingAE, DicomConnectionInfo connection, string reason)
    {
        if (DueForLog(ref _lastPolicyRefusalLog, time.GetUtcNow()))
        {
            logger.LogWarning("Association from {CallingAE} at {Remote} refused: {Reason} (refusals are audited; this line comes once a minute at most)",
                callingAE, connection.Remote?.Address, reason);
        }
    }

    private DateTimeOffset _lastPolicyRefusalLog = DateTimeOffset.MinValue;

    /// <summary>
    /// A failed TLS handshake, in the node's log too (once a minute per address; every one is audited), with why: the
    /// operator setting up a modality learns whether to install a certificate, trust its authority, reissue it or
    /// upgrade its TLS. Nothing was logged before 2026-12-07.
    /// </summary>
    private void LogTlsRefusal(DicomConnectionInfo connection, string detail)
    {
        if (_tlsRefusalLog.Admit(connection.Remote?.Address, time.GetUtcNow(), out var others, out _))
        {
            logger.LogWarning("TLS connection from {Remote} refused: {Reason} (refusals are audited; this line comes once a minute at most per address{Others})",
                connection.Remote?.Address, detail, others > 0 ? string.Create(CultureInfo.InvariantCulture, $", {others} more since the last") : "");
        }
    }

    private readonly UnassociatedConnections _tlsRefusalLog = new();

    /// <summary>True at most once a minute per <paramref name="last"/>: a modality retries, and one line says as much as a thousand.</summary>
    internal static bool DueForLog(ref DateTimeOffset last, DateTimeOffset now)
    {
        if (now - last < TimeSpan.FromMinutes(1))
        {
            return false;
        }

        last = now;
        return true;
    }

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length];

    /// <summary>
    /// A store the archive could not keep (no spool file, a write or commit that failed): counted, logged once a minute at
    /// most (a modality retries), audited.
    /// </summary>
    private async ValueTask StoreFailedAsync(IngestSource source, string? sopClassUid, string? sopInstanceUid, Exception e, string reason,
        (string? PatientRef, List<AuditObject>? Objects) about, CancellationToken cancellationToken)
    {
        IngestPipeline.CountRefused(IngestChannel.Dimse, "SpoolFailed");
        // The type and, from a database, its SQLSTATE: the message may quote a value.
        stores.Failed(time.GetUtcNow(), $"{reason} ({e.GetType().Name}{(e is System.Data.Common.DbException { SqlState: { } state } ? " " + state : "")})");
        if (DueForLog(ref _lastSpoolFailure, time.GetUtcNow()))
        {
            logger.LogError(e, "A store from {CallingAE} was refused (A700): {Reason}", source.CallingAE, reason);
        }

        await AuditRefusedStoreAsync(source, sopClassUid, sopInstanceUid, $"{reason}: {e.GetType().Name}", about, cancellationToken).ConfigureAwait(false);
    }

    private void StoreCompleted() => stores.Stored();

    private sealed class StoreOperation(GatewayServiceProvider provider, IngestSession session, IngestSource source, string? sopClassUid, string sopInstanceUid)
        : IStoreOperation
    {
        public async ValueTask WriteAsync(ReadOnlyMemory<byte> fragment, CancellationToken cancellationToken)
        {
            try
            {
                await session.WriteAsync(fragment, cancellationToken).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                // The spool could not be written (most often a disk that filled up between two free-space readings): the
                // sender keeps its copy and retries; the association goes on.
                // The partial spool goes first: on a full disk its room is what the audit entry needs.
                await session.DisposeAsync().ConfigureAwait(false);
                await provider.StoreFailedAsync(source, sopClassUid, sopInstanceUid, e, "the object could not be spooled", default, cancellationToken)
                    .ConfigureAwait(false);
                throw new DicomStatusException(DimseStatus.OutOfResources, "Vigie could not write the object: retry later");
            }
        }

        public async Task<DimseResult> CompleteAsync(CancellationToken cancellationToken)
        {
            try
            {
                var result = await session.CompleteAsync(sopInstanceUid, cancellationToken).ConfigureAwait(false);
                provider.StoreCompleted();
                return new DimseResult(result.Status, result.Comment);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Answered A700 by the network layer; an operator needs to know why, and the audit trail that it failed.
                await session.DisposeAsync().ConfigureAwait(false);
                await provider.StoreFailedAsync(source, sopClassUid, sopInstanceUid, e, "the object could not be stored", session.About, cancellationToken)
                    .ConfigureAwait(false);
                throw;
            }
        }

        public ValueTask DisposeAsync() => session.DisposeAsync();
    }

    /// <summary>Sub-operations of one C-MOVE: each names its originator and the C-MOVE-RQ's Message ID (PS3.7 9.3.1.1).</summary>
    private sealed class MoveDestination(DicomClient client, string originatorAE, ushort moveMessageId, string destinationAE, ILogger logger) : IMoveDestination
    {

        public async ValueTask<DimseResult> SendAsync(string sopClassUid, string sopInstanceUid, string transferSyntaxUid, Stream dataSet, CancellationToken cancellationToken)
        {
            if (UncompressedSyntax.Choose(transferSyntaxUid, syntax => client.Association.FindAcceptedContext(sopClassUid, syntax) is not null) is not { } chosen)
            {
                return new DimseResult(DimseStatus.ProcessingFailure, "the destination did not accept this SOP class and transfer syntax");
            }

            Stream? converted;
            string syntax;
            string? problem;
            try
            {
                (converted, syntax, problem) = await UncompressedSyntax.PrepareAsync(dataSet, transferSyntaxUid, chosen,
                    s => client.Association.FindAcceptedContext(sopClassUid, s) is not null, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Stopped while waiting for room to inflate: the destination is aborted too, not released (see below).
                await client.Association.AbortAsync(AbortSource.ServiceUser, AbortReason.NotSpecified).ConfigureAwait(false);
                throw;
            }

            if (problem is not null)
            {
                return new DimseResult(DimseStatus.ProcessingFailure, problem);
            }

            await using var _ = converted;
            try
            {
                return await client.StoreAsync(sopClassUid, sopInstanceUid, syntax, converted ?? dataSet, cancellationToken, originatorAE, moveMessageId)
                    .ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The node is stopping: the destination gets an A-ABORT now. The release that followed waited on a
                // destination that stopped reading for its response timeout, past the host's shutdown timeout, and the
                // process was killed before the move's audit entry and the last signed tree head (until 2026-12-08).
                await client.Association.AbortAsync(AbortSource.ServiceUser, AbortReason.NotSpecified).ConfigureAwait(false);
                throw;
            }
            catch (DicomTimeoutException e)
            {
                // The destination is still connected but stopped reading or answering: Vigie gave up, it did not hang up.
                logger.LogWarning("C-MOVE from {CallingAE} to {Destination}: the destination stopped answering and Vigie gave up after its timeout: {Reason}",
                    originatorAE, destinationAE, e.Message);
                throw;
            }
            catch (Exception e) when (DicomFailures.IsAssociationLost(e))
            {
                // The rest of the retrieve fails with it: the administrator needs to know which side gave up.
                logger.LogWarning("C-MOVE from {CallingAE} to {Destination}: the destination dropped the association: {Reason}", originatorAE, destinationAE,
                    e.Message);
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await client.ReleaseAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (DicomFailures.IsAssociationLost(e))
            {
                // The sub-operations are done; a release that fails changes nothing for the requestor.
            }

            await client.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>A stream that disposes the object reader it reads from, and says when the object fails its check midway.</summary>
internal sealed class OwningStream(Stream inner, IAsyncDisposable owner, Action<ObjectFormatException>? failed = null) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => inner.CanSeek;

    public override bool CanWrite => false;

    public override long Length => inner.Length;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        try
        {
            return inner.Read(buffer, offset, count);
        }
        catch (ObjectFormatException e)
        {
            failed?.Invoke(e);
            throw;
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        try
        {
            return await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (ObjectFormatException e)
        {
            failed?.Invoke(e);
            throw;
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync().ConfigureAwait(false);
        await owner.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>Connections that sent nothing, by address: the first of each minute is audited, with the count of the others.</summary>
internal sealed class UnassociatedConnections
{
    private const int MaxAddresses = 4096;
    private readonly Dictionary<IPAddress, (DateTimeOffset Audited, long Others, DateTimeOffset Since)> _byAddress = [];

    /// <summary>True when this one is to be audited, with the count of those not audited since the last that was.</summary>
    public bool Admit(IPAddress? address, DateTimeOffset now, out long others, out DateTimeOffset since)
    {
        var key = address ?? IPAddress.None;
        lock (_byAddress)
        {
            if (_byAddress.TryGetValue(key, out var seen) && now - seen.Audited < TimeSpan.FromMinutes(1))
            {
                _byAddress[key] = seen with { Others = seen.Others + 1, Since = seen.Others == 0 ? now : seen.Since };
                others = 0;
                since = default;
                return false;
            }

            if (_byAddress.Count >= MaxAddresses)
            {
                // Many addresses at once: forget the quiet ones rather than grow without bound.
                foreach (var stale in _byAddress.Where(e => now - e.Value.Audited >= TimeSpan.FromMinutes(1)).Select(e => e.Key).ToList())
                {
                    _byAddress.Remove(stale);
                }
            }

            others = seen.Others;
            since = seen.Since;
            if (_byAddress.Count < MaxAddresses || _byAddress.ContainsKey(key))
            {
                _byAddress[key] = (now, 0, default);
            }

            return true;
        }
    }
}
