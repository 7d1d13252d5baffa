using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Spectre.Console;
using Vigie.Dicom.Network;
using Vigie.Gateway;
using Vigie.Gateway.Forwarding;

namespace Vigie.Cli.Commands;

/// <summary>`vigie echo`: can Vigie reach the nodes it is configured to call, exactly as it would call them?</summary>
internal static class EchoCommand
{
    public static Command Create()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var titles = new Argument<string[]>("ae") { Description = "AE titles of the destinations to call (default: all of them).", Arity = ArgumentArity.ZeroOrMore };
        var forward = new Option<string[]>("--forward") { Description = "Also a forwarding target AE@host:port, as for vigie serve (repeatable)." };
        var destination = new Option<string[]>("--destination") { Description = "Also a C-MOVE destination or modality AE@host:port, as for vigie serve (repeatable)." };
        var command = new Command("echo",
            "C-ECHO the DICOM nodes Vigie calls (Gateway:Destinations: the PACS, C-MOVE destinations, modalities awaiting commitment reports) with the address, "
            + "timeouts, TLS files and calling AE title it uses for them. Exit 0 if all answer, 1 if any cannot be reached, 2 on an error.")
        {
            titles, data, config, json, forward, destination,
        };
        command.SetAction(async (parse, ct) =>
        {
            var overrides = new Dictionary<string, string?>();
            try
            {
                VigieConfiguration.AddDestinations(overrides, parse.GetValue(forward) ?? [], parse.GetValue(destination) ?? []);
            }
            catch (FormatException e)
            {
                await Console.Error.WriteLineAsync($"vigie echo: {e.Message}");
                return ExitCodes.Error;
            }

            var configuration = VigieConfiguration.Build(new HostSettings(ServeCommand.GivenData(parse, data), parse.GetValue(config)?.FullName, overrides));
            var gateway = configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();
            var server = configuration.GetSection(DicomServerOptions.Section).Get<DicomServerOptions>() ?? new DicomServerOptions();
            var problems = new GatewayOptionsValidation().Validate(null, gateway);
            if (problems.Failed)
            {
                await Console.Error.WriteLineAsync("vigie echo: " + string.Join("; ", problems.Failures));
                return ExitCodes.Error;
            }

            var named = parse.GetValue(titles) ?? [];
            var unknown = named.Where(t => gateway.FindDestination(t) is null).ToList();
            if (unknown.Count > 0 || gateway.Destinations.Count == 0)
            {
                await Console.Error.WriteLineAsync(unknown.Count > 0
                    ? $"vigie echo: not under Gateway:Destinations: {string.Join(", ", unknown)}"
                    : "vigie echo: no destinations configured (Gateway:Destinations, --forward, --destination)");
                return ExitCodes.Error;
            }

            var chosen = named.Length == 0 ? gateway.Destinations : [.. named.Select(t => gateway.FindDestination(t)!)];
            var outcomes = await MaintenanceHost.WithStatusAsync($"calling {chosen.Count} destinations", parse.GetValue(json), () => Task.WhenAll(
                chosen.Select(d => DestinationEcho.EchoAsync(d, DestinationEcho.CallingAE(d, gateway, server.AETitle), ct))));
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(outcomes.Select(o => new
                {
                    ae_title = o.AETitle, o.Host, o.Port, o.Tls, calling_ae_title = o.CallingAE, o.Answered, o.Detail,
                    milliseconds = (long)o.Elapsed.TotalMilliseconds,
                }));
            }
            else
            {
                var table = new Table().AddColumn("destination").AddColumn("address").AddColumn("TLS").AddColumn("calling AE").AddColumn("result").AddColumn("time");
                foreach (var o in outcomes)
                {
                    table.AddRow(Markup.Escape(o.AETitle), Markup.Escape($"{o.Host}:{o.Port}"), o.Tls ? "yes" : "no", Markup.Escape(o.CallingAE),
                        o.Answered ? $"[green]{Markup.Escape(o.Detail)}[/]" : $"[red]{Markup.Escape(o.Detail)}[/]",
                        o.Elapsed.TotalMilliseconds.ToString("N0", CultureInfo.InvariantCulture) + " ms");
                }

                AnsiConsole.Write(table);
            }

            return outcomes.All(o => o.Answered) ? ExitCodes.Ok : ExitCodes.Findings;
        });
        return command;
    }
}
