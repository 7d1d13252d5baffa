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
        root.Subcommands.Add(BackupCommand.Create());
        root.Subcommands.Add(AuditCommands.Create());
        root.Subcommands.Add(ForwardCommands.Create());
        root.Subcommands.Add(QuarantineCommands.Create());
        root.Subcommands.Add(RescanCommand.Create());
        root.Subcommands.Add(WithheldCommands.Create());
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

        if (Console.IsOutputRedirected)
        {
            // Piped into grep or a file, tables keep one row per line instead of wrapping at 80 columns.
            Spectre.Console.AnsiConsole.Profile.Width = 1000;
        }

        var root = Build();
        // No response files: "@" starts values here ("--allow @10.0.0.0/8" is a rule missing its AE title, not a file).
        var parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"vigie: {Readable(error.Message)}");
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
        catch (Exception e) when (Vigie.Core.Data.SqliteDatabase.IsDamage(e))
        {
            // One line with the remedy, not "SqliteException: SQLite Error 11" (before 2026-12-07).
            await Console.Error.WriteLineAsync($"vigie: {Vigie.Core.Data.SqliteDatabase.DescribeDamage(e, Vigie.Core.Data.SqliteDatabase.LastOpenedPath)}");
            return ExitCodes.Error;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The causes too: "Failed to load configuration from file" says nothing until its JSON error gives the line.
            // The type name only for what is not the operator's to fix (a file, a setting, a lock): that is for a bug report.
            var expected = e is IOException or UnauthorizedAccessException or InvalidOperationException or InvalidDataException or FormatException
                or Microsoft.Extensions.Options.OptionsValidationException;
            await Console.Error.WriteLineAsync($"vigie: {(expected ? "" : e.GetType().Name + ": ")}{Vigie.Core.ExceptionCauses.Describe(e)}");
            return ExitCodes.Error;
        }
    }

    /// <summary>A parse error without .NET type names: "expected type 'System.Nullable`1[System.Int32]'" says "a whole number".</summary>
    internal static string Readable(string message) =>
        System.Text.RegularExpressions.Regex.Replace(message, @"as expected type '([^']*)'", m => "as " + (m.Groups[1].Value switch
        {
            var t when t.Contains("Int32", StringComparison.Ordinal) || t.Contains("Int64", StringComparison.Ordinal) => "a whole number",
            var t when t.Contains("DateTimeOffset", StringComparison.Ordinal) => "a date and time (2026-12-05 or 2026-12-05T10:00:00Z)",
            var t when t.Contains("TimeSpan", StringComparison.Ordinal) => "a duration (00:30:00)",
            var t when t.Contains("Boolean", StringComparison.Ordinal) => "true or false",
            _ => "the expected kind of value",
        }), System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1));
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
