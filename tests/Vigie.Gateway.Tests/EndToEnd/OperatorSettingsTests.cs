using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Regressions from an operator-experience review (settings of `vigie serve`, the commands on its data folder).</summary>
public sealed class OperatorSettingsTests
{
    private static string Vigie => Path.Combine(AppContext.BaseDirectory, "vigie.dll");

    /// <summary>
    /// Regression: Archive:DataFolder (environment or file) took the objects, quarantine, spool and root key, while the
    /// index and the key folder stayed in --data (or ./vigie-data), and it beat the flag; stats with the file that named
    /// the folder did not find the index.
    /// </summary>
    [Fact]
    public async Task Regression_archive_data_folder_split_the_archive_and_beat_the_data_flag()
    {
        var ct = TestContext.Current.CancellationToken;
        using var elsewhere = new TempDirectory("vigie-datafolder");
        var other = elsewhere.Combine("envfolder");
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__Archive__DataFolder"] = other },
            cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await node.StopAsync();

        Assert.False(Directory.Exists(other), string.Join(", ", Directory.Exists(other) ? Directory.EnumerateFileSystemEntries(other) : []));
        Assert.NotEmpty(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories));
        Assert.True(File.Exists(Path.Combine(node.Data, "index.db")));
        Assert.True(File.Exists(Path.Combine(node.Data + ".keys", "kek.json")));
        Assert.Contains($"The data folder is {node.Data}, from --data; Archive:DataFolder {other} from the environment", node.Output, StringComparison.Ordinal);

        // Without --data, the file's Archive:DataFolder is the whole archive's folder, for the commands as for serve.
        var config = elsewhere.Combine("vigie.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new { Archive = new { DataFolder = node.Data } }), ct);
        var stats = await Peers.RunAsync("dotnet", [Vigie, "stats", "--config", config, "--json"], TimeSpan.FromMinutes(2),
            workingDirectory: elsewhere.Path, cancellationToken: ct);
        Assert.True(stats.ExitCode == 0, stats.ToString());
        Assert.Equal(1, JsonDocument.Parse(stats.StandardOutput).RootElement.GetProperty("instances").GetInt64());
        Assert.False(Directory.Exists(elsewhere.Combine("vigie-data")));
    }

    /// <summary>
    /// Regression: with the HTTP port taken, the DICOM node listened and accepted (a C-ECHO audited as a login) before
    /// the start failed, and the trail kept an Application Start with no Application Stop; the same with the DICOM port taken.
    /// </summary>
    [Fact]
    public async Task Regression_a_failed_start_served_dicom_and_left_a_start_without_a_stop()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, null, ct);
        string[] serve = [Vigie, "serve", "--data", node.Data, "--dicom-port", node.DicomPortText, "--http-port", node.HttpPort.ToString(CultureInfo.InvariantCulture)];

        using (var http = new TcpListener(IPAddress.Loopback, node.HttpPort))
        {
            http.Start();
            using var probing = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var probe = ProbeAsync(node.DicomPort, probing.Token);
            var result = await Peers.RunAsync("dotnet", serve, TimeSpan.FromMinutes(2), node.Environment.ToDictionary(), cancellationToken: ct);
            await probing.CancelAsync();
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains("address already in use", result.StandardError, StringComparison.OrdinalIgnoreCase);
            // A connection may have waited in the backlog, but none was answered with an A-ASSOCIATE-AC.
            Assert.Equal(0, await probe);
        }

        using (var dicom = new TcpListener(IPAddress.Loopback, node.DicomPort))
        {
            dicom.Start();
            var result = await Peers.RunAsync("dotnet", serve, TimeSpan.FromMinutes(2), node.Environment.ToDictionary(), cancellationToken: ct);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains("cannot listen for DICOM", result.StandardError, StringComparison.Ordinal);
        }

        var trail = await node.VigieAsync("audit", "show", "--json", "--limit", "1000");
        Assert.True(trail.ExitCode == 0, trail.ToString());
        var entries = JsonDocument.Parse(trail.StandardOutput).RootElement.EnumerateArray().ToList();
        var types = entries.SelectMany(e => e.TryGetProperty("event_types", out var t) ? t.EnumerateArray().Select(x => x.GetString()) : []).ToList();
        Assert.Equal(types.Count(t => t == "Application Stop"), types.Count(t => t == "Application Start"));
        Assert.DoesNotContain(entries, e => e.GetProperty("event_id").GetString() == "110114");

        // Each failed start recorded its stop beside its start; a start that succeeds records its start, and its stop at the stop.
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        var after = await node.VigieAsync("audit", "show", "--json", "--event", "110100", "--limit", "1000");
        Assert.True(after.ExitCode == 0, after.ToString());
        var activity = JsonDocument.Parse(after.StandardOutput).RootElement.EnumerateArray()
            .SelectMany(e => e.TryGetProperty("event_types", out var t) ? t.EnumerateArray().Select(x => x.GetString()) : []).ToList();
        Assert.Equal(3, activity.Count(t => t == "Application Start"));
        Assert.Equal(3, activity.Count(t => t == "Application Stop"));
    }

    /// <summary>Counts associations the port accepted: a bare TCP connect is not one; an A-ASSOCIATE-AC (PDU type 2) is.</summary>
    private static async Task<int> ProbeAsync(int port, CancellationToken cancellationToken)
    {
        var accepted = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-to", "1", "-aet", "PROBE", "-aec", "VIGIE", "127.0.0.1",
                port.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10), cancellationToken: CancellationToken.None);
            accepted += echo.ExitCode == 0 ? 1 : 0;
            try
            {
                await Task.Delay(50, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return accepted;
    }

    /// <summary>
    /// Regression: Dicom:Server:Port 0 from the environment or the file, "0 (off)" in the check's own words, listened in
    /// clear on a random port, while --dicom-port 0 was refused. 0 is off: with no TLS port either, the start stops.
    /// </summary>
    [Fact]
    public async Task Regression_dicom_port_zero_from_the_settings_listened_in_clear_on_a_random_port()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-port-zero");
        var http = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture);
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, "{ \"Dicom\": { \"Server\": { \"Port\": 0 } } }", ct);
        foreach (var (arguments, environment) in new (string[], Dictionary<string, string>)[]
                 {
                     ([], new() { ["VIGIE__Dicom__Server__Port"] = "0" }),
                     (["--config", config], new()),
                     (["--dicom-port", "0"], new()),
                 })
        {
            var result = await Peers.RunAsync("dotnet", [Vigie, "serve", "--data", work.Combine("data"), "--http-port", http, .. arguments], TimeSpan.FromMinutes(1),
                environment, cancellationToken: ct);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains("Dicom:Server:Port and Dicom:Server:TlsPort are both 0 (off): no DICOM port would open", result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("listening on", result.StandardOutput, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// Regression: on the data folder of a PostgreSQL archive, the commands run without its Database settings said "no
    /// index at DIR/index.db: is DIR a Vigie data folder?", while serve named the missing Database settings.
    /// </summary>
    [Fact]
    public async Task Regression_commands_on_a_postgres_folder_without_its_settings_doubted_the_folder()
    {
        var ct = TestContext.Current.CancellationToken;
        Assert.SkipWhen(TestDatabases.PostgresConnectionString is null, "VIGIE_TEST_POSTGRES is not set");
        await using var node = await VigieNode.StartAsync(DatabaseProvider.Postgres, cancellationToken: ct);
        await node.StopAsync();
        var plain = node.Environment.Where(e => !e.Key.StartsWith("VIGIE__DATABASE__", StringComparison.Ordinal)).ToDictionary();
        foreach (var command in new[] { new[] { "stats" }, ["audit", "show"], ["audit", "verify"], ["scrub"], ["quarantine", "list"], ["forward", "status"] })
        {
            var result = await Peers.RunAsync("dotnet", [Vigie, .. command, "--data", node.Data], TimeSpan.FromMinutes(2), plain, cancellationToken: ct);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains("give this archive's Database settings (Database:Provider, Database:ConnectionString", result.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("a Vigie data folder?", result.StandardError, StringComparison.Ordinal);
        }
    }

    /// <summary>Regression: `audit show --event "Application Start"` hinted at 110113 and 110114, which never hold a start.</summary>
    [Fact]
    public async Task Regression_event_type_hint_named_security_alert_for_application_start()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StopAsync();
        foreach (var (given, carrier) in new[] { ("Application Start", "110100 (Application Activity)"), ("110121", "110100 (Application Activity)"),
                     ("Login", "110114 (User Authentication)"), ("Node Authentication", "110113 (Security Alert)") })
        {
            var result = await node.VigieAsync("audit", "show", "--event", given);
            Assert.True(result.ExitCode == 2, result.ToString());
            Assert.Contains($"is an event type, not an event: filter on its event, --event {carrier}", result.StandardError, StringComparison.Ordinal);
        }
    }
}
