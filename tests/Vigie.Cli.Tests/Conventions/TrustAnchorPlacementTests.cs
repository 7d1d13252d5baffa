using System.Security.Cryptography;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Conventions;

public sealed class TrustAnchorPlacementTests
{
    /// <summary>
    /// Bug (review 19, D4): a vigie.json planted in the data folder, which with SQLite holds the audit trail too, with
    /// Audit:TrustedPublicKeys naming the planter's key made a forged, re-signed trail verify clean with a plain
    /// `vigie audit verify --data DIR` (the default settings search reads that file). Trust anchors from a file inside the
    /// data folder now stop every command; its other settings, and the same anchors from a file outside, are taken.
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
        Assert.True(refused.ExitCode == 2, refused.ToString());
        Assert.Contains("is inside the data folder", refused.StandardError, StringComparison.Ordinal);
        Assert.Contains("Audit:TrustedPublicKeys", refused.StandardError, StringComparison.Ordinal);
        Assert.Contains("--config", refused.StandardError, StringComparison.Ordinal);

        // The key path too: a planted one would point the signer, and verification, at a key of the planter's.
        await File.WriteAllTextAsync(planted, $$$"""{"Audit":{"SigningKeyPath":"{{{root.Combine("elsewhere.key")}}}"}}""", ct);
        var stats = await VigieProcess.RunAsync(["stats", "--data", data], cancellationToken: ct);
        Assert.True(stats.ExitCode == 2, stats.ToString());
        Assert.Contains("Audit:SigningKeyPath", stats.StandardError, StringComparison.Ordinal);

        // serve too, found by the default search from the data folder (refused before it binds anything).
        await File.WriteAllTextAsync(planted, $$$"""{"Audit":{"TrustedPublicKeys":["{{{key}}}"]}}""", ct);
        var serve = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "13286", "--http-port", "18986"], TimeSpan.FromSeconds(60),
            cancellationToken: ct);
        Assert.True(serve.ExitCode == 2, serve.ToString());
        Assert.Contains("Audit:TrustedPublicKeys", serve.StandardError, StringComparison.Ordinal);

        // Other settings in the data folder's file are still read, and the anchors from a file outside it are taken.
        await File.WriteAllTextAsync(planted, """{"Audit":{"TreeHeadEveryEntries":5}}""", ct);
        var other = await VigieProcess.RunAsync(["audit", "verify", "--data", data], cancellationToken: ct);
        Assert.DoesNotContain("inside the data folder", other.StandardError, StringComparison.Ordinal);
        var outside = root.Combine("vigie.json");
        await File.WriteAllTextAsync(outside, $$$"""{"Audit":{"TrustedPublicKeys":["{{{key}}}"]}}""", ct);
        var given = await VigieProcess.RunAsync(["audit", "verify", "--data", data, "--config", outside], cancellationToken: ct);
        Assert.DoesNotContain("inside the data folder", given.StandardError, StringComparison.Ordinal);
    }
}
