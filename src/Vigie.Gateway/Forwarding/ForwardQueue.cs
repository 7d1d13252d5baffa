using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Outbox;
using Vigie.Gateway.Ingest;

namespace Vigie.Gateway.Forwarding;

/// <summary>
/// The forwarding queue as the PACS administrator sees it: how many objects wait and since when, which ones the
/// forwarder gave up on and why, and the two ways out for those: back in the queue once the PACS is fixed, or dismissed
/// for good. Both are audited. Serves `vigie forward`, the health check and the metrics.
/// </summary>
public sealed class ForwardQueue(Outbox outbox, IAuditLog audit, IOptionsMonitor<GatewayOptions> options, ILogger<ForwardQueue> logger, TimeProvider time)
{
    /// <summary>Given-up objects read at most for one status, retry or dismissal.</summary>
    public const int MaxListed = 100_000;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _refusals = new(StringComparer.Ordinal);

    /// <summary>The forwarding destinations configured now.</summary>
    public IReadOnlyList<DicomDestination> Destinations => options.CurrentValue.Destinations.Where(d => d.Forward).ToList();

    /// <summary>
    /// Destinations whose last connection this node tried was refused for a reason only a setting can fix (its
    /// client certificate refused, the PACS's certificate not trusted, a permanent association rejection), with the
    /// reason. Else /health waited for the backlog alert to show a PACS that will never accept.
    /// </summary>
    public IReadOnlyDictionary<string, string> Refusals => _refusals;

    internal void ConnectionRefused(string destination, string reason) => _refusals[destination] = reason;

    internal void Connected(string destination) => _refusals.TryRemove(destination, out _);

    /// <summary>
    /// Counts, the oldest waiting object, the last error, and up to <paramref name="list"/> objects given up on; per
    /// destination too, unless the queue is healthy and <paramref name="perDestinationWhenHealthy"/> is false (a
    /// health check then reads the queue once).
    /// </summary>
    public async Task<ForwardQueueStatus> StatusAsync(int list, CancellationToken cancellationToken, bool perDestinationWhenHealthy = true)
    {
        var status = await outbox.StatusAsync(IngestPipeline.ForwardTopic, cancellationToken).ConfigureAwait(false);
        var dead = list > 0 && status.Dead > 0
            ? (await outbox.ListDeadAsync(IngestPipeline.ForwardTopic, list, cancellationToken).ConfigureAwait(false)).Select(Describe).ToList()
            : [];
        var now = time.GetUtcNow();
        var backlogAlert = options.CurrentValue.Forwarding.BacklogAlert;
        var result = new ForwardQueueStatus(status.Waiting, status.OldestWaiting is { } oldest ? now - oldest : null, status.MostAttempts, status.LastError,
            status.Dead, dead, backlogAlert)
        {
            NextAttemptIn = status.NextDue is { } due && due > now ? due - now : null,
        };
        if (status.Waiting + status.Dead == 0 || (result.IsHealthy && !perDestinationWhenHealthy))
        {
            return result;
        }

        var byDestination = (await outbox.StatusBySubjectAsync(IngestPipeline.ForwardTopic, cancellationToken).ConfigureAwait(false))
            .Select(s => new ForwardDestinationStatus(s.Subject, s.Waiting, s.OldestWaiting is { } o ? now - o : null, s.LastError, s.Dead, backlogAlert))
            .ToList();
        return result with { ByDestination = byDestination };
    }

    /// <summary>
    /// Puts objects given up on back in the queue (all of them when <paramref name="ids"/> is empty, those of one
    /// destination when <paramref name="destination"/> is set). Returns how many.
    /// </summary>
    public Task<IReadOnlyList<ForwardFailure>> RetryAsync(IReadOnlyCollection<long> ids, string? destination, string operatorName, CancellationToken cancellationToken) =>
        ChangeAsync(ids, destination, operatorName, retry: true, cancellationToken);

    /// <summary>Gives up for good on objects the forwarder gave up on: they leave the status and the health check.</summary>
    public Task<IReadOnlyList<ForwardFailure>> DismissAsync(IReadOnlyCollection<long> ids, string? destination, string operatorName, CancellationToken cancellationToken) =>
        ChangeAsync(ids, destination, operatorName, retry: false, cancellationToken);

    private async Task<IReadOnlyList<ForwardFailure>> ChangeAsync(IReadOnlyCollection<long> ids, string? destination, string operatorName, bool retry,
        CancellationToken cancellationToken)
    {
        var chosen = ids.ToHashSet();
        var candidates = (await outbox.ListDeadAsync(IngestPipeline.ForwardTopic, MaxListed, cancellationToken).ConfigureAwait(false))
            .Select(Describe)
            .Where(f => chosen.Count == 0 || chosen.Contains(f.Id))
            .Where(f => destination is null || string.Equals(f.Destination, destination, StringComparison.Ordinal))
            .ToList();
        if (candidates.Count == 0)
        {
            return [];
        }

        var changedIds = retry
            ? await outbox.RequeueDeadAsync(IngestPipeline.ForwardTopic, candidates.Select(c => c.Id).ToList(), cancellationToken).ConfigureAwait(false)
            : await outbox.DismissDeadAsync(IngestPipeline.ForwardTopic, candidates.Select(c => c.Id).ToList(), cancellationToken).ConfigureAwait(false);
        var changedSet = changedIds.ToHashSet();
        var changed = candidates.Where(c => changedSet.Contains(c.Id)).ToList();
        if (changed.Count == 0)
        {
            return changed;
        }

        if (retry)
        {
            outbox.Notify(IngestPipeline.ForwardTopic);
        }

        foreach (var group in changed.GroupBy(c => c.Destination, StringComparer.Ordinal))
        {
            var what = retry ? "put back in the forwarding queue" : "dismissed: will not be forwarded";
            await audit.AppendAsync(new AuditRecord
            {
                Time = time.GetUtcNow(),
                EventId = AuditEventIds.DicomInstancesTransferred,
                Action = retry ? AuditAction.Update : AuditAction.Delete,
                Participants =
                [
                    AuditParticipant.LocalOperator(operatorName),
                    GatewayAudit.Destination(group.Key),
                ],
                Details = new AuditDetails { OutcomeDescription = $"{group.Count()} objects for {group.Key} {what}" },
            }, cancellationToken).ConfigureAwait(false);
            logger.LogInformation("{Operator}: {Count} objects for {Destination} {What}", operatorName, group.Count(), group.Key, what);
        }

        return changed;
    }

    private static ForwardFailure Describe(DeadMessage message)
    {
        IngestPipeline.ForwardRequest? request = null;
        try
        {
            request = JsonSerializer.Deserialize<IngestPipeline.ForwardRequest>(message.Payload);
        }
        catch (JsonException)
        {
        }

        return new ForwardFailure(message.Id, request?.Destination ?? "(unreadable)", request?.ObjectId, message.CreatedAt, message.GivenUpAt, message.Attempts,
            message.Error);
    }
}

/// <summary>An object the forwarder gave up on: queue id, destination, object id (never an identifier of the patient), when and why.</summary>
public sealed record ForwardFailure(long Id, string Destination, string? ObjectId, DateTimeOffset StoredAt, DateTimeOffset GivenUpAt, int Attempts, string? Reason);

/// <summary>The forwarding queue at one moment.</summary>
public sealed record ForwardQueueStatus(long Waiting, TimeSpan? OldestWait, int MostAttempts, string? LastError, long GivenUp, IReadOnlyList<ForwardFailure> Failures,
    TimeSpan BacklogAlert)
{
    /// <summary>Objects wait longer than <see cref="ForwardingOptions.BacklogAlert"/>: the destination is down or refuses them.</summary>
    public bool Stalled => OldestWait is { } wait && wait > BacklogAlert;

    /// <summary>
    /// How long until the next waiting object is tried again, when none is due now: after a long outage the back-off
    /// reaches minutes, and a PACS back up does not get its objects at once (before 2026-12-06 the status did not say when).
    /// </summary>
    public TimeSpan? NextAttemptIn { get; init; }

    /// <summary>Nothing given up on and nothing stalled.</summary>
    public bool IsHealthy => GivenUp == 0 && !Stalled;

    /// <summary>The same, per destination (those with objects waiting or given up on), most waiting first.</summary>
    public IReadOnlyList<ForwardDestinationStatus> ByDestination { get; init; } = [];
}

/// <summary>
/// The forwarding queue for one destination: with two PACS, which one is behind. <see cref="Destination"/> is null for
/// objects queued before destinations were recorded per message.
/// </summary>
public sealed record ForwardDestinationStatus(string? Destination, long Waiting, TimeSpan? OldestWait, string? LastError, long GivenUp, TimeSpan BacklogAlert)
{
    public bool Stalled => OldestWait is { } wait && wait > BacklogAlert;
}
