namespace Vigie.Gateway.Dimse;

/// <summary>
/// Whether the node is turning every association away for now (its audit trail or the policy's data out of reach: a
/// database locked or restarting), for /health: the listener is up, yet no modality can store.
/// </summary>
public sealed class NegotiationStatus
{
    private readonly Lock _lock = new();
    private DateTimeOffset? _refusingSince;
    private DateTimeOffset _lastRefusal;
    private string _reason = "";

    internal void Refused(DateTimeOffset at, string reason)
    {
        lock (_lock)
        {
            _refusingSince ??= at;
            _lastRefusal = at;
            _reason = reason;
        }
    }

    internal void Decided()
    {
        lock (_lock)
        {
            _refusingSince = null;
        }
    }

    /// <summary>Since when, and why, when the last association requests were refused and none decided since (within 2 minutes).</summary>
    public (DateTimeOffset Since, string Reason)? Refusing(DateTimeOffset now)
    {
        lock (_lock)
        {
            return _refusingSince is { } since && now - _lastRefusal < TimeSpan.FromMinutes(2) ? (since, _reason) : null;
        }
    }
}
