using System.Collections.Concurrent;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Network;

/// <summary>
/// The acceptor side of one association: negotiation, then the receive loop that dispatches DIMSE requests to the
/// service provider, honours the asynchronous operations window and C-CANCEL, runs C-GET and C-MOVE sub-operations,
/// and routes their C-STORE responses. Any protocol violation, limit or timeout ends in A-ABORT.
/// </summary>
internal sealed class ServerAssociation(
    DicomAssociation association,
    IDicomServiceProvider provider,
    DicomServerOptions options,
    DicomConnectionInfo connection,
    Func<string, bool> tryCountAE,
    CancellationToken stopping)
{
    /// <summary>The shortest maximum PDU length a peer may ask for: a PDV header and two bytes of data.</summary>
    private const uint MinimumPeerPduLength = 8;

    private readonly ConcurrentDictionary<ushort, CancellationTokenSource> _cancellable = new();
    private readonly ConcurrentDictionary<ushort, TaskCompletionSource<DimseMessage>> _awaitingResponse = new();
    private readonly ConcurrentDictionary<Task, byte> _outstanding = new();
    private bool _releaseRequested;
    private long _lastOperationEnded = long.MinValue / 2;
    private SemaphoreSlim _window = new(1, 1);
    private int _nextMessageId;

    public string? CountedAE { get; private set; }

    private DicomAssociation Association => association;

    private TimeSpan ReadTimeout => options.Association.ReadTimeout;

    public async Task<(AssociationEnd End, string Detail)> RunAsync()
    {
        try
        {
            var negotiated = await NegotiateAsync().ConfigureAwait(false);
            if (negotiated is { } rejected)
            {
                return rejected;
            }

            return await ReceiveLoopAsync().ConfigureAwait(false);
        }
        catch (PduException e)
        {
            await association.AbortAsync(AbortSource.ServiceProvider, e.Reason).ConfigureAwait(false);
            return (AssociationEnd.AbortedByVigie, "protocol error: " + e.Message);
        }
        catch (DicomTimeoutException e) when (!association.RequestReceived)
        {
            // PS3.8 9.2 (Sta2, Evt18 ARTIM expired, AA-2): no A-ASSOCIATE-RQ came, so the connection is closed without a
            // PDU. Before 2026-12-07 an A-ABORT was sent first.
            association.MarkClosed();
            return (AssociationEnd.AbortedByVigie, "timeout: " + e.Message);
        }
        catch (DicomTimeoutException e)
        {
            await association.AbortAsync(AbortSource.ServiceProvider, AbortReason.NotSpecified).ConfigureAwait(false);
            return (AssociationEnd.AbortedByVigie, "timeout: " + e.Message);
        }
        catch (DicomAssociationAbortedException e)
        {
            return (e.Message.StartsWith("the peer aborted", StringComparison.Ordinal) ? AssociationEnd.AbortedByPeer : AssociationEnd.ConnectionLost, e.Message);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            await association.AbortAsync(AbortSource.ServiceProvider, AbortReason.NotSpecified).ConfigureAwait(false);
            return (AssociationEnd.AbortedByVigie, "the node is stopping");
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return (AssociationEnd.ConnectionLost, e.Message);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A fault of Vigie's own ends this association only, with an abort and a reason: the type and where it was
            // thrown, not the message, which may quote what the peer sent.
            await association.AbortAsync(AbortSource.ServiceProvider, AbortReason.NotSpecified).ConfigureAwait(false);
            var where = e.TargetSite is { } method ? $" in {method.DeclaringType?.Name}.{method.Name}" : string.Empty;
            return (AssociationEnd.InternalError, $"internal error: {e.GetType().Name}{where}");
        }
        finally
        {
            foreach (var waiter in _awaitingResponse.Values)
            {
                waiter.TrySetCanceled();
            }

            foreach (var cts in _cancellable.Values)
            {
                await cts.CancelAsync().ConfigureAwait(false);
            }

            // Their own failures were answered or ended the association; none may replace how it ended.
            await Task.WhenAll(_outstanding.Keys).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task<(AssociationEnd, string)?> NegotiateAsync()
    {
        PduType type;
        try
        {
            type = await association.ReadPduAsync(options.Association.ArtimTimeout, stopping).ConfigureAwait(false);
        }
        catch (AssociateRequestTooLongException e)
        {
            // A legal request Vigie will not hold (PS3.8 bounds it only by its 32-bit length): refused for good with
            // "local limit exceeded", which a peer can act on. Until 2026-12-07 it was aborted as an invalid PDU.
            if (PduCodec.TryDecodeAETitles(e.FixedPart, out var called, out var calling))
            {
                association.Parameters = new AssociationParameters { CalledAE = called, CallingAE = calling };
            }

            association.RequestReceived = true;
            await association.WritePduAsync(PduCodec.EncodeReject(RejectResult.Permanent, RejectSource.ServiceProviderPresentation, RejectReasons.LocalLimitExceeded),
                stopping).ConfigureAwait(false);
            association.MarkClosed();
            return (AssociationEnd.Rejected, e.Message);
        }

        if (type == PduType.Abort)
        {
            // PS3.8 9.2 (Sta2, AA-2): the connection is closed, nothing is sent back.
            association.MarkClosed();
            return (AssociationEnd.AbortedByPeer, "the peer aborted before asking for an association");
        }

        if (type != PduType.AssociateRequest)
        {
            throw new PduException(AbortReason.UnexpectedPdu, $"{type} PDU before A-ASSOCIATE-RQ");
        }

        var request = PduCodec.DecodeAssociateRequest(association.PduBody);
        association.Parameters = request;
        association.RequestReceived = true;
        association.PeerMaxPduLength = request.MaxPduLength;
        AssociationDecision decision;
        if ((request.ProtocolVersion & 1) == 0)
        {
            decision = AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceProviderAcse, RejectReasons.ProtocolVersionNotSupported,
                $"protocol version 0x{request.ProtocolVersion:X4}");
        }
        else if (request.MaxPduLength is > 0 and < MinimumPeerPduLength)
        {
            // No P-DATA PDU that short can carry a fragment (a PDV header alone takes 6 bytes).
            decision = AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.NoReasonGiven,
                $"maximum PDU length {request.MaxPduLength} is too short to carry any data");
        }
        else if (string.IsNullOrEmpty(request.CallingAE))
        {
            // PS3.5 6.2: an AE title of spaces only shall not be used; it names nobody to allow, count or audit.
            decision = AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CallingAENotRecognized,
                "the calling AE title is blank");
        }
        else if (request.ApplicationContextName != AssociationParameters.ApplicationContext)
        {
            decision = AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.ApplicationContextNotSupported,
                $"application context {request.ApplicationContextName}");
        }
        else if (!options.AcceptAnyCalledAE && !string.Equals(request.CalledAE, options.AETitle, StringComparison.Ordinal))
        {
            decision = AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CalledAENotRecognized,
                $"called AE title '{request.CalledAE}' is not this node ('{options.AETitle}')");
        }
        else if (!tryCountAE(request.CallingAE))
        {
            decision = AssociationDecision.Reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReasons.LocalLimitExceeded,
                "association limit reached");
        }
        else
        {
            CountedAE = request.CallingAE;
            try
            {
                decision = await provider.NegotiateAsync(association, connection, stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException and not PduException and not DicomTimeoutException)
            {
                // The application could not decide: the peer gets an answer it can retry on, not a dropped connection.
                decision = AssociationDecision.Reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReasons.TemporaryCongestion,
                    "the node could not decide: " + e.GetType().Name);
            }
        }

        if (!decision.Accept)
        {
            await association.WritePduAsync(PduCodec.EncodeReject(decision.Result, decision.Source, decision.Reason), stopping).ConfigureAwait(false);
            association.MarkClosed();
            return (AssociationEnd.Rejected, decision.Explanation);
        }

        var answer = new AssociationParameters
        {
            CalledAE = request.CalledAE,
            CallingAE = request.CallingAE,
            ReceivedAETitleFields = request.ReceivedAETitleFields,
            MaxPduLength = options.Association.MaxPduLength,
        };
        answer.PresentationContexts.AddRange(request.PresentationContexts);
        foreach (var role in request.RoleSelections)
        {
            // The roles are the SOP class's (PS3.7 D.3.3.4), so every accepted context of it takes them: a requestor proposes
            // one class in several contexts to have several syntaxes. Before 2026-12-06 only the first got them.
            var contexts = request.PresentationContexts.FindAll(pc => pc.AbstractSyntax == role.SopClassUid && pc.IsAccepted);
            if (contexts.Count == 0)
            {
                continue;
            }

            foreach (var context in contexts)
            {
                context.ScuRole ??= role.ScuRole;
                context.ScpRole ??= role.ScpRole;
            }

            answer.RoleSelections.Add(new RoleSelection(role.SopClassUid, contexts[0].ScuRole!.Value, contexts[0].ScpRole!.Value));
        }

        if (request.AsyncOperations is { } window)
        {
            var performed = (ushort)Math.Max(1, Math.Min(window.Invoked == 0 ? (int)ushort.MaxValue : window.Invoked, (int)options.Association.MaxOperationsPerformed));
            answer.AsyncOperations = (performed, 1);
            _window = new SemaphoreSlim(performed, performed);
        }

        if (request.UserIdentity is { PositiveResponseRequested: true, Type: UserIdentityType.UsernameAndPasscode })
        {
            // Only the type the application verifies (PS3.7 D.3.3.7): a positive response to a Kerberos ticket, a SAML
            // assertion or a JWT would claim a check nobody made, and would owe the requestor a server response too.
            answer.UserIdentityResponse = [];
        }

        await association.WritePduAsync(PduCodec.EncodeAssociateAccept(answer), stopping).ConfigureAwait(false);
        return null;
    }

    private async Task<(AssociationEnd, string)> ReceiveLoopAsync()
    {
        while (true)
        {
            var message = await ReceiveNextCommandAsync().ConfigureAwait(false);
            if (message is null)
            {
                // A requestor that asks to release may not send anything more (PS3.8 Sta7), so nothing awaited will be
                // answered: an N-EVENT-REPORT goes on a new association instead, and a C-GET's sub-operations left fail
                // at once (its final response still goes out), rather than holding the release for the read timeout.
                Volatile.Write(ref _releaseRequested, true);
                foreach (var id in _awaitingResponse.Keys)
                {
                    if (_awaitingResponse.TryRemove(id, out var unanswered))
                    {
                        unanswered.TrySetCanceled();
                    }
                }

                await Task.WhenAll(_outstanding.Keys).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                await association.AcceptReleaseAsync(stopping).ConfigureAwait(false);
                return (AssociationEnd.Released, "released");
            }

            if (!message.IsRequest)
            {
                if (_awaitingResponse.TryRemove(message.MessageIdBeingRespondedTo, out var waiter))
                {
                    waiter.TrySetResult(message);
                }

                continue;
            }

            DicomNetworkTelemetry.Messages.Add(1, new KeyValuePair<string, object?>("command", DicomNetworkTelemetry.CommandLabel(message.Field)));
            var abstractSyntax = association.AcceptedContext(message.PresentationContextId)!.AbstractSyntax;
            DimseResult? misplaced = null;
            if (message.Field is DimseCommand.CEchoRequest or DimseCommand.CFindRequest or DimseCommand.CGetRequest or DimseCommand.CMoveRequest
                && message.AffectedSopClassUid != abstractSyntax)
            {
                // A request belongs to the context of its SOP class (PS3.7 D.3.3.1): a C-FIND on the Verification context
                // would reach a service this caller was refused at negotiation.
                misplaced = new DimseResult(DimseStatus.SopClassNotSupported, "Affected SOP Class UID differs from the presentation context's abstract syntax");
            }
            else if (!SopClasses.Defines(abstractSyntax, message.Field))
            {
                // The SOP class of the context must define the operation (PS3.7 9.1, PS3.4): a C-MOVE on a FIND context, a
                // C-FIND on Verification or a C-STORE on a FIND context would reach a service refused at negotiation
                // (before 2026-12-07 only the Affected SOP Class UID was compared, and they were served).
                misplaced = new DimseResult(DimseStatus.UnrecognizedOperation, $"{DicomNetworkTelemetry.CommandLabel(message.Field)} is not an operation of this context's SOP class");
            }
            else if (message.Field is not (DimseCommand.CStoreRequest or DimseCommand.CCancelRequest)
                     && association.AcceptedContext(message.PresentationContextId)!.ScuRole == false)
            {
                // The requestor gave up the SCU role of the SOP class at role selection (PS3.7 D.3.3.4), so it invokes none
                // of its operations: an N-ACTION from a storage commitment requestor that took the SCP role only was served
                // until 2026-12-07. (A C-STORE there is a C-GET's sub-operation direction, refused in StoreAsync.)
                misplaced = new DimseResult(DimseStatus.UnrecognizedOperation,
                    $"{DicomNetworkTelemetry.CommandLabel(message.Field)} refused: the requestor gave up the SCU role of this context's SOP class at role selection");
            }

            if (misplaced is not null)
            {
                // Dropped as it arrives, whatever its length: nothing of it is kept, stored or matched.
                if (message.HasDataSet)
                {
                    await association.DiscardDataSetAsync(stopping).ConfigureAwait(false);
                }

                await provider.OperationRefusedAsync(association, message, misplaced, stopping).ConfigureAwait(false);
                await RespondAsync(message, misplaced).ConfigureAwait(false);
                continue;
            }

            switch (message.Field)
            {
                case DimseCommand.CEchoRequest:
                {
                    var result = await provider.EchoAsync(association, message, stopping).ConfigureAwait(false);
                    await RespondAsync(message, result).ConfigureAwait(false);
                    break;
                }

                case DimseCommand.CStoreRequest:
                    await StoreAsync(message).ConfigureAwait(false);
                    break;
                case DimseCommand.CFindRequest:
                case DimseCommand.CGetRequest:
                case DimseCommand.CMoveRequest:
                {
                    var identifier = await ReadIdentifierAsync(message).ConfigureAwait(false);
                    if (identifier is null)
                    {
                        break;
                    }

                    await _window.WaitAsync(stopping).ConfigureAwait(false);
                    var cts = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                    _cancellable[message.MessageId] = cts;
                    Track(RunQueryOrRetrieveAsync(message, identifier, cts));
                    break;
                }

                case DimseCommand.NActionRequest:
                    await ActionAsync(message).ConfigureAwait(false);
                    break;
                case DimseCommand.CCancelRequest:
                    if (_cancellable.TryGetValue(message.MessageIdBeingRespondedTo, out var cancel))
                    {
                        await cancel.CancelAsync().ConfigureAwait(false);
                    }

                    break;
                default:
                    await RespondAsync(message, new DimseResult(DimseStatus.UnrecognizedOperation, $"{message.Field} is not supported")).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>
    /// The requestor's next message. The idle timeout counts only from the end of its last outstanding operation: during
    /// a C-MOVE the requestor just listens, and during a large C-GET sub-operation it has nothing to send, so until
    /// 2026-12-08 any retrieve longer than the idle timeout was aborted. What is outstanding has its own progress bounds
    /// (the read timeout on each send and on each answer owed, the destination's response timeout).
    /// </summary>
    private async ValueTask<DimseMessage?> ReceiveNextCommandAsync()
    {
        var idleTimeout = options.Association.IdleTimeout;
        var wait = idleTimeout;
        while (true)
        {
            try
            {
                return await association.ReceiveCommandAsync(wait, stopping).ConfigureAwait(false);
            }
            catch (DicomTimeoutException e) when (e.BetweenMessages && IdleMilliseconds() is var idle && idle < idleTimeout.TotalMilliseconds)
            {
                // Not a byte came, so nothing is lost by waiting again: for as long as an operation is outstanding, then
                // for what is left of the idle timeout.
                wait = idle == 0 ? idleTimeout : idleTimeout - TimeSpan.FromMilliseconds(idle);
            }
        }
    }

    /// <summary>How long nothing has been outstanding on this association, in milliseconds (zero while something is).</summary>
    private long IdleMilliseconds() => _outstanding.IsEmpty ? Environment.TickCount64 - Volatile.Read(ref _lastOperationEnded) : 0;

    private async Task StoreAsync(DimseMessage request)
    {
        var context = association.AcceptedContext(request.PresentationContextId)!;
        if (request.AffectedSopClassUid != context.AbstractSyntax || string.IsNullOrEmpty(request.AffectedSopInstanceUid) || context.ScuRole == false)
        {
            // Dropped as it arrives: a data set the store will not keep is never held in memory, whatever its length.
            await association.DiscardDataSetAsync(stopping).ConfigureAwait(false);
            await RespondAsync(request, context.ScuRole == false
                ? new DimseResult(DimseStatus.SopClassNotSupported, "this context was accepted for C-GET results only: the requestor has no SCU role on it")
                : new DimseResult(DimseStatus.DataSetDoesNotMatchSopClass, "SOP class differs from the presentation context, or no SOP instance UID"))
                .ConfigureAwait(false);
            return;
        }

        await _window.WaitAsync(stopping).ConfigureAwait(false);
        IStoreOperation? operation = null;
        DimseResult? refused = null;
        try
        {
            try
            {
                operation = await provider.BeginStoreAsync(association, request, context.AcceptedTransferSyntax!, stopping).ConfigureAwait(false);
            }
            catch (DicomStatusException e)
            {
                refused = new DimseResult(e.Status, e.Comment);
            }

            while (true)
            {
                var fragment = await association.ReadDataFragmentAsync(stopping).ConfigureAwait(false);
                if (fragment.IsEmpty)
                {
                    break;
                }

                DicomNetworkTelemetry.BytesReceived.Add(fragment.Length);
                if (operation is null)
                {
                    continue;
                }

                try
                {
                    await operation.WriteAsync(fragment, stopping).ConfigureAwait(false);
                }
                catch (DicomStatusException e)
                {
                    // The application could not keep this object (a disk that filled up): the rest of its data set is
                    // dropped as it arrives and the store answered with the status. The association goes on.
                    refused = new DimseResult(e.Status, e.Comment);
                    var failed = operation;
                    operation = null;
                    await failed.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
        catch
        {
            if (operation is not null)
            {
                await operation.DisposeAsync().ConfigureAwait(false);
            }

            _window.Release();
            throw;
        }

        if (operation is null)
        {
            _window.Release();
            await RespondAsync(request, refused!).ConfigureAwait(false);
            return;
        }

        // The data set is in; finishing (inspection, durable commit) may overlap the next operations.
        Track(CompleteStoreAsync(request, operation));
    }

    private async Task CompleteStoreAsync(DimseMessage request, IStoreOperation operation)
    {
        DimseResult result;
        try
        {
            result = await operation.CompleteAsync(stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            result = new DimseResult(DimseStatus.OutOfResources, "store failed: " + e.GetType().Name);
        }
        catch
        {
            await operation.DisposeAsync().ConfigureAwait(false);
            _window.Release();
            throw;
        }

        // Released before the answer: a peer without an asynchronous window sends its next request as soon as it has
        // the answer, and that request must not find the window still taken.
        _window.Release();
        try
        {
            await RespondAsync(request, result).ConfigureAwait(false);
        }
        finally
        {
            await operation.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task ActionAsync(DimseMessage request)
    {
        DicomDataset? information = null;
        if (request.HasDataSet)
        {
            information = await ReadDataSetAsync(request, options.Association.MaxActionInformationLength, new DicomReadOptions { MaxDepth = 4, MaxElements = 200_000 },
                DimseStatus.InvalidArgumentValue, "action information").ConfigureAwait(false);
            if (information is null)
            {
                return;
            }
        }

        if (request.RequestedSopClassUid != association.AcceptedContext(request.PresentationContextId)!.AbstractSyntax)
        {
            await RespondAsync(request, new DimseResult(DimseStatus.ClassInstanceConflict, "Requested SOP Class UID differs from the presentation context")).ConfigureAwait(false);
            return;
        }

        DimseResult result;
        try
        {
            result = await provider.ActionAsync(association, request, information, stopping).ConfigureAwait(false);
        }
        catch (DicomStatusException e)
        {
            result = new DimseResult(e.Status, e.Comment);
        }
        catch (Exception e) when (e is not OperationCanceledException and not DicomAssociationAbortedException and not IOException)
        {
            // The application failed (its database unreachable): the requestor is told, and may ask again.
            provider.OperationFailed(association, request, e);
            result = new DimseResult(DimseStatus.ProcessingFailure, "failed: " + e.GetType().Name);
        }

        await RespondAsync(request, result).ConfigureAwait(false);
        if (result.Report is { } report)
        {
            Track(SendEventReportAsync(report));
        }
    }

    /// <summary>
    /// Sends the provider's N-EVENT-REPORT on this association when the requestor took the SCP role of its SOP class
    /// (role selection, PS3.7 D.3.3.4), waits for the answer as the receive loop routes it, and tells the provider.
    /// </summary>
    private async Task SendEventReportAsync(EventReport report)
    {
        DimseResult? delivered = null;
        var context = association.FindContextWhereRequestorIsScp(report.SopClassUid);
        if (context is not null && !association.IsClosed)
        {
            var id = (ushort)Interlocked.Increment(ref _nextMessageId);
            var waiter = new TaskCompletionSource<DimseMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
            _awaitingResponse[id] = waiter;
            try
            {
                if (Volatile.Read(ref _releaseRequested))
                {
                    throw new OperationCanceledException("the requestor asked to release");
                }

                var request = DimseMessage.EventReportRequest(id, context.Id, report.SopClassUid, report.SopInstanceUid, report.EventTypeId);
                await association.SendAsync(request, DicomWriter.Encode(report.Information, TransferSyntax.Lookup(context.AcceptedTransferSyntax!)), stopping)
                    .ConfigureAwait(false);
                var response = await waiter.Task.WaitAsync(ReadTimeout, stopping).ConfigureAwait(false);
                delivered = new DimseResult(response.Status, response.ErrorComment);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException || DicomFailures.IsAssociationLost(e))
            {
                // Not answered here: the provider sends it another way.
            }
            finally
            {
                _awaitingResponse.TryRemove(id, out _);
            }
        }

        await report.DeliveredAsync(delivered, CancellationToken.None).ConfigureAwait(false);
    }

    private async Task<DicomDataset?> ReadIdentifierAsync(DimseMessage request)
    {
        if (!request.HasDataSet)
        {
            await RespondAsync(request, new DimseResult(DimseStatus.IdentifierDoesNotMatchSopClass, "no identifier")).ConfigureAwait(false);
            return null;
        }

        return await ReadDataSetAsync(request, options.Association.MaxIdentifierLength, new DicomReadOptions { MaxDepth = 8, MaxElements = 10_000 },
            DimseStatus.IdentifierDoesNotMatchSopClass, "identifier").ConfigureAwait(false);
    }

    /// <summary>
    /// A request's data set (identifier, action information), held in memory up to <paramref name="maxLength"/> and
    /// parsed in its context's syntax; null when unreadable, after answering <paramref name="unreadable"/> with the reason.
    /// </summary>
    private async Task<DicomDataset?> ReadDataSetAsync(DimseMessage request, int maxLength, DicomReadOptions readOptions, ushort unreadable, string what)
    {
        var bytes = await association.ReadDataSetAsync(maxLength, stopping).ConfigureAwait(false);
        var syntax = TransferSyntax.Lookup(association.AcceptedContext(request.PresentationContextId)!.AcceptedTransferSyntax!);
        try
        {
            // The whole data set is in memory already: a value past the large-value threshold (a long UID list) is read
            // as a value, not left as a reference that matching would take for an empty key.
            return await DicomReader.ReadDatasetAsync(bytes, syntax, readOptions with { LoadLargeValues = true }, stopping).ConfigureAwait(false);
        }
        catch (DicomParseException e)
        {
            await RespondAsync(request, new DimseResult(unreadable, $"unreadable {what}: {e.Reason}")).ConfigureAwait(false);
            return null;
        }
    }

    private async Task RunQueryOrRetrieveAsync(DimseMessage request, DicomDataset identifier, CancellationTokenSource cts)
    {
        try
        {
            if (request.Field == DimseCommand.CFindRequest)
            {
                await FindAsync(request, identifier, cts.Token).ConfigureAwait(false);
            }
            else
            {
                await RetrieveAsync(request, identifier, cts.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested && !stopping.IsCancellationRequested)
        {
            // Cancelled before any sub-operation of a retrieve: its Cancel response still carries the (zero) counts.
            var cancelled = DimseMessage.Response(request, DimseStatus.Cancel);
            await association.SendAsync(request.Field == DimseCommand.CFindRequest ? cancelled : cancelled.WithSubOperations(-1, 0, 0, 0),
                ReadOnlyMemory<byte>.Empty, stopping).ConfigureAwait(false);
        }
        catch (DicomStatusException e)
        {
            await RespondAsync(request, new DimseResult(e.Status, e.Comment)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException and not DicomAssociationAbortedException and not IOException && !association.IsClosed)
        {
            provider.OperationFailed(association, request, e);
            await RespondAsync(request, new DimseResult(DimseStatus.ProcessingFailure, "failed: " + e.GetType().Name)).ConfigureAwait(false);
        }
        finally
        {
            _cancellable.TryRemove(request.MessageId, out _);
            cts.Dispose();
            _window.Release();
        }
    }

    private async Task FindAsync(DimseMessage request, DicomDataset identifier, CancellationToken cancellationToken)
    {
        var syntax = TransferSyntax.Lookup(association.AcceptedContext(request.PresentationContextId)!.AcceptedTransferSyntax!);
        var status = provider.FindPendingStatus(association, request, identifier);
        await foreach (var match in provider.FindAsync(association, request, identifier, cancellationToken).ConfigureAwait(false))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var pending = DimseMessage.Response(request, status, dataSet: true);
            await association.SendAsync(pending, DicomWriter.Encode(match, syntax), stopping).ConfigureAwait(false);
        }

        await RespondAsync(request, DimseResult.Success).ConfigureAwait(false);
    }

    private async Task RetrieveAsync(DimseMessage request, DicomDataset identifier, CancellationToken cancellationToken)
    {
        var items = await provider.RetrieveAsync(association, request, identifier, cancellationToken).ConfigureAwait(false);
        var statuses = new ushort?[items.Count];
        string? firstFailure = null;
        string? stoppedBecause = "the association ended";
        var report = items.Count > 0;
        try
        {
            (firstFailure, stoppedBecause, report) = await SendSubOperationsAsync(request, items, statuses, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (report)
            {
                try
                {
                    await provider.RetrieveEndedAsync(association, request, new RetrieveEnd(items, statuses, firstFailure, stoppedBecause)).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // The provider reports its own trouble; the requestor has its answer already, and the association
                    // must end the way it was going to, not on this.
                }
            }
        }
    }

    /// <summary>The sub-operations and the final response; returns the first failure, why it stopped early, and whether the end is worth reporting.</summary>
    private async Task<(string? FirstFailure, string? StoppedBecause, bool Report)> SendSubOperationsAsync(DimseMessage request, IReadOnlyList<RetrieveItem> items,
        ushort?[] statuses, CancellationToken cancellationToken)
    {
        IStoreSender sender;
        IMoveDestination? destination = null;
        if (request.Field == DimseCommand.CMoveRequest)
        {
            var destinationAE = request.MoveDestination ?? string.Empty;
            try
            {
                destination = await provider.OpenMoveDestinationAsync(association, request, destinationAE, items, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested && !stopping.IsCancellationRequested)
            {
                // A C-CANCEL while the destination was being reached: nothing was sent, every sub-operation remains.
                var cancelled = DimseMessage.Response(request, DimseStatus.Cancel).WithSubOperations(items.Count, 0, 0, 0);
                await association.SendAsync(cancelled, ReadOnlyMemory<byte>.Empty, stopping).ConfigureAwait(false);
                return (null, Cancelled, items.Count > 0);
            }
            catch (DicomStatusException e) when (e.Status == DimseStatus.OutOfResourcesSubOperations)
            {
                // A destination that cannot be reached fails every sub-operation: the requestor gets the counts and the
                // list to retry, as when the destination goes away midway (before 2026-12-06 neither).
                Array.Fill(statuses, DimseStatus.OutOfResourcesSubOperations);
                await SendFinalAsync(request, 0, items.Count, 0, [.. items.Select(item => item.SopInstanceUid)], e.Comment).ConfigureAwait(false);
                return (e.Comment, "the move destination could not be reached", items.Count > 0);
            }

            if (destination is null)
            {
                // Refused before anything was sent; the provider knew the destination was unknown when it selected the items.
                await RespondAsync(request, new DimseResult(DimseStatus.MoveDestinationUnknown, $"unknown move destination '{destinationAE}'")).ConfigureAwait(false);
                return (null, null, false);
            }

            sender = destination;
        }
        else
        {
            sender = new SameAssociationSender(this);
        }

        await using var _ = destination;
        string? stoppedBecause = null;
        int completed = 0, failed = 0, warning = 0;
        var failedUids = new List<string>();
        string? firstFailure = null;
        for (var i = 0; i < items.Count; i++)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                var cancelled = DimseMessage.Response(request, DimseStatus.Cancel).WithSubOperations(items.Count - i, completed, failed, warning);
                await association.SendAsync(cancelled, ReadOnlyMemory<byte>.Empty, stopping).ConfigureAwait(false);
                return (firstFailure, Cancelled, true);
            }

            if (destination is null && Volatile.Read(ref _releaseRequested))
            {
                // The requestor asked to release: the rest is not read, decrypted nor offered. The final response still
                // counts them as failed; the audit says they were never attempted (before 2026-12-06 each was tried).
                failed += items.Count - i;
                failedUids.AddRange(items.Skip(i).Select(item => item.SopInstanceUid));
                firstFailure ??= "the requestor asked to release before the end";
                stoppedBecause = "the requestor asked to release before the end";
                break;
            }

            var item = items[i];
            // Until its answer comes, a sub-operation under way counts as failed: its data may have left (a requestor that
            // never answers is aborted), which "not attempted" would hide.
            statuses[i] = DimseStatus.ProcessingFailure;
            DimseResult result;
            try
            {
                // A C-CANCEL is honoured between sub-operations (PS3.4 C.4.2.3.1): the one under way is finished, so no
                // PDU is left half-written and its outcome is counted in the Cancel response.
                await using var data = await item.OpenDataSet(stopping).ConfigureAwait(false);
                result = await sender.SendAsync(item.SopClassUid, item.SopInstanceUid, item.TransferSyntaxUid, data, stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (destination is not null && DicomFailures.IsAssociationLost(e))
            {
                // The move destination went away: the rest cannot reach it either. The requestor still gets its final
                // response, with every sub-operation left counted as failed, instead of waiting for one that never comes.
                failed += items.Count - i;
                failedUids.AddRange(items.Skip(i).Select(item => item.SopInstanceUid));
                statuses.AsSpan(i).Fill(DimseStatus.OutOfResourcesSubOperations);
                // A destination that stopped reading or answering was given up on at its timeout: it did not close anything,
                // and the operator looks for a hung node, not one that hung up (both read "closed" until 2026-12-08).
                firstFailure ??= e is DicomTimeoutException ? "the move destination stopped answering; Vigie gave up" : "the move destination closed the association";
                break;
            }
            catch (Exception e) when (e is not OperationCanceledException and not DicomAssociationAbortedException && !association.IsClosed)
            {
                // One object failed; once the requestor's own association is gone there is nobody left to tell.
                result = new DimseResult(DimseStatus.ProcessingFailure, e.Message);
            }

            if (DimseStatus.IsSuccessOrWarning(result.Status) && result.NotAcknowledging(item.SopClassUid, item.SopInstanceUid) is { } mismatch)
            {
                // Not counted as completed: the requestor would take an object as retrieved that the receiver never acknowledged.
                result = new DimseResult(DimseStatus.ProcessingFailure, $"the receiver answered for another object ({mismatch})");
            }

            statuses[i] = result.Status;
            if (result.Status == DimseStatus.Success)
            {
                completed++;
            }
            else if ((result.Status & 0xF000) == 0xB000)
            {
                warning++;
            }
            else
            {
                failed++;
                failedUids.Add(item.SopInstanceUid);
                firstFailure ??= $"{result.Status:X4}: {result.ErrorComment ?? "refused by the receiver"}";
            }

            if (i + 1 < items.Count)
            {
                var pending = DimseMessage.Response(request, DimseStatus.Pending).WithSubOperations(items.Count - i - 1, completed, failed, warning);
                await association.SendAsync(pending, ReadOnlyMemory<byte>.Empty, stopping).ConfigureAwait(false);
            }
        }

        await SendFinalAsync(request, completed, failed, warning, failedUids, firstFailure).ConfigureAwait(false);
        return (firstFailure, stoppedBecause, items.Count > 0);
    }

    private const string Cancelled = "cancelled by the requestor (C-CANCEL)";

    /// <summary>A retrieve's final response: its status from the counts, the first failure's reason, the failed instances.</summary>
    private async Task SendFinalAsync(DimseMessage request, int completed, int failed, int warning, List<string> failedUids, string? firstFailure)
    {
        var status = failed == 0 && warning == 0 ? DimseStatus.Success
            : completed == 0 && warning == 0 ? DimseStatus.OutOfResourcesSubOperations
            : DimseStatus.SubOperationsWarning;
        // The first failure's reason, so the operator at the workstation sees why without Vigie's logs (PS3.7 C.4.2.1.6).
        var final = DimseMessage.Response(request, status, dataSet: failedUids.Count > 0, errorComment: failed > 0 ? firstFailure : null)
            .WithSubOperations(-1, completed, failed, warning);
        ReadOnlyMemory<byte> failedList = ReadOnlyMemory<byte>.Empty;
        if (failedUids.Count > 0)
        {
            // PS3.4 C.4.2.1.3: Failed SOP Instance UID List in the identifier of the final response.
            var list = new DicomDataset();
            list.SetStrings(DicomTags.FailedSOPInstanceUIDList, DicomVR.UI, failedUids);
            failedList = DicomWriter.Encode(list, TransferSyntax.Lookup(association.AcceptedContext(request.PresentationContextId)!.AcceptedTransferSyntax!));
        }

        await association.SendAsync(final, failedList, stopping).ConfigureAwait(false);
    }

    private async Task RespondAsync(DimseMessage request, DimseResult result)
    {
        var response = DimseMessage.Response(request, result.Status, dataSet: false, result.ErrorComment);
        await association.SendAsync(response, ReadOnlyMemory<byte>.Empty, stopping).ConfigureAwait(false);
    }

    private void Track(Task task)
    {
        _outstanding.TryAdd(task, 0);
        _ = task.ContinueWith(t =>
        {
            Volatile.Write(ref _lastOperationEnded, Environment.TickCount64);
            _outstanding.TryRemove(t, out _);
        }, TaskScheduler.Default);
    }

    /// <summary>C-GET sub-operations: C-STORE on the requestor's own association, response routed back by the receive loop.</summary>
    private sealed class SameAssociationSender(ServerAssociation owner) : IStoreSender
    {
        private static readonly DimseResult ReleasedBeforeAnswering = new(DimseStatus.ProcessingFailure, "the requestor asked to release before answering");

        public async ValueTask<DimseResult> SendAsync(string sopClassUid, string sopInstanceUid, string transferSyntaxUid, Stream dataSet,
            CancellationToken cancellationToken)
        {
            var association = owner.Association;
            // Only where the requestor took the SCP role (PS3.7 D.3.3.4): a context without role selection is its to
            // send on. Before 2026-12-06 one was used all the same, and a receiver that refused it (0122) was blamed.
            PresentationContext? Accepted(string syntax) => association.Parameters.PresentationContexts.Find(pc => pc.IsAccepted && pc.AbstractSyntax == sopClassUid
                && pc.AcceptedTransferSyntax == syntax && pc.ScpRole == true);
            if (UncompressedSyntax.Choose(transferSyntaxUid, syntax => Accepted(syntax) is not null) is not { } chosen)
            {
                return new DimseResult(DimseStatus.ProcessingFailure,
                    association.Parameters.PresentationContexts.Exists(pc => pc.IsAccepted && pc.AbstractSyntax == sopClassUid && pc.ScpRole != true)
                    && !association.Parameters.PresentationContexts.Exists(pc => pc.IsAccepted && pc.AbstractSyntax == sopClassUid && pc.ScpRole == true)
                        ? "the requestor did not take the SCP role for this SOP class (role selection, PS3.7 D.3.3.4)"
                        : "no presentation context for this SOP class and transfer syntax");
            }

            // When the requestor takes another syntax only, the data set is re-encoded (decoded, inflated) as it is sent;
            // odd-length values are padded.
            var (converted, syntax, problem) = await UncompressedSyntax.PrepareAsync(dataSet, transferSyntaxUid, chosen, s => Accepted(s) is not null, cancellationToken)
                .ConfigureAwait(false);
            if (problem is not null)
            {
                return new DimseResult(DimseStatus.ProcessingFailure, problem);
            }

            var context = Accepted(syntax)!;

            await using var _ = converted;
            dataSet = converted ?? dataSet;

            var id = (ushort)Interlocked.Increment(ref owner._nextMessageId);
            var waiter = new TaskCompletionSource<DimseMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
            owner._awaitingResponse[id] = waiter;
            if (Volatile.Read(ref owner._releaseRequested))
            {
                owner._awaitingResponse.TryRemove(id, out var unsent);
                unsent?.TrySetCanceled(CancellationToken.None);
                return ReleasedBeforeAnswering;
            }

            var request = DimseMessage.StoreRequest(id, context.Id, sopClassUid, sopInstanceUid);
            await association.SendAsync(request, dataSet, cancellationToken).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(owner.ReadTimeout);
            DimseMessage response;
            try
            {
                response = await waiter.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!timeout.IsCancellationRequested && Volatile.Read(ref owner._releaseRequested))
            {
                return ReleasedBeforeAnswering;
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                // The requestor took the object and never answered: the rest of the retrieve would wait the same way, and
                // it would never get its final response. It is aborted, like any peer that stops answering.
                owner._awaitingResponse.TryRemove(id, out var abandoned);
                abandoned?.TrySetCanceled(CancellationToken.None);
                var why = $"the requestor did not answer a C-GET sub-operation's C-STORE within {owner.ReadTimeout}";
                await association.AbortAsync(AbortSource.ServiceProvider, AbortReason.NotSpecified, timedOut: why).ConfigureAwait(false);
                throw new DicomAssociationAbortedException(why);
            }

            return new DimseResult(response.Status, response.ErrorComment)
            {
                AffectedSopClassUid = response.AffectedSopClassUid,
                AffectedSopInstanceUid = response.AffectedSopInstanceUid,
            };
        }
    }
}
