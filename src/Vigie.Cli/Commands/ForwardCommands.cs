using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;
using Vigie.Gateway.Forwarding;

namespace Vigie.Cli.Commands;

/// <summary>`vigie forward status|retry|dismiss`: the queue of objects on their way to the PACS.</summary>
internal static class ForwardCommands
{
    public static Command Create()
    {
        return new Command("forward", "The queue of objects forwarded to the PACS: what waits, what was given up on, and retrying it.")
        {
            Status(), Change(retry: true), Change(retry: false),
        };
    }

    private static Command Status()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var limit = MaintenanceCommands.LimitOption("Objects given up on to list (the count covers all of them)", 50, ForwardQueue.MaxListed, min: 0);
        var forward = new Option<string[]>("--forward") { Description = "A forwarding target AE@host:port given to vigie serve as a flag, to name it here (repeatable)." };
        var command = new Command("status", "What waits to be forwarded and since when, and which objects were given up on and why. Exit 1 if any was given up on or the queue is stalled.")
        {
            data, config, json, limit, forward,
        };
        command.SetAction(async (parse, ct) =>
        {
            var overrides = new Dictionary<string, string?>();
            try
            {
                VigieConfiguration.AddDestinations(overrides, parse.GetValue(forward) ?? [], []);
            }
            catch (FormatException e)
            {
                await Console.Error.WriteLineAsync($"vigie forward status: {e.Message}");
                return ExitCodes.Error;
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "forward status", ct, overrides);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var queue = services.GetRequiredService<ForwardQueue>();
            var status = await queue.StatusAsync(parse.GetValue(limit), ct);
            if (parse.GetValue(json))
            {
                // The same keys whatever the queue holds, null where they do not apply: before 2026-12-07 the per-wait ones
                // were left out of an empty queue's answer, and a monitoring script reading them broke on a healthy node.
                await MaintenanceHost.WriteJsonAsync(new
                {
                    healthy = status.IsHealthy,
                    destinations = queue.Destinations.Select(d => new { ae_title = d.AETitle, d.Host, d.Port }),
                    status.Waiting,
                    oldest_wait_seconds = status.OldestWait?.TotalSeconds,
                    status.Stalled,
                    most_attempts = status.MostAttempts,
                    next_attempt_in_seconds = status.NextAttemptIn?.TotalSeconds,
                    last_error = status.LastError,
                    given_up = status.GivenUp,
                    by_destination = status.ByDestination.Select(d => new
                    {
                        d.Destination, d.Waiting, oldest_wait_seconds = d.OldestWait?.TotalSeconds, d.Stalled, last_error = d.LastError, given_up = d.GivenUp,
                    }),
                    failures = status.Failures.Select(f => new
                    {
                        f.Id, f.Destination, object_id = f.ObjectId, stored_at = f.StoredAt, given_up_at = f.GivenUpAt, f.Attempts, f.Reason,
                    }),
                });
                return status.IsHealthy ? ExitCodes.Ok : ExitCodes.Findings;
            }

            // Targets given to `vigie serve --forward` are not in the configuration: they come back through the same flag.
            var destinations = queue.Destinations;
            Console.WriteLine(destinations.Count > 0
                ? "forwarding to " + string.Join(", ", destinations.Select(d => $"{d.AETitle} ({d.Host}:{d.Port})"))
                : "no forwarding target in the configuration (one given to vigie serve --forward is named with the same flag here)");

            Console.WriteLine(status.Waiting == 0
                ? "nothing waits"
                : $"{status.Waiting.ToString("N0", CultureInfo.InvariantCulture)} objects wait, the oldest for {Age(status.OldestWait!.Value)}"
                  + (status.Stalled ? " (stalled)" : string.Empty)
                  + (status.NextAttemptIn is { } next ? $"; next attempt in {Age(next)}" : string.Empty)
                  + (status.LastError is { } error ? $"; last error: {error}" : string.Empty));
            Console.WriteLine($"{status.GivenUp.ToString("N0", CultureInfo.InvariantCulture)} objects given up on");
            if (status.ByDestination.Count > 1 || status.ByDestination.Any(d => d.Destination is null))
            {
                var byDestination = new Table().AddColumn("destination").AddColumn("waiting").AddColumn("oldest").AddColumn("given up").AddColumn("last error");
                foreach (var d in status.ByDestination)
                {
                    byDestination.AddRow(Markup.Escape(d.Destination ?? "(queued before destinations were recorded)"), d.Waiting.ToString("N0", CultureInfo.InvariantCulture),
                        d.OldestWait is { } wait ? Age(wait) + (d.Stalled ? " (stalled)" : string.Empty) : "-", d.GivenUp.ToString("N0", CultureInfo.InvariantCulture),
                        Markup.Escape(d.LastError ?? string.Empty));
                }

                AnsiConsole.Write(byDestination);
            }
            if (status.Failures.Count > 0)
            {
                var table = new Table().AddColumn("id").AddColumn("destination").AddColumn("given up").AddColumn("attempts").AddColumn("reason");
                foreach (var failure in status.Failures)
                {
                    table.AddRow(failure.Id.ToString(CultureInfo.InvariantCulture), Markup.Escape(failure.Destination),
                        failure.GivenUpAt.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture), failure.Attempts.ToString(CultureInfo.InvariantCulture),
                        Markup.Escape(failure.Reason ?? string.Empty));
                }

                AnsiConsole.Write(table);
                if (status.GivenUp > status.Failures.Count)
                {
                    Console.WriteLine($"({status.GivenUp - status.Failures.Count} more; --limit lists more)");
                }

                Console.WriteLine("`vigie forward retry --all` puts them back in the queue once the cause is fixed; `vigie forward dismiss` drops them.");
            }

            return status.IsHealthy ? ExitCodes.Ok : ExitCodes.Findings;
        });
        return command;
    }

    private static Command Change(bool retry)
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var ids = new Option<long[]>("--id") { Description = "Queue id of an object given up on, as `vigie forward status` lists them (repeatable).", AllowMultipleArgumentsPerToken = true };
        var all = new Option<bool>("--all") { Description = "Every object given up on (of --destination, when given)." };
        var destination = new Option<string?>("--destination") { Description = "Only objects for this destination AE title." };
        var name = retry ? "retry" : "dismiss";
        var command = new Command(name, retry
            ? "Put objects given up on back in the forwarding queue, once the cause (the PACS's configuration, its storage) is fixed. A running node sends them within seconds. Audited."
            : "Drop objects given up on from the queue for good (they stay in the archive, and the decision in the audit trail).")
        {
            data, config, json, ids, all, destination,
        };
        command.SetAction(async (parse, ct) =>
        {
            var chosen = parse.GetValue(ids) ?? [];
            if (chosen.Length == 0 == !parse.GetValue(all))
            {
                await Console.Error.WriteLineAsync($"vigie forward {name}: give either --id (one or more) or --all");
                return ExitCodes.Error;
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), $"forward {name}", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var queue = services.GetRequiredService<ForwardQueue>();
            var target = parse.GetValue(destination);
            var operatorName = Environment.UserName;
            var changed = retry
                ? await queue.RetryAsync(chosen, target, operatorName, ct)
                : await queue.DismissAsync(chosen, target, operatorName, ct);
            if (target is not null && changed.Count == 0)
            {
                // A misspelt or miscased title matched nothing, and "0 objects put back" read as done (before 2026-12-06).
                var known = (await queue.StatusAsync(ForwardQueue.MaxListed, ct)).Failures.Select(f => f.Destination).Distinct(StringComparer.Ordinal)
                    .Order(StringComparer.Ordinal).ToList();
                if (!known.Contains(target, StringComparer.Ordinal))
                {
                    await Console.Error.WriteLineAsync($"vigie forward {name}: no object given up on is for {target}"
                        + (known.Count > 0 ? $"; those given up on are for {string.Join(", ", known)}" : "; none is given up on"));
                    return ExitCodes.Error;
                }
            }

            var missing = chosen.Except(changed.Select(c => c.Id)).ToList();
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new { changed = changed.Select(c => c.Id), not_given_up = missing });
            }
            else
            {
                Console.WriteLine(retry ? $"{changed.Count} objects put back in the queue" : $"{changed.Count} objects dismissed");
                if (missing.Count > 0)
                {
                    Console.WriteLine($"not given up on (or not for {target ?? "any destination"}): {string.Join(", ", missing)}");
                }
            }

            return missing.Count > 0 ? ExitCodes.Error : ExitCodes.Ok;
        });
        return command;
    }

    private static string Age(TimeSpan age) => age.TotalHours >= 1
        ? $"{Math.Floor(age.TotalHours)} h {age.Minutes} min"
        : age.TotalMinutes >= 1 ? $"{Math.Floor(age.TotalMinutes)} min" : $"{Math.Max(0, Math.Floor(age.TotalSeconds))} s";
}
