using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;
using Vigie.Archive.Index;
using Vigie.Gateway.Ingest;
using Vigie.Inspection;

namespace Vigie.Cli.Commands;

/// <summary>`vigie rescan`: every archived object inspected again with today's rules (a new indicator of compromise).</summary>
internal static class RescanCommand
{
    public static Command Create()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var rules = new Option<DirectoryInfo?>("--rules")
        {
            Description = "A folder of known-bad signatures to use instead of the configured one (ClamAV .hdb/.hsb/.ndb/.ldb, YARA, hash lists): a new indicator of compromise.",
        };
        var since = new Option<DateTimeOffset?>("--since") { Description = "Only objects written at or after this time (ISO 8601): a campaign's known start." };
        var reveal = new Option<bool>("--reveal-identifiers") { Description = "Name flagged objects by their decrypted SOP and Study Instance UIDs, to find the study, and show the names inside them (entries, attachments) that findings refer to." };
        var command = new Command("rescan",
            "Inspect every archived object again with today's rules. Flagged objects stay in the archive and are audited under their patient. Exit 0 nothing found, 1 flagged, 2 unreadable objects or error.")
        {
            data, config, json, rules, since, reveal,
        };
        command.SetAction(async (parse, ct) =>
        {
            var overrides = new Dictionary<string, string?>();
            if (parse.GetValue(rules) is { } folder)
            {
                if (!folder.Exists)
                {
                    await Console.Error.WriteLineAsync($"vigie rescan: the rules folder {folder.FullName} does not exist");
                    return ExitCodes.Error;
                }

                overrides["Inspection:Signatures:RulesDirectory"] = folder.FullName;
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "rescan", ct, overrides);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            // A rules folder that cannot be loaded is an error of the run.
            if (await MaintenanceHost.ResolveAsync<ArchiveRescan>(services, "rescan", "load the inspection engines") is not { } rescan)
            {
                return ExitCodes.Error;
            }

            var operatorName = Environment.UserName;
            var total = (await services.GetRequiredService<IArchiveIndex>().GetStatsAsync(ct)).Objects;
            var request = new RescanRequest { RevealIdentifiers = parse.GetValue(reveal), Since = parse.GetValue(since), IndexedObjects = total };
            // Names from inside an object (an entry named after the patient) are patient content (printed before 2026-12-07).
            Finding Shown(Finding f) => request.RevealIdentifiers
                ? f
                : f with { Message = FindingDisclosure.Message(f.Rule, f.Message, f.InnerPath), InnerPath = FindingDisclosure.InnerPath(f.InnerPath) };
            var report = await MaintenanceHost.WithProgressAsync("Inspecting the archive", total, parse.GetValue(json),
                progress => rescan.RunAsync(request, operatorName, progress, ct));
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    clean = report.ExitCode == ExitCodes.Ok,
                    report.Objects,
                    report.Bytes,
                    flagged = report.Hits.Select(h => new
                    {
                        @object = h.ObjectId.ToString(),
                        verdict = h.Verdict,
                        sop_instance_uid = h.SopInstanceUid,
                        study_instance_uid = h.StudyInstanceUid,
                        findings = h.Findings.Select(f => new { f.Rule, f.Severity, Message = Shown(f).Message, inner_path = Shown(f).InnerPath, f.Offset }),
                    }),
                    unreadable = report.Unreadable.Select(u => new { @object = u.ObjectId.ToString(), problem = u.Problem }),
                    not_found = report.NotFound,
                    released = report.Released,
                    held_by_other_rules = report.HeldByOtherRules,
                    duration_seconds = report.Duration.TotalSeconds,
                });
                return report.ExitCode;
            }

            foreach (var hit in report.Hits)
            {
                Console.WriteLine($"{hit.ObjectId}: {hit.Verdict}" + (hit.SopInstanceUid is null ? string.Empty : $" (instance {hit.SopInstanceUid}, study {hit.StudyInstanceUid})"));
                foreach (var finding in hit.Findings.Select(Shown))
                {
                    Console.WriteLine($"  {finding.Severity} {finding.Rule}: {finding.Message}" + (finding.InnerPath.Length > 0 ? $" [{finding.InnerPath}]" : string.Empty));
                }
            }

            foreach (var (id, problem) in report.Unreadable)
            {
                Console.WriteLine($"{id}: unreadable: {problem} (`vigie scrub` says more)");
            }

            Console.WriteLine($"{report.Objects.ToString("N0", CultureInfo.InvariantCulture)} objects ({report.Bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes) inspected in {report.Duration.TotalSeconds:F1} s: "
                              + $"{report.Hits.Count} flagged, {report.Unreadable.Count} unreadable");
            if (report.Hits.Count > 0)
            {
                Console.WriteLine("Flagged objects stay in the archive but are withheld: never forwarded, and a retrieve fails for them.");
            }

            if (report.Released > 0)
            {
                Console.WriteLine($"{report.Released} objects withheld by an earlier rescan with these rules are no longer flagged, and are released.");
            }

            if (report.HeldByOtherRules > 0)
            {
                Console.WriteLine($"{report.HeldByOtherRules} objects these rules no longer flag stay withheld: a rescan with another rules folder flagged them too.");
            }

            if (report.NotFound > 0)
            {
                Console.WriteLine($"{report.NotFound} indexed objects were not found on disk, so not inspected: `vigie scrub` names them.");
            }
            if (report.Hits.Count > 0 && !request.RevealIdentifiers)
            {
                Console.WriteLine("--reveal-identifiers names the instances and studies, and the names inside them shown as [name]; each flagged object is in the audit trail under its patient.");
            }

            return report.ExitCode;
        });
        return command;
    }
}
