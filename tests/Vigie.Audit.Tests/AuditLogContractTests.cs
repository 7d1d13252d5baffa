using Vigie.Audit.Merkle;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

public sealed class AuditLogContractTests
{
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Appended_entries_get_contiguous_sequence_numbers_and_verify(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        Assert.Equal(0, await h.AppendAsync(Samples.Records(0, 10)));
        Assert.Equal(10, await h.AppendAsync(Samples.Records(10, 1)));
        Assert.Equal(11, await h.Log.AppendAsync(Samples.Record(11), ct));
        Assert.Equal(12, await h.Log.GetTreeSizeAsync(ct));
        var head = await h.Log.SignTreeHeadAsync(ct);
        Assert.NotNull(head);
        Assert.Equal(12, head.TreeSize);
        Assert.True(head.VerifySignature(await h.Log.GetPublicKeyAsync(ct)));
        Assert.Null(await h.Log.SignTreeHeadAsync(ct)); // nothing new to sign

        var report = await h.Log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
        Assert.Equal(12, report.EntriesChecked);
        Assert.Equal(12, report.LatestVerifiedHead?.TreeSize);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Inclusion_and_consistency_proofs_from_stored_nodes_verify_against_signed_heads(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        var heads = new List<SignedTreeHead>();
        // Uneven batches so heads land on sizes that are and are not powers of two.
        foreach (var batch in new[] { 1, 2, 5, 8, 16, 1, 31, 36 })
        {
            var size = await h.Log.GetTreeSizeAsync(ct);
            await h.AppendAsync(Samples.Records((int)size, batch));
            heads.Add((await h.Log.SignTreeHeadAsync(ct))!);
        }

        var total = heads[^1].TreeSize;
        Assert.Equal(100, total);
        foreach (var head in heads)
        {
            for (long seq = 0; seq < head.TreeSize; seq++)
            {
                var proof = await h.Log.GetInclusionProofAsync(seq, head.TreeSize, ct);
                Assert.Equal(head.RootHash, proof.TreeHead.RootHash);
                Assert.True(MerkleProofs.VerifyInclusion(seq, head.TreeSize, proof.LeafHash, proof.AuditPath, head.RootHash));
            }
        }

        for (var i = 0; i < heads.Count; i++)
        {
            for (var j = i; j < heads.Count; j++)
            {
                var proof = await h.Log.GetConsistencyProofAsync(heads[i].TreeSize, heads[j].TreeSize, ct);
                Assert.True(MerkleProofs.VerifyConsistency(heads[i].TreeSize, heads[j].TreeSize, heads[i].RootHash, heads[j].RootHash, proof.Proof));
            }
        }

        // Default: against the latest head.
        var latest = await h.Log.GetInclusionProofAsync(42, null, ct);
        Assert.Equal(100, latest.TreeSize);
        Assert.True(latest.Verify());

        await h.AppendAsync(Samples.Records(100, 3));
        await Assert.ThrowsAsync<AuditTreeHeadNotFoundException>(async () => await h.Log.GetInclusionProofAsync(101, null, ct));
        await Assert.ThrowsAsync<AuditTreeHeadNotFoundException>(async () => await h.Log.GetConsistencyProofAsync(7, null, ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Query_filters_by_patient_user_time_and_event_and_pages(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync(Samples.Records(0, 70));

        var patient = Samples.PatientRef(3);
        var all = new List<AuditEntry>();
        long? cursor = null;
        do
        {
            var page = await h.Log.QueryAsync(new AuditQuery { PatientRef = patient, Limit = 3, Cursor = cursor }, ct);
            all.AddRange(page.Entries);
            cursor = page.NextCursor;
        }
        while (cursor is not null);

        var expected = Enumerable.Range(0, 70).Where(i => i % 7 == 3 && i % 5 != 3).Select(i => (long)i).Reverse().ToList();
        Assert.Equal(expected, all.Select(e => e.Sequence));
        Assert.All(all, e => Assert.Null(e.Details));

        var logins = await h.Log.QueryAsync(new AuditQuery { EventType = "110122", Ascending = true, Limit = 100 }, ct);
        Assert.Equal(Enumerable.Range(0, 70).Where(i => i % 5 == 3).Select(i => (long)i), logins.Entries.Select(e => e.Sequence));
        Assert.All(logins.Entries, e => Assert.Equal(AuditEventIds.UserAuthentication, e.EventId));

        var byUser = await h.Log.QueryAsync(new AuditQuery { UserId = "user1", EventId = "110112", Limit = 100 }, ct);
        Assert.Equal(Enumerable.Range(0, 70).Where(i => i % 3 == 1 && i % 5 == 1).Select(i => (long)i).Reverse(), byUser.Entries.Select(e => e.Sequence));

        var window = await h.Log.QueryAsync(new AuditQuery
        {
            From = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000 + 10_000),
            To = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000 + 20_000),
            Outcome = AuditOutcome.MinorFailure,
        }, ct);
        Assert.Equal([10L], window.Entries.Select(e => e.Sequence));

        // The portal view: who opened my record, and why, with the details unsealed for the authorised caller.
        var opened = await h.Log.QueryAsync(new AuditQuery { PatientRef = patient, EventId = "110103", Unseal = true }, ct);
        var first = Assert.IsType<AuditEntry>(opened.Entries[0]);
        Assert.Equal("user" + (first.Sequence % 3), first.UserId);
        Assert.Equal(AuditPurposes.Treatment, first.PurposeOfUse);
        Assert.Equal(Samples.PatientName, first.Details!.Objects[0].Name);
        Assert.Equal(2, first.Participants.Count);
        Assert.Equal(AuditRoles.Destination, first.Participants[1].Roles[0]);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Entries_survive_a_restart_and_the_log_continues(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync(Samples.Records(0, 20));
        await h.Log.SignTreeHeadAsync(ct);
        var key = await h.Log.GetPublicKeyAsync(ct);

        // A transaction that never commits (the process dies before COMMIT) leaves no trace.
        await using (var connection = await h.Db.Database.OpenConnectionAsync(ct))
        await using (var transaction = await h.Db.Database.BeginWriteAsync(connection, ct))
        {
            await h.Log.AppendAsync(Samples.Records(20, 5), connection, transaction, ct);
        }

        await h.ReopenAsync();
        Assert.Equal(20, await h.Log.GetTreeSizeAsync(ct));
        Assert.Equal(key.PublicKey, (await h.Log.GetPublicKeyAsync(ct)).PublicKey);
        Assert.Equal(20, await h.Log.AppendAsync(Samples.Record(20), ct));
        await h.AppendAsync(Samples.Records(21, 9));
        var head = await h.Log.SignTreeHeadAsync(ct);
        Assert.Equal(30, head!.TreeSize);
        Assert.True((await h.Log.GetConsistencyProofAsync(20, 30, ct)).Verify());
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Concurrent_appenders_on_two_nodes_share_one_sequence(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        // A second "node": its own log object, appender and connections over the same database.
        var options = Microsoft.Extensions.Options.Options.Create(h.Options);
        var keys = new FileSigningKeyProvider(options, h.Store);
        var signal = new AuditSignal();
        await using var other = new AuditLog(h.Store, new TreeHeadSigner(h.Store, keys, signal, new AuditSigningStatus(), options, TimeProvider.System), keys, signal, options,
            TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<AuditLog>.Instance, h.Sealer);

        var tasks = new List<Task<long>>();
        for (var i = 0; i < 200; i++)
        {
            var log = i % 2 == 0 ? h.Log : other;
            tasks.Add(log.AppendAsync(Samples.Record(i), ct).AsTask());
        }

        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var b = 0; b < 5; b++)
            {
                await h.AppendAsync(Samples.Records(1000 + w * 100 + b * 10, 10));
            }
        }, ct));
        await Task.WhenAll(writers);
        var sequences = await Task.WhenAll(tasks);
        Assert.Equal(200, sequences.Distinct().Count());
        Assert.Equal(400, await h.Log.GetTreeSizeAsync(ct));
        await h.Log.SignTreeHeadAsync(ct);
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
        Assert.Equal(400, report.TreeSize);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Tree_heads_are_signed_every_N_entries_or_T_seconds(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider, o =>
        {
            o.TreeHeadEveryEntries = 10;
            o.TreeHeadInterval = TimeSpan.FromHours(1);
        });
        await h.AppendAsync(Samples.Records(0, 4));
        Assert.Null(await h.Signer.SignAsync(force: false, ct));
        await h.AppendAsync(Samples.Records(4, 6));
        Assert.Equal(10, (await h.Signer.SignAsync(force: false, ct))?.TreeSize);
        await h.AppendAsync(Samples.Records(10, 3));
        Assert.Null(await h.Signer.SignAsync(force: false, ct));

        h.Options.TreeHeadInterval = TimeSpan.FromMilliseconds(50);
        await Task.Delay(120, ct);
        Assert.Equal(13, (await h.Signer.SignAsync(force: false, ct))?.TreeSize);
    }

    /// <summary>
    /// Bug: while signing failed at every poll (a full disk), /health said "audit tree heads signed" and the log took a
    /// stack trace a second. The failure is now kept (since, count, reason) for /health, and logged in full once.
    /// </summary>
    [Fact]
    public async Task Regression_a_signer_failing_at_every_poll_was_reported_as_signing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite, o =>
        {
            o.TreeHeadEveryEntries = 1;
            o.TreeHeadPollInterval = TimeSpan.FromMilliseconds(50);
        });
        await h.ExecuteAsync("DROP TABLE audit_tree_head");
        var logger = new ListLogger<TreeHeadSigningService>();
        var service = HostedSigner(h, logger);
        await service.StartAsync(ct);
        await h.Log.AppendAsync(Samples.Record(0), ct);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((h.SigningStatus.Failing?.Count ?? 0) < 3 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, ct);
        }

        var logged = logger.Count;
        await service.StopAsync(ct);
        var failing = h.SigningStatus.Failing;
        Assert.NotNull(failing);
        Assert.True(failing.Count >= 3);
        Assert.Contains("audit_tree_head", failing.Reason, StringComparison.Ordinal);
        Assert.Equal(1, logged);
    }

    /// <summary>
    /// Bug (the clean-clone run): the start check of the last head this node signed hashed the range of an empty log, and
    /// every new node logged "Checking the audit log against the last tree head this node signed failed" with a stack trace.
    /// </summary>
    [Fact]
    public async Task Regression_the_start_check_of_an_empty_log_failed_with_an_index_error()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite, o => o.TreeHeadPollInterval = TimeSpan.FromMilliseconds(50));
        var logger = new ListLogger<TreeHeadSigningService>();
        var service = HostedSigner(h, logger);
        await service.StartAsync(ct);
        await Task.Delay(300, ct);
        await service.StopAsync(ct);
        Assert.Equal(0, logger.Count);
        Assert.Null(h.SigningStatus.Failing);
    }

    /// <summary>
    /// Regression (review 30, 01): a leases row for audit-tree-head with a made-up holder and a far-future end stopped
    /// every head for good, while /health said "audit tree heads signed" and verify "intact". The unsigned tail past
    /// 3 × TreeHeadInterval is now told (what /health and verify read), and the signer takes the forged lease over,
    /// with a Security Alert in the trail, and signs.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_forged_signing_lease_stopped_every_tree_head_unseen(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider, o =>
        {
            o.TreeHeadInterval = TimeSpan.FromMilliseconds(200);
            o.TreeHeadPollInterval = TimeSpan.FromMilliseconds(50);
        });
        await h.AppendAsync([.. Enumerable.Range(0, 5).Select(i => Samples.Record(i, DateTimeOffset.UtcNow))]);
        await h.ExecuteAsync("INSERT INTO leases (name, holder, until_ms) VALUES ('audit-tree-head', 'ghost:1:x', 9999999999999)");
        var tail = new AuditUnsignedTail(h.Store, Microsoft.Extensions.Options.Options.Create(h.Options), TimeProvider.System);
        Assert.Null(await tail.FindOverdueAsync(ct));
        await Task.Delay(700, ct);
        var overdue = await tail.FindOverdueAsync(ct);
        Assert.NotNull(overdue);
        Assert.Contains("5 entries not under a signed tree head", overdue, StringComparison.Ordinal);

        var service = new TreeHeadSigningService(h.Signer, h.Signal, h.Leases, Microsoft.Extensions.Options.Options.Create(h.Options), h.SigningStatus,
            TimeProvider.System, new ListLogger<TreeHeadSigningService>(), h.Log);
        await service.StartAsync(ct);
        var head = await Eventually.WaitForAsync(async () => await h.Log.GetLatestTreeHeadAsync(ct), x => x is not null, ct, TimeSpan.FromSeconds(20));
        await service.StopAsync(ct);
        Assert.NotNull(head);
        Assert.Null(await tail.FindOverdueAsync(ct));
        var alerts = await h.Store.ReadEntriesAsync(5, 10, ct);
        Assert.Contains(alerts, e => e.EventId == AuditEventIds.SecurityAlert.ToToken());
    }

    private static TreeHeadSigningService HostedSigner(AuditHarness h, Microsoft.Extensions.Logging.ILogger<TreeHeadSigningService> logger) =>
        new(h.Signer, h.Signal, h.Leases, Microsoft.Extensions.Options.Options.Create(h.Options), h.SigningStatus, TimeProvider.System, logger);

    private sealed class ListLogger<T> : Microsoft.Extensions.Logging.ILogger<T>
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter) => Interlocked.Increment(ref _count);
    }

    [Fact]
    public async Task The_hosted_signer_signs_after_N_entries_and_on_shutdown()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite, o =>
        {
            o.TreeHeadEveryEntries = 5;
            o.TreeHeadInterval = TimeSpan.FromHours(1);
            o.TreeHeadPollInterval = TimeSpan.FromMilliseconds(100);
        });
        var service = HostedSigner(h, Microsoft.Extensions.Logging.Abstractions.NullLogger<TreeHeadSigningService>.Instance);
        await service.StartAsync(ct);
        for (var i = 0; i < 5; i++)
        {
            await h.Log.AppendAsync(Samples.Record(i), ct);
        }

        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await h.Log.GetLatestTreeHeadAsync(ct))?.TreeSize != 5 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, ct);
        }

        Assert.Equal(5, (await h.Log.GetLatestTreeHeadAsync(ct))?.TreeSize);
        await h.Log.AppendAsync(Samples.Record(5), ct);
        await service.StopAsync(ct);
        Assert.Equal(6, (await h.Log.GetLatestTreeHeadAsync(ct))?.TreeSize);
        service.Dispose();
    }

    [Fact]
    public async Task Invalid_records_are_refused_without_echoing_their_content()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var bad = Samples.Record(1) with { PatientRef = "DUPONT\0JEANNE" };
        var error = await Assert.ThrowsAsync<AuditRecordException>(async () => await h.Log.AppendAsync(bad, ct));
        Assert.DoesNotContain("DUPONT", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<AuditRecordException>(async () => await h.Log.AppendAsync(Samples.Record(1) with { Participants = [] }, ct));
        await Assert.ThrowsAsync<AuditRecordException>(async () =>
            await h.Log.AppendAsync(Samples.Record(1) with { EventId = new AuditCode("1|2", "DCM", "x") }, ct));
        await Assert.ThrowsAsync<AuditRecordException>(async () =>
            await h.Log.AppendAsync(Samples.Record(1) with { PatientRef = new string('a', 500) }, ct));
        Assert.Equal(0, await h.Log.GetTreeSizeAsync(ct));
    }
}
