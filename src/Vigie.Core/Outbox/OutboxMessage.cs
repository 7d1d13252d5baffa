namespace Vigie.Core.Outbox;

/// <summary>An event written in the same transaction as the change it describes, claimed later by one consumer.</summary>
public sealed record OutboxMessage(long Id, string Topic, byte[] Payload, int Attempts, DateTimeOffset CreatedAt);
