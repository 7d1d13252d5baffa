using System.Globalization;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Regressions from a review of a PACS administrator's first week: install, configure, operate (review 28).</summary>
public sealed class AdministratorFirstWeekTests
{
    private static string Vigie => Path.Combine(AppContext.BaseDirectory, "vigie.dll");

    /// <summary>
    /// Regression: Gateway:Forwarding was not checked at start. BatchSize 0 started without a word and forwarded
    /// nothing (objects waited, /health Healthy); a negative MaxAttempts or delay and a zero Lease started too.
    /// </summary>
    [Fact]
    public async Task Regression_forwarding_settings_out_of_range_started_and_batch_size_zero_forwarded_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-forwarding-settings");
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, """
            { "Gateway": { "Forwarding": { "BatchSize": 0, "MaxAttempts": -3, "InitialRetryDelay": "-00:00:05", "Lease": "00:00:00",
              "CallingAE": "A_CALLING_TITLE_TOO_LONG" } } }
            """, ct);
        var http = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture);
        var dicom = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture);
        var serve = await Peers.RunAsync("dotnet", [Vigie, "serve", "--data", work.Combine("data"), "--config", config, "--dicom-port", dicom, "--http-port", http,
            "--forward", $"PACS@127.0.0.1:{VigieNode.FreePort()}"], TimeSpan.FromMinutes(1), cancellationToken: ct);

        Assert.True(serve.ExitCode == 2, serve.ToString());
        var line = Assert.Single(serve.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("vigie serve: cannot start: ", line, StringComparison.Ordinal);
        foreach (var expected in new[]
                 {
                     "Gateway:Forwarding:BatchSize is 0: it must be at least 1", "Gateway:Forwarding:MaxAttempts is -3: it must not be negative",
                     "Gateway:Forwarding:InitialRetryDelay -00:00:05 must be positive", "Gateway:Forwarding:Lease 00:00:00 must be positive",
                     "Gateway:Forwarding:CallingAE 'A_CALLING_TITLE_TOO_LONG' has 24 characters",
                 })
        {
            Assert.Contains(expected, line, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("listening on", serve.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: the first start's backup advice named kek.json alone; a restore made from it lacked the audit signing
    /// key and its .heads record, and refused to start. The advice names the key folder and every file in it.
    /// </summary>
    [Fact]
    public async Task Regression_first_start_backup_advice_named_kek_json_alone()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StopAsync();

        var advice = Assert.Single(node.Output.Split('\n'), l => l.Contains("Created new keys", StringComparison.Ordinal));
        Assert.Contains($"Created new keys in {node.Keys}{Path.DirectorySeparatorChar} (kek.json, audit-signing.key and audit-signing.key.heads). "
            + "Back up this whole folder apart from the data folder", advice, StringComparison.Ordinal);
        // Each file it names is there once the node has stopped (the .heads at the first signed head, a stop's at the latest).
        foreach (var file in new[] { "kek.json", "audit-signing.key", "audit-signing.key.heads" })
        {
            Assert.True(File.Exists(Path.Combine(node.Keys, file)), file);
        }

        // A restart creates nothing, and says nothing of it.
        await node.StartProcessAsync(ct);
        Assert.Single(node.Output.Split('\n'), l => l.Contains("Created new keys", StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression: a data folder that cannot be written (immutable, or on a file system mounted read-only) stopped the
    /// start with "the index database: SQLite Error 14: 'unable to open database file'", which names neither the folder
    /// nor the cause and reads as a damaged index.
    /// </summary>
    [Fact]
    public async Task Regression_an_unwritable_data_folder_read_as_sqlite_error_14()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StopAsync();
        var locked = await Peers.RunAsync("chattr", ["+i", node.Data], TimeSpan.FromSeconds(30), cancellationToken: ct);
        if (locked.ExitCode != 0)
        {
            Assert.Skip($"the data folder cannot be made immutable here (chattr, as root, on ext4): {locked.StandardError.Trim()}");
        }

        string output;
        try
        {
            var failed = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartProcessAsync(ct));
            Assert.Contains("exited with 2", failed.Message, StringComparison.Ordinal);
            output = node.Output;
        }
        finally
        {
            await Peers.RunAsync("chattr", ["-i", node.Data], TimeSpan.FromSeconds(30), cancellationToken: CancellationToken.None);
        }

        Assert.Contains($"vigie serve: cannot start: the data folder {node.Data} cannot be written: it is immutable (chattr +i", output, StringComparison.Ordinal);
        // The error that stopped the start comes after the cause, no longer alone.
        Assert.Contains("(the start failed on: the index database: SQLite Error 14", output, StringComparison.Ordinal);

        // On a file system mounted read-only (a tmpfs here).
        await using var mounted = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, null, ct);
        Directory.CreateDirectory(mounted.Data);
        var mount = await Peers.RunAsync("mount", ["-t", "tmpfs", "-o", "size=200m", "tmpfs", mounted.Data], TimeSpan.FromSeconds(30), cancellationToken: ct);
        if (mount.ExitCode != 0)
        {
            Assert.Skip($"a file system to mount read-only is needed (tmpfs mount, as root): {mount.StandardError.Trim()}");
        }

        try
        {
            await mounted.StartProcessAsync(ct);
            await mounted.StopAsync();
            var readOnly = await Peers.RunAsync("mount", ["-o", "remount,ro", mounted.Data], TimeSpan.FromSeconds(30), cancellationToken: ct);
            Assert.True(readOnly.ExitCode == 0, readOnly.ToString());
            await Assert.ThrowsAsync<InvalidOperationException>(() => mounted.StartProcessAsync(ct));
            // The index file is checked first, and now says why it cannot be opened for writing.
            Assert.Contains($"vigie serve: cannot start: the index {Path.Combine(mounted.Data, "index.db")} cannot be written: its file system is mounted read-only",
                mounted.Output, StringComparison.Ordinal);
        }
        finally
        {
            await mounted.StopAsync();
            await Peers.RunAsync("umount", ["-l", mounted.Data], TimeSpan.FromSeconds(30), cancellationToken: CancellationToken.None);
        }
    }

    /// <summary>
    /// Regression: `vigie forward status --json` left out oldest_wait_seconds, next_attempt_in_seconds and last_error
    /// while nothing waited, so a monitoring script reading them broke on a healthy queue. An object waiting (not past
    /// BacklogAlert) is no finding: exit 0, as deploy.md says.
    /// </summary>
    [Fact]
    public async Task Regression_forward_status_json_changed_its_keys_with_the_outcome()
    {
        var ct = TestContext.Current.CancellationToken;
        // Nothing listens there: the object waits.
        var forward = $"PACS@127.0.0.1:{VigieNode.FreePort()}";
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", forward], cancellationToken: ct);

        var empty = await node.VigieAsync("forward", "status", "--json", "--forward", forward);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var waiting = await node.VigieAsync("forward", "status", "--json", "--forward", forward);

        Assert.True(empty.ExitCode == 0, empty.ToString());
        Assert.True(waiting.ExitCode == 0, waiting.ToString());
        var before = JsonDocument.Parse(empty.StandardOutput).RootElement;
        var after = JsonDocument.Parse(waiting.StandardOutput).RootElement;
        Assert.Equal(Keys(before), Keys(after));
        foreach (var key in new[] { "oldest_wait_seconds", "next_attempt_in_seconds", "last_error" })
        {
            Assert.Equal(JsonValueKind.Null, before.GetProperty(key).ValueKind);
        }

        Assert.Equal(0, before.GetProperty("waiting").GetInt64());
        Assert.Equal(1, after.GetProperty("waiting").GetInt64());
        Assert.Equal(JsonValueKind.Number, after.GetProperty("oldest_wait_seconds").ValueKind);
        Assert.True(after.GetProperty("healthy").GetBoolean());

        static string[] Keys(JsonElement e) => [.. e.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal)];
    }

    /// <summary>
    /// Regression: `vigie serve` named neither the settings file it read, nor the index it opened, nor the key folder
    /// (but at the very first start), where the maintenance commands name them: a vigie.json picked up from the
    /// working folder or a redirected index did not show in the service log.
    /// </summary>
    [Fact]
    public async Task Regression_serve_did_not_name_its_settings_file_index_and_keys()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-serve-sources");
        var config = work.Combine("site.json");
        var index = work.Combine("elsewhere", "index.db");
        Directory.CreateDirectory(Path.GetDirectoryName(index)!);
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new { Database = new { SqlitePath = index } }), ct);
        await using var node = await VigieNode.StartAsync(arguments: ["--config", config], cancellationToken: ct);
        await node.StopAsync();
        await node.StartProcessAsync(ct);

        var expected = $"Settings from {config}; index: SQLite {index}; keys: {node.Keys}{Path.DirectorySeparatorChar} (kek.json, audit-signing.key)";
        Assert.Equal(2, node.Output.Split('\n').Count(l => l.Contains(expected, StringComparison.Ordinal)));

        // Without a file, and on PostgreSQL: its host, port and database, never the password.
        if (TestDatabases.PostgresConnectionString is null)
        {
            return;
        }

        await using var postgres = await VigieNode.StartAsync(DatabaseProvider.Postgres, cancellationToken: ct);
        var connection = new Npgsql.NpgsqlConnectionStringBuilder(postgres.Environment["VIGIE__DATABASE__CONNECTIONSTRING"]);
        Assert.Contains($"Settings from no file (no --config, no vigie.json in the current folder); index: PostgreSQL {connection.Host}:{connection.Port}, "
            + $"database {connection.Database}", postgres.Output, StringComparison.Ordinal);
        if (!string.IsNullOrEmpty(connection.Password))
        {
            Assert.DoesNotContain(connection.Password, postgres.Output, StringComparison.Ordinal);
        }
    }
}
