using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

[CollectionDefinition(nameof(StoreRefusalCollection), DisableParallelization = true)]
public sealed class StoreRefusalCollection;

/// <summary>
/// A store the application cannot keep (refused at its start, or failing while it is received) is answered with a
/// status after its data set is read and dropped: the association goes on, and nothing of the object is held in memory.
/// An association the application cannot decide on is rejected as transient.
/// </summary>
/// <remarks>
/// One test measures the process's allocations, which other tests running alongside would inflate, so the class runs
/// alone.
/// </remarks>
[Collection(nameof(StoreRefusalCollection))]
public sealed class StoreRefusalTests : IAsyncLifetime
{
    private const string Instance = "2.25.1001";
    private readonly MemoryServiceProvider _provider = new();
    private DicomServer _server = null!;

    public ValueTask InitializeAsync()
    {
        _server = _provider.StartServer(TimeSpan.FromSeconds(20));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_store_refused_at_its_start_is_answered_and_the_association_goes_on()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = await ConnectAsync(ct);
        _provider.RefuseStores = new DicomStatusException(DimseStatus.OutOfResources, "archive disk full");

        var refused = await client.StoreAsync(DicomUids.CTImageStorage, Instance, DicomUids.ExplicitVRLittleEndian, new ZeroStream(3 * 1024 * 1024), ct);

        Assert.Equal(DimseStatus.OutOfResources, refused.Status);
        Assert.Equal("archive disk full", refused.ErrorComment);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        _provider.RefuseStores = null;
        Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, Instance, DicomUids.ExplicitVRLittleEndian, new ZeroStream(1024), ct)).Status);
        await client.ReleaseAsync(ct);
        Assert.Single(_provider.Stored);
    }

    [Fact]
    public async Task A_store_whose_write_fails_is_answered_its_operation_disposed_and_the_association_goes_on()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = await ConnectAsync(ct);
        _provider.FailWritesAfter = 1024 * 1024;

        var failed = await client.StoreAsync(DicomUids.CTImageStorage, Instance, DicomUids.ExplicitVRLittleEndian, new ZeroStream(4 * 1024 * 1024), ct);

        Assert.Equal(DimseStatus.OutOfResources, failed.Status);
        Assert.Equal(0, _provider.OpenOperations);
        Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, Instance, DicomUids.ExplicitVRLittleEndian, new ZeroStream(1024), ct)).Status);
        await client.ReleaseAsync(ct);
        Assert.DoesNotContain(_provider.Ended, e => e.End != AssociationEnd.Released);
    }

    /// <summary>
    /// Regression: a C-STORE with no SOP Instance UID (or a SOP class other than its context's) was answered only after
    /// its whole data set had been read into memory, so a hostile peer could make the node buffer gigabytes.
    /// </summary>
    [Fact]
    public async Task A_store_without_SOP_instance_UID_is_dropped_as_it_arrives_not_buffered()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var client = await ConnectAsync(ct);
        const long length = 96L * 1024 * 1024;
        var before = GC.GetTotalAllocatedBytes(precise: true);

        var refused = await client.StoreAsync(DicomUids.CTImageStorage, "", DicomUids.ExplicitVRLittleEndian, new ZeroStream(length), ct);

        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(DimseStatus.DataSetDoesNotMatchSopClass, refused.Status);
        Assert.True(allocated < length / 4, $"{allocated >> 20} MiB allocated to refuse a {length >> 20} MiB data set");
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        await client.ReleaseAsync(ct);
    }

    [Fact]
    public async Task An_application_that_cannot_decide_on_an_association_rejects_it_as_transient_instead_of_dropping_the_connection()
    {
        var ct = TestContext.Current.CancellationToken;
        _provider.FailNegotiation = new InvalidOperationException("database unreachable");

        var rejected = await Assert.ThrowsAsync<DicomAssociationRejectedException>(() => ConnectAsync(ct));

        Assert.Equal(RejectResult.Transient, rejected.Result);
        Assert.Equal(RejectSource.ServiceProviderPresentation, rejected.RejectSource);
        Assert.Equal(RejectReasons.TemporaryCongestion, rejected.Reason);
        _provider.FailNegotiation = null;
        await using var client = await ConnectAsync(ct);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        await client.ReleaseAsync(ct);
    }

    /// <summary>
    /// Regression: an operation that failed on the application's exception was answered 0110 "failed: TYPE" and nothing
    /// else: no log, no audit, so nobody learnt why (a C-FIND with a 70 KB key). The provider is now told.
    /// </summary>
    [Fact]
    public async Task Regression_an_operation_failing_on_an_internal_exception_was_answered_and_forgotten()
    {
        var ct = TestContext.Current.CancellationToken;
        _provider.FailFind = new InvalidOperationException("a deliberate fault");
        await using var client = await DicomClient.ConnectAsync(
            new DicomClientOptions { Host = "127.0.0.1", Port = _server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StudyRootQueryRetrieveInformationModelFind], DicomUids.ExplicitVRLittleEndian), ct);
        var query = new DicomDataset();
        query.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");

        var failed = await Assert.ThrowsAsync<DicomStatusException>(async () =>
        {
            await foreach (var _ in client.FindAsync(DicomUids.StudyRootQueryRetrieveInformationModelFind, query, ct))
            {
            }
        });

        _provider.FailFind = null;
        Assert.Equal(DimseStatus.ProcessingFailure, failed.Status);
        var (command, exception) = Assert.Single(_provider.OperationFailures);
        Assert.Equal(DimseCommand.CFindRequest, command);
        Assert.Equal("a deliberate fault", exception.Message);
    }

    private Task<DicomClient> ConnectAsync(CancellationToken ct) =>
        DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = _server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.CTImageStorage, DicomUids.Verification], DicomUids.ExplicitVRLittleEndian), ct);

    /// <summary>A data set of zeros of any length that allocates nothing for its content.</summary>
    private sealed class ZeroStream(long length) : GeneratedStream
    {
        public override long Length => length;

        protected override int Produce(long position, Span<byte> buffer)
        {
            buffer.Clear();
            return buffer.Length;
        }
    }
}
