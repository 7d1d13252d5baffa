using System.Net;
using System.Net.Sockets;

namespace Vigie.Testing;

/// <summary>Loopback ports for servers a test starts.</summary>
public static class TestPorts
{
    private static readonly HashSet<int> Given = [];

    /// <summary>
    /// A port free right now and never given before in this process. The kernel may hand a port it just released
    /// out again: a node once got the same port for DICOM and HTTP and failed to bind the second.
    /// </summary>
    public static int Free()
    {
        while (true)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            lock (Given)
            {
                if (Given.Add(port))
                {
                    return port;
                }
            }
        }
    }
}
