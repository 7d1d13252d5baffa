using Vigie.Audit.Model;
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

    /// <summary>
    /// Bug (review 19, D6): with every tree head deleted and an entry rewritten (its chain, nodes and state rebuilt), the
    /// node signed the forged history with its genuine key, said nothing, and verification passed. The latest head it
    /// signed is now kept beside its key: the signer refuses (and says so in the signing status), and verification
    /// reports the head gone and the history not extending it.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_node_signed_over_a_history_rewritten_after_its_tree_heads_were_deleted(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var original = await AuditHarness.CreateAsync(provider);
        await original.AppendAsync(Samples.Records(0, Size));
        Assert.NotNull(await original.Log.SignTreeHeadAsync(ct));
        Assert.True(File.Exists(original.KeyPath + ".heads"), "no witness of the signed head beside the key");

        // The same node's key folder over the database as the attacker left it: entry 5 rewritten, chain, nodes and state
        // rebuilt, and no tree head at all.
        await using var forged = await AuditHarness.CreateAsync(provider, o => o.SigningKeyPath = original.KeyPath);
        var rows = await original.Store.ReadEntriesAsync(0, Size, ct);
        rows[5].UserId = "ATTACKER";
        await using (var connection = await forged.Db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await forged.Db.Database.BeginWriteAsync(connection, ct))
        {
            await forged.Store.AppendAsync(rows, connection, transaction, ct);
            await transaction.CommitAsync(ct);
        }

        var atStart = await forged.Signer.CheckWitnessAsync(ct);
        Assert.NotNull(atStart);
        Assert.Contains("no longer holds it", atStart, StringComparison.Ordinal);
        Assert.NotNull(forged.SigningStatus.Current);
        await Assert.ThrowsAsync<AuditIntegrityException>(async () => await forged.Log.SignTreeHeadAsync(ct));
        Assert.Null(await forged.Log.GetLatestTreeHeadAsync(ct));

        var report = await forged.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid, "the rewritten history verified");
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadMismatch && p.TreeSize == Size);

        // The genuine heads put back: the head is there again, but the history under it was rewritten.
        await foreach (var (head, _) in original.Store.StreamTreeHeadsAsync(ct))
        {
            await forged.Store.InsertTreeHeadAsync(head!, ct);
        }

        Assert.Contains("rewritten", await forged.Signer.CheckWitnessAsync(ct), StringComparison.Ordinal);
    }

    /// <summary>The witness never blocks an honest log: restarts, and heads signed after it, keep it current.</summary>
    [Fact]
    public async Task The_witness_of_the_last_signed_head_follows_an_honest_log()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, Size));
        await h.Log.SignTreeHeadAsync(ct);
        await h.ReopenAsync();
        Assert.Null(await h.Signer.CheckWitnessAsync(ct));
        await h.AppendAsync(Samples.Records(Size, 3));
        var next = (await h.Log.SignTreeHeadAsync(ct))!;
        Assert.Contains($"\"treeSize\":{next.TreeSize}", await File.ReadAllTextAsync(h.KeyPath + ".heads", ct), StringComparison.Ordinal);
        Assert.Null(await h.Signer.CheckWitnessAsync(ct));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }
    /// <summary>
    /// The deliberate restore (review 19, D6, what took the first fix out): a database put back from a backup lacks the
    /// heads signed since, and the node refuses to sign. Accepting it records the restore in the trail, signs a head over
    /// it and makes that the record, so the node signs again; a restored log that does not verify by itself is refused.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_deliberate_restore_of_the_database_could_not_be_accepted(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var original = await AuditHarness.CreateAsync(provider);
        await original.AppendAsync(Samples.Records(0, 10));
        var backupHead = (await original.Log.SignTreeHeadAsync(ct))!;
        await original.AppendAsync(Samples.Records(10, Size - 10));
        var last = (await original.Log.SignTreeHeadAsync(ct))!;

        // The backup taken at size 10, put back under the same key folder.
        await using var restored = await AuditHarness.CreateAsync(provider, o => o.SigningKeyPath = original.KeyPath);
        var rows = await original.Store.ReadEntriesAsync(0, 10, ct);
        await using (var connection = await restored.Db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await restored.Db.Database.BeginWriteAsync(connection, ct))
        {
            await restored.Store.AppendAsync(rows, connection, transaction, ct);
            await transaction.CommitAsync(ct);
        }

        await restored.Store.InsertTreeHeadAsync(backupHead, ct);
        Assert.Contains("Truncated", await restored.Signer.CheckWitnessAsync(ct), StringComparison.Ordinal);
        Assert.Contains((await restored.Log.VerifyAsync(null, ct)).Problems, p => p.Kind == AuditProblemKind.Truncated);

        var acceptance = Acceptance(restored);
        var accepted = await acceptance.AcceptAsync("ticket 4711", "operator", ct);
        Assert.True(accepted.Accepted);
        Assert.Equal(last.TreeSize, accepted.RecordedSize);
        Assert.Equal(10, accepted.LogSize);
        Assert.Equal(10, accepted.Sequence);
        Assert.Equal(11, accepted.NewHead!.TreeSize);
        Assert.True(File.Exists(accepted.KeptAside));
        Assert.Equal(11, (await TreeHeadWitnessFile.ReadAsync(restored.KeyPath + ".heads", ct))!.TreeSize);
        var entry = (await restored.Log.GetAsync(10, unseal: true, ct))!;
        Assert.Equal(AuditEventIds.SecurityAlert, entry.EventId);
        Assert.Contains("ticket 4711", entry.Details!.OutcomeDescription, StringComparison.Ordinal);
        Assert.Contains(Convert.ToHexStringLower(last.RootHash), entry.Details.OutcomeDescription, StringComparison.Ordinal);

        await restored.ReopenAsync();
        Assert.Null(await restored.Signer.CheckWitnessAsync(ct));
        Assert.True((await restored.Log.VerifyAsync(null, ct)).IsValid);
        Assert.False((await Acceptance(restored).AcceptAsync("again", "operator", ct)).Accepted);

        // A restored log with an entry rewritten is not made the reference.
        await using var forged = await AuditHarness.CreateAsync(provider, o => o.SigningKeyPath = original.KeyPath);
        rows[5].UserId = "ATTACKER";
        await using (var connection = await forged.Db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await forged.Db.Database.BeginWriteAsync(connection, ct))
        {
            await forged.Store.AppendAsync(rows, connection, transaction, ct);
            await transaction.CommitAsync(ct);
        }

        await forged.Store.InsertTreeHeadAsync(backupHead, ct);
        await Assert.ThrowsAsync<AuditRestoreRefusedException>(async () => await Acceptance(forged).AcceptAsync("forged", "operator", ct));
        Assert.Equal(11, (await TreeHeadWitnessFile.ReadAsync(original.KeyPath + ".heads", ct))!.TreeSize);
    }

    /// <summary>A record that cannot be written (the key folder read-only) leaves signing going, with a warning.</summary>
    [Fact]
    public async Task A_record_of_the_last_head_that_cannot_be_written_does_not_stop_signing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, Size));
        Directory.CreateDirectory(h.KeyPath + ".heads"); // a rename over it fails, as in a read-only folder (tests run as root)
        Assert.NotNull(await h.Log.SignTreeHeadAsync(ct));
        Assert.Null(await h.Signer.CheckWitnessAsync(ct));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }

    private static AuditRestoreAcceptance Acceptance(AuditHarness h)
    {
        var options = Microsoft.Extensions.Options.Options.Create(h.Options);
        return new AuditRestoreAcceptance(h.Store, h.Signer, h.Log, new FileSigningKeyProvider(options, h.Store), h.Leases, h.Options, TimeProvider.System);
    }
}
