using System.CommandLine;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Core.Data;

namespace Vigie.Cli.Commands;

/// <summary>
/// `vigie backup`: a copy of a running node's data folder that restores. A file copy of index.db while the node writes
/// tears its pages (before 2026-12-07 the docs said nothing of how to take one).
/// </summary>
internal static class BackupCommand
{
    /// <summary>What the copy leaves out: the index (copied apart, consistently), spool files being received, the reserve.</summary>
    private static readonly string[] Skipped = ["spool", "full-disk-reserve"];

    public static Command Create()
    {
        var data = ServeCommand.DataOption();
        var config = MaintenanceCommands.ConfigOption();
        var to = new Option<DirectoryInfo>("--to") { Description = "A new or empty folder for the copy, outside the data folder.", Required = true };
        var command = new Command("backup",
            "Copy the data folder, the node running or not: the SQLite index as one consistent snapshot (VACUUM INTO), then the landing slots, objects, "
            + "quarantine and the rest. The key folder is not copied: back it up apart.")
        {
            data, config, to,
        };
        command.SetAction(async (parse, ct) =>
        {
            var target = Path.GetFullPath(parse.GetValue(to)!.FullName);
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "backup", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var folder = Path.GetFullPath(services.GetRequiredService<IOptions<ArchiveOptions>>().Value.DataFolder);
            if (services.GetRequiredService<IVigieDatabase>() is not SqliteDatabase sqlite)
            {
                await Console.Error.WriteLineAsync("vigie backup: the index is on PostgreSQL: back it up with pg_dump or a base backup, then copy the data folder "
                    + "(docs/deploy.md, Backing up)");
                return ExitCodes.Error;
            }

            if (Within(target, folder) || Within(folder, target))
            {
                await Console.Error.WriteLineAsync($"vigie backup: {target} and the data folder {folder} overlap: give a folder outside it");
                return ExitCodes.Error;
            }

            if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            {
                await Console.Error.WriteLineAsync($"vigie backup: {target} is not empty: give a new or empty folder");
                return ExitCodes.Error;
            }

            Directory.CreateDirectory(target);
            // The index first: every object it names was on disk before its row committed, and objects are only added.
            var index = Path.Combine(target, "index.db");
            await using (var connection = await sqlite.OpenConnectionAsync(ct))
            await using (var vacuum = connection.CreateCommand(null, "VACUUM INTO $to").With("$to", index))
            {
                await vacuum.ExecuteNonQueryAsync(ct);
            }

            var copy = new Copy();
            // Landing slots before objects/: one moved between the two is then in the copy once or twice, never missed.
            await copy.TreeAsync(Path.Combine(folder, "spool", "landing"), Path.Combine(target, "spool", "landing"), ct);
            foreach (var entry in new DirectoryInfo(folder).EnumerateFileSystemInfos().OrderBy(e => e.Name == "objects" ? 0 : 1).ThenBy(e => e.Name, StringComparer.Ordinal))
            {
                if (Skipped.Contains(entry.Name, StringComparer.Ordinal) || Path.GetFullPath(entry.FullName) is var full
                    && (full == sqlite.Path || full == sqlite.Path + "-wal" || full == sqlite.Path + "-shm"))
                {
                    continue;
                }

                await (entry is DirectoryInfo ? copy.TreeAsync(entry.FullName, Path.Combine(target, entry.Name), ct)
                    : copy.FileAsync(entry.FullName, Path.Combine(target, entry.Name), ct));
            }

            if (await QuickCheckAsync(index, ct) is { } damage)
            {
                await Console.Error.WriteLineAsync($"vigie backup: the copied index {index} does not pass its check ({damage}): take the backup again");
                return ExitCodes.Error;
            }

            await Console.Out.WriteLineAsync($"Copied the index {sqlite.Path} (one snapshot, checked) and {copy.Files:N0} files ({copy.Bytes:N0} bytes) of {folder} to {target}.");
            await Console.Error.WriteLineAsync($"vigie backup: the key folder ({folder}.keys or Archive:KeyFile) is not in the copy: back it up apart, "
                + "and keep each copy with the data backups of its period (docs/deploy.md, Backing up)");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static bool Within(string path, string folder) =>
        path == folder || path.StartsWith(folder.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    private static async Task<string?> QuickCheckAsync(string index, CancellationToken cancellationToken)
    {
        await using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = index, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        await connection.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA quick_check(3)";
        var result = Convert.ToString(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        return result == "ok" ? null : result;
    }

    private sealed class Copy
    {
        public long Files { get; private set; }

        public long Bytes { get; private set; }

        public async Task TreeAsync(string source, string destination, CancellationToken cancellationToken)
        {
            if (!Directory.Exists(source))
            {
                return;
            }

            Directory.CreateDirectory(destination);
            foreach (var entry in new DirectoryInfo(source).EnumerateFileSystemInfos())
            {
                await (entry is DirectoryInfo ? TreeAsync(entry.FullName, Path.Combine(destination, entry.Name), cancellationToken)
                    : FileAsync(entry.FullName, Path.Combine(destination, entry.Name), cancellationToken));
            }
        }

        public async Task FileAsync(string source, string destination, CancellationToken cancellationToken)
        {
            if (File.Exists(destination))
            {
                return; // the landing slots, copied first
            }

            try
            {
                await using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16, FileOptions.Asynchronous);
                await using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
                await input.CopyToAsync(output, cancellationToken);
                await output.FlushAsync(cancellationToken);
                output.Flush(flushToDisk: true);
                Files++;
                Bytes += output.Length;
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                // Gone while copying: a landing slot moved to objects/ (copied after), or a quarantine file retention removed.
            }
        }
    }
}
