using Vigie.Testing;

namespace Vigie.Cli.Tests.Commands;

/// <summary>`vigie backup` as a PACS administrator runs it (review 33), against a data folder a real node filled.</summary>
public sealed class BackupCommandTests
{
    /// <summary>
    /// Bug (review 33, 01): with --data a symbolic link (/var/lib/vigie/data -> /srv/data) and --to a folder inside its
    /// real path, the overlap check compared unresolved paths and the copy went into itself until the disk was full.
    /// </summary>
    [Fact]
    public async Task Regression_a_backup_into_the_data_folder_reached_through_a_link_copied_itself_without_end()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-backup-link");
        var real = await DataFolders.FilledAsync(root, "real", 2, ct);
        var link = root.Combine("data");
        File.CreateSymbolicLink(link, real);
        File.CreateSymbolicLink(link + ".keys", real + ".keys");

        var backup = await VigieProcess.RunAsync(["backup", "--data", link, "--to", Path.Combine(real, "backup-today")], TimeSpan.FromSeconds(60),
            cancellationToken: ct);

        Assert.True(backup.ExitCode == 2, backup.ToString());
        Assert.Contains("overlap", backup.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(real, "backup-today")));
        // The other way round: the link as the target's parent, the data folder by its real path.
        var other = await VigieProcess.RunAsync(["backup", "--data", real, "--to", Path.Combine(link, "backup-today")], TimeSpan.FromSeconds(60),
            cancellationToken: ct);
        Assert.True(other.ExitCode == 2, other.ToString());
        Assert.False(Directory.Exists(Path.Combine(real, "backup-today")));
    }

    /// <summary>
    /// Bug (review 33, 03): `--to &lt;data&gt;.keys/backup` exited 0 and put the archive beside kek.json: whoever took the key
    /// folder had the data and the key. Refused now, as `quarantine export` refuses it.
    /// </summary>
    [Fact]
    public async Task Regression_a_backup_into_the_key_folder_put_the_data_beside_its_key()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-backup-keys");
        var data = await DataFolders.FilledAsync(root, "data", 1, ct);

        var backup = await VigieProcess.RunAsync(["backup", "--data", data, "--to", Path.Combine(data + ".keys", "backup")], TimeSpan.FromSeconds(60),
            cancellationToken: ct);

        Assert.True(backup.ExitCode == 2, backup.ToString());
        Assert.Contains("key folder", backup.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(data + ".keys", "backup")));
    }

    /// <summary>
    /// Bug (review 33, 06): `--to` an existing file said "vigie: The file '…' already exists" (the raw exception text), a
    /// read-only target "vigie: Read-only file system": neither named the command, what was wrong or what to do.
    /// </summary>
    [Fact]
    public async Task Regression_backup_to_a_file_printed_the_raw_exception_text()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-backup-file");
        var data = await DataFolders.FilledAsync(root, "data", 1, ct);
        var file = root.Combine("target");
        await File.WriteAllTextAsync(file, "not a folder", ct);

        var backup = await VigieProcess.RunAsync(["backup", "--data", data, "--to", file], TimeSpan.FromSeconds(60), cancellationToken: ct);

        Assert.True(backup.ExitCode == 2, backup.ToString());
        Assert.Contains($"vigie backup: {file} is a file, not a folder: give a new or empty folder", backup.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("vigie: ", backup.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug (review 33, 02): a backup onto a file system that filled up said only "vigie: No space left on device" and left
    /// an index.db that passed its check and named every instance beside a partial objects/: a copy that looked whole. Now
    /// the index is renamed into place last, the partial copy is removed, and the message says it is incomplete.
    /// </summary>
    [Fact]
    public async Task Regression_a_backup_onto_a_full_disk_left_a_copy_that_looked_complete()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-backup-full");
        var data = await DataFolders.FilledAsync(root, "data", 10, ct);
        var small = root.Combine("small");
        Directory.CreateDirectory(small);
        var mount = await Peers.RunAsync("mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", small], TimeSpan.FromSeconds(30), cancellationToken: ct);
        if (mount.ExitCode != 0)
        {
            Assert.Skip($"a small file system is needed to fill (tmpfs mount, as root): {mount.StandardError.Trim()}");
        }

        try
        {
            var target = Path.Combine(small, "bk");
            var backup = await VigieProcess.RunAsync(["backup", "--data", data, "--to", target], TimeSpan.FromSeconds(60), cancellationToken: ct);

            Assert.True(backup.ExitCode == 2, backup.ToString());
            Assert.Contains($"vigie backup: the file system of {target} is full", backup.StandardError, StringComparison.Ordinal);
            Assert.Contains("is incomplete: it was removed", backup.StandardError, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(target, "index.db")));
            Assert.False(Directory.Exists(target));

            // An empty mount point given as the target: emptied again, and kept.
            var point = Path.Combine(small, "point");
            Directory.CreateDirectory(point);
            var again = await VigieProcess.RunAsync(["backup", "--data", data, "--to", point], TimeSpan.FromSeconds(60), cancellationToken: ct);
            Assert.True(again.ExitCode == 2, again.ToString());
            Assert.True(Directory.Exists(point));
            Assert.Empty(Directory.EnumerateFileSystemEntries(point));
        }
        finally
        {
            await Peers.RunAsync("umount", ["-l", small], TimeSpan.FromSeconds(30), cancellationToken: CancellationToken.None);
        }

        // A backup that completes leaves no marker, and its index.
        var good = root.Combine("good");
        var complete = await VigieProcess.RunAsync(["backup", "--data", data, "--to", good], TimeSpan.FromSeconds(60), cancellationToken: ct);
        Assert.True(complete.ExitCode == 0, complete.ToString());
        Assert.True(File.Exists(Path.Combine(good, "index.db")));
        Assert.False(File.Exists(Path.Combine(good, "BACKUP-INCOMPLETE")));
        Assert.False(File.Exists(Path.Combine(good, "index.db.partial")));
    }
}
