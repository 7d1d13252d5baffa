using System.Data.Common;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive.Retention;
using Vigie.Archive.Scrub;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

public sealed class RetentionTests
{
    private sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>An audit trail that writes its entry in the caller's transaction, as Vigie.Audit does.</summary>
    private sealed class TableAudit(bool fail = false) : IRetentionAudit
    {
        public List<RetentionEvent> Events { get; } = [];

        public async ValueTask RecordAsync(DbConnection connection, DbTransaction transaction, RetentionEvent retentionEvent, CancellationToken cancellationToken)
        {
            if (fail)
            {
                throw new InvalidOperationException("audit trail unavailable");
            }

            await using var command = connection.CreateCommand(transaction, "INSERT INTO test_audit (action) VALUES (@a)")
                .With("@a", retentionEvent.Action.ToString());
            await command.ExecuteNonQueryAsync(cancellationToken);
            Events.Add(retentionEvent);
        }
    }

    /// <summary>What the gateway's forward queue still owes a destination.</summary>
    private sealed class SetHold : IRetentionHold
    {
        public HashSet<Storage.ObjectId> Held { get; } = [];

        public ValueTask<IReadOnlySet<Storage.ObjectId>> HeldObjectsAsync(CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlySet<Storage.ObjectId>>(Held.ToHashSet());
    }

    private static async Task<(RetentionService Service, ManualTime Time)> SetUpAsync(ArchiveHarness archive, IRetentionAudit audit, IRetentionHold? hold = null)
    {
        var ct = TestContext.Current.CancellationToken;
        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        await using (var command = connection.CreateCommand(null, "CREATE TABLE IF NOT EXISTS test_audit (action TEXT NOT NULL)"))
        {
            await command.ExecuteNonQueryAsync(ct);
        }

        var time = new ManualTime();
        return (new RetentionService(archive.Database, archive.Store, audit, time, Microsoft.Extensions.Options.Options.Create(archive.Options),
            NullLogger<RetentionService>.Instance, hold), time);
    }

    private static async Task<long> CountAsync(ArchiveHarness archive, string sql)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Superseded_versions_expire_audited_and_their_files_go_after_the_grace(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        var original = Samples.Content(3000, 1);
        var (first, _) = await archive.IngestAsync(original, Samples.Entry(1, 1, 1, 1));
        var (second, corrected) = await archive.IngestAsync(Samples.Content(3000, 2), Samples.Entry(1, 1, 1, 1));
        Assert.Equal(2, corrected.Version);

        var policy = new RetentionPolicy("superseded-30d", SupersededVersions: TimeSpan.FromDays(30));
        Assert.Equal(0, (await retention.ApplyAsync(policy, ct)).VersionsRemoved);

        time.Now += TimeSpan.FromDays(31);
        var report = await retention.ApplyAsync(policy, ct);
        Assert.Equal(1, report.VersionsRemoved);
        Assert.Equal(0, report.FilesDeleted);
        Assert.Equal(1, report.FilesPending);
        var recorded = Assert.Single(audit.Events);
        Assert.Equal(RetentionAction.SupersededVersionRemoved, recorded.Action);
        Assert.Equal([first.Id], recorded.Objects);
        Assert.Equal(1, recorded.Version);
        Assert.NotNull(recorded.PatientKey);
        Assert.Equal(1, await CountAsync(archive, "SELECT COUNT(*) FROM test_audit"));
        Assert.True(await archive.Store.ExistsAsync(first.Id, ct));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        time.Now += archive.Options.DeletionGrace + TimeSpan.FromMinutes(1);
        var purge = await retention.ApplyAsync(policy, ct);
        Assert.Equal(1, purge.FilesDeleted);
        Assert.False(await archive.Store.ExistsAsync(first.Id, ct));
        Assert.True(await archive.Store.ExistsAsync(second.Id, ct));
        Assert.Equal([2], (await archive.Index.GetVersionsAsync(Samples.SopUid(1, 1, 1, 1), ct)).Select(v => v.Version));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    /// <summary>
    /// Regression: retention removed studies (and their files) that had never reached the PACS, which was down: the
    /// forward queue then gave up on objects that no longer existed ("no such object file"), and the PACS never got them.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_retention_removed_studies_and_versions_not_yet_delivered_to_the_pacs(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var audit = new TableAudit();
        var hold = new SetHold();
        var (retention, time) = await SetUpAsync(archive, audit, hold);
        var (delivered, _) = await archive.IngestAsync(Samples.Content(2000, 1), Samples.Entry(1, 1, 1, 1));
        var (owed, _) = await archive.IngestAsync(Samples.Content(2000, 2), Samples.Entry(2, 1, 1, 1));
        var (owedVersion, _) = await archive.IngestAsync(Samples.Content(2000, 3), Samples.Entry(3, 1, 1, 1));
        await archive.IngestAsync(Samples.Content(2000, 4), Samples.Entry(3, 1, 1, 1));
        hold.Held.UnionWith([owed.Id, owedVersion.Id]);
        time.Now += TimeSpan.FromDays(400);

        var policy = new RetentionPolicy("1y", Studies: TimeSpan.FromDays(365), SupersededVersions: TimeSpan.FromDays(365), MaxShare: 1);
        var report = await retention.ApplyAsync(policy, ct);
        // Patient 3's study holds the owed superseded version: kept with it, as is patient 2's.
        Assert.Equal(1, report.StudiesRemoved);
        Assert.Equal(0, report.VersionsRemoved);
        Assert.Equal(3, report.Held);
        Assert.False(await archive.Store.ExistsAsync(delivered.Id, ct));
        Assert.True(await archive.Store.ExistsAsync(owed.Id, ct));
        Assert.True(await archive.Store.ExistsAsync(owedVersion.Id, ct));

        // Delivered (or dismissed) since: the next run removes them.
        hold.Held.Clear();
        var later = await retention.ApplyAsync(policy, ct);
        Assert.Equal(1, later.VersionsRemoved);
        Assert.Equal(2, later.StudiesRemoved);
        Assert.Equal(0, later.Held);
        Assert.False(await archive.Store.ExistsAsync(owed.Id, ct));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Expired_studies_are_removed_with_their_hierarchy_and_shared_objects_stay(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        var shared = Samples.Content(2000, 9);
        var (a, _) = await archive.IngestAsync(Samples.Content(2000, 1), Samples.Entry(1, 1, 1, 1));
        var (b, _) = await archive.IngestAsync(shared, Samples.Entry(1, 1, 2, 1));
        // Another patient's study holds the same content: one object, two references.
        await archive.IngestAsync(shared, Samples.Entry(2, 1, 1, 1));
        time.Now += TimeSpan.FromDays(400);

        var report = await retention.ApplyAsync(new RetentionPolicy("studies-1y", Studies: TimeSpan.FromDays(365)), ct);
        Assert.Equal(2, report.StudiesRemoved);
        Assert.Equal(3, report.InstancesRemoved);
        Assert.Equal(2, audit.Events.Count);
        Assert.All(audit.Events, e => Assert.Equal(RetentionAction.StudyRemoved, e.Action));
        Assert.Equal(new Index.ArchiveStats(0, 0, 0, 0, 0, 0, 0, 0), await archive.Index.GetStatsAsync(ct));
        Assert.Equal(0, await CountAsync(archive, "SELECT COUNT(*) FROM archive_terms"));
        Assert.False(await archive.Store.ExistsAsync(a.Id, ct));
        Assert.False(await archive.Store.ExistsAsync(b.Id, ct));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_run_that_would_remove_most_of_the_archive_halts_until_the_policy_allows_it(DatabaseProvider provider)
    {
        // A clock set years ahead (a mistake, or an attacker who wants the archive gone) makes every study due at once.
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        const int studies = RetentionService.LimitFloor + 2;
        for (var p = 1; p <= studies; p++)
        {
            await archive.IngestAsync(Samples.Content(1500, p), Samples.Entry(p, 1, 1, 1));
        }

        time.Now += TimeSpan.FromDays(400);
        var policy = new RetentionPolicy("studies-1y", Studies: TimeSpan.FromDays(365));
        var halted = await retention.ApplyAsync(policy, ct);
        Assert.Contains($"{studies} of {studies} studies are due", halted.Halted, StringComparison.Ordinal);
        Assert.Equal(0, halted.StudiesRemoved);
        Assert.Empty(audit.Events);
        Assert.Equal(studies, (await archive.Index.GetStatsAsync(ct)).Studies);
        Assert.Equal(0, await CountAsync(archive, "SELECT COUNT(*) FROM archive_deletions"));

        var allowed = await retention.ApplyAsync(policy with { MaxShare = 1 }, ct);
        Assert.Null(allowed.Halted);
        Assert.Equal(studies, allowed.StudiesRemoved);
        Assert.Equal(0, (await archive.Index.GetStatsAsync(ct)).Studies);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task When_the_audit_fails_nothing_is_deleted(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var (retention, time) = await SetUpAsync(archive, new TableAudit(fail: true));
        var (stored, _) = await archive.IngestAsync(Samples.Content(2000, 1), Samples.Entry(1, 1, 1, 1));
        time.Now += TimeSpan.FromDays(400);
        await Assert.ThrowsAsync<InvalidOperationException>(async () =>
            await retention.ApplyAsync(new RetentionPolicy("studies-1y", Studies: TimeSpan.FromDays(365)), ct));
        Assert.Equal(1, (await archive.Index.GetStatsAsync(ct)).Instances);
        Assert.True(await archive.Store.ExistsAsync(stored.Id, ct));
        Assert.Equal(0, await CountAsync(archive, "SELECT COUNT(*) FROM archive_deletions"));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Storing_the_same_content_during_the_grace_claims_the_file_back(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var (retention, time) = await SetUpAsync(archive, new TableAudit());
        var content = Samples.Content(2500, 3);
        var (stored, _) = await archive.IngestAsync(content, Samples.Entry(1, 1, 1, 1));
        time.Now += TimeSpan.FromDays(400);
        await retention.ApplyAsync(new RetentionPolicy("studies-1y", Studies: TimeSpan.FromDays(365)), ct);
        Assert.Equal(1, await CountAsync(archive, "SELECT COUNT(*) FROM archive_deletions"));

        // The modality sends the study again before the file is gone.
        var (again, _) = await archive.IngestAsync(content, Samples.Entry(1, 1, 1, 1));
        Assert.True(again.AlreadyStored);
        Assert.Equal(stored.Id, again.Id);
        Assert.Equal(0, await CountAsync(archive, "SELECT COUNT(*) FROM archive_deletions"));
        time.Now += TimeSpan.FromDays(1);
        await retention.PurgeDueFilesAsync(ct);
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_file_purged_while_the_same_content_is_stored_again_is_put_back_from_the_new_copy(DatabaseProvider provider)
    {
        // Regression: the store found the file already there and dropped its own copy; the purge, due meanwhile and not
        // yet seeing the store's index rows, removed the file; the store then committed rows for an object that no longer
        // existed, and acknowledged it.
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var (retention, time) = await SetUpAsync(archive, new TableAudit());
        var content = Samples.Content(2500, 4);
        var (stored, _) = await archive.IngestAsync(content, Samples.Entry(1, 1, 1, 1));
        time.Now += TimeSpan.FromDays(400);
        await retention.ApplyAsync(new RetentionPolicy("studies-1y", Studies: TimeSpan.FromDays(365)), ct);
        time.Now += TimeSpan.FromDays(1);

        // The modality sends the study again, just as the deletion falls due.
        await using var spool = await archive.SpoolAsync(content);
        var again = await archive.Store.CommitAsync(spool, ct);
        Assert.True(again.AlreadyStored);
        await retention.PurgeDueFilesAsync(ct);
        Assert.False(File.Exists(archive.Store.Layout.ObjectPath(stored.Id)));
        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        await using (var transaction = await archive.Database.BeginWriteAsync(connection, ct))
        {
            await archive.Index.StoreInstanceAsync(connection, transaction, Samples.Entry(1, 1, 1, 1) with { ObjectId = again.Id, ObjectLength = again.Length }, ct);
            await transaction.CommitAsync(ct);
        }

        await archive.Store.ConfirmStoredAsync(spool, ct);
        Assert.Equal(Vigie.Archive.Storage.SpoolState.Discarded, spool.State);
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool, "*.spool"));
    }

    [Fact]
    public async Task Releasing_an_object_waits_for_a_store_of_the_same_content_still_in_flight_on_postgres()
    {
        // Regression (PostgreSQL, READ COMMITTED): retention counted the versions using an expired object while a store
        // of the same content had inserted its version but not committed; it found none, released the object, and the
        // purge later removed the file under the new current version.
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(DatabaseProvider.Postgres);
        var (retention, time) = await SetUpAsync(archive, new TableAudit());
        var original = Samples.Content(3000, 5);
        var (first, _) = await archive.IngestAsync(original, Samples.Entry(1, 1, 1, 1));
        await archive.IngestAsync(Samples.Content(3000, 6), Samples.Entry(1, 1, 1, 1));
        time.Now += TimeSpan.FromDays(31);

        // The original content arrives again (a third version) while retention expires the first.
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
        await archive.Index.StoreInstanceAsync(connection, transaction, Samples.Entry(1, 1, 1, 1) with { ObjectId = first.Id, ObjectLength = first.Length }, ct);
        var expiring = retention.ApplyAsync(new RetentionPolicy("superseded-30d", SupersededVersions: TimeSpan.FromDays(30)), ct);
        await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
        Assert.False(expiring.IsCompleted, "retention did not wait for the store in flight");
        await transaction.CommitAsync(ct);
        var report = await expiring;

        // Both superseded versions go (the second was superseded by the third); the first one's content stays, as the third.
        Assert.Equal(2, report.VersionsRemoved);
        Assert.Equal(0, await CountAsync(archive, $"SELECT COUNT(*) FROM archive_deletions WHERE kind = 'object' AND name = '{first.Id}'"));
        Assert.Equal(first.Id, Assert.Single(await archive.Index.GetVersionsAsync(Samples.SopUid(1, 1, 1, 1), ct)).ObjectId);
        time.Now += archive.Options.DeletionGrace + TimeSpan.FromMinutes(1);
        await retention.PurgeDueFilesAsync(ct);
        Assert.Equal(original, await archive.ReadAllAsync(first.Id));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    /// <summary>
    /// Regression: the share limit covered studies and versions only, so a clock set years ahead would have removed every
    /// quarantined object, the evidence of the attacks the gateway stopped, in one run.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_run_that_would_remove_most_of_the_quarantine_halts_until_the_policy_allows_it(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        const int count = RetentionService.LimitFloor + 2;
        for (var i = 1; i <= count; i++)
        {
            await QuarantineAsync(archive, Samples.Content(1000, i), ct);
        }

        time.Now += TimeSpan.FromDays(4000);
        var policy = new RetentionPolicy("quarantine-90d", Quarantine: TimeSpan.FromDays(90));
        var halted = await retention.ApplyAsync(policy, ct);
        Assert.Contains($"{count} of {count} quarantined objects are due", halted.Halted, StringComparison.Ordinal);
        Assert.Equal(0, halted.QuarantineRemoved);
        Assert.Empty(audit.Events);
        Assert.Equal(count, (await archive.Index.GetStatsAsync(ct)).Quarantined);

        var allowed = await retention.ApplyAsync(policy with { MaxShare = 1 }, ct);
        Assert.Null(allowed.Halted);
        Assert.Equal(count, allowed.QuarantineRemoved);
        Assert.Equal(0, (await archive.Index.GetStatsAsync(ct)).Quarantined);
    }

    private static async Task<Storage.QuarantinedObject> QuarantineAsync(ArchiveHarness archive, byte[] content, CancellationToken ct)
    {
        await using var spool = await archive.SpoolAsync(content);
        var quarantined = await archive.Store.QuarantineAsync(spool, "macro", ct);
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
        await archive.Index.AddQuarantineAsync(connection, transaction,
            new Index.QuarantineEntry(quarantined.QuarantineId, quarantined.Id, quarantined.Length, "macro", quarantined.QuarantinedAt), ct);
        await transaction.CommitAsync(ct);
        return quarantined;
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Quarantine_expires_audited(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.DeletionGrace = TimeSpan.Zero);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        var quarantined = await QuarantineAsync(archive, Samples.Content(1000, 1), ct);

        time.Now += TimeSpan.FromDays(100);
        var report = await retention.ApplyAsync(new RetentionPolicy("quarantine-90d", Quarantine: TimeSpan.FromDays(90)), ct);
        Assert.Equal(1, report.QuarantineRemoved);
        Assert.Equal(1, report.FilesDeleted);
        Assert.Equal(quarantined.QuarantineId, Assert.Single(audit.Events).QuarantineId);
        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Quarantine));
        Assert.Equal(0, (await archive.Index.GetStatsAsync(ct)).Quarantined);
    }

    private static async Task ExecuteAsync(ArchiveHarness archive, string sql, params (string Name, object Value)[] parameters)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Regression (review 30, 02): a database writer deleted an object's archive_objects row and planted an
    /// archive_deletions row for it; the purge, which looked at archive_objects only, unlinked the file its version row
    /// still named (an acknowledged image lost for good). A planted quarantine deletion took the evidence while its record
    /// stayed. Now the scrub reports both rows as tampered, and the purge keeps the files and drops the rows.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_planted_deletion_row_made_the_purge_delete_files_the_index_still_references(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var (retention, _) = await SetUpAsync(archive, new TableAudit());
        var (stored, _) = await archive.IngestAsync(Samples.Content(3000, 1), Samples.Entry(1, 1, 1, 1));
        var quarantined = await QuarantineAsync(archive, Samples.Content(1000, 2), ct);
        await ExecuteAsync(archive, "DELETE FROM archive_objects WHERE object_id = @o", ("@o", stored.Id.ToArray()));
        await ExecuteAsync(archive, "INSERT INTO archive_deletions (kind, name, delete_after) VALUES ('object', @n, 0)", ("@n", stored.Id.ToString()));
        await ExecuteAsync(archive, "INSERT INTO archive_deletions (kind, name, delete_after) VALUES ('quarantine', @n, 0)", ("@n", quarantined.QuarantineId));

        var scrub = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.False(scrub.IsClean);
        Assert.Contains(scrub.Findings, f => f.Kind == ScrubFindingKind.IndexTampered && f.Location == $"index archive_deletions object {stored.Id}");
        Assert.Contains(scrub.Findings, f => f.Kind == ScrubFindingKind.IndexTampered && f.Location == $"index archive_deletions quarantine {quarantined.QuarantineId}");

        var purge = await retention.PurgeDueFilesAsync(ct);
        Assert.Equal(0, purge.Deleted);
        Assert.Equal(2, purge.Refused.Count);
        Assert.True(await archive.Store.ExistsAsync(stored.Id, ct));
        Assert.True(File.Exists(archive.Store.Layout.QuarantinePath(quarantined.QuarantineId)));
        Assert.Equal(0, await CountAsync(archive, "SELECT COUNT(*) FROM archive_deletions"));
        Assert.NotEmpty(await archive.ReadAllAsync(stored.Id));
    }

    /// <summary>
    /// Regression (review 30, 06): with a policy for superseded versions, a database writer set superseded_at on an
    /// instance's current version; retention, which looked at superseded_at alone, removed it and scheduled its file.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_retention_removed_a_current_version_whose_superseded_at_was_set_in_the_index(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var audit = new TableAudit();
        var (retention, time) = await SetUpAsync(archive, audit);
        var (first, _) = await archive.IngestAsync(Samples.Content(3000, 1), Samples.Entry(1, 1, 1, 1));
        var (current, _) = await archive.IngestAsync(Samples.Content(3000, 2), Samples.Entry(1, 1, 1, 2));
        await ExecuteAsync(archive, "UPDATE archive_versions SET superseded_at = 1 WHERE object_id = @o", ("@o", current.Id.ToArray()));

        time.Now += TimeSpan.FromDays(31);
        var report = await retention.ApplyAsync(new RetentionPolicy("superseded-30d", SupersededVersions: TimeSpan.FromDays(30)), ct);
        Assert.Equal(0, report.VersionsRemoved);
        Assert.Equal(0, report.FilesPending);
        Assert.Empty(audit.Events);
        Assert.Equal(2, await CountAsync(archive, "SELECT COUNT(*) FROM archive_versions"));
        Assert.True(await archive.Store.ExistsAsync(current.Id, ct));
        Assert.True(await archive.Store.ExistsAsync(first.Id, ct));
    }
}
