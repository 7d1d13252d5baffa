using System.Net.Sockets;
using System.Text;

namespace Vigie.Cli;

/// <summary>
/// systemd's readiness protocol (sd_notify): under a <c>Type=notify</c> unit, systemd passes a datagram socket in
/// <c>NOTIFY_SOCKET</c> and waits for <c>READY=1</c> before it calls the service started, so units ordered after Vigie
/// (and an administrator's <c>systemctl start</c>) wait until the DICOM node and HTTP really listen. Outside systemd
/// the variable is unset and nothing is sent.
/// </summary>
internal static class ServiceManager
{
    public static async Task NotifyAsync(string state, CancellationToken cancellationToken)
    {
        var path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path))
        {
            return;
        }

        // A leading '@' names a socket in Linux's abstract namespace.
        if (path[0] == '@')
        {
            path = "\0" + path[1..];
        }

        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            await socket.SendAsync(Encoding.UTF8.GetBytes(state), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            // A service manager that went away cannot be told; the service itself is fine.
            await Console.Error.WriteLineAsync($"vigie serve: could not notify the service manager ({e.SocketErrorCode})").ConfigureAwait(false);
        }
    }
}
