using System.Text;
using Vigie.Core.Data;
using Vigie.Core.Outbox;
using Vigie.Testing;

namespace Vigie.Core.Tests;

public sealed class OutboxContractTests
{
    private static async Task<(TestDatabase Db, Outbox.Outbox Outbox, LeaseStore Leases)> SetUpAsync(DatabaseProvider provider)
    {
        var db = await TestDatabases.CreateAsync(provider, TestContext.Current.CancellationToken);
        await new SchemaMigrator(db.Database, [new OutboxSchema()]).MigrateAsync(TestContext.Current.CancellationToken);
        return (db, new Outbox.Outbox(db.Database, TimeProvider.System, new OutboxSignal()), new LeaseStore(db.Database, TimeProvider.System));
    }

    /// <summary>A database and outbox holding three "forward" messages, a, b and c.</summary>
    private static async Task<(TestDatabase Db, Outbox.Outbox Outbox)> ThreeQueuedAsync(DatabaseProvider provider)
    {
        var (db, outbox, _) = await SetUpAsync(provider);
        foreach (var name in new[] { "a", "b", "c" })
        {
            await EnqueueAsync(db, outbox, "forward", name);
        }

        return (db, outbox);
    }

    private static async Task EnqueueAsync(TestDatabase db, Outbox.Outbox outbox, string topic, string payload, bool commit = true, string? subject = null)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await db.Database.OpenConnectionAsync(ct);
        await using var transaction = await db.Database.BeginWriteAsync(connection, ct);
        await outbox.EnqueueAsync(connection, transaction, topic, Encoding.UTF8.GetBytes(payload), ct, subject: subject);
        if (commit)
        {
            await transaction.CommitAsync(ct);
        }
    }

    /// <summary>
    /// Regression: a node started on a schema a newer Vigie had migrated (a node left behind in a rolling upgrade of a
    /// shared PostgreSQL) served without a word, writing rows the newer schema does not expect. It now stops.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_node_started_silently_on_a_schema_a_newer_version_had_migrated(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, _, _) = await SetUpAsync(provider);
        await using var _db = db;
        var latest = new OutboxSchema().Migrations.Max(m => m.Version);
        var module = new OutboxSchema().Migrations.First().Module;
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await db.Database.BeginWriteAsync(connection, ct))
        {
            await using var insert = connection.CreateCommand(transaction, "INSERT INTO vigie_schema (module, version, description, applied_at) VALUES (@m, @v, 'newer', 'now')")
                .With("@m", module).With("@v", latest + 1);
            await insert.ExecuteNonQueryAsync(ct);
            await transaction.CommitAsync(ct);
        }

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => new SchemaMigrator(db.Database, [new OutboxSchema()]).MigrateAsync(ct));
        Assert.Contains($"{module} schema version {latest + 1}", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Claimed_messages_come_in_order_and_complete_once(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        for (var i = 0; i < 5; i++)
        {
            await EnqueueAsync(db, outbox, "forward", $"m{i}");
        }

        await EnqueueAsync(db, outbox, "other", "x");
        var first = await outbox.ClaimAsync("forward", "node-a", 3, TimeSpan.FromMinutes(1), ct);
        Assert.Equal(["m0", "m1", "m2"], first.Select(m => Encoding.UTF8.GetString(m.Payload)));
        // A second consumer does not see what the first holds.
        var second = await outbox.ClaimAsync("forward", "node-b", 10, TimeSpan.FromMinutes(1), ct);
        Assert.Equal(["m3", "m4"], second.Select(m => Encoding.UTF8.GetString(m.Payload)));

        Assert.True(await outbox.CompleteAsync(first[0].Id, "node-a", ct));
        Assert.False(await outbox.CompleteAsync(first[0].Id, "node-a", ct));
        Assert.False(await outbox.CompleteAsync(first[1].Id, "node-b", ct));
        Assert.Equal(4, await outbox.PendingCountAsync("forward", ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_message_enqueued_claimed_is_its_producers_until_handed_over_or_its_lease_runs_out(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        long kept, handed, abandoned;
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await db.Database.BeginWriteAsync(connection, ct))
        {
            kept = await outbox.EnqueueClaimedAsync(connection, transaction, "report", "kept"u8.ToArray(), "producer", TimeSpan.FromMinutes(5), ct);
            handed = await outbox.EnqueueClaimedAsync(connection, transaction, "report", "handed"u8.ToArray(), "producer", TimeSpan.FromMinutes(5), ct);
            abandoned = await outbox.EnqueueClaimedAsync(connection, transaction, "report", "abandoned"u8.ToArray(), "producer", TimeSpan.FromMilliseconds(1), ct);
            await transaction.CommitAsync(ct);
        }

        Assert.Equal(3, new[] { kept, handed, abandoned }.Distinct().Count());
        await Task.Delay(20, ct);
        // Only the one whose lease ran out (its producer died) is for the consumers; it counts as a second attempt.
        var taken = Assert.Single(await outbox.ClaimAsync("report", "consumer", 10, TimeSpan.FromMinutes(1), ct));
        Assert.Equal((abandoned, 2), (taken.Id, taken.Attempts));

        Assert.True(await outbox.CompleteAsync(kept, "producer", ct));
        Assert.True(await outbox.RetryLaterAsync(handed, "producer", TimeSpan.Zero, "not answered", ct));
        var next = Assert.Single(await outbox.ClaimAsync("report", "consumer", 10, TimeSpan.FromMinutes(1), ct));
        Assert.Equal("handed", Encoding.UTF8.GetString(next.Payload));
        Assert.False(await outbox.CompleteAsync(handed, "producer", ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_rolled_back_transaction_leaves_no_event(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await EnqueueAsync(db, outbox, "forward", "lost", commit: false);
        Assert.Empty(await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Retry_later_hides_the_message_until_due_and_counts_attempts(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await EnqueueAsync(db, outbox, "forward", "m");
        var claimed = Assert.Single(await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct));
        Assert.True(await outbox.RetryLaterAsync(claimed.Id, "n", TimeSpan.FromHours(1), "peer down", ct));
        Assert.Empty(await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct));
        Assert.True(await outbox.RetryLaterAsync(claimed.Id, "n", TimeSpan.Zero, "x", ct) is false);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_messages_not_tried_stayed_claimed_for_the_whole_lease(DatabaseProvider provider)
    {
        // A stopping node, or the rest of a batch behind an object the PACS did not answer: given back, due at once, and
        // without the attempt their claim counted. They waited for the lease (5 minutes) after a restart.
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox) = await ThreeQueuedAsync(provider);
        await using var _db = db;

        var claimed = await outbox.ClaimAsync("forward", "stopping", 10, TimeSpan.FromMinutes(5), ct);
        Assert.Equal(3, claimed.Count);
        Assert.True(await outbox.CompleteAsync(claimed[0].Id, "stopping", ct));
        await outbox.ReleaseAsync([.. claimed.Select(m => m.Id)], "stopping", ct);
        await outbox.ReleaseAsync([claimed[1].Id], "someone-else", ct);

        var again = await outbox.ClaimAsync("forward", "restarted", 10, TimeSpan.FromMinutes(5), ct);
        Assert.Equal([claimed[1].Id, claimed[2].Id], again.Select(m => m.Id));
        Assert.All(again, m => Assert.Equal(1, m.Attempts));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_batch_claimed_by_a_killed_process_waited_for_its_lease(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox) = await ThreeQueuedAsync(provider);
        await using var _db = db;

        Assert.Equal(2, (await outbox.ClaimAsync("forward", "killed", 2, TimeSpan.FromMinutes(5), ct)).Count);
        Assert.Single(await outbox.ClaimAsync("forward", "alive", 2, TimeSpan.FromMinutes(5), ct));
        Assert.Equal(2, await outbox.ReleaseAbandonedAsync("forward", holder => holder == "killed", ct));
        Assert.Equal(2, (await outbox.ClaimAsync("forward", "restarted", 10, TimeSpan.FromMinutes(5), ct)).Count);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task An_expired_claim_is_taken_over(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await EnqueueAsync(db, outbox, "forward", "m");
        var claimed = Assert.Single(await outbox.ClaimAsync("forward", "crashed", 10, TimeSpan.FromMilliseconds(1), ct));
        await Task.Delay(20, ct);
        var again = Assert.Single(await outbox.ClaimAsync("forward", "survivor", 10, TimeSpan.FromMinutes(1), ct));
        Assert.Equal(claimed.Id, again.Id);
        Assert.Equal(2, again.Attempts);
        Assert.False(await outbox.CompleteAsync(claimed.Id, "crashed", ct));
        Assert.True(await outbox.CompleteAsync(claimed.Id, "survivor", ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_claim_extended_in_time_is_kept_and_one_taken_over_meanwhile_is_reported_lost(DatabaseProvider provider)
    {
        // Regression: a forwarder slower than its claim kept sending messages another node had taken over, so an
        // object already acknowledged by the PACS was sent again. The forwarder now extends its claim and skips what it lost.
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await EnqueueAsync(db, outbox, "forward", "first");
        await EnqueueAsync(db, outbox, "forward", "second");
        await EnqueueAsync(db, outbox, "forward", "third");
        var slow = await outbox.ClaimAsync("forward", "slow", 10, TimeSpan.FromMilliseconds(300), ct);
        Assert.Equal(3, slow.Count);
        var ids = slow.Select(m => m.Id).ToList();

        // Extended in time: nobody else can take the third.
        Assert.Equal([ids[2]], await outbox.ExtendClaimsAsync([ids[2]], "slow", TimeSpan.FromMinutes(1), ct));
        await Task.Delay(400, ct);
        var other = Assert.Single(await outbox.ClaimAsync("forward", "other", 1, TimeSpan.FromMinutes(1), ct));
        Assert.Equal(ids[0], other.Id);

        // Too late for the first: only the second (expired, but taken by nobody) and the third are still held.
        Assert.Equal([ids[1], ids[2]], (await outbox.ExtendClaimsAsync(ids, "slow", TimeSpan.FromMinutes(1), ct)).Order());
        Assert.Empty(await outbox.ClaimAsync("forward", "other", 10, TimeSpan.FromMinutes(1), ct));
        Assert.False(await outbox.CompleteAsync(ids[0], "slow", ct));
        Assert.True(await outbox.CompleteAsync(ids[0], "other", ct));
        Assert.True(await outbox.CompleteAsync(ids[1], "slow", ct));
        Assert.Empty(await outbox.ExtendClaimsAsync([], "slow", TimeSpan.FromMinutes(1), ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Leases_exclude_other_holders_until_they_expire(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, _, leases) = await SetUpAsync(provider);
        await using var _db = db;
        Assert.True(await leases.TryAcquireAsync("scrub", "a", TimeSpan.FromMinutes(1), ct));
        Assert.False(await leases.TryAcquireAsync("scrub", "b", TimeSpan.FromMinutes(1), ct));
        Assert.True(await leases.TryAcquireAsync("scrub", "a", TimeSpan.FromMilliseconds(1), ct));
        await Task.Delay(20, ct);
        Assert.True(await leases.TryAcquireAsync("scrub", "b", TimeSpan.FromMinutes(1), ct));
        await leases.ReleaseAsync("scrub", "b", ct);
        Assert.True(await leases.TryAcquireAsync("scrub", "c", TimeSpan.FromMinutes(1), ct));
    }

    /// <summary>
    /// Regression (review 30, 01 and 05): a leases row written into the database with a made-up holder and a far-future
    /// end held tree-head signing and the maintenance scrub back for good, on every node and across restarts. A lease
    /// claimed further ahead than any honest holder takes it (plus clock slack) is taken over, and the holder named;
    /// one within that reach is left to its holder.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_lease_claimed_far_into_the_future_is_taken_over(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, _, leases) = await SetUpAsync(provider);
        await using var _db = db;
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        await using (var command = connection.CreateCommand(null, "INSERT INTO leases (name, holder, until_ms) VALUES ('audit-tree-head', 'ghost:1:x', 9999999999999)"))
        {
            await command.ExecuteNonQueryAsync(ct);
        }

        var grant = await leases.AcquireAsync("audit-tree-head", "node-a", TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5), ct);
        Assert.True(grant.Acquired);
        Assert.Equal("ghost:1:x", grant.OverriddenHolder);
        Assert.Equal("node-a", await leases.HolderAsync("audit-tree-head", ct));

        // An honest holder's longest lease (here 5 minutes) is not taken from it by one that takes 10 s at a time.
        Assert.True(await leases.TryAcquireAsync("scrub", "restore", TimeSpan.FromMinutes(5), ct));
        var refused = await leases.AcquireAsync("scrub", "node-b", TimeSpan.FromSeconds(10), TimeSpan.FromMinutes(5), ct);
        Assert.False(refused.Acquired);
        Assert.Null(refused.OverriddenHolder);
        Assert.Equal("restore", await leases.HolderAsync("scrub", ct));
    }

    /// <summary>The time a job last completed, recorded for every node to read (review 30, 05: /health of every node).</summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_stamp_is_read_back_by_name(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, _, leases) = await SetUpAsync(provider);
        await using var _db = db;
        Assert.Null(await leases.ReadStampAsync("job:done", ct));
        var at = DateTimeOffset.FromUnixTimeMilliseconds(1_765_000_000_000);
        await leases.StampAsync("job:done", "node-a", at, ct);
        await leases.StampAsync("job:done", "node-b", at.AddMinutes(1), ct);
        Assert.Equal(at.AddMinutes(1), await leases.ReadStampAsync("job:done", ct));
    }

    /// <summary>With two PACS, the status says which one is behind: waiting, oldest, last error and given up, per subject.</summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task The_status_per_subject_counts_each_destination_apart(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await EnqueueAsync(db, outbox, "forward", "old", subject: null);
        foreach (var (payload, subject) in new[] { ("a1", "PACS"), ("b1", "ARCHIVE"), ("b2", "ARCHIVE"), ("b3", "ARCHIVE"), ("b4", "ARCHIVE") })
        {
            await EnqueueAsync(db, outbox, "forward", payload, subject: subject);
        }

        await EnqueueAsync(db, outbox, "other", "x", subject: "PACS");
        var claimed = (await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct)).ToDictionary(m => Encoding.UTF8.GetString(m.Payload), m => m.Id);
        Assert.True(await outbox.CompleteAsync(claimed["a1"], "n", ct));
        Assert.True(await outbox.DeadLetterAsync(claimed["b1"], "n", "refused: 0xA900", ct));
        Assert.True(await outbox.RetryLaterAsync(claimed["b2"], "n", TimeSpan.FromHours(1), "cannot reach ARCHIVE", ct));
        Assert.True(await outbox.RetryLaterAsync(claimed["b3"], "n", TimeSpan.FromMinutes(1), "an older error", ct));

        var status = await outbox.StatusBySubjectAsync("forward", ct);

        Assert.Equal(["ARCHIVE", null], status.Select(s => s.Subject));
        var archive = status[0];
        Assert.Equal((3, 1, "cannot reach ARCHIVE", 1), (archive.Waiting, archive.Dead, archive.LastError, archive.MostAttempts));
        Assert.NotNull(archive.OldestWaiting);
        Assert.Equal((1, 0, (string?)null), (status[1].Waiting, status[1].Dead, status[1].LastError));
        Assert.Empty(await outbox.StatusBySubjectAsync("none", ct));
        var total = await outbox.StatusAsync("forward", ct);
        Assert.Equal(total.Waiting, status.Sum(s => s.Waiting));
        Assert.Equal(total.Dead, status.Sum(s => s.Dead));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Given_up_messages_are_counted_and_listed_until_requeued_or_dismissed(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        for (var i = 0; i < 4; i++)
        {
            await EnqueueAsync(db, outbox, "forward", $"m{i}");
        }

        await EnqueueAsync(db, outbox, "other", "x");
        var claimed = await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct);
        Assert.True(await outbox.DeadLetterAsync(claimed[0].Id, "n", "refused: 0xA900", ct));
        Assert.True(await outbox.DeadLetterAsync(claimed[1].Id, "n", "refused: 0xC000", ct));
        Assert.True(await outbox.CompleteAsync(claimed[2].Id, "n", ct));
        Assert.True(await outbox.RetryLaterAsync(claimed[3].Id, "n", TimeSpan.FromHours(1), "cannot reach PACS", ct));

        var status = await outbox.StatusAsync("forward", ct);
        Assert.Equal(1, status.Waiting);
        Assert.Equal(2, status.Dead);
        Assert.Equal("cannot reach PACS", status.LastError);
        Assert.Equal(1, status.MostAttempts);
        Assert.NotNull(status.OldestWaiting);
        var dead = await outbox.ListDeadAsync("forward", 10, ct);
        Assert.Equal([claimed[0].Id, claimed[1].Id], dead.Select(d => d.Id));
        Assert.Equal(["m0", "m1"], dead.Select(d => Encoding.UTF8.GetString(d.Payload)));
        Assert.Equal("refused: 0xA900", dead[0].Error);
        Assert.Equal(1, dead[0].Attempts);

        // The purge of finished messages keeps those given up on: they are losses someone has to see.
        Assert.Equal(1, await outbox.PurgeAsync(TimeSpan.FromMilliseconds(-1000), ct));
        Assert.Equal(2, (await outbox.StatusAsync("forward", ct)).Dead);

        // Requeued: due at once, attempts from zero; only given-up ones of this topic move.
        Assert.Equal([claimed[0].Id], await outbox.RequeueDeadAsync("forward", [claimed[0].Id, claimed[3].Id, 987654], ct));
        Assert.Empty(await outbox.RequeueDeadAsync("other", [claimed[1].Id], ct));
        var again = Assert.Single(await outbox.ClaimAsync("forward", "n", 10, TimeSpan.FromMinutes(1), ct));
        Assert.Equal(claimed[0].Id, again.Id);
        Assert.Equal(1, again.Attempts);

        // Dismissed: no longer counted, never requeued, purged like the done ones.
        Assert.Equal([claimed[1].Id], await outbox.DismissDeadAsync("forward", [claimed[1].Id], ct));
        Assert.Equal(0, (await outbox.StatusAsync("forward", ct)).Dead);
        Assert.Empty(await outbox.RequeueDeadAsync("forward", [claimed[1].Id], ct));
        Assert.Equal(1, await outbox.PurgeAsync(TimeSpan.FromMilliseconds(-1000), ct));
        Assert.Equal(0, (await outbox.StatusAsync("other", ct)).Dead);
        Assert.Equal(1, (await outbox.StatusAsync("other", ct)).Waiting);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task The_purge_removes_every_old_finished_message_in_chunks_and_nothing_else(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, outbox, _) = await SetUpAsync(provider);
        await using var _db = db;
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await db.Database.BeginWriteAsync(connection, ct))
        {
            for (var i = 0; i < 1203; i++)
            {
                await outbox.EnqueueAsync(connection, transaction, "forward", new byte[] { 1 }, ct);
            }

            await transaction.CommitAsync(ct);
        }

        var claimed = await outbox.ClaimAsync("forward", "n", 2000, TimeSpan.FromMinutes(1), ct);
        foreach (var message in claimed.Take(1201))
        {
            Assert.True(await outbox.CompleteAsync(message.Id, "n", ct));
        }

        Assert.True(await outbox.DeadLetterAsync(claimed[1201].Id, "n", "refused", ct));
        Assert.Equal(0, await outbox.PurgeAsync(TimeSpan.FromHours(1), ct));
        Assert.Equal(1201, await outbox.PurgeAsync(TimeSpan.FromMilliseconds(-1000), ct));
        var status = await outbox.StatusAsync("forward", ct);
        Assert.Equal(1, status.Waiting);
        Assert.Equal(1, status.Dead);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Migrations_apply_once(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, _, _) = await SetUpAsync(provider);
        await using var _db = db;
        await new SchemaMigrator(db.Database, [new OutboxSchema()]).MigrateAsync(ct);
    }
}
