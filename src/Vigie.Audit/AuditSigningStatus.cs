namespace Vigie.Audit;

/// <summary>
/// Why the signer last refused to sign a tree head, until a head is signed again: read by /health, which turns
/// unhealthy, since entries written meanwhile have no outside commitment.
/// </summary>
public sealed class AuditSigningStatus
{
    private Refusal? _refusal;

    public sealed record Refusal(string Reason, long TreeSize, DateTimeOffset At);

    /// <summary>The last refusal, or null once a head was signed since (or none ever was refused).</summary>
    public Refusal? Current => Volatile.Read(ref _refusal);

    internal void Refuse(string reason, long treeSize, DateTimeOffset at) => Volatile.Write(ref _refusal, new Refusal(reason, treeSize, at));

    internal void Signed() => Volatile.Write(ref _refusal, null);

    private Failure? _failure;

    /// <summary>Signing failing (the database full or locked, the key unloadable), not refused: since when, how often, the last reason.</summary>
    public sealed record Failure(string Reason, DateTimeOffset Since, int Count);

    /// <summary>The current run of failures, or null once an attempt went through.</summary>
    public Failure? Failing => Volatile.Read(ref _failure);

    /// <summary>Records a failed attempt; true for the first of a run (logged in full, the others once a minute).</summary>
    internal bool Fail(string reason, DateTimeOffset at)
    {
        var previous = Volatile.Read(ref _failure);
        Volatile.Write(ref _failure, new Failure(reason, previous?.Since ?? at, (previous?.Count ?? 0) + 1));
        return previous is null;
    }

    internal void Attempted() => Volatile.Write(ref _failure, null);
}
