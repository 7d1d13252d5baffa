using System.CommandLine;
using System.Text.Json;
using Vigie.Inspection.Signatures;

namespace Vigie.Cli.Commands;

/// <summary>`vigie signatures check|export`: validate a rules folder, or write it out for clamscan and yara.</summary>
internal static class SignaturesCommands
{
    public static Command Create()
    {
        var command = new Command("signatures", "Known-bad signatures: check a rules folder, or export it as a ClamAV database and YARA rules.");
        command.Subcommands.Add(Check());
        command.Subcommands.Add(Export());
        return command;
    }

    private static Command Check()
    {
        var rules = new Argument<DirectoryInfo>("rules") { Description = "The rules folder (.hdb, .hsb, .ndb, .ldb, .sha256, .sha1, .md5, .yar, .yara)." };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON." };
        var command = new Command("check", "Load a rules folder as `vigie scan --rules` would and report what it holds and what was skipped. Exit 0 usable, 2 not.") { rules, json };
        command.SetAction(async (parse, cancellationToken) =>
        {
            SignatureReport report;
            try
            {
                report = SignatureExporter.Check(parse.GetRequiredValue(rules).FullName);
            }
            catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException or InvalidOperationException)
            {
                await Console.Error.WriteLineAsync($"vigie signatures check: {e.Message}");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await Console.Out.WriteLineAsync(JsonSerializer.Serialize(new
                {
                    hashes = report.Hashes,
                    body = report.Bodies,
                    logical = report.Logicals,
                    yara_files = report.YaraFiles,
                    yara = report.Yara,
                    skipped = report.Skipped,
                }));
            }
            else
            {
                await Console.Out.WriteLineAsync($"{report.Hashes} hash, {report.Bodies} body and {report.Logicals} logical signatures; {report.Yara}");
                foreach (var skipped in report.Skipped)
                {
                    await Console.Out.WriteLineAsync($"skipped {skipped}");
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
            return report.Yara.Contains("NOT usable", StringComparison.Ordinal) ? ExitCodes.Error : ExitCodes.Ok;
        });
        return command;
    }

    private static Command Export()
    {
        var rules = new Argument<DirectoryInfo>("rules") { Description = "The rules folder to export (YARA files in it are not converted)." };
        var clamAv = new Option<DirectoryInfo?>("--clamav") { Description = "Write into this folder those of vigie.hdb, vigie.hsb, vigie.ndb and vigie.ldb that have signatures (for clamscan -d)." };
        var yara = new Option<FileInfo?>("--yara") { Description = "Write the same signatures as YARA rules into this file." };
        var builtIn = new Option<bool>("--built-in") { Description = "Include Vigie's built-in test signatures (EICAR)." };
        var command = new Command("export", "Write the hash and pattern signatures of a rules folder as a ClamAV database and as YARA rules.") { rules, clamAv, yara, builtIn };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(clamAv) is null && parse.GetValue(yara) is null)
            {
                await Console.Error.WriteLineAsync("vigie signatures export: give --clamav DIR, --yara FILE or both");
                return ExitCodes.Error;
            }

            try
            {
                var count = SignatureExporter.Export(parse.GetRequiredValue(rules).FullName, parse.GetValue(builtIn), parse.GetValue(clamAv)?.FullName, parse.GetValue(yara)?.FullName);
                await Console.Out.WriteLineAsync($"{count} signatures exported");
            }
            catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"vigie signatures export: {e.Message}");
                return ExitCodes.Error;
            }

            cancellationToken.ThrowIfCancellationRequested();
            return ExitCodes.Ok;
        });
        return command;
    }
}
