using Microsoft.Extensions.Options;
using Vigie.Core.Outbox;

namespace Vigie.Gateway.Commitment;

/// <summary>Storage commitment reports waiting for their modality: how many, since when, and the last error met.</summary>
public sealed record CommitmentQueueStatus(long Waiting, TimeSpan? OldestWait, string? LastError, TimeSpan Alert)
{
    /// <summary>A report has waited past the alert: the modality is unreachable or refuses it, and keeps its copies meanwhile.</summary>
    public bool Stalled => OldestWait > Alert;

    /// <summary>When stalled, the modalities whose reports have waited past the alert.</summary>
    public IReadOnlyList<string> Behind { get; init; } = [];
}

/// <summary>The storage commitment queue as the health check sees it.</summary>
public sealed class CommitmentQueue(Outbox outbox, IOptionsMonitor<GatewayOptions> options, TimeProvider time)
{
    public async Task<CommitmentQueueStatus> StatusAsync(CancellationToken cancellationToken)
    {
        var status = await outbox.StatusAsync(StorageCommitmentService.Topic, cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow();
        var alert = options.CurrentValue.Forwarding.BacklogAlert;
        var result = new CommitmentQueueStatus(status.Waiting, status.OldestWaiting is { } oldest ? now - oldest : null, status.LastError, alert);
        if (!result.Stalled)
        {
            return result;
        }

        var behind = (await outbox.StatusBySubjectAsync(StorageCommitmentService.Topic, cancellationToken).ConfigureAwait(false))
            .Where(s => s.OldestWaiting is { } o && now - o > alert)
            .Select(s => s.Subject ?? "(unrecorded)")
            .ToList();
        return result with { Behind = behind };
    }
}
