using System.CommandLine;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Spectre.Console;
using Vigie.Gateway.Ingest;
using Vigie.Inspection;

namespace Vigie.Cli.Commands;

/// <summary>`vigie quarantine list|export`: what was refused and why, and a copy of one object for analysis.</summary>
internal static class QuarantineCommands
{
    public static Command Create() => new("quarantine", "Objects refused by inspection: list them, and export one (decrypted, audited) for analysis.")
    {
        List(), Export(),
    };

    private static Command List()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var after = new Option<long>("--after") { Description = "List only records after this row (the `row` of an earlier listing), to page through.", DefaultValueFactory = _ => 0 };
        var limit = MaintenanceCommands.LimitOption("How many to list, oldest first", 100, QuarantineManager.MaxListed);
        var reveal = new Option<bool>("--reveal-identifiers")
        {
            Description = "Show the names inside the objects (entries, attachments, link targets) that the --json reason quotes, replaced by [name] otherwise.",
        };
        var command = new Command("list", "Quarantined objects, oldest first: when, from which AE, the verdict, the rules that fired and the reason. Exit 0 whatever is listed.")
        {
            data, config, json, after, limit, reveal,
        };
        command.SetAction(async (parse, ct) =>
        {
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "quarantine list", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var items = await services.GetRequiredService<QuarantineManager>().ListAsync(Math.Max(0, parse.GetValue(after)), parse.GetValue(limit), ct);
            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(items.Select(i => new
                {
                    row = i.RowId,
                    id = i.QuarantineId,
                    quarantined_at = i.QuarantinedAt,
                    i.Length,
                    i.Verdict,
                    i.Rules,
                    calling_ae = i.CallingAE,
                    // The reason quotes the first finding, whose names come from the object (printed before 2026-12-07).
                    reason = parse.GetValue(reveal) ? i.Reason : FindingDisclosure.Reason(i.Reason),
                }));
                return ExitCodes.Ok;
            }

            if (items.Count == 0)
            {
                Console.WriteLine("nothing in quarantine" + (parse.GetValue(after) > 0 ? " after that row" : string.Empty));
                return ExitCodes.Ok;
            }

            var table = new Table().AddColumn("row").AddColumn("id").AddColumn("quarantined").AddColumn("from").AddColumn("verdict").AddColumn("rules")
                .AddColumn(new TableColumn("bytes").RightAligned());
            foreach (var item in items)
            {
                table.AddRow(item.RowId.ToString(CultureInfo.InvariantCulture), Markup.Escape(item.QuarantineId),
                    item.QuarantinedAt.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture), Markup.Escape(item.CallingAE ?? "-"), Markup.Escape(item.Verdict),
                    Markup.Escape(string.Join(", ", item.Rules)), item.Length.ToString("N0", CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(table);
            Console.WriteLine("`vigie quarantine export ID --out FILE --reason TEXT` writes one out for analysis (audited).");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Export()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var json = MaintenanceCommands.JsonOption();
        var id = new Argument<string>("id") { Description = "The quarantine id, as `vigie quarantine list` and the audit trail name it." };
        var output = new Option<FileInfo>("--out") { Description = "The file to write (owner-only permissions).", Required = true };
        var reason = new Option<string>("--reason") { Description = "Why it is exported (an incident or ticket number): kept in the audit trail.", Required = true };
        var force = new Option<bool>("--force") { Description = "Replace the file if it exists." };
        var command = new Command("export",
            "Write one quarantined object, decrypted and checked against its content hash: the data set exactly as it arrived, in a DICOM file. It is hostile: open it only in an isolated analysis environment. Audited (who, why, where).")
        {
            data, config, json, id, output, reason, force,
        };
        command.SetAction(async (parse, ct) =>
        {
            var justification = parse.GetValue(reason)!.Trim();
            if (justification.Length == 0)
            {
                await Console.Error.WriteLineAsync("vigie quarantine export: --reason must say why (it goes into the audit trail)");
                return ExitCodes.Error;
            }

            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "quarantine export", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var operatorName = Environment.UserName;
            var target = parse.GetValue(output)!;
            QuarantinedItem item;
            try
            {
                item = await services.GetRequiredService<QuarantineManager>().ExportAsync(parse.GetValue(id)!, target.FullName, parse.GetValue(force), operatorName,
                    justification, ct);
            }
            catch (Exception e) when (e is QuarantineExportException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"vigie quarantine export: {e.Message}");
                return ExitCodes.Error;
            }

            if (parse.GetValue(json))
            {
                await MaintenanceHost.WriteJsonAsync(new { id = item.QuarantineId, file = target.FullName, item.Length, item.Rules });
            }
            else
            {
                Console.WriteLine($"{item.QuarantineId} ({item.Length.ToString("N0", CultureInfo.InvariantCulture)} bytes; {string.Join(", ", item.Rules)}) written to {target.FullName}");
                Console.WriteLine("The file holds the object as it arrived: hostile. Open it only in an isolated analysis environment.");
            }

            return ExitCodes.Ok;
        });
        return command;
    }
}
