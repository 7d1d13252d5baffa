using System.CommandLine;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Audit;
using Vigie.Core.Data;
using Vigie.Core.IO;

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
            var given = Path.GetFullPath(parse.GetValue(to)!.FullName);
            await using var services = await MaintenanceHost.OpenAsync(ServeCommand.GivenData(parse, data), parse.GetValue(config), "backup", ct);
            if (services is null)
            {
                return ExitCodes.Error;
            }

            var archive = services.GetRequiredService<IOptions<ArchiveOptions>>().Value;
            if (services.GetRequiredService<IVigieDatabase>() is not SqliteDatabase sqlite)
            {
                await Console.Error.WriteLineAsync("vigie backup: the index is on PostgreSQL: back it up with pg_dump or a base backup, then copy the data folder "
                    + "(docs/deploy.md, Backing up)");
                return ExitCodes.Error;
            }

            string target, folder;
            try
            {
                // Links resolved on both sides: a data folder reached through a link (/var/lib/vigie/data -> /srv/data) and a
                // target given by its real path copied the copy into itself until the disk was full (before 2026-12-08).
                target = RealPath.Resolve(given);
                folder = RealPath.Resolve(archive.DataFolder);
            }
            catch (IOException e)
            {
                await Console.Error.WriteLineAsync($"vigie backup: {e.Message}: give a folder reached without a loop of symbolic links");
                return ExitCodes.Error;
            }

            if (RealPath.IsWithin(target, folder) || RealPath.IsWithin(folder, target))
            {
                await Console.Error.WriteLineAsync($"vigie backup: {given} and the data folder {folder} overlap (links resolved): give a folder outside it");
                return ExitCodes.Error;
            }

            // Beside the keys, whoever takes the key folder would have the data and the key that opens it.
            foreach (var key in new[] { archive.KeyFile ?? archive.ResolvedKeyFile, services.GetService<IOptions<AuditOptions>>()?.Value.SigningKeyPath })
            {
                if (key is not null && Path.GetDirectoryName(Path.GetFullPath(key)) is { } keys
                    && (RealPath.IsWithin(target, keys) || RealPath.IsWithin(keys, target)))
                {
                    await Console.Error.WriteLineAsync($"vigie backup: {given} and the key folder {keys} overlap: the data and the key that opens it "
                        + "must not be kept together; give a folder outside both");
                    return ExitCodes.Error;
                }
            }

            if (File.Exists(target))
            {
                await Console.Error.WriteLineAsync($"vigie backup: {given} is a file, not a folder: give a new or empty folder");
                return ExitCodes.Error;
            }

            if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            {
                await Console.Error.WriteLineAsync($"vigie backup: {given} is not empty: give a new or empty folder");
                return ExitCodes.Error;
            }

            if (Unwritable(target) is { } unwritable)
            {
                await Console.Error.WriteLineAsync($"vigie backup: {unwritable}: give a folder this account can write");
                return ExitCodes.Error;
            }

            var copy = new Copy(target);
            var created = !Directory.Exists(target);
            var complete = false;
            try
            {
                complete = await CopyAsync(sqlite, folder, target, copy, ct);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or SqliteException or OperationCanceledException)
            {
                await Console.Error.WriteLineAsync($"vigie backup: {Describe(e, target)}: the copy in {given} is incomplete: "
                    + $"{(Discard(target, created) ? "it was removed" : $"delete it (it holds {IncompleteMarker}); it must not be restored")}. "
                    + "Take the backup again");
                return ExitCodes.Error;
            }

            if (!complete)
            {
                await Console.Error.WriteLineAsync($"vigie backup: the copy in {given} is incomplete: "
                    + $"{(Discard(target, created) ? "it was removed" : $"delete it (it holds {IncompleteMarker}); it must not be restored")}. "
                    + "Take the backup again");
                return ExitCodes.Error;
            }

            await Console.Out.WriteLineAsync($"Copied the index {sqlite.Path} (one snapshot, checked) and {copy.Files:N0} files ({copy.Bytes:N0} bytes) of {folder} to {given}.");
            await Console.Error.WriteLineAsync($"vigie backup: the key folder ({folder}.keys or Archive:KeyFile) is not in the copy: back it up apart, "
                + "and keep each copy with the data backups of its period (docs/deploy.md, Backing up)");
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>
    /// Written first into the target and removed last: a copy stopped by a full disk, an error or SIGTERM holds it and no
    /// index.db (the index is renamed into place once the rest is copied and synced). Before 2026-12-08 such a copy held an
    /// index that passed its check and named every instance, beside missing and truncated objects.
    /// </summary>
    internal const string IncompleteMarker = ArchiveInitializer.IncompleteBackupMarker;

    private const string PartialIndex = "index.db.partial";

    /// <summary>The copy; false when the copied index fails its check (said on stderr).</summary>
    private static async Task<bool> CopyAsync(SqliteDatabase sqlite, string folder, string target, Copy copy, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(target);
        await File.WriteAllTextAsync(Path.Combine(target, IncompleteMarker),
            "This backup is incomplete (vigie backup did not finish): discard it, it must not be restored.\n", cancellationToken);
        DurableFile.SyncDirectory(target);

        // The index first: every object it names was on disk before its row committed, and objects are only added.
        var partial = Path.Combine(target, PartialIndex);
        await using (var connection = await sqlite.OpenConnectionAsync(cancellationToken))
        await using (var vacuum = connection.CreateCommand(null, "VACUUM INTO $to").With("$to", partial))
        {
            await vacuum.ExecuteNonQueryAsync(cancellationToken);
        }

        // Landing slots before objects/: one moved between the two is then in the copy once or twice, never missed.
        await copy.TreeAsync(Path.Combine(folder, "spool", "landing"), Path.Combine(target, "spool", "landing"), cancellationToken);
        foreach (var entry in new DirectoryInfo(folder).EnumerateFileSystemInfos().OrderBy(e => e.Name == "objects" ? 0 : 1).ThenBy(e => e.Name, StringComparer.Ordinal))
        {
            if (Skipped.Contains(entry.Name, StringComparer.Ordinal) || Path.GetFullPath(entry.FullName) is var full
                && (full == sqlite.Path || full == sqlite.Path + "-wal" || full == sqlite.Path + "-shm"))
            {
                continue;
            }

            await (entry is DirectoryInfo ? copy.TreeAsync(entry.FullName, Path.Combine(target, entry.Name), cancellationToken)
                : copy.FileAsync(entry.FullName, Path.Combine(target, entry.Name), cancellationToken));
        }

        if (await QuickCheckAsync(partial, cancellationToken) is { } damage)
        {
            await Console.Error.WriteLineAsync($"vigie backup: the copied index does not pass its check ({damage})");
            return false;
        }

        // Each file was synced as copied; the index last, then the marker goes.
        cancellationToken.ThrowIfCancellationRequested();
        var index = Path.Combine(target, "index.db");
        File.Move(partial, index);
        DurableFile.SyncDirectory(target);
        File.Delete(Path.Combine(target, IncompleteMarker));
        DurableFile.SyncDirectory(target);
        return true;
    }

    /// <summary>Why the copy stopped, in the operator's words (the bare exception text named neither the command nor the remedy).</summary>
    private static string Describe(Exception e, string target) => e switch
    {
        OperationCanceledException => "stopped (cancelled)",
        IOException { HResult: NoSpaceLeft } or SqliteException { SqliteErrorCode: SqliteFull } =>
            $"the file system of {target} is full (no space left on device): free space there or choose a larger one",
        IOException { HResult: ReadOnlyFileSystem } => $"the file system of {target} is mounted read-only",
        UnauthorizedAccessException => $"permission denied ({e.Message})",
        _ => $"the copy failed: {e.Message}",
    };

    /// <summary>ENOSPC and EROFS, which .NET gives as the HResult of the IOException on Linux; SQLITE_FULL.</summary>
    private const int NoSpaceLeft = 28;

    private const int ReadOnlyFileSystem = 30;

    private const int SqliteFull = 13;

    /// <summary>Why the target, or the nearest existing folder above it, cannot be written; null when it can.</summary>
    private static string? Unwritable(string target)
    {
        var existing = target;
        while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } above)
        {
            existing = above;
        }

        return FileProblems.WhyNotWritable(existing) is { } why
            ? existing == target ? $"{target} cannot be written: {why}" : $"{target} cannot be created in {existing}: {why}"
            : null;
    }

    /// <summary>
    /// Removes an incomplete copy: the folder when the backup created it, else what it put in it (the folder was empty).
    /// The marker goes last, so a removal cut short still says what the rest is. False when something could not go.
    /// </summary>
    private static bool Discard(string target, bool created)
    {
        try
        {
            if (!Directory.Exists(target))
            {
                return true;
            }

            var marker = Path.Combine(target, IncompleteMarker);
            foreach (var entry in new DirectoryInfo(target).EnumerateFileSystemInfos())
            {
                if (entry.FullName == marker)
                {
                    continue;
                }

                if (entry is DirectoryInfo directory && directory.LinkTarget is null)
                {
                    directory.Delete(recursive: true);
                }
                else
                {
                    entry.Delete();
                }
            }

            File.Delete(marker);
            if (created)
            {
                Directory.Delete(target);
            }

            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static async Task<string?> QuickCheckAsync(string index, CancellationToken cancellationToken)
    {
        await using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = index, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        await connection.OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA quick_check(3)";
        var result = Convert.ToString(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        return result == "ok" ? null : result;
    }

    private sealed class Copy(string target)
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
                if (entry is DirectoryInfo && RealPath.Resolve(entry.FullName) == target)
                {
                    continue; // the copy itself, whatever the checks above missed: never copied into itself
                }

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
