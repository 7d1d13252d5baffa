using System.Diagnostics;

namespace Vigie.Core.IO;

/// <summary>
/// Who holds something on this machine: work claims, leases and landing slots are named "machine-pid-..." so that a
/// node can take back what an earlier process of its machine left when it died, without waiting for a timeout.
/// </summary>
public static class LocalProcess
{
    /// <summary>This process, for one run: machine, pid, and a random incarnation (a container restarted keeps its pid).</summary>
    public static string Incarnation { get; } = $"{Environment.MachineName}-{Environment.ProcessId}-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4))}";

    /// <summary>
    /// True for a holder name (a consumer, a lease holder, a landing slot's owner) of an earlier process on this machine:
    /// its process is gone, or its id is this process's own (a container restarted as the same pid). After a kill -9
    /// its batch waited for the whole lease (5 minutes).
    /// </summary>
    public static bool IsEarlierProcessOfThisMachine(string holder, string self)
    {
        var prefix = Environment.MachineName + "-";
        if (holder == self || !holder.StartsWith(prefix, StringComparison.Ordinal))
        {
            return false;
        }

        // "machine-pid-..." for a consumer, "machine-pid" for a lease holder.
        var rest = holder[prefix.Length..];
        var dash = rest.IndexOf('-', StringComparison.Ordinal);
        if (dash == 0 || !int.TryParse(dash < 0 ? rest : rest[..dash], System.Globalization.CultureInfo.InvariantCulture, out var pid))
        {
            return false;
        }

        if (pid == Environment.ProcessId)
        {
            return true;
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return process.HasExited || IsZombie(pid);
        }
        catch (ArgumentException)
        {
            return true;
        }
    }

    /// <summary>
    /// A process killed and not yet reaped by its parent (a supervisor restarting at once) still answers to its pid,
    /// yet holds nothing any more: state Z in /proc/PID/stat, after the parenthesised command name.
    /// </summary>
    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var end = stat.LastIndexOf(')');
            return end > 0 && end + 2 < stat.Length && stat[end + 2] is 'Z' or 'X';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
