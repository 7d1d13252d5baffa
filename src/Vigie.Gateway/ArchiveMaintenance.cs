using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Retention;
using Vigie.Archive.Scrub;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Outbox;
using Vigie.Dicom.Network;

namespace Vigie.Gateway;

/// <summary>Periodic archive upkeep (configuration section "Gateway:Maintenance").</summary>
public sealed class MaintenanceOptions
{
    /// <summary>How often one node (holding the lease) runs the upkeep; zero disables it.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromHours(6);

    /// <summary>Delay after start before the first run.</summary>
    public TimeSpan FirstRunDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>The retention policy, when the hospital has one; without it nothing ever leaves the archive.</summary>
    public RetentionPolicy? Retention { get; set; }

    /// <summary>
    /// How long the queue keeps a message once it is done (a forward delivered, an export sent): one row per stored
    /// object would otherwise pile up for the life of the archive. What was given up on stays until someone decides.
    /// </summary>
    public TimeSpan FinishedMessageRetention { get; set; } = TimeSpan.FromDays(30);
}

/// <summary>
/// One node at a time: a header-level scrub that files again the old orphans that are valid instances, hands the other
/// old orphans to the deletion schedule (audited) and raises a security alert on anything missing, corrupted, foreign
/// or orphaned; the files whose deletion grace has passed; and the
/// configured retention policy (each deletion audited by the archive).
/// </summary>
internal sealed class ArchiveMaintenance(
    ScrubService scrub,
    RetentionService retention,
    Ingest.ArchiveRecovery recovery,
    ArchiveIntegrityStatus status,
    LeaseStore leases,
    Outbox outbox,
    Ingest.WithheldObjects withheld,
    IAuditLog audit,
    IOptionsMonitor<GatewayOptions> options,
    IOptionsMonitor<DicomServerOptions> server,
    ILogger<ArchiveMaintenance> logger,
    TimeProvider time) : BackgroundService
{
    private const string LeaseName = "archive-maintenance";

    private readonly string _holder = $"{Environment.MachineName}-{Environment.ProcessId}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.CurrentValue.Maintenance;
        if (settings.Interval <= TimeSpan.Zero)
        {
            return;
        }

        status.Started(time.GetUtcNow(), settings.FirstRunDelay);
        try
        {
            await Task.Delay(settings.FirstRunDelay, time, stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                var interval = options.CurrentValue.Maintenance.Interval;
                switch (await TryAcquireOrReportAsync(stoppingToken).ConfigureAwait(false))
                {
                    case true:
                        await RunOnceAsync(stoppingToken).ConfigureAwait(false);
                        break;
                    case null:
                        // The database did not answer: tried again in a minute, not at the next interval (hours away).
                        interval = RetryAfterOutage;
                        break;
                    case false:
                        break;
                }

                await Task.Delay(interval, time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // Held for a whole interval: kept at a clean stop, it would hold back the next start's run (or another
            // node's) for up to that long (6 h by default).
            try
            {
                using var release = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await leases.ReleaseAsync(LeaseName, _holder, release.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogDebug(e, "Could not release the maintenance lease; it expires by itself");
            }
        }
    }

    private static readonly TimeSpan DatabaseRetry = TimeSpan.FromMinutes(1);

    /// <summary>A minute, or the interval when shorter.</summary>
    private TimeSpan RetryAfterOutage => TimeSpan.FromTicks(Math.Min(options.CurrentValue.Maintenance.Interval.Ticks, DatabaseRetry.Ticks));

    /// <summary>
    /// The lease, or null when the database cannot say (an outage). Before 2026-12-06 the failure escaped the service,
    /// and the host stopped, with exit code 0, so systemd's on-failure restart never came: a PostgreSQL outage at the
    /// hour of maintenance took every node down for good.
    /// </summary>
    private async Task<bool?> TryAcquireOrReportAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await TryAcquireAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogError("Archive maintenance waits: the database did not answer ({Reason}); tried again in {Retry}", Vigie.Core.ExceptionCauses.Describe(e),
                RetryAfterOutage);
            return null;
        }
    }

    /// <summary>
    /// Takes the lease when free, or from an earlier process of this machine that is gone: a node killed while holding
    /// it held maintenance back (the orphans of its interrupted stores among it) for a whole interval.
    /// </summary>
    private async Task<bool> TryAcquireAsync(CancellationToken cancellationToken)
    {
        var interval = options.CurrentValue.Maintenance.Interval;
        // A lease claimed further ahead than the interval (plus clock slack) was written into the database: taken over
        // (before 2026-12-08 it stopped every maintenance run for good).
        var grant = await leases.AcquireAsync(LeaseName, _holder, interval, interval, cancellationToken).ConfigureAwait(false);
        if (grant.OverriddenHolder is { } forged)
        {
            await AlertAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"lease {LeaseName} taken over from {forged}, which claimed it until {grant.OverriddenUntil:u}: further ahead than the maintenance interval"),
                cancellationToken).ConfigureAwait(false);
        }

        if (grant.Acquired)
        {
            return true;
        }

        return await leases.HolderAsync(LeaseName, cancellationToken).ConfigureAwait(false) is { } holder
            && Vigie.Core.IO.LocalProcess.IsEarlierProcessOfThisMachine(holder, _holder)
            && await leases.TryTakeOverAsync(LeaseName, holder, _holder, interval, cancellationToken).ConfigureAwait(false);
    }

    public async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            // Valid instances the index does not know are filed again before anything is deleted (an index restored from
            // an older backup); what is left is scheduled, audited, and alerted below.
            // Search terms deleted or planted in the index are rewritten from the sealed rows, and the run alerted (since 2026-12-07).
            var report = await scrub.RunAsync(new ScrubRequest
            {
                VerifyContent = false, ScheduleOrphanDeletion = true, FileOrphan = recovery.FileOrphanAsync, RepairTerms = true,
                CheckRecords = ct => withheld.CheckAsync(bind: true, ct),
            }, cancellationToken).ConfigureAwait(false);
            // Retention and the purge act on what the index says: an index the scrub found altered may name current versions
            // as superseded or plant deletions, so this run deletes nothing (until 2026-12-08 retention ran all the same and
            // removed the images the rows were altered to condemn).
            var skipped = report.IndexTampered > 0
                ? $"retention and the purge of deleted files skipped: the scrub found {report.IndexTampered} index rows tampered with " +
                  "(vigie scrub names them); they run again once a scrub finds none"
                : null;
            var scrubbed = time.GetUtcNow();
            status.Scrubbed(scrubbed, report, skipped);
            // For every node's /health: the maintenance runs somewhere (one database write per interval).
            await leases.StampAsync(ArchiveIntegrityStatus.ScrubbedStamp, _holder, scrubbed, cancellationToken).ConfigureAwait(false);
            if (!report.IsClean)
            {
                var description = skipped is null ? report.Summary : $"{report.Summary} {skipped}";
                await audit.AppendAsync(GatewayAudit.IntegrityAlert(time, server.CurrentValue.AETitle, description), cancellationToken).ConfigureAwait(false);
                logger.LogError("Archive integrity problem: {Summary}", report.Summary);
            }

            if (skipped is not null)
            {
                logger.LogError("Archive maintenance: {Skipped}", skipped);
            }
            else if (options.CurrentValue.Maintenance.Retention is { } policy)
            {
                var applied = await retention.ApplyAsync(policy, cancellationToken).ConfigureAwait(false);
                if (applied.Halted is { } reason)
                {
                    // Retention is the only way out of the archive: a run that would take too much is for a person to look at.
                    await AlertAsync($"retention {policy.Name} halted: {reason}", cancellationToken).ConfigureAwait(false);
                }
            }
            else
            {
                await retention.PurgeDueFilesAsync(cancellationToken).ConfigureAwait(false);
            }

            if (options.CurrentValue.Maintenance.FinishedMessageRetention > TimeSpan.Zero)
            {
                var purged = await outbox.PurgeAsync(options.CurrentValue.Maintenance.FinishedMessageRetention, cancellationToken).ConfigureAwait(false);
                if (purged > 0)
                {
                    logger.LogInformation("Purged {Count} finished queue messages", purged);
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // A database command cut short by its own timeout is an OperationCanceledException too: it must not end the service.
            logger.LogError(e, "Archive maintenance failed; it will run again");
        }
    }

    private async Task AlertAsync(string description, CancellationToken cancellationToken) =>
        await audit.AppendAsync(new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.SecurityAlert,
            Action = AuditAction.Execute,
            Outcome = AuditOutcome.SeriousFailure,
            Participants = [GatewayAudit.Self(server.CurrentValue.AETitle, requestor: true, AuditRoles.Application)],
            Details = new AuditDetails { OutcomeDescription = description },
        }, cancellationToken).ConfigureAwait(false);
}

/// <summary>
/// What the last maintenance scrub of this node found, for /health: an integrity alert alone went unseen by monitoring
/// (orphans scheduled for deletion, or too many to delete, since 2026-12-07).
/// </summary>
public sealed class ArchiveIntegrityStatus
{
    private Finding? _problem;

    /// <summary>The time and summary of the last maintenance scrub when it was not clean, else null.</summary>
    public Finding? Problem => Volatile.Read(ref _problem);

    /// <summary>The time the last maintenance scrub completed, on any node (a row of its own in the leases table).</summary>
    public const string ScrubbedStamp = "archive-maintenance:scrubbed";

    private long _firstRunDueMs;
    private long _lastRunMs;

    /// <summary>When this node's first maintenance run was due (start plus FirstRunDelay); null while maintenance is off.</summary>
    public DateTimeOffset? FirstRunDue => Interlocked.Read(ref _firstRunDueMs) is > 0 and var ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;

    /// <summary>When this node last completed a maintenance scrub.</summary>
    public DateTimeOffset? LastRun => Interlocked.Read(ref _lastRunMs) is > 0 and var ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;

    internal void Started(DateTimeOffset at, TimeSpan firstRunDelay) => Interlocked.Exchange(ref _firstRunDueMs, (at + firstRunDelay).ToUnixTimeMilliseconds());

    internal void Scrubbed(DateTimeOffset at, ScrubReport report, string? skipped = null)
    {
        Interlocked.Exchange(ref _lastRunMs, at.ToUnixTimeMilliseconds());
        Volatile.Write(ref _problem, report.IsClean ? null : new Finding(at, skipped is null ? report.Summary : $"{report.Summary} {skipped}"));
    }

    public sealed record Finding(DateTimeOffset At, string Summary);
}

/// <summary>
/// Whether maintenance runs at all, on any node: a lease written into the database stopped every run while /health said
/// "no problem found by this node's last maintenance scrub" (review 30, 2026-12-08).
/// </summary>
public sealed class ArchiveMaintenanceWatch(ArchiveIntegrityStatus status, LeaseStore leases, IOptionsMonitor<GatewayOptions> options, TimeProvider time)
{
    /// <summary>How many maintenance intervals may pass without a completed scrub before it is said.</summary>
    public const int Overdue = 3;

    /// <summary>
    /// What is overdue, or null: only once this node's own first run is <see cref="Overdue"/> intervals behind, and the
    /// database is asked only when this node completed no scrub lately (one row read).
    /// </summary>
    public async ValueTask<string?> FindOverdueAsync(CancellationToken cancellationToken)
    {
        var interval = options.CurrentValue.Maintenance.Interval;
        var now = time.GetUtcNow();
        var limit = interval * Overdue;
        if (interval <= TimeSpan.Zero || status.FirstRunDue is not { } due || now - due <= limit || now - status.LastRun <= limit)
        {
            return null;
        }

        var last = await leases.ReadStampAsync(ArchiveIntegrityStatus.ScrubbedStamp, cancellationToken).ConfigureAwait(false);
        if (now - last <= limit)
        {
            return null;
        }

        var since = last is { } at ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"since {at:yyyy-MM-dd HH:mm:ss}Z") : "yet";
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"no maintenance scrub has completed on any node {since}, more than {Overdue} intervals of {interval}: nothing is repaired or alerted meanwhile (see the log about the archive-maintenance lease)");
    }
}

/// <summary>
/// The audit entry of a scrub a person runs (`vigie scrub`), beside the node's own runs above: a Security Alert typed Use
/// of Restricted Function by the operator (the run decrypts every segment), outcome 8 with the findings, or 0 when the
/// archive is clean, an informative alert (PS3.15 A.5.3.11). Before 2026-12-07 a clean run was an Application Activity
/// typed Use of Restricted Function, which A.5.3.1 does not allow.
/// </summary>
public static class ScrubAudit
{
    public static AuditRecord Run(TimeProvider time, ScrubRequest request, ScrubReport report, string account)
    {
        var run = $"vigie scrub{(request.VerifyContent ? "" : " --headers-only")}{(request.RevealIdentifiers ? " --reveal-identifiers" : "")}: {report.Summary}";
        var alert = GatewayAudit.IntegrityAlert(time, "", run, [AuditParticipant.LocalOperator(account)]) with
        {
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
        };
        return report.IsClean ? alert with { Outcome = AuditOutcome.Success } : alert;
    }
}
