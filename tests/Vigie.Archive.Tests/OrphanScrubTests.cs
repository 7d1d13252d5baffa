using System.Data.Common;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive.Retention;
using Vigie.Archive.Scrub;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>Old orphans in maintenance: what is not filed again is scheduled for deletion, audited, alerted and limited.</summary>
public sealed class OrphanScrubTests
{
    /// <summary>
    /// Regression: maintenance scheduled old orphans for deletion with no audit entry, called the run clean (no integrity
    /// alert), and had no share limit, so an index that no longer knew most of the folder had it all deleted.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_orphan_deletions_were_not_audited_nor_alerted_nor_limited(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.OrphanGrace = TimeSpan.Zero);
        await archive.IngestAsync(Samples.Content(2000, 1), Samples.Entry(1, 1, 1, 1));
        var orphans = new List<Storage.ObjectId>();
        for (var i = 0; i < 11; i++)
        {
            orphans.Add((await archive.PutAsync(Samples.Content(1000 + i, 10 + i))).Id);
        }

        var audit = new RecordingAudit();
        var offered = 0;
        var scrub = new ScrubService(archive.Database, archive.Store, archive.Keys, Microsoft.Extensions.Options.Options.Create(archive.Options),
            NullLogger<ScrubService>.Instance, audit: audit);
        var request = new ScrubRequest
        {
            VerifyContent = false,
            ScheduleOrphanDeletion = true,
            // Not DICOM: recovery would not file them.
            FileOrphan = (_, _) => { Interlocked.Increment(ref offered); return ValueTask.FromResult(false); },
        };

        // 11 of 12 objects: over the share, nothing is scheduled, and each is reported.
        var halted = await scrub.RunAsync(request, ct);
        Assert.Equal(11, offered);
        Assert.Equal(0, halted.OrphansScheduled);
        Assert.Equal(11, halted.Orphans);
        Assert.False(halted.IsClean);
        Assert.Empty(audit.Events);

        // Within the share: scheduled, each one audited, and the run is not clean (maintenance raises its alert).
        archive.Options.OrphanMaxShare = 1;
        scrub = new ScrubService(archive.Database, archive.Store, archive.Keys, Microsoft.Extensions.Options.Options.Create(archive.Options),
            NullLogger<ScrubService>.Instance, audit: audit);
        var scheduled = await scrub.RunAsync(request, ct);
        Assert.Equal(11, scheduled.OrphansScheduled);
        Assert.False(scheduled.IsClean);
        Assert.Equal(orphans.Select(o => o.ToString()).Order().ToList(), audit.Events.Select(e => Assert.Single(e.Objects).ToString()).Order().ToList());
        Assert.All(audit.Events, e => Assert.Equal(RetentionAction.OrphanRemoved, e.Action));

        // Waiting for the grace, they are not counted healthy.
        var after = await archive.Scrub.RunAsync(new ScrubRequest { VerifyContent = false }, ct);
        Assert.True(after.IsClean, after.Summary);
        Assert.Equal(1, after.Healthy);
        Assert.Equal(11, after.PendingDeletion);
    }

    private sealed class RecordingAudit : IRetentionAudit
    {
        public List<RetentionEvent> Events { get; } = [];

        public ValueTask RecordAsync(DbConnection connection, DbTransaction transaction, RetentionEvent retentionEvent, CancellationToken cancellationToken)
        {
            lock (Events)
            {
                Events.Add(retentionEvent);
            }

            return ValueTask.CompletedTask;
        }
    }
}
