using Vigie.Testing;

namespace Vigie.Cli.Tests.Conventions;

/// <summary>
/// Regressions from a first-deployment review: a wrong argument or setting is named in the operator's words, with exit
/// code 2, before anything is created.
/// </summary>
public sealed class ErrorMessageTests
{
    [Fact]
    public async Task Regression_bad_arguments_and_settings_gave_dotnet_type_names_or_no_cause()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-errors");
        var data = work.Combine("data");

        var port = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "abc"], cancellationToken: ct);
        Assert.Equal(2, port.ExitCode);
        Assert.Contains("as a whole number", port.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", port.StandardError, StringComparison.Ordinal);

        var range = await VigieProcess.RunAsync(["serve", "--data", data, "--http-port", "99999"], cancellationToken: ct);
        Assert.Equal(2, range.ExitCode);
        Assert.Contains("--http-port must be between 1 and 65535", range.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(data));

        // Regression: --limit 0 listed "nothing in quarantine" with exit 0, and past the maximum it was clamped quietly.
        foreach (var command in new[] { new[] { "quarantine", "list" }, ["audit", "show"], ["audit", "sinks"], ["forward", "status"] })
        {
            foreach (var value in new[] { "-1", "10000001" })
            {
                var limit = await VigieProcess.RunAsync([.. command, "--data", data, "--limit", value], cancellationToken: ct);
                Assert.True(limit.ExitCode == 2, limit.ToString());
                Assert.Contains($"--limit must be between", limit.StandardError, StringComparison.Ordinal);
            }

            // Regression (second review): a value that is no number made the range check throw, exit 134 with a stack trace.
            var word = await VigieProcess.RunAsync([.. command, "--data", data, "--limit", "abc"], cancellationToken: ct);
            Assert.True(word.ExitCode == 2, word.ToString());
            Assert.DoesNotContain("Unhandled", word.StandardError, StringComparison.Ordinal);
        }

        var prove = await VigieProcess.RunAsync(["audit", "prove", "-1", "--data", data], cancellationToken: ct);
        Assert.Equal(2, prove.ExitCode);
        Assert.Contains("cannot be negative", prove.StandardError, StringComparison.Ordinal);

        var network = await VigieProcess.RunAsync(["serve", "--data", data, "--allow", "CT01@10.1.2.0/33", "--dicom-port", "1", "--http-port", "1"],
            cancellationToken: ct);
        Assert.Equal(2, network.ExitCode);
        Assert.Contains("'10.1.2.0/33' is not an IP address or network", network.StandardError, StringComparison.Ordinal);

        Directory.CreateDirectory(data);
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, "{ \"Gateway\": {\n  \"MaxFindResults\": 10,\n", ct);
        var json = await VigieProcess.RunAsync(["stats", "--data", data, "--config", config], cancellationToken: ct);
        Assert.Equal(2, json.ExitCode);
        Assert.Contains("LineNumber", json.StandardError, StringComparison.Ordinal);

        // Regression: the maintenance commands took a misspelt key in silence (serve warns).
        await File.WriteAllTextAsync(config, "{ \"Acess\": { \"Mode\": \"open\" } }", ct);
        var typo = await VigieProcess.RunAsync(["stats", "--data", data, "--config", config], cancellationToken: ct);
        Assert.Contains("configuration key Acess", typo.StandardError, StringComparison.Ordinal);
        Assert.Contains("is not a Vigie setting and is ignored", typo.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a host name in Web:Urls made the web server listen on every interface (/health, /metrics and the
    /// audit API on the network) while the status line named the host; a bad URL gave a stack trace; and
    /// "--allow @10.0.0.0/8" was read as a response file.
    /// </summary>
    [Fact]
    public async Task Regression_a_host_name_in_web_urls_listened_on_every_interface()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-urls");
        var data = work.Combine("data");
        foreach (var (urls, expected) in new[]
                 {
                     ("http://localhost.invalid:18721", "names the host 'localhost.invalid': the web server cannot listen on a name and would listen on every interface"),
                     ("http://*:18721", "names the host '*'"),
                     ("not a url", "'not a url' is not an http:// URL"),
                     // Regressions (second review): https gave the web server's hint for developers, after the DICOM node listened;
                     // two addresses on one port failed as "address already in use".
                     ("https://127.0.0.1:18721", "is https: the web endpoint has no certificate setting and serves plain HTTP"),
                     ("http://127.0.0.1:18721;http://localhost:18721", "listen on the same address and port"),
                     ("http://127.0.0.1:18721/vigie", "has a path: the web endpoint listens at the root"),
                     ("http://127.0.0.1:99999", "has the port '99999'"),
                 })
        {
            var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "1"], environment: new Dictionary<string, string> { ["VIGIE__WEB__URLS"] = urls },
                cancellationToken: ct);
            Assert.Equal(2, serve.ExitCode);
            Assert.Contains("cannot start: Web:Urls ", serve.StandardError, StringComparison.Ordinal);
            Assert.Contains(expected, serve.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", serve.StandardError + serve.StandardOutput, StringComparison.Ordinal);
        }

        var allow = await VigieProcess.RunAsync(["serve", "--data", data, "--allow", "@10.0.0.0/8", "--dicom-port", "1", "--http-port", "1"], cancellationToken: ct);
        Assert.Equal(2, allow.ExitCode);
        Assert.Contains("'@10.0.0.0/8' is not AE@CIDR", allow.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(data));
    }

    /// <summary>
    /// Regression: an NDJSON audit export inside the data folder was accepted, and patient names were then written
    /// there in clear, where nothing may be.
    /// </summary>
    [Fact]
    public async Task Regression_an_ndjson_export_inside_the_data_folder_was_accepted()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-ndjson");
        var data = work.Combine("data");
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, $$"""
            { "Audit": { "Sinks": [ { "Name": "siem-file", "Kind": "FhirNdjson", "NdjsonPath": "{{Path.Combine(data, "export", "audit.ndjson")}}" } ] } }
            """, ct);
        var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--config", config, "--dicom-port", "1", "--http-port", "1"], cancellationToken: ct);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("Audit:Sinks:0:NdjsonPath", serve.StandardError, StringComparison.Ordinal);
        Assert.Contains("which may not lie in Vigie's data or key folder", serve.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: Audit:SigningKeyPath inside the data folder was accepted, and the Ed25519 private key was written there
    /// in plain, beside the (SQLite) trail it signs: whoever held a copy of the data folder could rewrite the trail and
    /// sign new tree heads. Refused since 2026-12-07, also through a symbolic link.
    /// </summary>
    [Fact]
    public async Task Regression_an_audit_signing_key_inside_the_data_folder_was_accepted()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-signing-key");
        var data = work.Combine("data");
        var link = work.Combine("kl");
        File.CreateSymbolicLink(link, "data/keys");
        foreach (var key in new[] { Path.Combine(data, "keys", "audit-signing.key"), Path.Combine(link, "audit-signing.key") })
        {
            var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "1", "--http-port", "1"],
                environment: new Dictionary<string, string> { ["VIGIE__AUDIT__SIGNINGKEYPATH"] = key }, cancellationToken: ct);
            Assert.True(serve.ExitCode == 2, serve.StandardError + serve.StandardOutput);
            Assert.Contains("Audit:SigningKeyPath", serve.StandardError, StringComparison.Ordinal);
            Assert.Contains("is inside the data folder", serve.StandardError, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(data, "keys", "audit-signing.key")));
        }
    }

    /// <summary>
    /// Regression: every setting refused at start printed the clear line, then the host's "Hosting failed to start" with
    /// a .NET stack trace (9 to 39 frames, with the build's source paths), and a negative Database:BusyTimeout started.
    /// </summary>
    [Fact]
    public async Task Regression_a_setting_refused_at_start_came_with_the_host_s_stack_trace()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-settings");
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, "{ \"Database\": { \"BusyTimeout\": \"-00:00:05\" } }", ct);
        var serve = await VigieProcess.RunAsync(["serve", "--data", work.Combine("data"), "--config", config, "--dicom-port", "1", "--http-port", "1"],
            cancellationToken: ct);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("Database:BusyTimeout -00:00:05 must be positive", serve.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", serve.StandardError + serve.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("Hosting failed to start", serve.StandardError + serve.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a start stopped by a port in use or an unreachable database printed the host's "Hosting failed to
    /// start" with a stack trace, and "Failed to connect to 127.0.0.1:N" without why. A misspelt provider did not list
    /// the providers, and a misspelt connection-string key gave only Npgsql's "Couldn't set prot".
    /// </summary>
    [Fact]
    public async Task Regression_a_start_stopped_by_a_port_or_the_database_came_with_the_host_s_stack_trace()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-start");
        using var busy = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        busy.Start();
        var busyPort = ((System.Net.IPEndPoint)busy.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        async Task<string> RefusedAsync(string[] arguments, string? configuration)
        {
            List<string> all = ["serve", "--data", work.Combine("data"), .. arguments];
            if (configuration is not null)
            {
                var file = work.Combine("vigie.json");
                await File.WriteAllTextAsync(file, configuration, ct);
                all.AddRange(["--config", file]);
            }

            var serve = await VigieProcess.RunAsync([.. all], cancellationToken: ct);
            Assert.True(serve.ExitCode == 2, serve.StandardError + serve.StandardOutput);
            Assert.DoesNotContain("   at ", serve.StandardError + serve.StandardOutput, StringComparison.Ordinal);
            Assert.DoesNotContain("Hosting failed to start", serve.StandardError + serve.StandardOutput, StringComparison.Ordinal);
            return serve.StandardError;
        }

        Assert.Contains($"cannot start: cannot listen for DICOM on 127.0.0.1:{busyPort}: Address already in use",
            await RefusedAsync(["--dicom-port", busyPort, "--http-port", VigieNodePort()], null), StringComparison.Ordinal);
        var closedPort = VigieNodePort();
        Assert.Contains($"cannot start: the index database: Failed to connect to 127.0.0.1:{closedPort}: Connection refused",
            await RefusedAsync(["--dicom-port", VigieNodePort(), "--http-port", VigieNodePort()],
                $$"""{ "Database": { "Provider": "Postgres", "ConnectionString": "Host=127.0.0.1;Port={{closedPort}};Username=vigie;Timeout=5" } }"""),
            StringComparison.Ordinal);
        Assert.Contains("Database:Provider is 'PostgreSQL', which is not one of: Sqlite, Postgres.",
            await RefusedAsync(["--dicom-port", "1", "--http-port", "1"], """{ "Database": { "Provider": "PostgreSQL" } }"""), StringComparison.Ordinal);
        Assert.Contains("Database:ConnectionString is not a PostgreSQL connection string: Couldn't set prot",
            await RefusedAsync(["--dicom-port", "1", "--http-port", "1"], """{ "Database": { "Provider": "Postgres", "ConnectionString": "Host=db;Prot=5432" } }"""),
            StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: `--data` naming a file stopped serve with "The file '...' already exists", and a folder of other
    /// files was taken for a new data folder and filled with Vigie's.
    /// </summary>
    [Fact]
    public async Task Regression_a_data_folder_that_is_a_file_or_holds_other_files_gave_no_clear_cause()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-data");
        var file = work.Combine("afile");
        await File.WriteAllTextAsync(file, "not a folder", ct);
        var isFile = await VigieProcess.RunAsync(["serve", "--data", file, "--dicom-port", "1", "--http-port", "1"], cancellationToken: ct);
        Assert.Equal(2, isFile.ExitCode);
        Assert.Contains($"the data folder {file} is a file, not a folder", isFile.StandardError, StringComparison.Ordinal);

        // Regression: a data folder of over 500 bytes stopped the start with "SQLite Error 14: 'unable to open database
        // file'", naming neither the path nor the limit, and left the folder behind.
        var deep = Path.Combine(work.Path, string.Join('/', Enumerable.Repeat(new string('d', 60), 9)));
        var tooLong = await VigieProcess.RunAsync(["serve", "--data", deep, "--dicom-port", "1", "--http-port", "1"], cancellationToken: ct);
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("would pass the 511 bytes SQLite opens: choose a shorter --data", tooLong.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(deep));

        var home = work.Combine("home");
        Directory.CreateDirectory(home);
        await File.WriteAllTextAsync(Path.Combine(home, "notes.txt"), "the user's", ct);
        var foreign = await VigieProcess.RunAsync(["serve", "--data", home, "--dicom-port", VigieNodePort(), "--http-port", VigieNodePort()], cancellationToken: ct);
        Assert.Equal(2, foreign.ExitCode);
        Assert.Contains("holds no archive but other files (notes.txt)", foreign.StandardError, StringComparison.Ordinal);
        Assert.Equal(["notes.txt"], Directory.EnumerateFileSystemEntries(home).Select(Path.GetFileName));
    }

    /// <summary>Regression: an index that could not be opened (a folder in its place) stopped serve with "SQLite Error 14".</summary>
    [Fact]
    public async Task Regression_serve_said_sqlite_error_14_for_an_index_it_could_not_open()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-index");
        var data = work.Combine("data");
        Directory.CreateDirectory(Path.Combine(data, "index.db"));
        var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", VigieNodePort(), "--http-port", VigieNodePort()], cancellationToken: ct);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains($"cannot start: the index {Path.Combine(data, "index.db")} is a folder, not a file", serve.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Error 14", serve.StandardError, StringComparison.Ordinal);
    }

    /// <summary>Regression: `audit sinks` said "no audit export sink is configured" of a sink whose Kind was misspelt, and serve named a .NET type.</summary>
    [Fact]
    public async Task Regression_audit_sinks_said_none_was_configured_of_a_sink_with_a_misspelt_kind()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-sinks");
        var data = work.Combine("data");
        Directory.CreateDirectory(data);
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config,
            """{ "Audit": { "Sinks": [ { "Name": "siem", "Kind": "Sylog", "Host": "127.0.0.1", "Port": 6514 } ] } }""", ct);
        var sinks = await VigieProcess.RunAsync(["audit", "sinks", "--data", data, "--config", config], cancellationToken: ct);
        Assert.Equal(2, sinks.ExitCode);
        Assert.Contains("Audit:Sinks:0:Kind is 'Sylog', which is not one of: SyslogTcp, SyslogTls, FhirHttp, FhirNdjson.", sinks.StandardError,
            StringComparison.Ordinal);
        Assert.DoesNotContain("Vigie.Audit", sinks.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("no audit export sink", sinks.StandardOutput, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Regression: inspection limits were taken as they came; MaxFindings 0 answered every threat A700, unquarantined.</summary>
    [Fact]
    public async Task Regression_inspection_limits_of_zero_were_taken_and_max_findings_0_answered_threats_with_an_error()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-limits");
        var sample = work.Combine("sample.txt");
        await File.WriteAllTextAsync(sample, "plain text", ct);
        var environment = new Dictionary<string, string>
        {
            ["Vigie__Inspection__MaxFindings"] = "0", ["Vigie__Inspection__MaxDepth"] = "-1",
            // Second review: past 49 days a timer throws, and every store failed A700.
            ["Vigie__Inspection__Timeout"] = "60.00:00:00",
        };
        var scan = await VigieProcess.RunAsync(["scan", sample], environment: environment, cancellationToken: ct);
        Assert.Equal(2, scan.ExitCode);
        Assert.Contains("Inspection:MaxFindings 0 is below 1", scan.StandardError, StringComparison.Ordinal);
        Assert.Contains("Inspection:MaxDepth -1 is below 1", scan.StandardError, StringComparison.Ordinal);
        Assert.Contains("Inspection:Timeout 60.00:00:00 is not between 0 and 1 day", scan.StandardError, StringComparison.Ordinal);
        var serve = await VigieProcess.RunAsync(["serve", "--data", work.Combine("data"), "--dicom-port", VigieNodePort(), "--http-port", VigieNodePort()],
            environment: environment, cancellationToken: ct);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("Inspection:MaxFindings 0 is below 1", serve.StandardError, StringComparison.Ordinal);
    }

    private static string VigieNodePort() => TestPorts.Free().ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Regression_a_bad_retention_period_stopped_the_start_with_an_aggregate_exception_saying_it_twice()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-retention");
        var serve = await VigieProcess.RunAsync(["serve", "--data", work.Combine("data"), "--dicom-port", "1", "--http-port", "1"],
            environment: new Dictionary<string, string> { ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__NAME"] = "r", ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "-1.00:00:00" },
            cancellationToken: ct);
        Assert.Equal(2, serve.ExitCode);
        var line = Assert.Single(serve.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("vigie serve: cannot start: Gateway:Maintenance:Retention:Studies -1.00:00:00 must be a positive period", line, StringComparison.Ordinal);
        Assert.Equal(1, line.Split("must be a positive period").Length - 1);

        // A required entry left out was named in .NET's words.
        var unnamed = await VigieProcess.RunAsync(["serve", "--data", work.Combine("data"), "--dicom-port", "1", "--http-port", "1"],
            environment: new Dictionary<string, string> { ["VIGIE__GATEWAY__MAINTENANCE__RETENTION__STUDIES"] = "3650.00:00:00" }, cancellationToken: ct);
        Assert.Equal(2, unnamed.ExitCode);
        Assert.Contains("cannot start: a retention policy setting lacks its Name, which is required", unnamed.StandardError, StringComparison.Ordinal);
    }
}
