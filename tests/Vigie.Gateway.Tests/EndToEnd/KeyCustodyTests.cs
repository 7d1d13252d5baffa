using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Bug: the key-encryption key file, the root key or the audit signing key deleted while the node ran went unnoticed:
/// the node served on its cached keys and /health said Healthy, until the next start refused (or, without a backup,
/// the archive was lost). /health (keys) is now Unhealthy and names each file, and Healthy again once it is restored.
/// </summary>
public sealed class KeyCustodyTests
{
    /// <summary>
    /// Regression: a completed rotation removed the old key from the key file and said only "rotation complete": every
    /// copy of the key folder made before it could no longer open the archive, and the operator was not told to make a
    /// new one, so losing the server's disk after a rotation lost the archive.
    /// </summary>
    [Fact]
    public async Task Regression_keys_rotate_made_the_key_backup_useless_without_a_word()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2).ToList(), ct);
        var rotated = await node.VigieAsync("keys", "rotate", "--json");
        Assert.True(rotated.ExitCode == 0, rotated.ToString());
        using var report = System.Text.Json.JsonDocument.Parse(rotated.StandardOutput);
        Assert.True(report.RootElement.GetProperty("completed").GetBoolean());
        Assert.Equal(2, report.RootElement.GetProperty("rewrapped").GetInt64());
        Assert.Contains($"back up {Path.Combine(node.Keys, "kek.json")} now", rotated.StandardError, StringComparison.Ordinal);
        await node.StoreAsync(Peers.CtCorpusFiles().Skip(2).Take(1).ToList(), ct);
        Assert.Equal(3, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // Regression: a key file that could not be opened (a folder in its place, or no permission) read "is missing".
        await node.StopAsync();
        var kek = Path.Combine(node.Keys, "kek.json");
        File.Move(kek, kek + ".away");
        Directory.CreateDirectory(kek);
        var stats = await node.VigieAsync("stats");
        Assert.Equal(2, stats.ExitCode);
        Assert.Contains($"the key file {kek} is a folder, not a file", stats.StandardError, StringComparison.Ordinal);
        Directory.Delete(kek);
        Assert.Contains($"the key file {kek} is missing", (await node.VigieAsync("stats")).StandardError, StringComparison.Ordinal);
        File.Move(kek + ".away", kek);
    }

    /// <summary>
    /// Regression (second review of a running node): a foreign or exposed audit signing key was found only at the first
    /// tree head, seconds after the start, and the node then stored with nothing signed. The start is refused.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Regression_a_foreign_or_exposed_signing_key_was_found_only_after_the_node_had_started()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1).ToList(), ct);
        await node.StopAsync();
        await using var other = await VigieNode.StartAsync(cancellationToken: ct);
        await other.StopAsync();
        var key = Path.Combine(node.Keys, "audit-signing.key");
        File.Move(key, key + ".kept");
        File.Copy(Path.Combine(other.Keys, "audit-signing.key"), key);
        var port = node.DicomPortText;
        var http = node.HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var foreign = await node.VigieAsync("serve", "--dicom-port", port, "--http-port", http);
        Assert.Equal(2, foreign.ExitCode);
        Assert.Contains("restore the right key file", foreign.StandardError, StringComparison.Ordinal);

        File.Move(key + ".kept", key, overwrite: true);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var exposed = await node.VigieAsync("serve", "--dicom-port", port, "--http-port", http);
        Assert.Equal(2, exposed.ExitCode);
        Assert.Contains("chmod 600", exposed.StandardError, StringComparison.Ordinal);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    [Fact]
    public async Task Regression_key_files_deleted_while_the_node_runs_went_unnoticed_by_health()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1).ToList(), ct);
        var signingKey = Path.Combine(node.Keys, "audit-signing.key");
        // The signer loads its key at the first tree head; the node signs one shortly after a store.
        await Eventually.WaitForAsync(() => Task.FromResult(File.Exists(signingKey)), exists => exists, ct, TimeSpan.FromSeconds(60));
        Assert.Equal("Healthy", (await node.HealthCheckAsync("keys", ct)).Status);

        var files = new[] { Path.Combine(node.Keys, "kek.json"), Path.Combine(node.Data, "keys", "root.key"), signingKey };
        foreach (var file in files)
        {
            File.Move(file, file + ".away");
        }

        var (status, description) = await Eventually.WaitForAsync(() => node.HealthCheckAsync("keys", ct),
            h => h.Description.Contains("audit signing key", StringComparison.Ordinal), ct, TimeSpan.FromSeconds(60));
        Assert.Equal("Unhealthy", status);
        Assert.Contains("kek.json is gone", description, StringComparison.Ordinal);
        Assert.Contains("root.key is gone", description, StringComparison.Ordinal);
        Assert.Contains("audit-signing.key is gone", description, StringComparison.Ordinal);

        foreach (var file in files)
        {
            File.Move(file + ".away", file);
        }

        Assert.Equal(("Healthy", "key files in place"), await node.HealthCheckAsync("keys", ct));
    }
}
