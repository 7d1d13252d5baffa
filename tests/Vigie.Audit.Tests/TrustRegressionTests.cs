using Vigie.Audit.Signing;
using Vigie.Audit.Verification;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>Review 19: what the node trusts about its own signed heads, when the database was rewritten.</summary>
public sealed class TrustRegressionTests
{
    private const int Size = 20;

    /// <summary>
    /// Bug (review 19, D5): a trail whose heads were re-signed in the database with another key stopped verification
    /// (exit 2, no report) with "add the earlier public key KEY to Audit:TrustedPublicKeys", KEY read from the database,
    /// the forger's; following it made the forgery verify. The heads are now reported as TreeHeadUntrustedKey, and the
    /// start's refusal names the key's id as found in the database, never the key to trust.
    /// </summary>
    [Fact]
    public async Task Regression_heads_re_signed_with_a_foreign_key_stopped_verification_and_the_refusal_offered_the_forgers_key()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, Size));
        var head = (await h.Log.SignTreeHeadAsync(ct))!;
        using var keys = new TempDirectory();
        using var attacker = await FileSigningKeyProvider.LoadOrCreateAsync(keys.Combine("attacker.pem"), ct);
        var signature = attacker.Sign(SignedTreeHead.SignedBytes(head.TreeSize, head.Timestamp.ToUnixTimeMilliseconds(), head.RootHash));
        await h.ExecuteAsync("UPDATE audit_tree_head SET key_id = @k, public_key = @p, signature = @s",
            ("@k", attacker.KeyId), ("@p", attacker.PublicKey), ("@s", signature));
        await h.ReopenAsync();

        var report = await h.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadUntrustedKey && p.TreeSize == Size
            && p.Reason.Contains(attacker.KeyId, StringComparison.Ordinal));

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await h.Log.GetPublicKeyAsync(ct));
        Assert.Contains($"{attacker.KeyId}, found in the database, not trusted", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String(attacker.PublicKey), refused.Message, StringComparison.Ordinal);
        Assert.Contains("known from outside the database", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>Bug (review 19, D5): the refusal for a missing key file gave the key read from the database to trust.</summary>
    [Fact]
    public async Task Regression_the_missing_key_refusal_offered_a_key_read_from_the_database()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, Size));
        var head = (await h.Log.SignTreeHeadAsync(ct))!;
        File.Delete(h.KeyPath);
        await h.ReopenAsync();
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await h.Log.GetPublicKeyAsync(ct));
        Assert.Contains("is missing", refused.Message, StringComparison.Ordinal);
        Assert.Contains("not trusted", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String(head.PublicKey), refused.Message, StringComparison.Ordinal);
    }
}
