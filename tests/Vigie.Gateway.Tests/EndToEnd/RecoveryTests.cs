using Vigie.Gateway.Ingest;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Ingest commits are not synced: a power cut may take the index rows and audit entries of the last objects
/// acknowledged, whose files are on disk. The cut is played by putting back the index as it was before them, with the
/// node's record of its last signed head as it was at that moment: a tree head's commit is synced before that record
/// names it, so a real cut can take only what came after the recorded head.
/// </summary>
public sealed class RecoveryTests
{
    [Fact]
    public async Task Objects_whose_index_rows_a_power_cut_took_are_filed_again_at_start()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(10).ToArray();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files[..4], ct);
        await node.StopAsync();
        SaveIndex(node);

        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[4..], ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        await node.StopAsync();

        // The index as a power cut could leave it: the last six commits gone, their files synced and in place.
        PutBackSavedIndex(node);
        await node.StartProcessAsync(ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        Assert.Contains("Recovery: 6 objects", node.Output, StringComparison.Ordinal);

        var events = await node.VigieAsync("audit", "show", "--details", "--json", "--limit", "500");
        Assert.True(events.ExitCode == 0, events.ToString());
        Assert.Equal(6, events.StandardOutput.Split(ArchiveRecovery.AuditNote).Length - 1);
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());

        // Once filed, nothing more to recover: a second start finds the index whole. A damaged file in the window is
        // skipped with a warning and does not stop the start.
        await node.StopAsync();
        var stored = Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).First();
        var name = Path.GetFileName(stored);
        var damaged = Path.Combine(Path.GetDirectoryName(stored)!, name[..^1] + (name[^1] == '0' ? '1' : '0'));
        await File.WriteAllBytesAsync(damaged, "not an object"u8.ToArray(), ct);
        await node.StartProcessAsync(ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        Assert.Equal(1, node.Output.Split("Recovery: 6 objects").Length - 1);
        Assert.Contains("cannot be filed", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_correction_whose_commit_a_power_cut_took_is_filed_as_the_current_version()
    {
        // Regression: recovery skipped any object of an instance the index already had, as an older copy. A correction
        // (same SOP Instance UID, new content) acknowledged just before a power cut was left out, and later removed
        // by the scrub as an orphan, while the index kept serving the version it corrected.
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-correction");
        var original = work.Combine("original.dcm");
        File.Copy(Peers.CtCorpusFiles()[0], original);
        var corrected = work.Combine("corrected.dcm");
        File.Copy(original, corrected);
        var modify = await Peers.RunAsync(Peers.Require("dcmodify", "dcmtk"), ["-nb", "-i", "(0008,0080)=CORRECTED HOSPITAL", corrected], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(modify.ExitCode == 0, modify.ToString());
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync([original], ct);
        await node.StopAsync();
        SaveIndex(node);
        await node.StartProcessAsync(ct);
        await node.StoreAsync([corrected], ct);
        Assert.Equal(2, (await node.StatsAsync()).GetProperty("instance_versions").GetInt64());
        await node.StopAsync();

        PutBackSavedIndex(node);
        await node.StartProcessAsync(ct);
        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(2, stats.GetProperty("instance_versions").GetInt64());
        Assert.Contains("Recovery: 1 objects", node.Output, StringComparison.Ordinal);
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    [Fact]
    public async Task Objects_stored_after_the_clock_stepped_back_are_filed_again_after_a_power_cut()
    {
        // Regression: recovery looked only at files written since shortly before the newest object filed. Once the wall
        // clock had stepped back by more than that margin (an NTP correction), the files of the stores whose commits a
        // power cut took were older than where it looked: never filed again, later removed by the scrub as orphans.
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(10).ToArray();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files[..4], ct);
        await node.StopAsync();
        // Filed while the clock was two hours ahead; it has been put right since.
        ShiftFilingTimes(node, TimeSpan.FromHours(2));

        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[4..5], ct);
        Assert.Equal(1, node.Output.Split("The clock is behind the newest object filed").Length - 1);
        await node.StopAsync();
        SaveIndex(node);

        // The clock is still behind: the next start notes it again at its first store, and only once.
        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[5..], ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        Assert.Equal(2, node.Output.Split("The clock is behind the newest object filed").Length - 1);
        await node.StopAsync();

        PutBackSavedIndex(node);
        await node.StartProcessAsync(ct);
        Assert.Equal(10, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        Assert.Contains("Recovery: 5 objects", node.Output, StringComparison.Ordinal);
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>Moves a stopped node's filing times forward, as a clock running ahead would have written them.</summary>
    private static void ShiftFilingTimes(VigieNode node, TimeSpan by)
    {
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE archive_objects SET created_at = created_at + $by";
            command.Parameters.AddWithValue("$by", (long)by.TotalMilliseconds);
            Assert.Equal(4, command.ExecuteNonQuery());
        }
    }

    [Fact]
    public async Task A_store_of_content_already_archived_is_synced_before_its_answer()
    {
        // Regression: a store that found its file already in the archive (an orphan of an earlier attempt whose index
        // write failed, or a file due for deletion) committed deferred. The file's time is old, so after a power cut
        // recovery did not look at it, and the scrub then removed an object that had been acknowledged.
        var ct = TestContext.Current.CancellationToken;
        var file = Peers.CtCorpusFiles()[0];
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        using var http = new HttpClient();
        async Task<double> LogSyncsAsync()
        {
            var metrics = await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/metrics"), ct);
            var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("vigie_gateway_commit_log_syncs_total", StringComparison.Ordinal));
            return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }

        await node.StoreAsync([file], ct);
        await Task.Delay(TimeSpan.FromSeconds(1), ct); // the scrape endpoint caches its answer briefly
        var before = await LogSyncsAsync();
        await node.StoreAsync([file], ct);
        var after = before;
        for (var attempt = 0; attempt < 20 && after < before + 1; attempt++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(250), ct);
            after = await LogSyncsAsync();
        }

        Assert.True(after >= before + 1, $"the second store of the same content did not sync the log ({before} then {after})");
    }

    /// <summary>
    /// Bug (review 19, D6, the first fix): the node's record of its last signed head was checked against an index a
    /// power cut had rolled back. Now the head's commit is synced before the record names it, so the cut takes only what
    /// came after. Played here as it happens: a head signed at a stop, the record written, then a run that stores and
    /// signs nothing more, a cut (SIGKILL, the index put back as it was just after the head): the node signs again.
    /// </summary>
    [Fact]
    public async Task Regression_a_power_cut_right_after_a_tree_head_made_the_node_refuse_to_sign()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(6).ToArray();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            // No head is due during the second run: only the one signed at the first stop is recorded.
            ["VIGIE__AUDIT__TREEHEADINTERVAL"] = "01:00:00",
            ["VIGIE__AUDIT__TREEHEADEVERYENTRIES"] = "100000",
        }, cancellationToken: ct);
        await node.StoreAsync(files[..2], ct);
        await node.StopAsync();
        var record = Path.Combine(node.Keys, "audit-signing.key.heads");
        var recorded = await File.ReadAllTextAsync(record, ct);
        var head = await node.VigieAsync("audit", "head", "--json");
        Assert.True(head.ExitCode == 0, head.ToString());
        Assert.Equal(Assert.Single(Vigie.Audit.Signing.TreeHeadJson.Parse(recorded)).TreeSize, Assert.Single(Vigie.Audit.Signing.TreeHeadJson.Parse(head.StandardOutput)).TreeSize);
        var index = Path.Combine(node.Data, "index.db");
        File.Copy(index, index + ".before", overwrite: true);

        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[2..], ct);
        await node.KillAsync();
        Assert.Equal(recorded, await File.ReadAllTextAsync(record, ct));
        foreach (var path in new[] { index, index + "-wal", index + "-shm" })
        {
            File.Delete(path);
        }

        File.Move(index + ".before", index);
        await node.StartProcessAsync(ct);
        Assert.Contains("Recovery: 4 objects", node.Output, StringComparison.Ordinal);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("audit-signing", ct)).Status);
        await node.StopAsync();
        Assert.DoesNotContain("Audit tree head not signed", node.Output, StringComparison.Ordinal);
        Assert.NotEqual(recorded, await File.ReadAllTextAsync(record, ct)); // the head signed at this stop is recorded
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    /// <summary>
    /// Keeps a copy of a stopped node's index, and of its record of its last signed head, to put back later as a power
    /// cut could leave them.
    /// </summary>
    private static void SaveIndex(VigieNode node)
    {
        var index = Path.Combine(node.Data, "index.db");
        File.Copy(index, index + ".before", overwrite: true);
        var record = Path.Combine(node.Keys, "audit-signing.key.heads");
        File.Copy(record, record + ".before", overwrite: true);
    }

    /// <summary>Puts back the index <see cref="SaveIndex"/> kept: every commit since is gone, the object files stay.</summary>
    private static void PutBackSavedIndex(VigieNode node)
    {
        var index = Path.Combine(node.Data, "index.db");
        foreach (var path in new[] { index, index + "-wal", index + "-shm" })
        {
            File.Delete(path);
        }

        File.Move(index + ".before", index);
        var record = Path.Combine(node.Keys, "audit-signing.key.heads");
        File.Move(record + ".before", record, overwrite: true);
    }
}
