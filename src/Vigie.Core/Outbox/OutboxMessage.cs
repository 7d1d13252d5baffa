namespace Vigie.Core.Outbox;

/// <summary>An event written in the same transaction as the change it describes, claimed later by one consumer.</summary>
public sealed record OutboxMessage(long Id, string Topic, byte[] Payload, int Attempts, DateTimeOffset CreatedAt);

/// <summary>A message given up on (<see cref="Outbox.OutcomeDead"/>): what it carried, when, after how many attempts and why.</summary>
public sealed record DeadMessage(long Id, byte[] Payload, int Attempts, DateTimeOffset CreatedAt, DateTimeOffset GivenUpAt, string? Error);

/// <summary>
/// How a topic's queue stands: messages not yet done (and the oldest of them, and the last error one of them met) and
/// messages given up on.
/// </summary>
public sealed record OutboxQueueStatus(long Waiting, DateTimeOffset? OldestWaiting, int MostAttempts, string? LastError, long Dead)
{
    /// <summary>When the earliest waiting message is due (in the past when one is due now or being handled).</summary>
    public DateTimeOffset? NextDue { get; init; }
}

/// <summary>How a topic's queue stands for one subject (null: messages queued without one).</summary>
public sealed record OutboxSubjectStatus(string? Subject, long Waiting, DateTimeOffset? OldestWaiting, int MostAttempts, string? LastError, long Dead);
