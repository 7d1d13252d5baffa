using System.Globalization;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// The data folder's disk filling up, the classic PACS outage: stores are refused with A700 (the sender keeps its copy
/// and retries), audited and logged, while the association, echoes and queries go on, and nothing acknowledged is lost.
/// </summary>
public sealed class DiskFullTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task Under_the_free_space_floor_stores_are_refused_audited_and_the_node_keeps_serving()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            // More than any disk has: the floor is reached from the first store.
            ["VIGIE__ARCHIVE__MINFREESPACE"] = (1L << 50).ToString(CultureInfo.InvariantCulture),
        }, cancellationToken: ct);
        var files = Peers.CtCorpusFiles().Take(3).ToList();

        var store = await StoreAsync(node, files, ct);

        Assert.Equal(3, Count(store, "Received Store Response (Refused: OutOfResources)"));
        var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());
        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
            "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(find.ExitCode == 0, find.ToString());

        using var http = new HttpClient();
        var health = JsonDocument.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct)).RootElement;
        Assert.Equal("Degraded", health.GetProperty("status").GetString());
        Assert.StartsWith("stores refused", health.GetProperty("checks").GetProperty("data-folder").GetProperty("description").GetString(), StringComparison.Ordinal);

        var audit = await node.VigieAsync("audit", "show", "--json");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        var refusals = JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Count(e => e.GetProperty("event_id").GetString() == "110104" && e.GetProperty("outcome").GetString() == "serious_failure");
        Assert.Equal(3, refusals);
        Assert.Equal(0, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        // Logged once, not once per refused object: a modality retries.
        Assert.Equal(1, Count(node.Output, "Stores are refused (A700)"));
    }

    [Fact]
    public async Task A_disk_that_fills_up_during_a_store_run_loses_nothing_acknowledged_and_takes_stores_again_once_grown()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, new Dictionary<string, string>
        {
            ["VIGIE__ARCHIVE__MINFREESPACE"] = (8 * MiB).ToString(CultureInfo.InvariantCulture),
        }, ct);
        await using var disk = await SmallDisk.MountAsync(node, "40m", ct);
        await node.StartProcessAsync(ct);
        var files = Peers.CtCorpusFiles();

        // The whole corpus (100 MiB) into a 40 MiB file system that also holds the index and the audit trail.
        var first = await StoreAsync(node, files, ct);

        var stored = Count(first, "Received Store Response (Success)");
        var refused = Count(first, "Received Store Response (Refused: OutOfResources)");
        Assert.True(stored > 0 && refused > 0 && stored + refused == files.Count, first.ToString());
        Assert.DoesNotContain("Abort", first.StandardOutput + first.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(stored, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // An administrator grows the disk: the same node takes the rest without a restart.
        var grow = await Peers.RunAsync("mount", ["-o", "remount,size=300m", node.Data], TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(grow.ExitCode == 0, grow.ToString());
        var second = await StoreAsync(node, files, ct);
        Assert.Equal(files.Count, Count(second, "Received Store Response (Success)"));
        await node.StopAsync();

        Assert.Equal(files.Count, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>
    /// Regression: when no spool file could be created (a data folder turned read-only after disk errors, wrong
    /// permissions) the association was aborted and nothing was logged.
    /// </summary>
    [Fact]
    public async Task A_data_folder_where_no_spool_can_be_written_refuses_stores_without_aborting()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
            {
                // No file made ahead: neither an empty spool nor a landing slot (written beforehand, it needs no new space).
                ["VIGIE__ARCHIVE__SPOOLRESERVE"] = "0",
                ["VIGIE__ARCHIVE__LANDINGSLOTS"] = "0",
            },
            cancellationToken: ct);
        var spool = Path.Combine(node.Data, "spool");
        // An immutable folder refuses new files even to root, as a read-only file system does.
        var locked = await Peers.RunAsync("chattr", ["+i", spool], TimeSpan.FromSeconds(30), cancellationToken: ct);
        if (locked.ExitCode != 0)
        {
            Assert.Skip($"the spool folder cannot be made immutable here (chattr, as root, on ext4): {locked.StandardError.Trim()}");
        }

        try
        {
            var refused = await StoreAsync(node, Peers.CtCorpusFiles().Take(3), ct);

            Assert.Equal(3, Count(refused, "Received Store Response (Refused: OutOfResources)"));
            Assert.DoesNotContain("Abort", refused.StandardOutput + refused.StandardError, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("no spool file can be written", node.Output, StringComparison.Ordinal);
            Assert.Equal(3, await RefusalsAuditedAsync(node, "refused: no spool file can be written"));
        }
        finally
        {
            await Peers.RunAsync("chattr", ["-i", spool], TimeSpan.FromSeconds(30), cancellationToken: CancellationToken.None);
        }

        var stored = await StoreAsync(node, Peers.CtCorpusFiles().Take(3), ct);
        Assert.Equal(3, Count(stored, "Received Store Response (Success)"));
    }

    /// <summary>
    /// Regression: a store that passes the free-space floor and then meets a full disk while its data is written (an
    /// object larger than the room left above the floor) was answered A700 and logged, but left no trace in the audit trail.
    /// </summary>
    [Fact]
    public async Task A_store_that_meets_a_full_disk_while_written_is_refused_and_audited()
    {
        var ct = TestContext.Current.CancellationToken;
        // A floor smaller than the image: the check passes with room for the index, and not for the image.
        const long floor = 128 * 1024;
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, new Dictionary<string, string>
        {
            ["VIGIE__ARCHIVE__MINFREESPACE"] = floor.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__ARCHIVE__SPOOLRESERVE"] = "0",
            ["VIGIE__ARCHIVE__LANDINGSLOTS"] = "0",
        }, ct);
        await using var disk = await SmallDisk.MountAsync(node, "24m", ct);
        await node.StartProcessAsync(ct);
        var image = Peers.CtCorpusFiles()[0];
        // Leave 256 KiB above the floor: the check passes, and the 513 KiB image cannot be written.
        var filler = Path.Combine(node.Data, "filler");
        var room = new DriveInfo(node.Data).AvailableFreeSpace - floor - 256 * 1024;
        var fill = await Peers.RunAsync("fallocate", ["-l", room.ToString(CultureInfo.InvariantCulture), filler], TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(fill.ExitCode == 0, fill.ToString());

        var full = await StoreAsync(node, [image], ct);
        Assert.True(Count(full, "Received Store Response (Refused: OutOfResources)") == 1, full + "\n--- node\n" + node.Output);
        Assert.DoesNotContain("Abort", full.StandardOutput + full.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("A store from STORESCU", node.Output, StringComparison.Ordinal);
        Assert.True(await RefusalsAuditedAsync(node, "refused: the object ") == 1, node.Output);

        File.Delete(filler);
        var stored = await StoreAsync(node, [image], ct);
        Assert.Equal(1, Count(stored, "Received Store Response (Success)"));
        await node.StopAsync();
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>
    /// Regression: on a file system that something else filled to the last byte, a start and every command said only
    /// "SQLite Error 10: 'disk I/O error'" (SQLite cannot make its shared-memory file), which an operator reads as a
    /// failing disk. They now name the full file system, its free space and the fix.
    /// </summary>
    [Fact]
    public async Task Regression_a_full_file_system_under_the_index_was_reported_as_a_disk_io_error()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, new Dictionary<string, string>
        {
            ["VIGIE__ARCHIVE__MINFREESPACE"] = "0",
            ["VIGIE__ARCHIVE__LANDINGSLOTS"] = "0",
        }, ct);
        await using var disk = await SmallDisk.MountAsync(node, "24m", ct);
        await node.StartProcessAsync(ct);
        Assert.Equal(1, Count(await StoreAsync(node, [Peers.CtCorpusFiles()[0]], ct), "Received Store Response (Success)"));
        await node.StopAsync();
        // Another writer takes the last byte (the node's own floor cannot stop it).
        var filler = Path.Combine(node.Data, "filler");
        var fill = await Peers.RunAsync("fallocate", ["-l", new DriveInfo(node.Data).AvailableFreeSpace.ToString(CultureInfo.InvariantCulture), filler],
            TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(fill.ExitCode == 0, fill.ToString());

        var stats = await node.VigieAsync("stats");
        Assert.Equal(2, stats.ExitCode);
        Assert.Contains("index.db is full (", stats.StandardError, StringComparison.Ordinal);
        Assert.Contains("free space there, then try again", stats.StandardError, StringComparison.Ordinal);
        File.Delete(filler);
        Assert.Equal(0, (await node.VigieAsync("stats")).ExitCode);
    }

    /// <summary>
    /// Regression: a node restarted on a file system another writer had filled to the last byte did not start at all
    /// (SQLite cannot make its shared-memory file), so nobody could query or retrieve the images it holds, in an
    /// emergency too. The node sets room aside (Archive:FullDiskReserve) and gives it back there: it starts, serves
    /// retrieves and audits them, and sets the room aside again once space is freed.
    /// </summary>
    [Fact]
    public async Task Regression_a_node_restarted_on_a_file_system_filled_to_the_last_byte_did_not_start()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, new Dictionary<string, string>
        {
            ["VIGIE__ARCHIVE__MINFREESPACE"] = "0",
            ["VIGIE__ARCHIVE__LANDINGSLOTS"] = "0",
            ["VIGIE__ARCHIVE__FULLDISKRESERVE"] = (4 * MiB).ToString(CultureInfo.InvariantCulture),
        }, ct);
        await using var disk = await SmallDisk.MountAsync(node, "40m", ct);
        await node.StartProcessAsync(ct);
        var reserve = Path.Combine(node.Data, "full-disk-reserve");
        Assert.True(File.Exists(reserve));
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        Assert.Equal(3, Count(await StoreAsync(node, files, ct), "Received Store Response (Success)"));
        await node.StopAsync();
        var filler = Path.Combine(node.Data, "filler");
        var fill = await Peers.RunAsync("fallocate", ["-l", new DriveInfo(node.Data).AvailableFreeSpace.ToString(CultureInfo.InvariantCulture), filler],
            TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(fill.ExitCode == 0, fill.ToString());

        await node.StartProcessAsync(ct);
        Assert.False(File.Exists(reserve));
        Assert.Contains("released its 4 MiB reserve", node.Output, StringComparison.Ordinal);
        var first = await Vigie.Dicom.IO.DicomReader.ReadFileAsync(files[0], new Vigie.Dicom.DicomReadOptions { StopAtTag = Vigie.Dicom.DicomTags.PixelData }, ct);
        var study = Vigie.Dicom.DicomText.TrimUid(first.Dataset.GetString(Vigie.Dicom.DicomTags.StudyInstanceUID)!);
        using var retrieved = new TempDirectory("vigie-full-get");
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}",
            "-od", retrieved.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(3, Directory.GetFiles(retrieved.Path).Length);

        // Space freed: the next store sets the room aside again.
        File.Delete(filler);
        Assert.Equal(1, Count(await StoreAsync(node, Peers.CtCorpusFiles().Skip(3).Take(1), ct), "Received Store Response (Success)"));
        await Eventually.WaitForAsync(() => Task.FromResult(File.Exists(reserve)), exists => exists, ct);
        await node.StopAsync();
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var shown = await node.VigieAsync("audit", "show", "--json", "--event", "110102");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.NotEmpty(JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray());
    }

    /// <summary>
    /// A tmpfs of the given size over the node's data folder, to fill; the test is skipped where none can be mounted (as
    /// root). Disposing stops the node and unmounts it.
    /// </summary>
    private sealed class SmallDisk(VigieNode node) : IAsyncDisposable
    {
        public static async Task<SmallDisk> MountAsync(VigieNode node, string size, CancellationToken ct)
        {
            Directory.CreateDirectory(node.Data);
            var mount = await Peers.RunAsync("mount", ["-t", "tmpfs", "-o", $"size={size}", "tmpfs", node.Data], TimeSpan.FromSeconds(30), cancellationToken: ct);
            if (mount.ExitCode != 0)
            {
                Assert.Skip($"a small file system is needed to fill (tmpfs mount, as root): {mount.StandardError.Trim()}");
            }

            return new SmallDisk(node);
        }

        public async ValueTask DisposeAsync()
        {
            await node.StopAsync();
            await Peers.RunAsync("umount", ["-l", node.Data], TimeSpan.FromSeconds(30), cancellationToken: CancellationToken.None);
        }
    }

    /// <summary>Failed transfers in the audit trail whose sealed outcome starts with <paramref name="reason"/>.</summary>
    private static async Task<int> RefusalsAuditedAsync(VigieNode node, string reason)
    {
        var audit = await node.VigieAsync("audit", "show", "--json", "--details", "--limit", "100000");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        return JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray().Count(e => e.GetProperty("event_id").GetString() == "110104"
            && e.GetProperty("outcome").GetString() == "serious_failure"
            && e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith(reason, StringComparison.Ordinal));
    }

    /// <summary>storescu, going on after a refused store (-nh), printing every response (-v).</summary>
    private static async Task<ProcessResult> StoreAsync(VigieNode node, IEnumerable<string> files, CancellationToken ct)
    {
        var result = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-v", "-nh", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. files],
            TimeSpan.FromMinutes(3), cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
        return result;
    }

    private static int Count(ProcessResult result, string text) => Count(result.StandardOutput + result.StandardError, text);

    private static int Count(string output, string text)
    {
        var count = 0;
        for (var at = output.IndexOf(text, StringComparison.Ordinal); at >= 0; at = output.IndexOf(text, at + text.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
