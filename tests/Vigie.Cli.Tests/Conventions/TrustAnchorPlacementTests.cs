using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Conventions;

/// <summary>
/// A settings file inside the data folder is not read at all (since 2026-12-07): whoever can write the data folder must
/// not choose the index the checks read, the keys, the audit trust anchors, the scrub thresholds or who may retrieve.
/// </summary>
public sealed class TrustAnchorPlacementTests
{
    /// <summary>
    /// Bug (review 19, D4): a vigie.json planted in the data folder, which with SQLite holds the audit trail too, with
    /// Audit:TrustedPublicKeys naming the planter's key made a forged, re-signed trail verify clean with a plain
    /// `vigie audit verify --data DIR` (the default settings search read that file). Every command, serve included, now stops.
    /// </summary>
    [Fact]
    public async Task Regression_a_trust_list_planted_in_the_data_folder_made_a_forged_trail_verify()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-trust-anchor");
        var data = root.Combine("data");
        Directory.CreateDirectory(data);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var planted = Path.Combine(data, "vigie.json");

        await File.WriteAllTextAsync(planted, $$$"""{"Audit":{"TrustedPublicKeys":["{{{key}}}"]}}""", ct);
        var refused = await VigieProcess.RunAsync(["audit", "verify", "--data", data], cancellationToken: ct);
        AssertRefused(refused, planted);

        // serve too (refused before it binds anything).
        var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "13286", "--http-port", "18986"], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        AssertRefused(serve, planted);

        // Any setting, not only the trust anchors.
        await File.WriteAllTextAsync(planted, """{"Audit":{"TreeHeadEveryEntries":5}}""", ct);
        AssertRefused(await VigieProcess.RunAsync(["stats", "--data", data], cancellationToken: ct), planted);

        // The same anchors from a file outside it are taken; the one in the data folder is then named, not read.
        var outside = root.Combine("vigie.json");
        await File.WriteAllTextAsync(outside, $$$"""{"Audit":{"TrustedPublicKeys":["{{{key}}}"]}}""", ct);
        var given = await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", outside], cancellationToken: ct);
        Assert.DoesNotContain("lies inside the data folder", given.StandardError, StringComparison.Ordinal);
        Assert.Contains($"{planted} is inside the data folder and is not read", given.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug (review 22, N2): `&lt;data&gt;/vigie.json` as a symbolic link to a file outside the data folder trusting the
    /// attacker's key passed, since only the link's target was compared with the data folder, and a forged trail verified.
    /// Now the path as found, its folders' links resolved, and its target are each compared, with the data folder's
    /// links resolved too, so a link either way, a `..`, the current folder or a data folder reached by a link all stop.
    /// </summary>
    [Fact]
    public async Task Regression_a_settings_file_linked_from_the_data_folder_counted_as_outside_it()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-settings-link");
        var data = root.Combine("data");
        Directory.CreateDirectory(Path.Combine(data, "sub"));
        var elsewhere = root.Combine("elsewhere");
        Directory.CreateDirectory(elsewhere);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var target = Path.Combine(elsewhere, "vigie.json");
        await File.WriteAllTextAsync(target, $$$"""{"Audit":{"TrustedPublicKeys":["{{{key}}}"]}}""", ct);

        // A link in the data folder to a file outside, found by the default search before 2026-12-07 and given with --config.
        var link = Path.Combine(data, "vigie.json");
        File.CreateSymbolicLink(link, target);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data], cancellationToken: ct), link);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", link], cancellationToken: ct), link);
        // Spelt with `..`, and through a link to the data folder.
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", Path.Combine(data, "sub", "..", "vigie.json")],
            cancellationToken: ct), link);
        var dataLink = root.Combine("data-link");
        Directory.CreateSymbolicLink(dataLink, data);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", dataLink, "--config", link], cancellationToken: ct), link);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", Path.Combine(dataLink, "vigie.json")],
            cancellationToken: ct), "vigie.json");
        File.Delete(link);

        // The other way: a file outside that is a link into the data folder.
        var inside = Path.Combine(data, "sub", "settings.json");
        File.Move(target, inside);
        File.CreateSymbolicLink(target, inside);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", target], cancellationToken: ct), target);

        // The current folder inside the data folder: its vigie.json is inside too.
        File.Move(inside, Path.Combine(data, "sub", "vigie.json"));
        var fromInside = await Peers.RunAsync("dotnet", [VigieProcess.DllPath, "audit", "verify", "--data", data], TimeSpan.FromMinutes(2),
            workingDirectory: Path.Combine(data, "sub"), cancellationToken: ct);
        AssertRefused(fromInside, Path.Combine(data, "sub", "vigie.json"));
    }

    /// <summary>
    /// Bug (review 22, N3): the other settings of a planted `&lt;data&gt;/vigie.json` were still read: Database:SqlitePath
    /// pointed scrub and audit verify at a clean copy of the index, and both exited 0 while the live index was tampered.
    /// Now the file stops them with exit 2.
    /// </summary>
    [Fact]
    public async Task Regression_a_planted_settings_file_pointed_scrub_and_verify_at_a_shadow_index()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-settings-shadow");
        var (data, _, shadow, clean) = await TamperedArchiveAsync(root, ct);
        var verify = await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", clean], cancellationToken: ct);
        Assert.True(verify.ExitCode == 1, verify.ToString());

        var planted = Path.Combine(data, "vigie.json");
        await File.WriteAllTextAsync(planted, $$$"""{"Database":{"SqlitePath":"{{{shadow}}}"}}""", ct);
        AssertRefused(await VigieProcess.RunAsync(["scrub", "--data", data, "--json"], cancellationToken: ct), planted);
        AssertRefused(await VigieProcess.RunAsync(["audit", "verify", "--data", data], cancellationToken: ct), planted);
        AssertRefused(await VigieProcess.RunAsync(["stats", "--data", data], cancellationToken: ct), planted);
    }

    /// <summary>
    /// Bug (review 22, N3): Archive:OrphanGrace of ten years in a planted `&lt;data&gt;/vigie.json` made scrub call the
    /// object of a deleted acknowledged instance "in flight" and exit 0. Now the file stops scrub; with --config it is not
    /// read, is reported foreign, and scrub names on stderr the settings file and the index it read.
    /// </summary>
    [Fact]
    public async Task Regression_a_planted_orphan_grace_hid_a_deleted_instance_from_scrub()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-settings-grace");
        var (data, index, _, clean) = await TamperedArchiveAsync(root, ct);
        var planted = Path.Combine(data, "vigie.json");
        await File.WriteAllTextAsync(planted, """{"Archive":{"OrphanGrace":"3650.00:00:00"}}""", ct);
        AssertRefused(await VigieProcess.RunAsync(["scrub", "--data", data, "--json"], cancellationToken: ct), planted);

        // With the real settings the planted file is not read: the deleted instance is an orphan, and the file is foreign.
        var real = await VigieProcess.RunAsync(["scrub", "--data", data, "--config", clean, "--json"], cancellationToken: ct);
        Assert.True(real.ExitCode == 1, real.ToString());
        Assert.Contains("\"orphans\": 1", real.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("\"vigie.json\"", real.StandardOutput, StringComparison.Ordinal);
        Assert.Contains($"{planted} is inside the data folder and is not read", real.StandardError, StringComparison.Ordinal);
        // Which settings and which index, on stderr only (stdout is the JSON).
        Assert.Contains($"settings from {clean}; index: SQLite {index}", real.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("settings from", real.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// An archive holding one image whose index was altered behind the node's back after a copy was kept (index-shadow.db):
    /// the instance's rows deleted a day after its object was written, and the first audit entry rewritten. Checked with
    /// the real settings (etc.json, outside the data folder), scrub exits 1.
    /// </summary>
    private static async Task<(string Data, string Index, string Shadow, string Clean)> TamperedArchiveAsync(TempDirectory root, CancellationToken ct)
    {
        var data = root.Combine("data");
        await StoreOneAsync(data, ct);
        var index = Path.Combine(data, "index.db");
        var shadow = Path.Combine(data, "index-shadow.db");
        File.Copy(index, shadow);
        if (File.Exists(index + "-wal"))
        {
            File.Copy(index + "-wal", shadow + "-wal");
        }

        await using (var connection = new SqliteConnection($"Data Source={index};Pooling=False"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "delete from archive_versions; delete from archive_instances; "
                + "update audit_entry set user_id='ATTACKER' where seq=(select min(seq) from audit_entry);";
            await command.ExecuteNonQueryAsync(ct);
        }

        foreach (var file in Directory.EnumerateFiles(Path.Combine(data, "objects"), "*", SearchOption.AllDirectories))
        {
            File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddDays(-1));
        }

        var clean = root.Combine("etc.json");
        await File.WriteAllTextAsync(clean, "{}", ct);
        var scrub = await VigieProcess.RunAsync(["scrub", "--data", data, "--config", clean, "--json"], cancellationToken: ct);
        Assert.True(scrub.ExitCode == 1, scrub.ToString());
        return (data, index, shadow, clean);
    }

    [Fact]
    public void The_index_named_on_stderr_has_no_password()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = "Host=db.example;Port=25432;Database=vigie;Username=u;Password=secret-word",
        }).Build();
        var described = MaintenanceHost.DescribeIndex(configuration);
        Assert.Equal("PostgreSQL db.example:25432, database vigie", described);
    }

    private static void AssertRefused(ProcessResult result, string file)
    {
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("lies inside the data folder", result.StandardError, StringComparison.Ordinal);
        Assert.Contains(file, result.StandardError, StringComparison.Ordinal);
        Assert.Contains("--config", result.StandardError, StringComparison.Ordinal);
        Assert.Contains("which index the checks read", result.StandardError, StringComparison.Ordinal);
    }

    /// <summary>A new archive at <paramref name="data"/> holding one CT image, stored by storescu; the node stopped after.</summary>
    private static async Task StoreOneAsync(string data, CancellationToken ct)
    {
        var storescu = Peers.Require("storescu", "dcmtk");
        var dicomPort = TestPorts.Free();
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { VigieProcess.DllPath, "serve", "--data", data, "--dicom-port", dicomPort.ToString(CultureInfo.InvariantCulture),
                     "--http-port", TestPorts.Free().ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:00";
        using var serve = Process.Start(info)!;
        serve.OutputDataReceived += (_, _) => { };
        serve.ErrorDataReceived += (_, _) => { };
        serve.BeginOutputReadLine();
        serve.BeginErrorReadLine();
        try
        {
            await Eventually.WaitForAsync(async () =>
            {
                using var probe = new TcpClient();
                try
                {
                    await probe.ConnectAsync("127.0.0.1", dicomPort, ct);
                    return true;
                }
                catch (SocketException)
                {
                    return false;
                }
            }, up => up, ct, TimeSpan.FromSeconds(90));
            var stored = await Peers.RunAsync(storescu, ["-aec", "VIGIE", "127.0.0.1", dicomPort.ToString(CultureInfo.InvariantCulture), Peers.CtCorpusFiles()[0]],
                TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(stored.ExitCode == 0, stored.ToString());
        }
        finally
        {
            using (var term = Process.Start("kill", ["-TERM", serve.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync(ct);
            }

            await serve.WaitForExitAsync(ct);
        }
    }
}
