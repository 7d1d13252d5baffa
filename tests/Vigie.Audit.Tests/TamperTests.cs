using System.Buffers;
using Vigie.Audit.Merkle;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Audit.Verification;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>
/// An attacker with write access to the database but not the signing key. Each test tampers with the stored
/// log and checks that verification fails and names the entry (sequence number) or tree head concerned.
/// </summary>
public sealed class TamperTests
{
    private const int Size = 40;

    private static async Task<AuditHarness> SignedLogAsync(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync(Samples.Records(0, 16));
        await h.Log.SignTreeHeadAsync(ct);
        await h.AppendAsync(Samples.Records(16, Size - 16));
        await h.Log.SignTreeHeadAsync(ct);
        var clean = await h.Log.VerifyAsync(null, ct);
        Assert.True(clean.IsValid, string.Join("\n", clean.Problems));
        return h;
    }

    private static async Task<AuditVerificationReport> VerifyAsync(AuditHarness h, AuditVerifyOptions? options = null)
    {
        var report = await h.Log.VerifyAsync(options, TestContext.Current.CancellationToken);
        Assert.False(report.IsValid, "tampering went unnoticed");
        return report;
    }

    /// <summary>Exchanges the sequence numbers of two entries, keeping everything else.</summary>
    private static async Task SwapAsync(AuditHarness h, long a, long b)
    {
        await h.ExecuteAsync("UPDATE audit_entry SET seq = -1 WHERE seq = @a", ("@a", a));
        await h.ExecuteAsync("UPDATE audit_entry SET seq = @a WHERE seq = @b", ("@a", a), ("@b", b));
        await h.ExecuteAsync("UPDATE audit_entry SET seq = @b WHERE seq = -1", ("@b", b));
    }

    private static void AssertNames(AuditVerificationReport report, long sequence, params AuditProblemKind[] kinds)
    {
        Assert.Contains(report.Problems, p => p.Sequence == sequence && (kinds.Length == 0 || kinds.Contains(p.Kind)));
        // The first problem listed is about that entry, not a consequence elsewhere.
        Assert.Equal(sequence, report.Problems.First(p => p.Sequence is not null).Sequence);
    }

    public static TheoryData<DatabaseProvider, string> Columns()
    {
        var data = new TheoryData<DatabaseProvider, string>();
        foreach (var provider in new[] { DatabaseProvider.Sqlite, DatabaseProvider.Postgres })
        {
            foreach (var column in new[] { "time_ms", "event_id", "event_types", "action", "outcome", "user_id", "participants", "purpose",
                         "patient_ref", "source_id", "seal_key_id", "sealed", "prev_hash", "leaf_hash" })
            {
                data.Add(provider, column);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Columns))]
    public async Task Flipping_a_byte_of_any_column_names_the_entry(DatabaseProvider provider, string column)
    {
        await using var h = await SignedLogAsync(provider);
        // Entries 13 (a login) and 12 (an access) have the optional columns this test needs.
        var target = column is "event_types" ? 13L : column is "patient_ref" or "seal_key_id" or "sealed" ? 12L : 17L;
        var value = await h.ScalarAsync($"SELECT {column} FROM audit_entry WHERE seq = @s", ("@s", target));
        Assert.NotNull(value);
        object flipped = value switch
        {
            long l => l + 1,
            int i => i + 1,
            string s => (char)(s[0] ^ 1) + s[1..],
            byte[] b => Flip(b, b.Length / 2),
            _ => throw new InvalidOperationException(value.GetType().Name),
        };
        await h.ExecuteAsync($"UPDATE audit_entry SET {column} = @v WHERE seq = @s", ("@v", flipped), ("@s", target));

        var report = await VerifyAsync(h);
        AssertNames(report, target, AuditProblemKind.EntryModified);
        if (column != "leaf_hash")
        {
            // The content changed, so the signed root no longer matches either.
            Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadMismatch && p.TreeSize == Size);
        }
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Rewriting_an_entry_and_its_leaf_hash_is_caught_by_the_chain(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        var row = (await h.Store.ReadEntryAsync(21, TestContext.Current.CancellationToken))!;
        row.UserId = "someone-else";
        var leaf = new byte[32];
        row.ComputeLeafHash(new ArrayBufferWriter<byte>(), leaf);
        await h.ExecuteAsync("UPDATE audit_entry SET user_id = @u, leaf_hash = @l WHERE seq = 21", ("@u", row.UserId), ("@l", leaf));

        var report = await VerifyAsync(h);
        AssertNames(report, 21, AuditProblemKind.ChainBroken);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Deleting_an_entry_names_it(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync("DELETE FROM audit_entry WHERE seq = 9");
        var report = await VerifyAsync(h);
        AssertNames(report, 9, AuditProblemKind.EntryMissing);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Deleting_an_entry_and_renumbering_the_rest_names_it(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync("DELETE FROM audit_entry WHERE seq = 9");
        await h.ExecuteAsync("UPDATE audit_entry SET seq = -seq WHERE seq > 9");
        await h.ExecuteAsync("UPDATE audit_entry SET seq = -seq - 1 WHERE seq < 0");
        var report = await VerifyAsync(h);
        AssertNames(report, 9, AuditProblemKind.EntryRemoved);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Inserting_an_entry_names_it(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        // Make room at 14 by renumbering, then forge a well-formed entry there that chains to entry 13.
        await h.ExecuteAsync("UPDATE audit_entry SET seq = -seq - 1 WHERE seq >= 14");
        await h.ExecuteAsync("UPDATE audit_entry SET seq = -seq WHERE seq < 0");
        var forged = (await h.Store.ReadEntryAsync(13, ct))!;
        forged.Seq = 14;
        forged.UserId = "intruder";
        forged.PrevHash = forged.LeafHash;
        var leaf = new byte[32];
        forged.ComputeLeafHash(new ArrayBufferWriter<byte>(), leaf);
        await h.ExecuteAsync($"INSERT INTO audit_entry ({AuditStore.EntryColumns}) VALUES (@a0,@a1,@a2,@a3,@a4,@a5,@a6,@a7,@a8,@a9,@a10,@a11,@a12,@a13,@a14)",
            ("@a0", 14L), ("@a1", forged.TimeMs), ("@a2", forged.EventId), ("@a3", forged.EventTypes), ("@a4", forged.Action), ("@a5", forged.Outcome),
            ("@a6", forged.UserId), ("@a7", forged.Participants), ("@a8", forged.Purpose), ("@a9", forged.PatientRef), ("@a10", forged.SourceId),
            ("@a11", forged.SealKeyId), ("@a12", forged.Sealed), ("@a13", forged.PrevHash), ("@a14", leaf));

        var report = await VerifyAsync(h);
        AssertNames(report, 14, AuditProblemKind.EntryInserted);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Swapping_two_entries_names_both(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        // Exchange the sequence numbers of entries 5 and 30, keeping everything else.
        await SwapAsync(h, 5, 30);
        var report = await VerifyAsync(h);
        AssertNames(report, 5, AuditProblemKind.EntryMoved);
        Assert.Contains(report.Problems, p => p.Sequence == 30 && p.Kind == AuditProblemKind.EntryMoved);
    }

    /// <summary>
    /// Bug: two neighbouring entries swapped were reported as entry 2 removed and entry 2 inserted, with a state
    /// mismatch and patient index mismatches besides, all consequences of the one swap.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Swapping_two_neighbouring_entries_is_named_a_swap_and_nothing_else(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        await SwapAsync(h, 12, 13);
        var report = await VerifyAsync(h);
        var entries = report.Problems.Where(p => p.Kind != AuditProblemKind.TreeHeadMismatch).ToList();
        Assert.Equal([12L, 13L], entries.Select(p => p.Sequence!.Value));
        Assert.All(entries, p => Assert.Equal(AuditProblemKind.EntryMoved, p.Kind));
        Assert.Contains("swapped with entry 13", entries[0].Reason, StringComparison.Ordinal);
        Assert.Equal(12, Assert.Single(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadMismatch).Sequence);
    }

    /// <summary>Bug: one altered entry gave one identical line per signed tree head after it.</summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task An_altered_entry_under_many_heads_is_one_head_problem(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        for (var i = 0; i < 5; i++)
        {
            await h.AppendAsync(Samples.Records(Size + i, 1));
            await h.Log.SignTreeHeadAsync(ct);
        }

        await h.ExecuteAsync("UPDATE audit_entry SET user_id = 'someone-else' WHERE seq = 3");
        var report = await VerifyAsync(h);
        var head = Assert.Single(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadMismatch);
        Assert.Equal(3, head.Sequence);
        Assert.Contains("the 7 tree heads from size 16 to 45", head.Reason, StringComparison.Ordinal);
        Assert.Equal(2, report.ProblemCount);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Truncating_the_tail_is_caught_by_the_signed_head(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync("DELETE FROM audit_entry WHERE seq >= 35");
        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.Truncated && p.Sequence == 35 && p.TreeSize == Size);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Truncating_entries_heads_and_state_is_caught_by_a_witnessed_head(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        var witnessed = (await h.Log.GetLatestTreeHeadAsync(ct))!;
        // A careful attacker rolls everything back to size 16, where a genuine head exists.
        await h.ExecuteAsync("DELETE FROM audit_entry WHERE seq >= 16");
        await h.ExecuteAsync("DELETE FROM audit_patient_run WHERE seq >= 16");
        await h.ExecuteAsync("DELETE FROM audit_tree_head WHERE tree_size > 16");
        await h.ExecuteAsync("DELETE FROM audit_node WHERE ((idx + 1) << level) > 16");
        var frontier = new MerkleFrontier();
        foreach (var row in await h.Store.ReadEntriesAsync(0, 16, ct))
        {
            frontier.Append(row.LeafHash, null);
        }

        var last = (await h.Store.ReadEntryAsync(15, ct))!.LeafHash;
        await h.ExecuteAsync("UPDATE audit_state SET tree_size = 16, frontier = @f, last_leaf = @l", ("@f", frontier.Serialize()), ("@l", last));
        // The node's own record of its last head, beside its key, tells (since 2026-12-07).
        var own = await VerifyAsync(h);
        Assert.Contains(own.Problems, p => p.Kind == AuditProblemKind.Truncated && p.Sequence == 16 && p.TreeSize == Size);
        File.Delete(h.KeyPath + ".heads");
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid); // without it, locally consistent: this is the documented limit

        var report = await VerifyAsync(h, new AuditVerifyOptions { WitnessedHeads = [witnessed] });
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.Truncated && p.Sequence == 16 && p.TreeSize == Size);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_forged_tree_head_fails_its_signature(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        var root = (byte[])(await h.ScalarAsync("SELECT root_hash FROM audit_tree_head WHERE tree_size = 16"))!;
        await h.ExecuteAsync("UPDATE audit_tree_head SET root_hash = @r WHERE tree_size = 16", ("@r", Flip(root, 0)));
        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadSignature && p.TreeSize == 16);

        await h.ExecuteAsync("UPDATE audit_tree_head SET tree_size = 17 WHERE tree_size = 16");
        report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadSignature && p.TreeSize == 17);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_head_signed_with_another_key_is_not_trusted(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        using var keys = new TempDirectory();
        using var attacker = await FileSigningKeyProvider.LoadOrCreateAsync(keys.Combine("k.pem"), ct);
        await h.AppendAsync(Samples.Records(Size, 2));
        var state = await h.Store.ReadStateAsync(ct);
        var root = MerkleFrontier.Parse(state.TreeSize, state.Frontier).Root();
        var now = DateTimeOffset.UtcNow;
        var head = new SignedTreeHead(state.TreeSize, now, root, attacker.KeyId, attacker.PublicKey,
            attacker.Sign(SignedTreeHead.SignedBytes(state.TreeSize, now.ToUnixTimeMilliseconds(), root)));
        await h.Store.InsertTreeHeadAsync(head, ct);
        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TreeHeadUntrustedKey && p.TreeSize == Size + 2);

        // Verifying with the wrong trusted key rejects every head.
        var wrong = await h.Log.VerifyAsync(new AuditVerifyOptions { TrustedKeys = [AuditPublicKey.FromRaw(attacker.PublicKey)] }, ct);
        Assert.Contains(wrong.Problems, p => p.Kind == AuditProblemKind.TreeHeadUntrustedKey && p.TreeSize == Size);
        Assert.Contains(wrong.Problems, p => p.Kind == AuditProblemKind.TreeHeadUntrustedKey && p.TreeSize == 16);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_rewritten_suffix_with_rebuilt_hashes_is_caught_by_the_signed_heads(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var original = await SignedLogAsync(provider);
        // The attacker rebuilds the whole log with entry 20 changed (new chain, nodes and state), and keeps the genuine heads.
        await using var forged = await AuditHarness.CreateAsync(provider);
        var rows = await original.Store.ReadEntriesAsync(0, Size, ct);
        rows[20].UserId = "intruder";
        await using (var connection = await forged.Db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await forged.Db.Database.BeginWriteAsync(connection, ct))
        {
            await forged.Store.AppendAsync(rows, connection, transaction, ct);
            await transaction.CommitAsync(ct);
        }

        await foreach (var (head, _) in original.Store.StreamTreeHeadsAsync(ct))
        {
            await forged.Store.InsertTreeHeadAsync(head!, ct);
        }

        var key = await original.Log.GetPublicKeyAsync(ct);
        var report = await forged.Log.VerifyAsync(new AuditVerifyOptions { TrustedKeys = [key] }, ct);
        Assert.False(report.IsValid);
        var problem = Assert.Single(report.Problems);
        Assert.Equal(AuditProblemKind.TreeHeadMismatch, problem.Kind);
        Assert.Equal(Size, problem.TreeSize);
        Assert.Contains("entries 16 to 39", problem.Reason, StringComparison.Ordinal);
        Assert.Equal(16, report.LatestVerifiedHead?.TreeSize);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_tampered_subtree_node_is_named_and_proofs_refuse_it(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        var hash = (byte[])(await h.ScalarAsync("SELECT hash FROM audit_node WHERE level = 4 AND idx = 1"))!;
        await h.ExecuteAsync("UPDATE audit_node SET hash = @h WHERE level = 4 AND idx = 1", ("@h", Flip(hash, 3)));
        var report = await VerifyAsync(h);
        var problem = Assert.Single(report.Problems);
        Assert.Equal(AuditProblemKind.NodeMismatch, problem.Kind);
        Assert.Equal(16, problem.Sequence);
        await Assert.ThrowsAsync<AuditIntegrityException>(async () => await h.Log.GetInclusionProofAsync(3, null, ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_tampered_append_state_is_reported(DatabaseProvider provider)
    {
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync("UPDATE audit_state SET tree_size = tree_size + 1");
        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.StateMismatch);
    }

    /// <summary>
    /// Bug: the signer took the root from the audit_state row's frontier. Random bytes written there got genuine
    /// signatures over roots no entries have, which do not extend the heads already signed (and went to the SIEM as
    /// witness copies).
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Signer_refuses_a_forged_frontier_instead_of_signing_it(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        var signed = await h.Log.GetLatestTreeHeadAsync(ct);
        var state = await h.Store.ReadStateAsync(ct);
        await h.ExecuteAsync("UPDATE audit_state SET frontier = @f", ("@f", System.Security.Cryptography.RandomNumberGenerator.GetBytes(state.Frontier.Length)));
        var refused = await AppendAndExpectRefusalAsync(h, ct);
        Assert.Contains("audit verify", refused.Message, StringComparison.Ordinal);
        Assert.Equal(signed!.TreeSize, (await h.Log.GetLatestTreeHeadAsync(ct))!.TreeSize);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Signer_refuses_a_log_that_does_not_extend_the_last_signed_head(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        // A stored node and the frontier rewritten to agree: only the signed heads tell.
        await h.ExecuteAsync("UPDATE audit_node SET hash = @h WHERE level = 4 AND idx = 0", ("@h", MerkleHash.Leaf([1])));
        await using (var connection = await h.Store.Database.OpenConnectionAsync(ct))
        {
            var roots = await h.Store.GetSubtreeHashesAsync(connection, MerkleProofs.Decompose(0, Size), ct);
            await h.ExecuteAsync("UPDATE audit_state SET frontier = @f", ("@f", roots.SelectMany(r => r).ToArray()));
        }

        var refused = await AppendAndExpectRefusalAsync(h, ct);
        Assert.Contains($"does not extend the signed tree head of size {Size}", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>Entries appended after the tampering, then a head that the signer must refuse, with the refusal on record.</summary>
    private static async Task<AuditIntegrityException> AppendAndExpectRefusalAsync(AuditHarness h, CancellationToken ct)
    {
        await h.AppendAsync(Samples.Records(Size, 3));
        var refused = await Assert.ThrowsAsync<AuditIntegrityException>(async () => await h.Log.SignTreeHeadAsync(ct));
        Assert.NotNull(h.SigningStatus.Current);
        return refused;
    }

    /// <summary>
    /// Bug: after the audit_state row's last leaf hash was altered, the next entry was chained to the altered value; the
    /// verifier then blamed that innocent entry ("entry 23 and its leaf hash were rewritten") and no longer reported the
    /// altered row.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task An_altered_last_leaf_in_the_state_row_does_not_break_the_chain_of_later_entries(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync("UPDATE audit_state SET last_leaf = @l", ("@l", MerkleHash.Leaf([7])));
        await h.AppendAsync(Samples.Records(Size, 3));
        await h.Log.SignTreeHeadAsync(ct);
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
    }

    /// <summary>
    /// Regression (review 30, 03): one byte written into audit_state.frontier (with an entry edited) made every append
    /// throw InvalidDataException: the node refused every association and `vigie audit verify` stopped (exit 2) before
    /// its report. Now the signer refuses as for a forged frontier, verify reports StateMismatch beside the edited entry,
    /// and the next append rebuilds the frontier from the stored hashes, after which heads are signed again.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_frontier_that_does_not_parse_is_a_state_mismatch_and_appends_go_on(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        await h.AppendAsync(Samples.Records(Size, 3));
        await h.ExecuteAsync("UPDATE audit_entry SET user_id = 'SOMEONE-ELSE' WHERE seq = 5");
        await h.ExecuteAsync("UPDATE audit_state SET frontier = @f", ("@f", new byte[] { 0 }));

        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.StateMismatch);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.EntryModified && p.Sequence == 5);

        var refused = await Assert.ThrowsAsync<AuditIntegrityException>(async () => await h.Log.SignTreeHeadAsync(ct));
        Assert.Contains("StateMismatch", refused.Message, StringComparison.Ordinal);
        Assert.NotNull(h.SigningStatus.Current);

        await h.AppendAsync(Samples.Records(Size + 3, 2));
        var state = await h.Store.ReadStateAsync(ct);
        Assert.Equal(Size + 5, state.TreeSize);
        Assert.NotNull(await h.Log.SignTreeHeadAsync(ct));
        Assert.Null(h.SigningStatus.Current);
        var after = await VerifyAsync(h);
        Assert.DoesNotContain(after.Problems, p => p.Kind == AuditProblemKind.StateMismatch);
        Assert.Contains(after.Problems, p => p.Kind == AuditProblemKind.EntryModified && p.Sequence == 5);
    }

    /// <summary>
    /// Bug: patient-index rows planted past the end of the log passed verification, then made the insert of the entry
    /// reaching them fail (unique key), and with it every C-STORE (A700), while /health said healthy.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Index_rows_planted_past_the_end_are_reported_and_do_not_block_appends(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await SignedLogAsync(provider);
        await h.ExecuteAsync($"INSERT INTO audit_patient_run (seq, patient_ref) VALUES ({Size}, @p), ({Size + 50}, @p)", ("@p", Samples.PatientRef('Z')));
        await h.ExecuteAsync($"INSERT INTO audit_minute_run (seq, minute) VALUES ({Size + 60}, 1)");
        await h.ExecuteAsync("INSERT INTO audit_node (level, idx, hash) VALUES (4, 3, @h)", ("@h", MerkleHash.Leaf([9])));

        var report = await VerifyAsync(h);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.PatientIndexMismatch && p.Sequence == Size + 50);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TimeIndexMismatch && p.Sequence == Size + 60);

        // Entries 40 to 63 reach the planted keys: the append replaces what it writes (the node over 48..63 among them,
        // or the head over it would not be signed).
        await h.AppendAsync(Samples.Records(Size, 24));
        Assert.Equal(Size + 24, (await h.Store.ReadStateAsync(ct)).TreeSize);
        Assert.NotNull(await h.Log.SignTreeHeadAsync(ct));
    }

    private static byte[] Flip(byte[] bytes, int index)
    {
        var copy = (byte[])bytes.Clone();
        copy[index] ^= 0x01;
        return copy;
    }
}
