using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;
using Vigie.Archive.Storage;
using Vigie.Gateway.Ingest;

namespace Vigie.Cli.Commands;

/// <summary>`vigie withheld list|release`: archived objects a rescan flagged, which neither leave by forwarding nor by retrieve.</summary>
internal static class WithheldCommands
{
    private const int MaxListed = 100_000;

    public static Command Create() => new("withheld", "Archived objects a rescan flagged: never forwarded nor retrieved. List them, and release one judged harmless (audited).")
    {
        List(), Release(),
    };

    private static Command List()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var limit = MaintenanceCommands.LimitOption("How many flags to list, oldest first", 1000, MaxListed);
        var command = new Command("list", "Each flag on a withheld object, oldest first: the object, when, the rules folder of the rescan that raised it, and its rules. Exit 0 whatever is listed.")
        {
            data, config, json, limit,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "withheld list", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var withheld = services.GetRequiredService<WithheldObjects>();
            var flags = await withheld.ListAsync(parse.GetValue(limit), ct);
            var total = await withheld.CountAsync(ct);
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(flags.Select(f => new { @object = f.ObjectId.ToString(), flagged_at = f.FlaggedAt, rules_folder = Folder(f), f.Rules }));
                if (total > flags.Count)
                {
                    await Console.Error.WriteLineAsync($"vigie withheld list: {flags.Count} of {total} flags listed, the oldest (--limit)");
                }

                return ExitCodes.Ok;
            }

            if (flags.Count == 0)
            {
                Console.WriteLine("no object is withheld");
                return ExitCodes.Ok;
            }

            var table = new Table().AddColumn("object").AddColumn("flagged").AddColumn("rules folder").AddColumn("rules");
            foreach (var flag in flags)
            {
                table.AddRow(Markup.Escape(flag.ObjectId.ToString()), flag.FlaggedAt.ToString("u", CultureInfo.InvariantCulture), Markup.Escape(Folder(flag)), Markup.Escape(flag.Rules));
            }

            AnsiConsole.Write(table);
            if (total > flags.Count)
            {
                // A partial list must not pass for the whole (it did, until 2026-12-07).
                Console.WriteLine($"{flags.Count} of {total} flags listed, the oldest: raise --limit (at most {MaxListed:N0}) or release these first");
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    private static string Folder(WithheldFlag flag) => flag.Source.Length == 0 ? "(not recorded: flagged before 2026-12-07)" : flag.Source;

    private static Command Release()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var ids = new Argument<string[]>("object") { Description = "The objects to release (as `vigie withheld list` and `vigie rescan` name them).", Arity = ArgumentArity.OneOrMore };
        var reason = new Option<string>("--reason") { Description = "Why it is harmless (a ticket, a rule withdrawn as a false positive): kept in the audit trail.", Required = true };
        var command = new Command("release", "Lift every flag of the objects named, so that retrieves serve them again; each release is audited with its reason. Exit 2 if one is not withheld.")
        {
            data, config, json, ids, reason,
        };
        command.SetAction(async (parse, ct) =>
        {
            var justification = parse.GetValue(reason)!.Trim();
            if (justification.Length == 0)
            {
                await Console.Error.WriteLineAsync("vigie withheld release: --reason must say why the object is harmless");
                return ExitCodes.Error;
            }

            var objects = new List<ObjectId>();
            foreach (var text in parse.GetValue(ids)!)
            {
                if (!ObjectId.TryParse(text, out var id))
                {
                    await Console.Error.WriteLineAsync($"vigie withheld release: '{text}' is not an object id (64 lowercase hex digits)");
                    return ExitCodes.Error;
                }

                objects.Add(id);
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "withheld release", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            if (await MaintenanceHost.ResolveAsync<ArchiveRescan>(services, "withheld release", "load the inspection engines") is not { } rescan)
            {
                return ExitCodes.Error;
            }

            var released = new List<string>();
            var notWithheld = new List<string>();
            var removed = new List<string>();
            var withheld = services.GetRequiredService<WithheldObjects>();
            // An object named twice is released once (the second naming read as "not withheld", exit 2).
            foreach (var id in objects.Distinct())
            {
                if (!await withheld.HeldAsync(id, ct))
                {
                    // Retention removed it: nothing to serve again (this said "released; retrieves serve it again").
                    (await withheld.ReleaseAsync(id, ct) == 0 ? notWithheld : removed).Add(id.ToString());
                    continue;
                }

                // Audited under the object's patient, where the flag is.
                var lifted = await rescan.ReleaseAsync(id, justification, Environment.UserName, ct);
                (lifted == 0 ? notWithheld : released).Add(id.ToString());
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new { released, not_withheld = notWithheld, no_longer_in_archive = removed });
            }
            else
            {
                foreach (var id in released)
                {
                    Console.WriteLine($"{id}: released; retrieves serve it again (a copy the forwarder gave up meanwhile goes with vigie forward retry)");
                }

                foreach (var id in removed)
                {
                    Console.WriteLine($"{id}: no longer in the archive (removed by retention); its flag is lifted, there is nothing to serve again");
                }

                foreach (var id in notWithheld)
                {
                    await Console.Error.WriteLineAsync($"vigie withheld release: {id} is not withheld");
                }
            }

            return notWithheld.Count > 0 ? ExitCodes.Error : ExitCodes.Ok;
        });
        return command;
    }
}
