using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// The application side for network-layer tests: keeps received data sets in memory and answers C-FIND with an exact
/// match on Patient ID. The gateway's real provider (archive, inspection, audit) is tested in Vigie.Gateway.Tests.
/// </summary>
internal sealed class MemoryServiceProvider : IDicomServiceProvider
{
    public ConcurrentDictionary<string, (string SopClass, string Syntax, byte[] Data)> Stored { get; } = new(StringComparer.Ordinal);

    public ConcurrentQueue<(AssociationEnd End, string Detail)> Ended { get; } = new();

    public HashSet<string> AllowedCallingAEs { get; } = new(StringComparer.Ordinal) { "STORESCU", "ECHOSCU", "FINDSCU", "GETSCU", "MOVESCU", "TESTSCU" };

    public TimeSpan StoreDelay { get; set; }

    /// <summary>When set, deciding on an association throws it (an application whose database is unreachable).</summary>
    public Exception? FailNegotiation { get; set; }

    /// <summary>When set, every C-STORE is refused at its start with this status (the gateway's full archive).</summary>
    public DicomStatusException? RefuseStores { get; set; }

    /// <summary>When set, C-FIND throws it (an application fault).</summary>
    public Exception? FailFind { get; set; }

    /// <summary>What <see cref="IDicomServiceProvider.OperationFailed"/> was told.</summary>
    public ConcurrentQueue<(DimseCommand Command, Exception Exception)> OperationFailures { get; } = new();

    public void OperationFailed(DicomAssociation association, DimseMessage request, Exception exception) => OperationFailures.Enqueue((request.Field, exception));

    /// <summary>When set, a store's write fails once it has received this many bytes (a disk that fills up while receiving).</summary>
    public long? FailWritesAfter { get; set; }

    /// <summary>Operations begun and not yet disposed.</summary>
    public int OpenOperations => Volatile.Read(ref _open);

    private int _open;

    /// <summary>A started node on a free port with this provider behind it; ARTIM, idle and read timers all set to <paramref name="timers"/>.</summary>
    public DicomServer StartServer(TimeSpan timers)
    {
        var server = new DicomServer(new DicomServerOptions
        {
            Port = 0,
            Association = new DicomAssociationOptions { ArtimTimeout = timers, IdleTimeout = timers, ReadTimeout = timers },
        }, this);
        server.Start();
        return server;
    }

    public ValueTask<AssociationDecision> NegotiateAsync(DicomAssociation association, DicomConnectionInfo connection, CancellationToken cancellationToken)
    {
        if (FailNegotiation is { } failure)
        {
            throw failure;
        }

        var request = association.Parameters;
        if (!AllowedCallingAEs.Contains(request.CallingAE))
        {
            return ValueTask.FromResult(AssociationDecision.Reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReasons.CallingAENotRecognized, "unknown"));
        }

        PresentationContextNegotiator.Answer(request,
            uid => uid == DicomUids.Verification || SopClasses.IsStorage(uid) || SopClasses.Find.Contains(uid) || SopClasses.Get.Contains(uid),
            _ => true);
        return ValueTask.FromResult(AssociationDecision.Accepted);
    }

    /// <summary>When set, C-ECHO fails with this exception, as a provider bug would.</summary>
    public Exception? FailEcho { get; set; }

    public ValueTask<DimseResult> EchoAsync(DicomAssociation association, DimseMessage request, CancellationToken cancellationToken) =>
        FailEcho is { } failure ? ValueTask.FromException<DimseResult>(failure) : ValueTask.FromResult(DimseResult.Success);

    public ValueTask<IStoreOperation> BeginStoreAsync(DicomAssociation association, DimseMessage request, string transferSyntaxUid, CancellationToken cancellationToken)
    {
        if (RefuseStores is { } refusal)
        {
            throw refusal;
        }

        Interlocked.Increment(ref _open);
        return ValueTask.FromResult<IStoreOperation>(new Operation(this, request.AffectedSopClassUid!, request.AffectedSopInstanceUid!, transferSyntaxUid));
    }

    /// <summary>When set, C-FIND answers this many made-up matches of about 4 KiB each instead of searching.</summary>
    public int SyntheticMatches { get; set; }

    public async IAsyncEnumerable<DicomDataset> FindAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (FailFind is { } failure)
        {
            throw failure;
        }

        for (var i = 0; i < SyntheticMatches; i++)
        {
            var match = new DicomDataset();
            match.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
            match.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, $"2.25.{i + 1}");
            match.SetString(DicomTags.ImageComments, DicomVR.LT, new string('x', 4096));
            yield return match;
        }

        var patientId = identifier.GetString(DicomTags.PatientID);
        foreach (var (uid, stored) in Stored.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var ds = await DicomReader.ReadDatasetAsync(stored.Data, TransferSyntax.Lookup(stored.Syntax), new DicomReadOptions { StopAtTag = DicomTags.PixelData }, cancellationToken);
            if (string.IsNullOrEmpty(patientId) || ds.GetString(DicomTags.PatientID) == patientId)
            {
                var match = new DicomDataset();
                match.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
                match.SetString(DicomTags.PatientID, DicomVR.LO, ds.GetString(DicomTags.PatientID) ?? "");
                match.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, uid);
                yield return match;
            }
        }
    }

    public ValueTask<IReadOnlyList<RetrieveItem>> RetrieveAsync(DicomAssociation association, DimseMessage request, DicomDataset identifier, CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlyList<RetrieveItem>>(Stored.Select(s => new RetrieveItem(s.Value.SopClass, s.Key, s.Value.Syntax,
            _ => ValueTask.FromResult<Stream>(new MemoryStream(s.Value.Data)))).ToList());

    public ValueTask<DimseResult> ActionAsync(DicomAssociation association, DimseMessage request, DicomDataset? information, CancellationToken cancellationToken) =>
        ValueTask.FromResult(new DimseResult(DimseStatus.NoSuchActionType));

    public ValueTask<IMoveDestination?> OpenMoveDestinationAsync(DicomAssociation association, DimseMessage request, string destinationAE,
        IReadOnlyList<RetrieveItem> items,
        CancellationToken cancellationToken) => ValueTask.FromResult<IMoveDestination?>(null);

    public ValueTask AssociationEndedAsync(DicomAssociation? association, DicomConnectionInfo connection, AssociationEnd end, string detail)
    {
        Ended.Enqueue((end, detail));
        return ValueTask.CompletedTask;
    }

    private sealed class Operation(MemoryServiceProvider owner, string sopClass, string sopInstance, string syntax) : IStoreOperation
    {
        private readonly MemoryStream _data = new();

        public ValueTask WriteAsync(ReadOnlyMemory<byte> fragment, CancellationToken cancellationToken)
        {
            if (owner.FailWritesAfter is { } limit && _data.Length + fragment.Length > limit)
            {
                throw new DicomStatusException(DimseStatus.OutOfResources, "test: disk full");
            }

            _data.Write(fragment.Span);
            return ValueTask.CompletedTask;
        }

        public async Task<DimseResult> CompleteAsync(CancellationToken cancellationToken)
        {
            if (owner.StoreDelay > TimeSpan.Zero)
            {
                await Task.Delay(owner.StoreDelay, cancellationToken);
            }

            owner.Stored[sopInstance] = (sopClass, syntax, _data.ToArray());
            return DimseResult.Success;
        }

        public ValueTask DisposeAsync()
        {
            Interlocked.Decrement(ref owner._open);
            return _data.DisposeAsync();
        }
    }
}
