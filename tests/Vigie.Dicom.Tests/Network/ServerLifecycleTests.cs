using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

public sealed class ServerLifecycleTests
{
    /// <summary>
    /// Regression: a server disposed right after Start() could fail with "Not listening" when its accept loop reached
    /// Accept after the listener had been stopped (seen once in CI, in a test's DisposeAsync).
    /// </summary>
    [Fact]
    public async Task Stopping_before_the_accept_loop_runs_is_clean()
    {
        for (var i = 0; i < 200; i++)
        {
            var server = new DicomServer(new DicomServerOptions { Port = 0 }, new MemoryServiceProvider());
            server.Start();
            await server.DisposeAsync();
        }
    }

    /// <summary>
    /// Regression: an unexpected exception from the service provider escaped the association's run: the connection was
    /// closed without an A-ABORT and the end was reported as a lost connection, with nothing saying Vigie failed.
    /// </summary>
    [Fact]
    public async Task Regression_a_provider_fault_closed_the_connection_without_abort_or_reason()
    {
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider { FailEcho = new InvalidOperationException("synthetic provider fault") };
        await using var server = provider.StartServer(TimeSpan.FromSeconds(10));
        var options = new DicomClientOptions { Host = "127.0.0.1", Port = server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" };
        var contexts = DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(options, contexts, ct))
        {
            var aborted = await Assert.ThrowsAsync<DicomAssociationAbortedException>(() => client.EchoAsync(ct));
            Assert.StartsWith("the peer aborted", aborted.Message, StringComparison.Ordinal);
        }

        // The abort is sent before the end is reported: the client can see it first.
        await Eventually.WaitForAsync(() => Task.FromResult(provider.Ended.Count), n => n > 0, ct);
        var (end, detail) = Assert.Single(provider.Ended);
        Assert.Equal(AssociationEnd.InternalError, end);
        Assert.StartsWith("internal error: InvalidOperationException", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("synthetic provider fault", detail, StringComparison.Ordinal);

        // The node goes on serving.
        provider.FailEcho = null;
        await using var next = await DicomClient.ConnectAsync(options, contexts, ct);
        Assert.Equal(DimseStatus.Success, (await next.EchoAsync(ct)).Status);
    }
}
