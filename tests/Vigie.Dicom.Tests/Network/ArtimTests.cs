using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>The ARTIM timer while the node awaits an A-ASSOCIATE-RQ (PS3.8 9.2, state Sta2).</summary>
public sealed class ArtimTests
{
    /// <summary>
    /// Regression: when ARTIM expired on a connection that had not sent a whole A-ASSOCIATE-RQ (nothing, or part of
    /// one), the node sent an A-ABORT before closing. PS3.8 table 9-10 (Sta2, Evt18 → AA-2) closes the transport
    /// connection without a PDU. The end is still reported to the application (and so audited) as a timeout.
    /// </summary>
    [Fact]
    public async Task Regression_ARTIM_expiry_before_any_request_sent_an_abort()
    {
        var ct = TestContext.Current.CancellationToken;
        var provider = new MemoryServiceProvider();
        await using var server = provider.StartServer(TimeSpan.FromSeconds(1));
        // Nothing at all, then the first 10 bytes of a request (its PDU header says more follows).
        foreach (var sent in new[] { Array.Empty<byte>(), new byte[] { 0x01, 0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x01, 0x00, 0x00 } })
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, server.Port, ct);
            if (sent.Length > 0)
            {
                await socket.SendAsync(sent, SocketFlags.None, ct);
            }

            var received = new List<byte>();
            var buffer = new byte[256];
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(TimeSpan.FromSeconds(20));
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, limit.Token)) > 0)
            {
                received.AddRange(buffer.AsSpan(0, read).ToArray());
            }

            Assert.True(received.Count == 0, $"after {sent.Length} bytes sent, the node answered {Convert.ToHexString(received.ToArray())} before closing");
        }

        var ends = await Eventually.WaitForAsync(() => Task.FromResult(provider.Ended.ToArray()), e => e.Length >= 2, ct, TimeSpan.FromSeconds(10));
        Assert.Equal(2, ends.Length);
        Assert.All(ends, e => Assert.Equal(AssociationEnd.AbortedByVigie, e.End));
        Assert.All(ends, e => Assert.StartsWith("timeout: ", e.Detail, StringComparison.Ordinal));
    }
}
