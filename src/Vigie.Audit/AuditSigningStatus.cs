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

    /// <summary>Records a refusal; true when it differs from the one already recorded (worth a log line).</summary>
    internal bool Refuse(string reason, long treeSize, DateTimeOffset at)
    {
        var previous = Interlocked.Exchange(ref _refusal, new Refusal(reason, treeSize, at));
        return previous is null || previous.Reason != reason;
    }

    internal void Signed() => Volatile.Write(ref _refusal, null);
}
