using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

public sealed class ConnectionFloodTests
{
    /// <summary>
    /// Regression: silent connections from several addresses, each under the per-address limit, filled the node's
    /// connection limit (twice the associations) and held it for their 30 s timers: every modality's connection was
    /// reset meanwhile, and /health said Healthy. The one silent longest now gives way to the newcomer.
    /// </summary>
    [Fact]
    public async Task Regression_silent_connections_from_many_addresses_locked_every_modality_out()
    {
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider();
        var timers = TimeSpan.FromSeconds(30);
        await using var server = new DicomServer(new DicomServerOptions
        {
            Port = 0,
            MaxAssociations = 2,
            MaxAssociationsPerCallingAE = 2,
            Association = new DicomAssociationOptions { ArtimTimeout = timers, IdleTimeout = timers, ReadTimeout = timers },
        }, provider);
        server.Start();
        // A node that closed nothing is not in a flood (every node said so, Degraded, from its start).
        Assert.Equal((0L, false), server.Evictions);

        // Four addresses (127.0.0.2 to .5), one silent connection each: the limit is 2 × MaxAssociations = 4.
        var silent = new List<Socket>();
        try
        {
            for (var i = 2; i <= 5; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Parse($"127.0.0.{i}"), 0));
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port), ct);
                silent.Add(socket);
            }

            var open = await Eventually.WaitForAsync(() => Task.FromResult(server.OpenConnections), n => n == 4, ct);
            Assert.Equal(4, open);
            await Task.Delay(TimeSpan.FromMilliseconds(1200), ct);

            var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aet", "ECHOSCU", "-aec", "VIGIE", "127.0.0.1",
                server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(30), cancellationToken: ct);
            Assert.True(echo.ExitCode == 0, echo.ToString());
            Assert.True(server.Evictions.Recent);
            Assert.Equal(1, server.Evictions.Total);
        }
        finally
        {
            foreach (var socket in silent)
            {
                socket.Dispose();
            }
        }
    }
}
