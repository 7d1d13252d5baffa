using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Bug: the key-encryption key file, the root key or the audit signing key deleted while the node ran went unnoticed:
/// the node served on its cached keys and /health said Healthy, until the next start refused (or, without a backup,
/// the archive was lost). /health (keys) is now Unhealthy and names each file, and Healthy again once it is restored.
/// </summary>
public sealed class KeyCustodyTests
{
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
