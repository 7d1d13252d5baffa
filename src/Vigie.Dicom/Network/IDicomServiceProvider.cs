using System.Net;

namespace Vigie.Dicom.Network;

/// <summary>What Vigie knows of a connection before the association is accepted.</summary>
public sealed record DicomConnectionInfo(IPEndPoint? Remote, IPEndPoint? Local, bool IsTls, string? ClientCertificateSubject)
{
    /// <summary>
    /// The peer sent not one byte: on the TLS port, it closed (or stayed silent) before a ClientHello, so no association
    /// came of it. A probe, audited as the plain port's silent connections are.
    /// </summary>
    public bool SentNothing { get; init; }
}

/// <summary>The answer to an A-ASSOCIATE-RQ: accept (contexts answered in the parameters) or reject with a reason.</summary>
public sealed record AssociationDecision(bool Accept, RejectResult Result, RejectSource Source, byte Reason, string Explanation)
{
    public static AssociationDecision Accepted { get; } = new(true, RejectResult.Permanent, RejectSource.ServiceUser, 0, "accepted");

    public static AssociationDecision Reject(RejectResult result, RejectSource source, byte reason, string explanation) =>
        new(false, result, source, reason, explanation);
}

/// <summary>How an association ended, for the audit trail.</summary>
public enum AssociationEnd
{
    Released,
    Rejected,
    AbortedByPeer,

    /// <summary>Vigie aborted: protocol violation, limit, timeout.</summary>
    AbortedByVigie,
    ConnectionLost,

    /// <summary>Vigie aborted on a fault of its own (a bug), not the peer's: this association only; the node goes on.</summary>
    InternalError,
}

/// <summary>The result of a C-STORE, C-ECHO or sub-operation: a status and an optional Error Comment.</summary>
public sealed record DimseResult(ushort Status, string? ErrorComment = null)
{
    public static DimseResult Success { get; } = new(DimseStatus.Success);

    /// <summary>
    /// After an N-ACTION-RSP: an N-EVENT-REPORT to send at once on the same association, when the requestor took the SCP
    /// role of the SOP class (PS3.4 J.3.3). <see cref="EventReport.DeliveredAsync"/> is always called, with null when it
    /// could not go there (no such role, the association closing, no answer within the read timeout).
    /// </summary>
    public EventReport? Report { get; init; }

    /// <summary>A response's Affected SOP Class UID (0000,0002), when it had one; set by <see cref="DicomClient"/>.</summary>
    public string? AffectedSopClassUid { get; init; }

    /// <summary>
    /// A response's Affected SOP Instance UID (0000,1000), when it had one: in a C-STORE-RSP it must name the instance
    /// sent (PS3.7 9.3.1.2, U(=)); one naming another does not acknowledge it.
    /// </summary>
    public string? AffectedSopInstanceUid { get; init; }

    /// <summary>
    /// Why this C-STORE-RSP does not acknowledge the object sent, or null when it does: its Affected SOP Class and
    /// Instance UIDs, when present, must be the request's (PS3.7 9.3.1.2, U(=)). The reason names no UID: it is logged
    /// and kept in the queue.
    /// </summary>
    public string? NotAcknowledging(string sopClassUid, string sopInstanceUid) =>
        Differs(AffectedSopInstanceUid, sopInstanceUid) ? "the response names another SOP Instance UID than the one sent"
        : Differs(AffectedSopClassUid, sopClassUid) ? "the response names another SOP Class UID than the one sent"
        : null;

    private static bool Differs(string? answered, string sent) => !string.IsNullOrEmpty(answered) && !string.Equals(answered, sent, StringComparison.Ordinal);
}

/// <summary>An N-EVENT-REPORT the provider asks the association to send, and what to do once it was answered or not.</summary>
public sealed record EventReport(string SopClassUid, string SopInstanceUid, ushort EventTypeId, DicomDataset Information,
    Func<DimseResult?, CancellationToken, ValueTask> DeliveredAsync);

/// <summary>One C-STORE being received: the data set fragments arrive in order, then the store is completed or abandoned.</summary>
public interface IStoreOperation : IAsyncDisposable
{
    /// <summary>
    /// One fragment, in order. A <see cref="DicomStatusException"/> gives the object up: the operation is disposed, the
    /// rest of the data set dropped, and the store answered with that status. Any other exception aborts the association.
    /// </summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> fragment, CancellationToken cancellationToken);

    /// <summary>Called once the whole data set has arrived. May run concurrently with the next operations (asynchronous window).</summary>
    Task<DimseResult> CompleteAsync(CancellationToken cancellationToken);
}

/// <summary>Sends the C-STORE sub-operations of a C-GET (same association) or a C-MOVE (to the destination).</summary>
public interface IStoreSender
{
    /// <summary>Sends one stored object; returns the peer's status.</summary>
    ValueTask<DimseResult> SendAsync(string sopClassUid, string sopInstanceUid, string transferSyntaxUid, Stream dataSet, CancellationToken cancellationToken);
}

/// <summary>One object a retrieve will send: what to announce, and how to open its data set.</summary>
public sealed record RetrieveItem(string SopClassUid, string SopInstanceUid, string TransferSyntaxUid, Func<CancellationToken, ValueTask<Stream>> OpenDataSet);

/// <summary>
/// How a C-GET or C-MOVE ended: the status of each item's sub-operation (null when it was never attempted: cancelled,
/// or the association ended first), the first failure's reason, and why it stopped early, if it did.
/// </summary>
public sealed record RetrieveEnd(IReadOnlyList<RetrieveItem> Items, IReadOnlyList<ushort?> Statuses, string? FirstFailure, string? StoppedBecause);

/// <summary>
/// The application behind the DICOM node: association policy and the DIMSE services. Implemented by the gateway;
/// the network layer takes care of PDUs, negotiation mechanics, fragmentation, timeouts and sub-operation bookkeeping.
/// </summary>
public interface IDicomServiceProvider
{
    /// <summary>
    /// Decides on an A-ASSOCIATE-RQ (<c>association.Parameters</c>) and answers each presentation context (result, transfer
    /// syntax, roles). The provider may keep what it decided in <see cref="DicomAssociation.State"/>.
    /// </summary>
    ValueTask<AssociationDecision> NegotiateAsync(DicomAssociation association, DicomConnectionInfo connection, CancellationToken cancellationToken);

    ValueTask<DimseResult> EchoAsync(DicomAssociation association, DimseMessage request, CancellationToken cancellationToken);

    /// <summary>
    /// Starts receiving a C-STORE data set. A <see cref="DicomStatusException"/> refuses the object before any byte of
    /// it is written: its data set is read and dropped, and the store answered with that status.
    /// </summary>
    ValueTask<IStoreOperation> BeginStoreAsync(DicomAssociation association, DimseMessage request, string transferSyntaxUid, CancellationToken cancellationToken);

    /// <summary>The C-FIND matches, as identifiers to return with Pending status.</summary>
    IAsyncEnumerable<DicomDataset> FindAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier, CancellationToken cancellationToken);

    /// <summary>
    /// The status of the C-FIND's pending responses: <see cref="DimseStatus.Pending"/>, or
    /// <see cref="DimseStatus.PendingWithWarnings"/> when an optional key of the identifier was not used for matching
    /// (PS3.4 C.4.1.1.4).
    /// </summary>
    ushort FindPendingStatus(DicomAssociation association, DimseMessage request, DicomDataset identifier) => DimseStatus.Pending;

    /// <summary>The instances a C-GET or C-MOVE identifier selects.</summary>
    ValueTask<IReadOnlyList<RetrieveItem>> RetrieveAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier, CancellationToken cancellationToken);

    /// <summary>
    /// An N-ACTION on <c>request.RequestedSopClassUid</c> (storage commitment) with its Action Information; the result
    /// is the N-ACTION-RSP status. A <see cref="DicomStatusException"/> answers with its status.
    /// </summary>
    ValueTask<DimseResult> ActionAsync(DicomAssociation association, DimseMessage request, DicomDataset? information, CancellationToken cancellationToken);

    /// <summary>
    /// Opens an association to a C-MOVE destination AE for <paramref name="request"/> (its sub-operations carry its
    /// Message ID as Move Originator Message ID); null when the destination is unknown or not allowed.
    /// </summary>
    ValueTask<IMoveDestination?> OpenMoveDestinationAsync(DicomAssociation association, DimseMessage request, string destinationAE, IReadOnlyList<RetrieveItem> items,
        CancellationToken cancellationToken);

    /// <summary>Called once when a C-GET or C-MOVE that selected items ends, whatever the way (final response, cancel, association gone).</summary>
    ValueTask RetrieveEndedAsync(DicomAssociation association, DimseMessage request, RetrieveEnd end) => default;

    /// <summary>
    /// A request refused by the network layer before the provider saw it (a command its context's SOP class does not
    /// define, another Affected SOP Class UID): for the audit trail. Its data set, if any, was dropped.
    /// </summary>
    ValueTask OperationRefusedAsync(DicomAssociation association, DimseMessage request, DimseResult refusal, CancellationToken cancellationToken) => default;

    /// <summary>Called once when the association ends, whatever the way.</summary>
    ValueTask AssociationEndedAsync(DicomAssociation? association, DicomConnectionInfo connection, AssociationEnd end, string detail);

    /// <summary>A connection closed at once, before a byte was read (a limit per address); at most once a minute.</summary>
    void ConnectionRefused(System.Net.IPAddress address, string reason)
    {
    }

    /// <summary>Accepting connections fails (out of file descriptors, say): the listener retries; at most once a minute.</summary>
    void AcceptFailed(System.Net.Sockets.SocketError error, string message)
    {
    }

    /// <summary>
    /// An operation failed on an exception of the provider's own (answered 0110 "failed: TYPE"): the peer learns only
    /// the type, so the operators must hear the rest.
    /// </summary>
    void OperationFailed(DicomAssociation association, DimseMessage request, Exception exception)
    {
    }
}

/// <summary>A C-MOVE destination: a store sender over its own association.</summary>
public interface IMoveDestination : IStoreSender, IAsyncDisposable;
