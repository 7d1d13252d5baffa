using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Vigie.Audit.Export;

/// <summary>
/// The bytes a TCP socket still holds, sent or not, that its peer's stack has not acknowledged (Linux SIOCOUTQ). Syslog
/// has no acknowledgement of its own: this is the nearest a sender can come to "the collector has it".
/// </summary>
internal static partial class SendQueue
{
    private const ulong SiocOutQ = 0x5411;
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(5);

    /// <summary>Waits until the peer has acknowledged everything written; elsewhere than Linux, returns at once.</summary>
    public static async ValueTask WaitUntilAcknowledgedAsync(Socket socket, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var wait = Poll;
        while (Pending(socket) > 0)
        {
            await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
            // A collector slow to read gets polled less often, not a timer every 5 ms for the whole send timeout.
            wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, TimeSpan.FromMilliseconds(200).Ticks));
        }
    }

    private static int Pending(Socket socket)
    {
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return NativeMethods.Ioctl((int)handle.DangerousGetHandle(), SiocOutQ, out var pending) == 0
                ? pending
                : throw new SocketException(Marshal.GetLastPInvokeError());
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static partial class NativeMethods
    {
        [DllImport("libc", EntryPoint = "ioctl", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Ioctl(int fd, ulong request, out int value);
    }
}
