using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;
using Vigie.Access;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Audit;

namespace Vigie.Cli.Commands;

/// <summary>`vigie scrub`, `vigie stats`, `vigie keys rotate`, `vigie access hash-password`.</summary>
internal static class MaintenanceCommands
{
    public static Option<FileInfo?> ConfigOption() => new("--config") { Description = "Configuration file (JSON), as for vigie serve." };

    public static Option<bool> JsonOption() => new("--json") { Description = "Machine-readable output." };

    /// <summary>
    /// A --limit of <paramref name="min"/> to <paramref name="max"/>: a value out of range is a usage error (exit 2), not
    /// an empty listing ("nothing in quarantine" for --limit 0, before 2026-12-06) or a quiet clamp.
    /// </summary>
    public static Option<int> LimitOption(string description, int defaultValue, int max, int min = 1)
    {
        var option = new Option<int>("--limit") { Description = $"{description} ({min} to {max:N0}, default {defaultValue}).", DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result =>
        {
            // The token, not the parsed value: a value that does not parse is reported by the parser, and reading it here threw.
            if (result.Tokens is [{ } token] && int.TryParse(token.Value, System.Globalization.NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
                && (value < min || value > max))
            {
                result.AddError($"--limit must be between {min} and {max:N0}, not {value}.");
            }
        });
        return option;
    }

    public static Command Scrub()
    {
        var data = ServeCommand.DataOption();
        var config = ConfigOption();
        var json = JsonOption();
        var reveal = new Option<bool>("--reveal-identifiers") { Description = "Name damaged objects by their decrypted SOP and Study Instance UIDs (for re-fetching them)." };
        var quick = new Option<bool>("--headers-only") { Description = "Check headers, keys and trailers only, without decrypting every segment." };
        var command = new Command("scrub", "Check every stored object (authentication tags, content hash, index references). Exit 1 if anything is missing, corrupted, foreign or orphaned.")
        {
            data, config, json, reveal, quick,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "scrub", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var withheld = services.GetRequiredService<Gateway.Ingest.WithheldObjects>();
            var request = new ScrubRequest
            {
                RevealIdentifiers = parse.GetValue(reveal), VerifyContent = !parse.GetValue(quick), CheckRecords = token => withheld.CheckAsync(bind: false, token),
            };
            var report = await MaintenanceHost.WithStatusAsync("Scrubbing the archive", parse.GetValue(json),
                () => services.GetRequiredService<ScrubService>().RunAsync(request, ct));
            // The run and its findings go in the trail, as the node's own scrub and rescan do: before 2026-12-06 a corrupted
            // segment, which only this full check finds, reached no audit entry at all. Nothing is shown that cannot be audited.
            try
            {
                await services.GetRequiredService<IAuditLog>().AppendAsync(Gateway.ScrubAudit.Run(TimeProvider.System, request, report, Environment.UserName), ct);
            }

            catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
            {
                await Console.Error.WriteLineAsync($"vigie scrub: the run could not be audited, so its report is not shown: {e.Message}");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    clean = report.IsClean,
                    report.ObjectsChecked,
                    report.QuarantinedChecked,
                    report.BytesVerified,
                    report.Healthy,
                    report.Missing,
                    report.Corrupted,
                    report.Foreign,
                    report.Orphans,
                    report.IndexTampered,
                    report.InFlight,
                    report.OrphansScheduled,
                    report.OrphansFiled,
                    report.QuarantineRecordsRestored,
                    report.PendingDeletion,
                    findings = report.Findings.Select(f => new { kind = f.Kind, location = f.Location, @object = f.ObjectId?.ToString(), problem = f.Problem, reason = f.Reason,
                        references = f.References.Select(r => r.ToString()) }),
                    report.FindingsTruncated,
                    duration_seconds = report.Duration.TotalSeconds,
                });
            }
            else
            {
                foreach (var finding in report.Findings)
                {
                    Console.WriteLine(finding);
                }

                Console.WriteLine(report.Summary);
            }

            return report.ExitCode;
        });
        return command;
    }

    public static Command Stats()
    {
        var data = ServeCommand.DataOption();
        var config = ConfigOption();
        var json = JsonOption();
        var command = new Command("stats", "Counts: patients, studies, series and instances stored, quarantined objects, audit entries.") { data, config, json };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "stats", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var stats = await services.GetRequiredService<IArchiveIndex>().GetStatsAsync(ct);
            var audit = await services.GetRequiredService<IAuditLog>().GetTreeSizeAsync(ct);
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    stats.Patients,
                    stats.Studies,
                    stats.Series,
                    stats.Instances,
                    instance_versions = stats.InstanceVersions,
                    stats.Objects,
                    object_bytes = stats.ObjectBytes,
                    stats.Quarantined,
                    audit_entries = audit,
                });
                return ExitCodes.Ok;
            }

            var table = new Table().AddColumn("what").AddColumn(new TableColumn("count").RightAligned());
            foreach (var (name, value) in new (string, long)[]
                     {
                         ("patients", stats.Patients), ("studies", stats.Studies), ("series", stats.Series), ("instances", stats.Instances),
                         ("instance versions", stats.InstanceVersions), ("objects", stats.Objects), ("object bytes", stats.ObjectBytes),
                         ("quarantined objects", stats.Quarantined), ("audit entries", audit),
                     })
            {
                table.AddRow(name, value.ToString("N0", CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(table);
            return ExitCodes.Ok;
        });
        return command;
    }

    public static Command Keys()
    {
        var data = ServeCommand.DataOption();
        var config = ConfigOption();
        var json = JsonOption();
        var rotate = new Command("rotate", "Make a new key-encryption key and re-wrap every object's data key under it (the data itself is not re-encrypted). Safe to re-run after an interruption.")
        {
            data, config, json,
        };
        rotate.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "keys rotate", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var rotation = services.GetRequiredService<KeyRotationService>();
            var keyFile = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Vigie.Archive.ArchiveOptions>>().Value.ResolvedKeyFile;
            // Whatever interrupts the passes (a closed SSH session), the key file has changed already: before 2026-12-06 an
            // interrupted rotation said only "cancelled", and the operator kept a backup that no longer opened. Once the
            // passes end, the lines below say where it stands.
            KeyRotationReport report;
            var keysBefore = KeyFileStamp(keyFile);
            try
            {
                using (ct.Register(() => Console.Error.WriteLine(
                           $"vigie keys rotate: interrupted after the key file changed: run vigie keys rotate again to finish, then back up {keyFile}.")))
                {
                    report = await MaintenanceHost.WithStatusAsync("Re-wrapping data keys", parse.GetValue(json), () => rotation.RotateAsync(ct));
                    for (var round = 0; !report.Completed && report.Failures.Count == 0 && round < 3; round++)
                    {
                        // Each pass counts what it re-wrapped; the next one finds those current. The operator and the trail get
                        // the whole rotation (before 2026-12-06 the last pass: "28 re-wrapped, 2972 already current").
                        var next = await rotation.RotateAsync(ct);
                        report = next with
                        {
                            Rewrapped = report.Rewrapped + next.Rewrapped,
                            AlreadyCurrent = Math.Max(0, next.AlreadyCurrent - report.Rewrapped),
                        };
                    }
                }

                await AuditKeyRotationAsync(services, report, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
            {
                // A full or read-only disk fails a pass: whether the key file changed already decides what the operator's
                // backup is worth (before 2026-12-07 only the raw error was printed, though a new key was in force).
                var changed = KeyFileStamp(keyFile) != keysBefore;
                await Console.Error.WriteLineAsync(changed
                    ? $"vigie keys rotate: failed after the key file changed ({Vigie.Core.ExceptionCauses.Describe(e)}): fix the cause, run vigie keys rotate again to finish, then back up {keyFile}; copies of it made before cannot open what was re-wrapped."
                    : $"vigie keys rotate: failed before the key file changed ({Vigie.Core.ExceptionCauses.Describe(e)}): nothing was rotated.");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(report);
            }
            else
            {
                Console.WriteLine($"active key {report.ActiveKeyId}: {report.Rewrapped} re-wrapped, {report.AlreadyCurrent} already current, {report.Remaining} remaining"
                    + (report.Completed ? "; rotation complete" : "; run again to finish") + (report.Failures.Count > 0 ? $"; {report.Failures.Count} failures" : ""));
                foreach (var failure in report.Failures)
                {
                    Console.WriteLine("  " + failure);
                }
            }

            if (report.Completed)
            {
                // The key file no longer holds the retired keys: every earlier copy of it is useless for the data as it
                // is now, and the data backups taken before need the key file of their time (before 2026-12-06 not a word).
                await Console.Error.WriteLineAsync($"vigie keys rotate: back up {keyFile} now, apart from the data folder. Copies of it made before this "
                    + "rotation cannot open the archive any more; keep them only with the data backups made before it, which need them.");
            }
            else
            {
                await Console.Error.WriteLineAsync($"vigie keys rotate: not finished, and the key file {keyFile} has changed: run vigie keys rotate again, then back it up.");
            }

            return report.Failures.Count > 0 ? ExitCodes.Findings : ExitCodes.Ok;
        });
        return new Command("keys", "Key management.") { rotate };
    }

    /// <summary>The key file's contents hash, or null when it cannot be read.</summary>
    private static string? KeyFileStamp(string path)
    {
        try
        {
            return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static Command Access()
    {
        var hash = new Command("hash-password", "Read a passcode on standard input and print the hash to put in Access:DicomUsers.");
        hash.SetAction(async (_, ct) =>
        {
            var password = (await Console.In.ReadLineAsync(ct))?.TrimEnd('\r', '\n');
            if (string.IsNullOrEmpty(password))
            {
                await Console.Error.WriteLineAsync("vigie access hash-password: no passcode on standard input");
                return ExitCodes.Error;
            }

            Console.WriteLine(PasswordHashing.Hash(password));
            return ExitCodes.Ok;
        });
        return new Command("access", "Access control helpers.") { hash };
    }

    private static async Task AuditKeyRotationAsync(IServiceProvider services, KeyRotationReport report, CancellationToken ct)
    {
        var audit = services.GetRequiredService<IAuditLog>();
        await audit.AppendAsync(new Audit.Model.AuditRecord
        {
            Time = DateTimeOffset.UtcNow,
            EventId = Audit.Model.AuditEventIds.SecurityAlert,
            EventTypes = [Audit.Model.AuditEventTypes.SecurityConfiguration],
            Action = Audit.Model.AuditAction.Execute,
            Outcome = report.Failures.Count == 0 ? Audit.Model.AuditOutcome.Success : Audit.Model.AuditOutcome.MinorFailure,
            Participants = [Audit.Model.AuditParticipant.LocalOperator(Environment.UserName)],
            Details = new Audit.Model.AuditDetails
            {
                OutcomeDescription = $"key rotation to {report.ActiveKeyId}: {report.Rewrapped} re-wrapped, {report.Remaining} remaining, completed={report.Completed}",
            },
        }, ct);
    }
}
