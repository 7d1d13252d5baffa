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
}
