using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Spectre.Console;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Audit;
using Vigie.Audit.Export;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Verification;

namespace Vigie.Cli.Commands;

/// <summary>`vigie audit verify|show|prove|consistency|head|sinks|resend|reindex|accept-restore`.</summary>
internal static class AuditCommands
{
    /// <summary>The most events `audit show` lists in one run (they are held in memory to be printed).</summary>
    private const int MaxShown = 1_000_000;
    private const int MaxTableRows = 10_000;

    /// <summary>The codes a class of AuditCode fields (AuditEventIds, AuditEventTypes) holds.</summary>
    /// <summary>
    /// The event that carries an event type (PS3.15 A.5.3, audit.md's table): until 2026-12-07 the hint named 110113 and
    /// 110114 for every type, so "Application Start" sent the operator to events that never hold a start.
    /// </summary>
    internal static AuditCode EventOfType(AuditCode type) => type.Code switch
    {
        "110120" or "110121" => AuditEventIds.ApplicationActivity,
        "110122" or "110123" => AuditEventIds.UserAuthentication,
        "110124" or "110125" => AuditEventIds.NetworkEntry,
        _ => AuditEventIds.SecurityAlert,
    };

    private static string TypeHint(AuditCode type)
    {
        var carrier = EventOfType(type);
        return $"'{type.DisplayName}' ({type.Code}) is an event type, not an event: filter on its event, --event {carrier.Code} ({carrier.DisplayName}), "
            + "and read the type column.";
    }

    private static IEnumerable<AuditCode> CodesOf(Type codes) => codes.GetFields().Select(f => f.GetValue(null)).OfType<AuditCode>();

    /// <summary>The code of <paramref name="codes"/> whose name is <paramref name="name"/>, spaces and case aside.</summary>
    private static AuditCode? CodeNamed(Type codes, string name) => CodesOf(codes)
        .FirstOrDefault(c => string.Equals(c.DisplayName.Replace(" ", "", StringComparison.Ordinal), name.Replace(" ", "", StringComparison.Ordinal),
            StringComparison.OrdinalIgnoreCase));

    public static Command Create() => new("audit",
        "The tamper-evident audit trail: verify it, list events, prove inclusion and consistency, print the latest signed tree head, "
        + "and follow its export to the collectors.")
    {
        Verify(), Show(), Prove(), Consistency(), Head(), Sinks(), Resend(), Reindex(), AcceptRestore(),
    };

    /// <summary>The issuers the archive files this Patient ID under (none when the ID has wildcards, or is not there).</summary>
    private static async Task<IReadOnlyList<string>> IssuersOfAsync(IServiceProvider services, string id, CancellationToken ct)
    {
        if (id.Length == 0 || id.AsSpan().IndexOfAny('*', '?', '\\') >= 0)
        {
            return [];
        }

        var matches = await services.GetRequiredService<IArchiveIndex>().QueryAsync(
            new ArchiveQuery(QueryLevel.Patient, [new QueryKey(Vigie.Dicom.DicomTags.PatientID.Value, id), new QueryKey(Vigie.Dicom.DicomTags.IssuerOfPatientID.Value, "")]) { Limit = 100 }, ct);
        return [.. matches.Matches.Select(m => IndexNormalizer.Identifier(m.Attributes.First(Vigie.Dicom.DicomTags.IssuerOfPatientID.Value) ?? ""))
            .Where(i => i.Length > 0).Distinct(StringComparer.Ordinal)];
    }

    /// <summary>
    /// Reading or verifying the trail is itself audited (PS3.15 A.5.3.2 Audit Log Used): the account that ran the
    /// command, what it did, and the trail as the object. False, with the reason on stderr, if it could not be recorded.
    /// </summary>
    private static async Task<bool> RecordAuditLogUsedAsync(IServiceProvider services, AuditAction action, AuditOutcome outcome, string description,
        string? patientRef, CancellationToken ct)
    {
        try
        {
            await services.GetRequiredService<IAuditLog>().AppendAsync(new AuditRecord
            {
                Time = DateTimeOffset.UtcNow,
                EventId = AuditEventIds.AuditLogUsed,
                Action = action,
                Outcome = outcome,
                Participants = [AuditParticipant.LocalOperator(Environment.UserName)],
                PatientRef = patientRef,
                Details = new AuditDetails
                {
                    OutcomeDescription = description,
                    Objects = [AuditObject.AuditLog()],
                },
            }, ct);
            return true;
        }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException or InvalidOperationException or InvalidDataException or AuditIntegrityException)
        {
            // InvalidDataException since 2026-12-08: a state row too damaged to parse stopped verify (exit 2) before its report.
            await Console.Error.WriteLineAsync($"vigie audit: this use of the audit trail could not be recorded in it: {e.Message}");
            return false;
        }
    }

    /// <summary>
    /// Entries left unsigned well past the signing rhythm: a warning, not a finding (exit unchanged). A node stopped
    /// without its last head leaves such a tail too; it is what a forged signing lease leaves (2026-12-08).
    /// </summary>
    private static async Task<string?> FindUnsignedOverdueAsync(IServiceProvider services, CancellationToken ct)
    {
        try
        {
            return await services.GetRequiredService<AuditUnsignedTail>().FindOverdueAsync(ct);
        }
        catch (Exception e) when (e is System.Data.Common.DbException or IOException or InvalidOperationException)
        {
            await Console.Error.WriteLineAsync($"vigie audit verify: the unsigned entries could not be counted: {e.Message}");
            return null;
        }
    }

    private static Command Sinks()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var limit = MaintenanceCommands.LimitOption("Most set-aside items to list per sink", 20, 10_000);
        var command = new Command("sinks",
            "Where each export sink stands: entries waiting, failed attempts and the last error, and the entries and tree heads its collector "
            + "refused for good (set aside, listed here). Exit 1 if a sink is failing or has items set aside.")
        {
            data, config, json, limit,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit sinks", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            // The database's cursors too: the node's config file may not be the one read here (/etc/vigie/vigie.json
            // without --config), and a check that saw no sink said all was well while the export failed.
            var sinks = await services.GetRequiredService<AuditExportStatus>().GetAsync(ct, recorded: true);
            var read = VigieConfiguration.SettingsFile(new HostSettings(ServeCommand.GivenData(parse, data), parse.GetValue(config)?.FullName,
                new Dictionary<string, string?>()));
            var setAside = services.GetRequiredService<AuditSetAside>();
            var listed = new List<(AuditSinkStatus Sink, IReadOnlyList<AuditSetAsideItem> Items)>();
            foreach (var sink in sinks)
            {
                listed.Add((sink, sink.SetAside > 0 ? await setAside.ListAsync(sink.Name, parse.GetValue(limit), ct) : []));
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(listed.Select(l => new
                {
                    name = l.Sink.Name,
                    kind = l.Sink.Kind?.ToString(),
                    configured = l.Sink.Kind is not null,
                    waiting = l.Sink.Waiting,
                    failed_attempts = l.Sink.FailedAttempts,
                    last_activity = l.Sink.LastActivity,
                    last_error = l.Sink.LastError,
                    set_aside = l.Sink.SetAside,
                    set_aside_items = l.Items.Select(i => new { kind = i.Kind, sequence = i.Sequence, refused_at = i.RefusedAt, reason = i.Reason }),
                }));
            }
            else
            {
                Console.WriteLine(read is null
                    ? "configuration: no file read (none given with --config, no vigie.json in the current folder)"
                    : $"configuration: {read}");
                if (listed.Count == 0)
                {
                    Console.WriteLine("no audit export sink is configured or recorded in the database");
                }

                foreach (var (sink, items) in listed)
                {
                    var failing = sink.FailedAttempts > 0 ? $", {sink.FailedAttempts} failed attempts, last error: {sink.LastError}" : "";
                    var kind = sink.Kind?.ToString() ?? "recorded in the database, not in this configuration";
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{sink.Name} ({kind}): {sink.Waiting} entries waiting{failing}, {sink.SetAside} set aside"));
                    foreach (var item in items)
                    {
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"  {item.Kind} {item.Sequence}, refused {item.RefusedAt.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z: {item.Reason}"));
                    }
                }
            }

            return sinks.Any(s => s.FailedAttempts > 0 || s.SetAside > 0) ? ExitCodes.Findings : ExitCodes.Ok;
        });
        return command;
    }

    private static Command Resend()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var sinkName = new Option<string>("--sink") { Description = "The configured sink whose set-aside items to send again.", Required = true };
        var command = new Command("resend",
            "Send again, one at a time, the entries and tree heads a sink's collector refused for good, once it has been fixed. "
            + "What it takes is forgotten; what it refuses again stays set aside. Exit 1 if some are refused again, 2 if the collector cannot be reached.")
        {
            data, config, json, sinkName,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit resend", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            AuditResendReport report;
            try
            {
                report = await MaintenanceHost.WithStatusAsync("Resending set-aside audit items", parse.GetValue(json),
                    () => services.GetRequiredService<AuditSetAside>().ResendAsync(parse.GetValue(sinkName)!, ct));
            }
            catch (Exception e) when (e is ArgumentException or IOException or HttpRequestException or InvalidOperationException
                || (e is TaskCanceledException && !ct.IsCancellationRequested))
            {
                await Console.Error.WriteLineAsync($"vigie audit resend: {e.Message}");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    sink = report.Sink,
                    resent = report.Resent,
                    refused_again = report.RefusedAgain.Select(i => new { kind = i.Kind, sequence = i.Sequence, reason = i.Reason }),
                    remaining = report.Remaining,
                });
            }
            else
            {
                foreach (var item in report.RefusedAgain)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"refused again: {item.Kind} {item.Sequence}: {item.Reason}"));
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.Sink}: {report.Resent} resent, {report.RefusedAgain.Count} refused again, {report.Remaining} still set aside"));
            }

            return report.Remaining > 0 ? ExitCodes.Findings : ExitCodes.Ok;
        });
        return command;
    }

    private static Command Verify()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var witness = new Option<FileInfo[]>("--witness")
        {
            Description = "Signed tree heads kept outside the database (repeatable): `vigie audit head --json` or /api/audit/tree-head saved to a file, "
                + "the VIGIE-STH lines of the syslog collector, or the FHIR export (the NDJSON file, or a search Bundle of the repository). "
                + "They reveal a log rolled back as a whole, heads included.",
        };
        var witnessSink = new Option<string[]>("--witness-sink")
        {
            Description = "The signed tree heads a configured FHIR audit sink holds (repeatable, by name): its NDJSON file, or its repository's "
                + "search, with the sink's own address and token.",
        };
        var publicKeys = new Option<string[]>("--public-key")
        {
            Description = "Trust tree heads signed by this Ed25519 public key (base64, as `vigie audit head` and /api/audit/public-key give it; repeatable). "
                + "For a copy checked without the private signing key, which verification never needs nor creates.",
        };
        var command = new Command("verify", "Recompute every entry hash, the chain, every stored node and every signed tree head. Exit 1 naming each entry that was modified, removed, inserted or reordered, or any bad signature.")
        {
            data, config, json, witness, witnessSink, publicKeys,
        };
        command.SetAction(async (parse, ct) =>
        {
            var extraKeys = new List<AuditPublicKey>();
            foreach (var key in parse.GetValue(publicKeys) ?? [])
            {
                try
                {
                    extraKeys.Add(AuditPublicKey.FromRaw(Convert.FromBase64String(key)));
                }
                catch (Exception e) when (e is FormatException or ArgumentException)
                {
                    await Console.Error.WriteLineAsync($"vigie audit verify: --public-key {key}: not a base64 Ed25519 public key (32 bytes)");
                    return ExitCodes.Error;
                }
            }

            var witnessed = new List<SignedTreeHead>();
            foreach (var file in parse.GetValue(witness) ?? [])
            {
                try
                {
                    if (file.Exists && file.Length > TreeHeadJson.MaxTextLength)
                    {
                        throw new FormatException($"larger than {TreeHeadJson.MaxTextLength} bytes");
                    }

                    var heads = TreeHeadJson.Parse(await File.ReadAllTextAsync(file.FullName, ct));
                    if (heads.Count == 0)
                    {
                        throw new FormatException("no signed tree head in it");
                    }

                    witnessed.AddRange(heads);
                }
                catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException)
                {
                    await Console.Error.WriteLineAsync($"vigie audit verify: {file.FullName}: {e.Message}");
                    return ExitCodes.Error;
                }
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit verify", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var sinks = services.GetRequiredService<IOptions<AuditOptions>>().Value.Sinks;
            foreach (var name in parse.GetValue(witnessSink) ?? [])
            {
                try
                {
                    var sink = sinks.FirstOrDefault(s => string.Equals(s.Name, name, StringComparison.Ordinal))
                        ?? throw new FormatException($"no audit sink is named {name} (configured: {string.Join(", ", sinks.Select(s => s.Name))})");
                    var heads = await SinkWitness.ReadAsync(sink, ct);
                    if (heads.Count == 0)
                    {
                        throw new FormatException("it holds no signed tree head yet");
                    }

                    witnessed.AddRange(heads);
                }
                catch (Exception e) when (e is FormatException or IOException or UnauthorizedAccessException or HttpRequestException
                    || (e is TaskCanceledException && !ct.IsCancellationRequested))
                {
                    await Console.Error.WriteLineAsync($"vigie audit verify: --witness-sink {name}: {e.Message}");
                    return ExitCodes.Error;
                }
            }

            var log = services.GetRequiredService<IAuditLog>();
            var options = new AuditVerifyOptions { WitnessedHeads = witnessed, AdditionalTrustedKeys = extraKeys };
            var report = await MaintenanceHost.WithStatusAsync("Verifying the audit trail", parse.GetValue(json), () => log.VerifyAsync(options, ct).AsTask());
            var overdue = await FindUnsignedOverdueAsync(services, ct);
            // Best effort: a trail too damaged to take an entry must still be reported as such, with exit 1.
            await RecordAuditLogUsedAsync(services, AuditAction.Execute, report.IsValid ? AuditOutcome.Success : AuditOutcome.SeriousFailure,
                string.Create(CultureInfo.InvariantCulture,
                    $"audit verify: {report.EntriesChecked} entries, {report.TreeHeadsChecked} signed tree heads and {witnessed.Count} kept outside checked: {(report.IsValid ? "intact" : $"{report.ProblemCount} problems")}"),
                null, ct);
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    valid = report.IsValid,
                    entries_checked = report.EntriesChecked,
                    tree_size = report.TreeSize,
                    tree_heads_checked = report.TreeHeadsChecked,
                    witnessed_heads = witnessed.Count,
                    recorded_head = report.RecordedHead?.TreeSize,
                    latest_verified_head = report.LatestVerifiedHead?.TreeSize,
                    unsigned_entries = report.UnsignedEntries,
                    unsigned_overdue = overdue,
                    appended_meanwhile = report.AppendedMeanwhile,
                    problem_count = report.ProblemCount,
                    problems = report.Problems.Select(p => new { kind = p.Kind, sequence = p.Sequence, tree_size = p.TreeSize, reason = p.Reason }),
                    seconds = report.Elapsed.TotalSeconds,
                });
            }
            else
            {
                if (extraKeys.Count == 0 && report.Problems.Any(p => p.Kind == AuditProblemKind.TreeHeadUntrustedKey))
                {
                    await Console.Error.WriteLineAsync("vigie audit verify: tree heads are signed by a key that is neither this node's signing key nor "
                        + "trusted: the heads may have been re-signed in the database. Do not trust a key read from the database: compare the key ids "
                        + "with a head known from outside it (an earlier `vigie audit head --json`, the heads your audit collector holds), and pass "
                        + "that source's publicKey with --public-key");
                }

                // Five of each kind, then a count: 52 identical "untrusted key" lines buried the hint above (all are in --json).
                foreach (var kind in report.Problems.GroupBy(p => p.Kind))
                {
                    foreach (var problem in kind.Take(5))
                    {
                        Console.WriteLine(problem);
                    }

                    if (kind.Count() > 5)
                    {
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"... and {kind.Count() - 5} more {kind.Key} (--json lists them all)"));
                    }
                }

                if (overdue is not null)
                {
                    Console.WriteLine($"warning: {overdue}. Check that a node runs and signs (its log, /health audit-signing, the audit-tree-head lease)");
                }

                var status = report.IsValid ? "intact" : $"{report.ProblemCount} problems";
                // Past a problem, entries after the latest good head may well be under a head: one that failed.
                var unsigned = report.IsValid
                    ? report.UnsignedEntries <= 0 ? "" : $" ({report.UnsignedEntries} newest entries not yet under a signed tree head)"
                    : (report.LatestVerifiedHead?.TreeSize ?? 0) >= report.TreeSize ? ""
                    : $" (the latest tree head that verifies covers {report.LatestVerifiedHead?.TreeSize ?? 0} of the {report.TreeSize} entries)";
                var witnesses = (witnessed.Count > 0 ? $" (with {witnessed.Count} kept outside)" : "")
                    + (report.RecordedHead is { } recorded ? string.Create(CultureInfo.InvariantCulture, $" (and this node's record of its last head, size {recorded.TreeSize})") : "");
                // Only of a trail that verified: on a tampered one the difference in size is part of what is wrong (entries removed).
                var meanwhile = report.AppendedMeanwhile > 0 && report.IsValid ? $"; {report.AppendedMeanwhile} entries appended while it ran are left for the next run" : "";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.EntriesChecked} entries, {report.TreeHeadsChecked} signed tree heads{witnesses} checked in {report.Elapsed.TotalSeconds:F1} s: {status}{unsigned}{meanwhile}"));
            }

            return report.IsValid ? ExitCodes.Ok : ExitCodes.Findings;
        });
        return command;
    }

    private static Command Reindex()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var command = new Command("reindex",
            "Rebuild the patient and time indexes from the entries, which the tree authenticates. Verify names the entries "
            + "they miss when a node of a release before 2026-12-06 wrote to a trail a newer one had upgraded. Safe while nodes run.")
        {
            data, config, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit reindex", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var runs = await MaintenanceHost.WithStatusAsync("Rebuilding the audit trail's indexes", parse.GetValue(json),
                () => services.GetRequiredService<IAuditLog>().RebuildIndexesAsync(ct).AsTask());
            await RecordAuditLogUsedAsync(services, AuditAction.Update, AuditOutcome.Success,
                string.Create(CultureInfo.InvariantCulture, $"audit reindex: the patient and time indexes rebuilt from the entries ({runs} runs)"), null, ct);
            Console.WriteLine(parse.GetValue(json)
                ? string.Create(CultureInfo.InvariantCulture, $"{{\"runs\":{runs}}}")
                : string.Create(CultureInfo.InvariantCulture, $"The patient and time indexes were rebuilt from the entries: {runs} runs. Run vigie audit verify."));
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command AcceptRestore()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var reason = new Option<string>("--reason") { Description = "Why the database was restored (a ticket, the incident): recorded in the trail.", Required = true };
        var command = new Command("accept-restore",
            "After a deliberate restore of the database from a backup (every node stopped): the heads this node signed after the backup are gone, and "
            + "it refuses to sign. Records the restore in the trail (a Security Alert with the reason, the last head recorded beside the signing key and "
            + "the log's size and root), signs a head over it and makes it the record, so the node signs again. The log must verify by itself. "
            + "Exit 0 when accepted or nothing to accept, 1 if the log does not verify by itself, 2 if it cannot be done (a node running, no key).")
        {
            data, config, json, reason,
        };
        command.SetAction(async (parse, ct) =>
        {
            var why = parse.GetValue(reason)?.Trim();
            if (string.IsNullOrEmpty(why))
            {
                await Console.Error.WriteLineAsync("vigie audit accept-restore: --reason needs a text (why the database was restored).");
                return ExitCodes.Error;
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit accept-restore", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            AcceptedRestore accepted;
            try
            {
                accepted = await services.GetRequiredService<AuditRestoreAcceptance>().AcceptAsync(why, Environment.UserName, ct);
            }
            catch (AuditRestoreRefusedException e)
            {
                await Console.Error.WriteLineAsync($"vigie audit accept-restore: {e.Message}");
                foreach (var problem in e.Report.Problems.Take(5))
                {
                    await Console.Error.WriteLineAsync($"  {problem}");
                }

                return ExitCodes.Findings;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException or InvalidDataException or AuditIntegrityException)
            {
                await Console.Error.WriteLineAsync($"vigie audit accept-restore: {e.Message}");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new
                {
                    accepted = accepted.Accepted,
                    recorded_size = accepted.RecordedSize,
                    recorded_root = accepted.RecordedRoot,
                    recorded_problem = accepted.RecordedProblem,
                    log_size = accepted.LogSize,
                    log_root = accepted.LogRoot,
                    sequence = accepted.Sequence,
                    tree_head = accepted.NewHead is { } head ? TreeHeadJson.ToNode(head) : null,
                    kept_aside = accepted.KeptAside,
                });
            }
            else if (!accepted.Accepted)
            {
                Console.WriteLine(accepted.RecordedSize is { } size
                    ? string.Create(CultureInfo.InvariantCulture, $"The audit log ({accepted.LogSize} entries) holds the last head this node signed (size {size}): nothing to accept.")
                    : "No head signed by this node is recorded beside its signing key: nothing to accept.");
            }
            else
            {
                var before = accepted.RecordedSize is { } size
                    ? string.Create(CultureInfo.InvariantCulture, $"the last head this node signed (size {size}, root {accepted.RecordedRoot})")
                    : "an unreadable record of the last head signed";
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"Accepted the restored audit log ({accepted.LogSize} entries, root {accepted.LogRoot}) in place of {before}: recorded as entry {accepted.Sequence}, "
                    + $"tree head {accepted.NewHead!.TreeSize} signed and recorded. The replaced record is kept in {accepted.KeptAside ?? "(none)"}."));
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Head()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var command = new Command("head",
            "Print the latest signed tree head, to keep outside the database (a printed report, a ticket, another site): "
            + "`vigie audit verify --witness FILE` then reveals a log rolled back behind it. Exit 1 if no head is signed yet.")
        {
            data, config, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit head", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            if (await services.GetRequiredService<IAuditLog>().GetLatestTreeHeadAsync(ct) is not { } head)
            {
                await Console.Error.WriteLineAsync("vigie audit head: no tree head is signed yet");
                return ExitCodes.Findings;
            }

            if (parse.GetValue(json))
            {
                Console.WriteLine(TreeHeadJson.Write(head));
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"tree size {head.TreeSize}, signed {head.Timestamp.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z by key {head.KeyId}"));
                Console.WriteLine($"root {Convert.ToHexStringLower(head.RootHash)}");
                Console.WriteLine(TreeHeadJson.Write(head));
                Console.WriteLine("Keep the line above outside this server; `vigie audit verify --witness FILE` checks the log against it.");
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Show()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var patient = new Option<string?>("--patient") { Description = "Only events about this patient: Patient ID, or ID@Issuer." };
        var user = new Option<string?>("--user") { Description = "Only events whose requesting user or AE title is this, or whose DICOM user (user identity) is this." };
        var from = new Option<DateTimeOffset?>("--from") { Description = "Only events at or after this time (ISO 8601)." };
        var to = new Option<DateTimeOffset?>("--to") { Description = "Only events before this time." };
        var eventId = new Option<string?>("--event") { Description = "Only this event ID (DCM code, e.g. 110112 for queries) or its name." };
        var limit = MaintenanceCommands.LimitOption("Most events to show, newest first", 50, MaxShown);
        var details = new Option<bool>("--details") { Description = "Show the sealed details (study, objects, query): for authorised reviewers." };
        var command = new Command("show", "List audit events, newest first, with filters.") { data, config, json, patient, user, from, to, eventId, limit, details };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit show", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            // An empty filter listed every patient's events, which is not what was asked for.
            if (parse.GetValue(patient) is { } given && IndexNormalizer.Identifier(given.LastIndexOf('@') is > 0 and var separator ? given[..separator] : given).Length == 0)
            {
                await Console.Error.WriteLineAsync("vigie audit show: --patient needs a Patient ID (or ID@Issuer).");
                return ExitCodes.Error;
            }

            if (parse.GetValue(user) is { } givenUser && givenUser.Trim().Length == 0)
            {
                await Console.Error.WriteLineAsync("vigie audit show: --user needs a user name.");
                return ExitCodes.Error;
            }

            if (parse.GetValue(from) is { } start && parse.GetValue(to) is { } end && end <= start)
            {
                await Console.Error.WriteLineAsync($"vigie audit show: --to ({end:u}) must be after --from ({start:u}).");
                return ExitCodes.Error;
            }

            IReadOnlyList<string> patientRefs = [];
            if (parse.GetValue(patient) is { Length: > 0 } patientText)
            {
                var at = patientText.LastIndexOf('@');
                var id = IndexNormalizer.Identifier(at > 0 ? patientText[..at] : patientText);
                var issuer = IndexNormalizer.Identifier(at > 0 ? patientText[(at + 1)..] : string.Empty);
                var keys = services.GetRequiredService<IArchiveKeyService>();
                string Ref(string issuedBy) => Convert.ToHexStringLower(keys.HashIdentifier(IdentifierKinds.Patient, issuedBy + "\0" + id));
                // A bare Patient ID is the patient under each issuer the archive knows it by, as a C-FIND on it matches
                // them all: before 2026-12-06 only entries filed without an issuer were listed, and the officer saw none.
                patientRefs = at > 0 ? [Ref(issuer)] : [Ref(issuer), .. (await IssuersOfAsync(services, id, ct)).Select(Ref)];
            }

            var eventCode = parse.GetValue(eventId);
            if (eventCode is not null && eventCode.All(char.IsAsciiDigit) && !AuditEventIds.All.Any(c => c.Code == eventCode))
            {
                // Before 2026-12-06 an unknown code listed nothing, exit 0: as if no such event had happened.
                var type = CodesOf(typeof(AuditEventTypes)).FirstOrDefault(c => c.Code == eventCode);
                await Console.Error.WriteLineAsync(type is not null
                    ? $"vigie audit show: {TypeHint(type)}"
                    : $"vigie audit show: no event has the code {eventCode}. Events: {string.Join(", ", AuditEventIds.All.Select(c => $"{c.Code} {c.DisplayName}"))}.");
                return ExitCodes.Error;
            }

            if (eventCode is not null && !eventCode.All(char.IsAsciiDigit))
            {
                var named = CodeNamed(typeof(AuditEventIds), eventCode);
                if (named is null)
                {
                    // An event type (the table's second column) is not an event: say which one, rather than an unrelated example.
                    var type = CodeNamed(typeof(AuditEventTypes), eventCode);
                    await Console.Error.WriteLineAsync(type is not null
                        ? $"vigie audit show: {TypeHint(type)}"
                        : $"vigie audit show: no event is called '{eventCode}'. Events: {string.Join(", ", AuditEventIds.All.Select(c => $"{c.Code} {c.DisplayName}"))}.");
                    return ExitCodes.Error;
                }

                eventCode = named.Code;
            }

            var wanted = parse.GetValue(limit);
            if (!parse.GetValue(json) && wanted > MaxTableRows)
            {
                // The table is laid out whole before it is printed, about 8 KB an event: a million would take gigabytes.
                await Console.Error.WriteLineAsync($"vigie audit show: a table shows at most {MaxTableRows:N0} events; use --json for more (it is written as it is read).");
                return ExitCodes.Error;
            }

            // The log serves pages of a bounded size; as many are read as the limit asks for.
            var log = services.GetRequiredService<IAuditLog>();
            var query = new AuditQuery
            {
                PatientRefs = patientRefs,
                UserId = parse.GetValue(user),
                From = parse.GetValue(from),
                To = parse.GetValue(to),
                EventId = eventCode,
                Limit = wanted,
                Unseal = parse.GetValue(details),
            };
            var entries = new List<AuditEntry>();
            long? more = null;
            while (true)
            {
                var next = await log.QueryAsync(query with { Limit = wanted - entries.Count }, ct);
                entries.AddRange(next.Entries);
                more = next.NextCursor;
                if (more is null || entries.Count >= wanted || next.Entries.Count == 0)
                {
                    break;
                }

                query = query with { Cursor = more };
            }

            var page = new AuditPage(entries, more);
            // Filters by kind, not value: the user and patient asked about stay out of the description (the patient is
            // named by its keyed hash, so that patient's own history shows the trail was searched for them).
            var filters = new List<string>();
            if (patientRefs.Count > 0)
            {
                filters.Add("patient");
            }

            if (parse.GetValue(user) is not null)
            {
                filters.Add("user");
            }

            if (parse.GetValue(from) is { } fromTime)
            {
                filters.Add("from " + fromTime.ToString("u", CultureInfo.InvariantCulture));
            }

            if (parse.GetValue(to) is { } toTime)
            {
                filters.Add("to " + toTime.ToString("u", CultureInfo.InvariantCulture));
            }

            if (eventCode is not null)
            {
                filters.Add("event " + eventCode);
            }

            if (page.NextCursor is not null)
            {
                await Console.Error.WriteLineAsync($"vigie audit show: the newest {entries.Count} events are listed, and more match: raise --limit or narrow the filters.");
            }

            var used = string.Create(CultureInfo.InvariantCulture,
                $"audit show: {page.Entries.Count} events listed{(filters.Count > 0 ? " by " + string.Join(", ", filters) : "")}{(parse.GetValue(details) ? ", sealed details opened" : "")}");
            // In each history searched: the patient under every issuer sees that the trail was searched for them.
            foreach (var searched in patientRefs.Count > 0 ? patientRefs.Select(r => (string?)r) : [null])
            {
                if (!await RecordAuditLogUsedAsync(services, AuditAction.Read, AuditOutcome.Success, used, searched, ct))
                {
                    // Nothing is shown that cannot be audited.
                    return ExitCodes.Error;
                }
            }

            if (parse.GetValue(json))
            {
                var queries = new Dictionary<byte[], IReadOnlyDictionary<string, string>?>(ReferenceEqualityComparer.Instance);
                foreach (var recorded in page.Entries.SelectMany(e => e.Details?.Objects ?? []).Select(o => o.Query).OfType<byte[]>())
                {
                    queries[recorded] = await QueryKeysAsync(recorded, ct);
                }

                await MaintenanceHost.WriteJsonAsync(page.Entries.Select(e => new
                {
                    sequence = e.Sequence,
                    time = e.Time,
                    event_id = e.EventId.Code,
                    @event = e.EventId.DisplayName,
                    event_types = e.EventTypes.Select(t => t.DisplayName),
                    action = e.Action,
                    outcome = e.Outcome,
                    user = e.UserId,
                    participants = e.Participants.Select(p => new
                    {
                        user = p.UserId, alternative_user = p.AlternativeUserId, address = p.NetworkAccessPointId, requestor = p.IsRequestor,
                        roles = p.Roles.Select(r => r.DisplayName),
                        media = p.MediaType?.DisplayName,
                    }),
                    purpose = e.PurposeOfUse?.DisplayName,
                    patient_ref = e.PatientRef,
                    source = e.SourceId,
                    details = e.Details is null ? null : new
                    {
                        outcome = e.Details.OutcomeDescription,
                        objects = e.Details.Objects.Select(o => new
                        {
                            type = o.IdType.DisplayName, id = o.Id, name = o.Name, query = o.Query is { } q ? queries.GetValueOrDefault(q) : null,
                            // As the exporters send them (ParticipantObjectDetail): a refused store's SOP Instance UID, since 2026-12-07.
                            detail = o.Details.Count == 0 ? null : o.Details.Select(d => new { type = d.Key, value = d.Value }),
                        }),
                    },
                    leaf_hash = Convert.ToHexStringLower(e.LeafHash),
                }));
                return ExitCodes.Ok;
            }

            var table = new Table().AddColumns("#", "time", "event", "outcome", "who", "from", "what");
            foreach (var entry in page.Entries)
            {
                var requestor = entry.Participants.FirstOrDefault(p => p.IsRequestor) ?? entry.Participants.FirstOrDefault();
                table.AddRow(
                    entry.Sequence.ToString(CultureInfo.InvariantCulture),
                    entry.Time.ToString("u", CultureInfo.InvariantCulture),
                    Markup.Escape(entry.EventId.DisplayName + (entry.EventTypes.Count > 0 ? $" / {entry.EventTypes[0].DisplayName}" : "")),
                    entry.Outcome.ToString(),
                    // The DICOM user authenticated behind the AE title, next to it (not shown before 2026-12-07).
                    Markup.Escape((requestor?.UserId ?? "") + (requestor?.AlternativeUserId is { Length: > 0 } alternative ? $" ({alternative})" : "")),
                    Markup.Escape(requestor?.NetworkAccessPointId ?? ""),
                    Markup.Escape(entry.Details?.OutcomeDescription ?? (entry.Sealed is null ? "" : "(sealed)")));
            }

            AnsiConsole.Write(table);
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Prove()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var sequence = new Argument<long>("sequence") { Description = "The entry to prove." };
        sequence.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && long.TryParse(result.Tokens[^1].Value, CultureInfo.InvariantCulture, out var value) && value < 0)
            {
                result.AddError("The entry number cannot be negative.");
            }
        });
        var size = new Option<long?>("--tree-size") { Description = "Prove against this signed tree head (default: the latest)." };
        size.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<long?>() is < 1)
            {
                result.AddError("The tree size must be at least 1.");
            }
        });
        var command = new Command("prove", "Print an inclusion proof (RFC 9162) of an entry in a signed tree head, as JSON, and check it.") { data, config, sequence, size };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit prove", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            try
            {
                var proof = await services.GetRequiredService<IAuditLog>().GetInclusionProofAsync(parse.GetValue(sequence), parse.GetValue(size), ct);
                var valid = proof.Verify();
                await MaintenanceHost.WriteJsonAsync(new
                {
                    sequence = proof.Sequence,
                    tree_size = proof.TreeSize,
                    leaf_hash = Convert.ToHexStringLower(proof.LeafHash),
                    audit_path = proof.AuditPath.Select(Convert.ToHexStringLower),
                    root_hash = Convert.ToHexStringLower(proof.TreeHead.RootHash),
                    tree_head_signature = Convert.ToBase64String(proof.TreeHead.Signature),
                    key_id = proof.TreeHead.KeyId,
                    // The signed head whole (timestamp and public key included), as `audit head --json` prints it: with
                    // it the proof and the signature are checked outside Vigie.
                    tree_head = TreeHeadJson.ToNode(proof.TreeHead),
                    valid,
                });
                return valid ? ExitCodes.Ok : ExitCodes.Findings;
            }
            catch (AuditIntegrityException e)
            {
                // The trail failed its own check: a finding, not a usage error.
                await Console.Error.WriteLineAsync($"vigie audit prove: the audit trail failed its own check: {e.Message}");
                return ExitCodes.Findings;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                await Console.Error.WriteLineAsync($"vigie audit prove: {Reason(e)}");
                return ExitCodes.Error;
            }
        });
        return command;
    }

    private static Command Consistency()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var first = new Argument<long>("first-size") { Description = "The older signed tree size." };
        var second = new Option<long?>("--second-size") { Description = "The newer signed tree size (default: the latest)." };
        var command = new Command("consistency", "Print a consistency proof (RFC 9162) between two signed tree heads, as JSON, and check it.") { data, config, first, second };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "audit consistency", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            try
            {
                var proof = await services.GetRequiredService<IAuditLog>().GetConsistencyProofAsync(parse.GetValue(first), parse.GetValue(second), ct);
                var valid = proof.Verify();
                await MaintenanceHost.WriteJsonAsync(new
                {
                    first_size = proof.First.TreeSize,
                    first_root = Convert.ToHexStringLower(proof.First.RootHash),
                    second_size = proof.Second.TreeSize,
                    second_root = Convert.ToHexStringLower(proof.Second.RootHash),
                    proof = proof.Proof.Select(Convert.ToHexStringLower),
                    first_tree_head = TreeHeadJson.ToNode(proof.First),
                    second_tree_head = TreeHeadJson.ToNode(proof.Second),
                    valid,
                });
                return valid ? ExitCodes.Ok : ExitCodes.Findings;
            }
            catch (AuditIntegrityException e)
            {
                // The trail failed its own check: a finding, not a usage error.
                await Console.Error.WriteLineAsync($"vigie audit consistency: the audit trail failed its own check: {e.Message}");
                return ExitCodes.Findings;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                await Console.Error.WriteLineAsync($"vigie audit consistency: {Reason(e)}");
                return ExitCodes.Error;
            }
        });
        return command;
    }

    /// <summary>An exception's message without .NET's " (Parameter 'x')" suffix.</summary>
    private static string Reason(Exception e) =>
        e is ArgumentException { ParamName: { } parameter } ? e.Message.Replace($" (Parameter '{parameter}')", "", StringComparison.Ordinal) : e.Message;

    /// <summary>
    /// The matching keys of a recorded C-FIND identifier (keyword, value), so a reviewer sees what was searched for. Q/R
    /// runs in implicit or explicit VR little endian only; explicit VR shows as two letters after the first tag.
    /// </summary>
    private static async ValueTask<IReadOnlyDictionary<string, string>?> QueryKeysAsync(byte[] query, CancellationToken ct)
    {
        var syntax = query.Length >= 6 && char.IsAsciiLetterUpper((char)query[4]) && char.IsAsciiLetterUpper((char)query[5])
            ? Vigie.Dicom.TransferSyntax.ExplicitVRLittleEndian
            : Vigie.Dicom.TransferSyntax.ImplicitVRLittleEndian;
        try
        {
            var identifier = await Vigie.Dicom.IO.DicomReader.ReadDatasetAsync(query, syntax, new Vigie.Dicom.DicomReadOptions { MaxDepth = 8, MaxElements = 10_000 }, ct);
            var keys = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var element in identifier)
            {
                keys[Vigie.Dicom.DicomDictionary.KeywordOf(element.Tag) ?? element.Tag.ToString()] =
                    element is Vigie.Dicom.DicomValueElement ? string.Join('\\', identifier.GetStrings(element.Tag)) : "(sequence)";
            }

            return keys;
        }
        catch (Vigie.Dicom.DicomParseException)
        {
            return null;
        }
    }
}
