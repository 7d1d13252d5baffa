using System.Text;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Configuration changes are audited (PS3.15 A.5.3.11): the first start records the configuration, and each later start
/// names the settings added, changed or removed since the one before, never their values.
/// </summary>
public sealed class ConfigurationAuditTests
{
    private const string Secret = "s3cret-token-9f2c71";

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Each_start_audits_the_settings_changed_since_the_last_by_name_never_by_value(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        using var outside = new TempDirectory("vigie-config-audit");
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        await node.StopAsync();
        var first = Assert.Single(await ConfigurationEntriesAsync(node));
        Assert.Matches("^configuration recorded: [0-9]+ settings$", Outcome(first));
        Assert.Equal(["Security Configuration", "Network Configuration", "Software Configuration"], EventTypes(first));
        // Regression: the start and the stop named the node only, so filtering by the account that ran serve missed them.
        var byAccount = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--user", Environment.UserName, "--event", "110100")).StandardOutput)
            .RootElement.EnumerateArray().ToList();
        Assert.Contains(byAccount, e => EventTypes(e).Contains("Application Start"));
        Assert.Contains(byAccount, e => EventTypes(e).Contains("Application Stop"));

        // The operator adds an export to the FHIR repository, with its token, and slows the maintenance down.
        node.SetEnvironment("VIGIE__AUDIT__SINKS__0__NAME", "arr");
        node.SetEnvironment("VIGIE__AUDIT__SINKS__0__KIND", "FhirNdjson");
        node.SetEnvironment("VIGIE__AUDIT__SINKS__0__NDJSONPATH", outside.Combine("audit.ndjson"));
        node.SetEnvironment("VIGIE__AUDIT__SINKS__0__BEARERTOKEN", Secret);
        node.SetEnvironment("VIGIE__GATEWAY__MAINTENANCE__INTERVAL", "02:00:00");
        await node.StartProcessAsync(ct);
        await node.StopAsync();

        var entries = await ConfigurationEntriesAsync(node);
        Assert.Equal(2, entries.Count);
        var changed = entries[0];
        // Names as the operator wrote them (here, environment variables).
        Assert.Equal("configuration changed since the last start: 4 added (AUDIT:SINKS:0:BEARERTOKEN, AUDIT:SINKS:0:KIND, AUDIT:SINKS:0:NAME, "
            + "AUDIT:SINKS:0:NDJSONPATH); 1 changed (GATEWAY:MAINTENANCE:INTERVAL)", Outcome(changed));
        Assert.Equal(["Security Configuration", "Software Configuration"], EventTypes(changed));

        // A start with the same settings records nothing; a new token is named, not shown.
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        Assert.Equal(2, (await ConfigurationEntriesAsync(node)).Count);
        node.SetEnvironment("VIGIE__AUDIT__SINKS__0__BEARERTOKEN", "another-" + Secret);
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        Assert.Equal("configuration changed since the last start: 1 changed (AUDIT:SINKS:0:BEARERTOKEN)", Outcome((await ConfigurationEntriesAsync(node))[0]));

        // Neither the database nor the trail nor its export holds the value.
        var everything = await node.VigieAsync("audit", "show", "--json", "--details", "--limit", "1000");
        Assert.DoesNotContain(Secret, everything.StandardOutput, StringComparison.Ordinal);
        foreach (var file in Directory.EnumerateFiles(node.Data, "*", SearchOption.AllDirectories).Append(outside.Combine("audit.ndjson")))
        {
            Assert.False((await File.ReadAllBytesAsync(file, ct)).AsSpan().IndexOf(Encoding.UTF8.GetBytes(Secret)) >= 0, file);
        }

        // Regression (review of a running node): a rule added together with a new AE title (or port) was not named, the
        // node being new under its new name. It is compared with the one node this machine ran before.
        node.SetEnvironment("VIGIE__ACCESS__DICOMNODES__0__AETITLE", "EVIL");
        node.SetEnvironment("VIGIE__ACCESS__DICOMNODES__0__NETWORKS__0", "127.0.0.1/32");
        node.SetEnvironment("VIGIE__DICOM__SERVER__AETITLE", "VIGIE2");
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        var moved = Outcome((await ConfigurationEntriesAsync(node))[0]);
        Assert.StartsWith("configuration changed since the last start of VIGIE@", moved, StringComparison.Ordinal);
        Assert.Contains("the node this machine ran before under another name", moved, StringComparison.Ordinal);
        Assert.Contains("ACCESS:DICOMNODES:0:AETITLE", moved, StringComparison.Ordinal);

        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    /// <summary>
    /// Regression (a review of a running node): vigie.json edited on a running node, and SIGHUP, changed nothing and
    /// said nothing, so an administrator shutting a modality out believed it done.
    /// </summary>
    [Fact]
    public async Task Regression_editing_the_settings_of_a_running_node_said_nothing_of_the_restart_it_needs()
    {
        var ct = TestContext.Current.CancellationToken;
        // The settings file outside the data folder, as the service has it (none is read from the data folder since 2026-12-07).
        using var etc = new TempDirectory("vigie-settings-edit");
        var settings = etc.Combine("vigie.json");
        await File.WriteAllTextAsync(settings, "{}", ct);
        await using var node = await VigieNode.StartAsync(arguments: ["--config", settings], cancellationToken: ct);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("settings", ct)).Status);
        using (var hangUp = System.Diagnostics.Process.Start("kill", ["-HUP", node.ProcessId!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await hangUp.WaitForExitAsync(ct);
        }

        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("SIGHUP received", StringComparison.Ordinal), ct);
        // Regression (review of the docs): SIGHUP was logged, but /health stayed Healthy.
        Assert.Equal("Degraded", (await node.HealthCheckAsync("settings", ct)).Status);
        await File.WriteAllTextAsync(settings, """{ "Access": { "DicomNodes": [] } }""", ct);
        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("changed after the start", StringComparison.Ordinal), ct);
        var (status, description) = await node.HealthCheckAsync("settings", ct);
        Assert.Equal("Degraded", status);
        Assert.Contains("restart vigie serve to apply", description, StringComparison.Ordinal);
        Assert.Null(node.ExitCode);
    }

    [Fact]
    public async Task Regression_a_security_file_edited_under_the_same_name_was_not_audited()
    {
        var ct = TestContext.Current.CancellationToken;
        using var rules = new TempDirectory("vigie-config-rules");
        var list = rules.Combine("local.sha256");
        await File.WriteAllTextAsync(list, new string('a', 64) + " Known.Bad.One\n", ct);
        // Beside the signatures, what the loader does not read: a status pipe (which hung the start) and a git folder.
        using (var fifo = System.Diagnostics.Process.Start("mkfifo", [rules.Combine("status.txt")]))
        {
            await fifo.WaitForExitAsync(ct);
        }

        Directory.CreateDirectory(rules.Combine(".git", "objects"));
        await File.WriteAllTextAsync(rules.Combine(".git", "objects", "pack.idx"), "not a signature", ct);
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__INSPECTION__SIGNATURES__RULESDIRECTORY"] = rules.Path },
            cancellationToken: ct);
        await node.StopAsync();

        // Same setting, same folder: a signature taken out of the list (or a certificate renewed in place) is a change.
        await File.WriteAllTextAsync(list, new string('b', 64) + " Known.Bad.Two\n", ct);
        await node.StartProcessAsync(ct);
        await node.StopAsync();
        var changed = (await ConfigurationEntriesAsync(node))[0];
        Assert.Equal("configuration changed since the last start: 1 changed (INSPECTION:SIGNATURES:RULESDIRECTORY (contents))", Outcome(changed));
        Assert.Equal(["Security Configuration"], EventTypes(changed));

        await node.StartProcessAsync(ct);
        await node.StopAsync();
        Assert.Equal(2, (await ConfigurationEntriesAsync(node)).Count);
    }

    [Fact]
    public async Task Regression_the_http_port_flag_was_dropped_when_the_settings_named_web_urls()
    {
        var ct = TestContext.Current.CancellationToken;
        // The node passes --http-port; the settings name another port on the same address.
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__WEB__URLS"] = $"http://127.0.0.1:{VigieNode.FreePort()}" },
            cancellationToken: ct);
        Assert.Equal("Healthy", (await node.HealthCheckAsync("settings", ct)).Status);
        Assert.Contains($"127.0.0.1:{node.HttpPort}", node.Output, StringComparison.Ordinal);
    }

    private static string Outcome(JsonElement entry) => entry.GetProperty("details").GetProperty("outcome").GetString()!;

    private static List<string> EventTypes(JsonElement entry) => [.. entry.GetProperty("event_types").EnumerateArray().Select(t => t.GetString()!)];

    /// <summary>The configuration entries, newest first.</summary>
    private static async Task<List<JsonElement>> ConfigurationEntriesAsync(VigieNode node)
    {
        var audit = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110113");
        Assert.True(audit.ExitCode == 0, audit.ToString());
        return [.. JsonDocument.Parse(audit.StandardOutput).RootElement.EnumerateArray()
            .Where(e => Outcome(e).StartsWith("configuration ", StringComparison.Ordinal))];
    }
}
