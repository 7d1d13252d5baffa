using System.CommandLine;
using Vigie.Cli.Commands;

namespace Vigie.Cli;

/// <summary>The `vigie` command: every subcommand, and the exit code convention (0 clean, 1 findings, 2 error).</summary>
internal static class CliApp
{
    public static RootCommand Build()
    {
        var root = new RootCommand("Vigie guards medical-imaging and health-data flows: a DICOM gateway that inspects, archives and audits.");
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(DumpCommand.Create());
        root.Subcommands.Add(ScanCommand.Create());
        root.Subcommands.Add(SignaturesCommands.Create());
        root.Subcommands.Add(MaintenanceCommands.Stats());
        root.Subcommands.Add(MaintenanceCommands.Scrub());
        root.Subcommands.Add(AuditCommands.Create());
        root.Subcommands.Add(ForwardCommands.Create());
        root.Subcommands.Add(QuarantineCommands.Create());
        root.Subcommands.Add(RescanCommand.Create());
        root.Subcommands.Add(EchoCommand.Create());
        root.Subcommands.Add(MaintenanceCommands.Keys());
        root.Subcommands.Add(MaintenanceCommands.Access());
        return root;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        if (!OperatingSystem.IsWindows())
        {
            // Everything Vigie writes is health data or keys: owner only, whatever the shell's umask (022 when run by
            // hand made index.db and the data folder readable by all; the systemd unit sets UMask=0077 too).
            _ = NativeMethods.Umask(0b_000_111_111); // 077, the previous mask is not needed
        }

        var root = Build();
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"vigie: {error.Message}");
            }

            await Console.Error.WriteLineAsync("Run 'vigie --help' for usage.");
            return ExitCodes.Error;
        }

        try
        {
            // The library's own handler prints a stack trace and returns 1, which here means "threats found".
            // SIGTERM cancels the command's token; the process is ended by force only after 20 s, beyond serve's own
            // 15 s shutdown (stores in flight, the last signed tree head). The default, 2 s, cut that shutdown off.
            return await parse.InvokeAsync(new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = TimeSpan.FromSeconds(20),
            });
        }
        catch (OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("vigie: cancelled");
            return ExitCodes.Error;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            await Console.Error.WriteLineAsync($"vigie: {e.GetType().Name}: {e.Message}");
            return ExitCodes.Error;
        }
    }
}

internal static class ExitCodes
{
    /// <summary>Done, nothing wrong found.</summary>
    public const int Ok = 0;

    /// <summary>Done, and something was found: a threat, a tampered entry, a corrupt object.</summary>
    public const int Findings = 1;

    /// <summary>Could not do the job: bad input, bad arguments, I/O failure.</summary>
    public const int Error = 2;
}

internal static partial class NativeMethods
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "umask", SetLastError = false)]
    [System.Runtime.InteropServices.DefaultDllImportSearchPaths(System.Runtime.InteropServices.DllImportSearchPath.SafeDirectories)]
    public static extern uint Umask(uint mask);
}
