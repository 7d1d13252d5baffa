using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// The hospital's SIEM down for a day is a day of accesses the security officer's tools have not seen: /health says so
/// while the export fails, and turns healthy by itself once the collector takes the backlog.
/// </summary>
public sealed class AuditExportHealthTests
{
    [Fact]
    public async Task A_collector_that_is_down_turns_health_degraded_until_it_takes_the_backlog()
    {
        var ct = TestContext.Current.CancellationToken;
        var collectorPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "siem",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "SyslogTcp",
            ["VIGIE__AUDIT__SINKS__0__HOST"] = "127.0.0.1",
            ["VIGIE__AUDIT__SINKS__0__PORT"] = collectorPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__AUDIT__SINKS__0__MINBACKOFF"] = "00:00:00.200",
            ["VIGIE__AUDIT__SINKS__0__MAXBACKOFF"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        using var http = new HttpClient();
        async Task<(string Status, string Description)> ExportHealthAsync()
        {
            var check = JsonDocument.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct)).RootElement
                .GetProperty("checks").GetProperty("audit-export");
            return (check.GetProperty("status").GetString()!, check.GetProperty("description").GetString()!);
        }

        var down = await Eventually.WaitForAsync(ExportHealthAsync, h => h.Status == "Degraded", ct);
        Assert.Equal("Degraded", down.Status);
        Assert.Matches("^siem: [0-9]+ failed attempts, [1-9][0-9]* entries waiting, last error: ", down.Description);

        // The collector comes up and reads whatever it is sent.
        using var collector = new TcpListener(IPAddress.Loopback, collectorPort);
        collector.Start();
        var received = 0L;
        var reading = Task.Run(async () =>
        {
            using var client = await collector.AcceptTcpClientAsync(ct);
            var buffer = new byte[65536];
            int read;
            while ((read = await client.GetStream().ReadAsync(buffer, ct)) > 0)
            {
                Interlocked.Add(ref received, read);
            }
        }, ct);

        var up = await Eventually.WaitForAsync(ExportHealthAsync, h => h.Status == "Healthy" && h.Description == "siem: 0 entries waiting", ct);
        Assert.Equal(("Healthy", "siem: 0 entries waiting"), up);
        Assert.True(Interlocked.Read(ref received) > 0);
    }

    /// <summary>
    /// Regression: a FHIR repository that refused one event for good stalled the sink for ever. Now the refused event
    /// is set aside, the others flow, /health and `vigie audit sinks` name it, and `vigie audit resend` sends it once the
    /// repository takes it.
    /// </summary>
    [Fact]
    public async Task A_fhir_repository_refusing_one_event_sets_it_aside_and_the_operator_resends_it()
    {
        var ct = TestContext.Current.CancellationToken;
        var port = VigieNode.FreePort();
        using var repository = new HttpListener();
        repository.Prefixes.Add($"http://127.0.0.1:{port}/fhir/");
        repository.Start();
        var strict = 1;
        var kept = 0;
        var serving = Task.Run(async () =>
        {
            while (true)
            {
                HttpListenerContext context;
                try
                {
                    context = await repository.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                using var reader = new StreamReader(context.Request.InputStream);
                var body = JsonDocument.Parse(await reader.ReadToEndAsync(ct)).RootElement;
                // Its profile, strict for a while, refuses the node's application start and stop events (DCM 110100).
                var events = body.GetProperty("resourceType").GetString() == "Bundle"
                    ? body.GetProperty("entry").EnumerateArray().Select(e => e.GetProperty("resource")).ToList()
                    : [body];
                var refuse = context.Request.HttpMethod == "POST" && Volatile.Read(ref strict) == 1
                    && events.Any(e => e.GetProperty("type").GetProperty("code").GetString() == "110100");
                if (!refuse)
                {
                    Interlocked.Add(ref kept, events.Count);
                }

                context.Response.StatusCode = refuse ? 422 : 200;
                if (!refuse && context.Request.HttpMethod == "POST")
                {
                    // What a FHIR server answers a transaction: the sink counts nothing less as delivered.
                    var answer = System.Text.Encoding.UTF8.GetBytes("{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\",\"entry\":["
                        + string.Join(',', events.Select(_ => "{\"response\":{\"status\":\"201 Created\"}}")) + "]}");
                    context.Response.ContentType = "application/fhir+json";
                    await context.Response.OutputStream.WriteAsync(answer, ct);
                }

                context.Response.Close();
            }
        }, ct);

        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "fhir",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "FhirHttp",
            ["VIGIE__AUDIT__SINKS__0__FHIRBASEURL"] = $"http://127.0.0.1:{port}/fhir/",
            ["VIGIE__AUDIT__SINKS__0__MINBACKOFF"] = "00:00:00.200",
            ["VIGIE__AUDIT__SINKS__0__MAXBACKOFF"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);

        var setAside = await Eventually.WaitForAsync(() => node.HealthCheckAsync("audit-export", ct),
            h => h.Description.Contains("set aside", StringComparison.Ordinal), ct);
        Assert.Equal("Degraded", setAside.Status);
        Assert.Matches("^fhir: [0-9]+ entries waiting, 1 refused by the collector and set aside", setAside.Description);
        Assert.True(Volatile.Read(ref kept) > 0);
        var listed = await node.VigieAsync("audit", "sinks");
        Assert.True(listed.ExitCode == 1, listed.ToString());
        Assert.Matches(@"fhir \(FhirHttp\): [0-9]+ entries waiting, 1 set aside\n  entry [0-9]+, refused .*: The FHIR server answered 422", listed.StandardOutput);

        var refusedAgain = await node.VigieAsync("audit", "resend", "--sink", "fhir", "--json");
        Assert.True(refusedAgain.ExitCode == 1, refusedAgain.ToString());
        Volatile.Write(ref strict, 0);
        var resent = await node.VigieAsync("audit", "resend", "--sink", "fhir");
        Assert.True(resent.ExitCode == 0, resent.ToString());
        Assert.Contains("fhir: 1 resent, 0 refused again, 0 still set aside", resent.StandardOutput, StringComparison.Ordinal);
        var healthy = await Eventually.WaitForAsync(() => node.HealthCheckAsync("audit-export", ct), h => h.Status == "Healthy", ct);
        Assert.Equal("Healthy", healthy.Status);
        Assert.Equal(0, (await node.VigieAsync("audit", "sinks", "--json")).ExitCode);

        await node.StopAsync();
        repository.Stop();
        await serving;
    }
}

/// <summary>
/// Bug: a forged Merkle frontier written into the database while the node was stopped got genuine signatures over
/// roots no entries have. The node now refuses to sign, and /health says why.
/// </summary>
public sealed class AuditSigningHealthTests
{
    [Fact]
    public async Task A_forged_frontier_is_not_signed_and_health_turns_unhealthy()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__TREEHEADEVERYENTRIES"] = "4",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await node.StopAsync();
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "UPDATE audit_state SET frontier = randomblob(length(frontier))";
            Assert.Equal(1, await command.ExecuteNonQueryAsync(ct));
        }

        await node.StartProcessAsync(ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Skip(2).Take(4), ct);
        var health = await Eventually.WaitForAsync(() => node.HealthCheckAsync("audit-signing", ct), h => h.Status == "Unhealthy", ct);
        Assert.Contains("not the root that the stored leaf hashes and subtree nodes give", health.Description, StringComparison.Ordinal);
        Assert.Contains("Audit tree head not signed", node.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug (review 19, D6): with every tree head deleted from the database, the node started without a word and signed
    /// whatever history it found with its genuine key. It now checks the log against its record of the last head it
    /// signed (beside the key) at start: it refuses to sign, logs it, records a Security Alert, /health says it, and
    /// verify fails; stores are still taken.
    /// </summary>
    [Fact]
    public async Task Regression_node_signed_over_a_history_rewritten_after_its_tree_heads_were_deleted()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await node.StopAsync();
        ExecuteOnIndex(node, "DELETE FROM audit_tree_head");

        await node.StartProcessAsync(acceptUnhealthy: true, ct);
        var health = await node.HealthCheckAsync("audit-signing", ct);
        Assert.Equal("Unhealthy", health.Status);
        Assert.Contains("no longer holds it", health.Description, StringComparison.Ordinal);
        await node.StoreAsync(Peers.CtCorpusFiles().Skip(2).Take(1), ct); // availability first
        await node.StopAsync();
        Assert.Contains("Audit tree head not signed", node.Output, StringComparison.Ordinal);
        var head = await node.VigieAsync("audit", "head");
        Assert.True(head.ExitCode == 1, head.ToString()); // nothing signed over what it found

        var verify = await node.VigieAsync("audit", "verify", "--json");
        Assert.True(verify.ExitCode == 1, verify.ToString());
        Assert.Contains("tree_head_mismatch", verify.StandardOutput, StringComparison.Ordinal);
        var alerts = await node.VigieAsync("audit", "show", "--event", "110113", "--details", "--json");
        Assert.True(alerts.ExitCode == 0, alerts.ToString());
        Assert.Single(JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray(),
            e => e.GetProperty("details").GetProperty("outcome").GetString()!.Contains("audit tree heads are no longer signed", StringComparison.Ordinal));
    }

    /// <summary>
    /// The other side of D6: an operator who restores an older index on purpose (disaster recovery) loses the heads
    /// signed since, and the node refuses to sign. `vigie audit accept-restore` (the node stopped) records the restore
    /// with its reason and the heads before and after, and the node signs again.
    /// </summary>
    [Fact]
    public async Task Regression_a_deliberately_restored_index_left_no_way_for_the_node_to_sign_again()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(4).ToArray();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files[..2], ct);
        await node.StopAsync();
        var index = Path.Combine(node.Data, "index.db");
        File.Copy(index, index + ".backup", overwrite: true);
        await node.StartProcessAsync(ct);
        await node.StoreAsync(files[2..], ct);
        await node.StopAsync();
        var recorded = Assert.Single(Vigie.Audit.Signing.TreeHeadJson.Parse(await File.ReadAllTextAsync(Path.Combine(node.Keys, "audit-signing.key.heads"), ct)));
        foreach (var path in new[] { index, index + "-wal", index + "-shm" })
        {
            File.Delete(path);
        }

        File.Copy(index + ".backup", index);
        await node.StartProcessAsync(acceptUnhealthy: true, ct);
        Assert.Equal("Unhealthy", (await node.HealthCheckAsync("audit-signing", ct)).Status);
        var running = await node.VigieAsync("audit", "accept-restore", "--reason", "restored from backup");
        Assert.True(running.ExitCode == 2, running.ToString()); // not while a node signs on this log
        Assert.Contains("stop every node", running.StandardError, StringComparison.Ordinal);
        await node.StopAsync();

        Assert.Equal(2, (await node.VigieAsync("audit", "accept-restore")).ExitCode); // the reason is required
        var accepted = await node.VigieAsync("audit", "accept-restore", "--reason", "ticket 4711: index restored after a disk failure", "--json");
        Assert.True(accepted.ExitCode == 0, accepted.ToString());
        var answer = JsonDocument.Parse(accepted.StandardOutput).RootElement;
        Assert.True(answer.GetProperty("accepted").GetBoolean(), accepted.ToString());
        Assert.Equal(recorded.TreeSize, answer.GetProperty("recorded_size").GetInt64());
        Assert.Equal(Convert.ToHexStringLower(recorded.RootHash), answer.GetProperty("recorded_root").GetString());
        // Recovery filed the two objects again at the refused start, so the log may have grown past the recorded size.
        Assert.Matches("TreeHeadMismatch|Truncated", answer.GetProperty("recorded_problem").GetString());
        Assert.True(File.Exists(answer.GetProperty("kept_aside").GetString()), accepted.ToString());
        var again = await node.VigieAsync("audit", "accept-restore", "--reason", "twice");
        Assert.True(again.ExitCode == 0 && again.StandardOutput.Contains("nothing to accept", StringComparison.Ordinal), again.ToString());

        await node.StartProcessAsync(ct);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("audit-signing", ct)).Status);
        await node.StoreAsync(files[2..], ct);
        await node.StopAsync();
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var alerts = await node.VigieAsync("audit", "show", "--event", "110113", "--details", "--json");
        Assert.True(alerts.ExitCode == 0, alerts.ToString());
        var restore = Assert.Single(JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray(),
            e => e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith("audit accept-restore:", StringComparison.Ordinal));
        var text = restore.GetProperty("details").GetProperty("outcome").GetString()!;
        Assert.Contains("ticket 4711", text, StringComparison.Ordinal);
        Assert.Contains(Convert.ToHexStringLower(recorded.RootHash), text, StringComparison.Ordinal);
    }

    private static void ExecuteOnIndex(VigieNode node, string sql)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}

/// <summary>
/// Bug: at a stop, the export stopped before the Application Stop entry was written and before the last head was
/// signed: neither ever reached the collector (only the latest head is sent after a restart), so the moments before a
/// stop had no copy outside.
/// </summary>
public sealed class AuditExportAtStopTests
{
    [Fact]
    public async Task The_stop_entry_and_the_last_head_reach_the_collector_before_the_node_exits()
    {
        var ct = TestContext.Current.CancellationToken;
        using var outside = new TempDirectory("vigie-export");
        var export = outside.Combine("audit.ndjson");
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "arr",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "FhirNdjson",
            ["VIGIE__AUDIT__SINKS__0__NDJSONPATH"] = export,
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await node.StopAsync();

        var head = await node.VigieAsync("audit", "head", "--json");
        Assert.True(head.ExitCode == 0, head.ToString());
        var size = Assert.Single(Vigie.Audit.Signing.TreeHeadJson.Parse(head.StandardOutput)).TreeSize;
        var text = await File.ReadAllTextAsync(export, ct);
        Assert.Contains("\"110121\"", text, StringComparison.Ordinal);
        Assert.Contains(Vigie.Audit.Signing.TreeHeadJson.Parse(text), h => h.TreeSize == size);

        // Bug: `audit prove` printed neither the head's timestamp nor its public key, so its signature could not be
        // checked outside Vigie. The head now comes whole, and checks with nothing but what the proof carries.
        var prove = await node.VigieAsync("audit", "prove", "1");
        Assert.True(prove.ExitCode == 0, prove.ToString());
        var proof = JsonDocument.Parse(prove.StandardOutput).RootElement;
        var signed = Assert.Single(Vigie.Audit.Signing.TreeHeadJson.Parse(proof.GetProperty("tree_head").GetRawText()));
        Assert.True(signed.VerifySignature(Vigie.Audit.Signing.AuditPublicKey.FromRaw(signed.PublicKey)));
        Assert.True(Vigie.Audit.Merkle.MerkleProofs.VerifyInclusion(1, signed.TreeSize, Convert.FromHexString(proof.GetProperty("leaf_hash").GetString()!),
            [.. proof.GetProperty("audit_path").EnumerateArray().Select(p => Convert.FromHexString(p.GetString()!))], signed.RootHash));
    }
}

/// <summary>
/// Regression: `vigie audit sinks --data DIR` (as the README gave it) read no configuration when the node's lives in
/// /etc/vigie/vigie.json, said "no audit export sink is configured" and exited 0 while the export failed: a monitoring
/// timer written from the README stayed green. The sinks whose state the database holds are reported whatever the
/// configuration read, and the file read (or none) is named.
/// </summary>
public sealed class AuditSinksWithoutConfigTests
{
    [Fact]
    public async Task Regression_audit_sinks_said_none_configured_and_exited_0_without_the_nodes_config()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "siem",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "SyslogTcp",
            ["VIGIE__AUDIT__SINKS__0__HOST"] = "127.0.0.1",
            ["VIGIE__AUDIT__SINKS__0__PORT"] = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture),
            ["VIGIE__AUDIT__SINKS__0__MINBACKOFF"] = "00:00:00.200",
            ["VIGIE__AUDIT__SINKS__0__MAXBACKOFF"] = "00:00:01",
        }, cancellationToken: ct);
        await Eventually.WaitForAsync(() => node.HealthCheckAsync("audit-export", ct), h => h.Status == "Degraded", ct);

        // The node's settings minus the sink: what a command run without --config reads.
        var environment = node.Environment.Where(e => !e.Key.StartsWith("VIGIE__AUDIT__SINKS__", StringComparison.Ordinal))
            .ToDictionary(e => e.Key, e => e.Value);
        var sinks = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "audit", "sinks", "--data", node.Data],
            TimeSpan.FromMinutes(3), environment, cancellationToken: ct);
        Assert.True(sinks.ExitCode == 1, sinks.ToString());
        Assert.Contains("configuration: no file read", sinks.StandardOutput, StringComparison.Ordinal);
        Assert.Matches("siem \\(recorded in the database, not in this configuration\\): [0-9]+ entries waiting, [1-9][0-9]* failed attempts", sinks.StandardOutput);
        Assert.DoesNotContain("no audit export sink is configured", sinks.StandardOutput, StringComparison.Ordinal);
    }
}
