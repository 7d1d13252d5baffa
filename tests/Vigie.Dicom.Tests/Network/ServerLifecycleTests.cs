using Vigie.Dicom.Network;

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
}
