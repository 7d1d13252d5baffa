namespace Vigie.Gateway.Dimse;

/// <summary>
/// Whether stores are being refused for a fault of the node's own (A700: the index's database refusing writes, a
/// spool that cannot be written). /health said Healthy while every C-STORE was refused on "permission denied for
/// table archive_instances": the modalities kept their images and retried, and nothing told the administrator.
/// </summary>
public sealed class StoreStatus
{
    private readonly Lock _lock = new();
    private DateTimeOffset? _failingSince;
    private DateTimeOffset _lastFailure;
    private int _failures;
    private string _reason = "";

    internal void Failed(DateTimeOffset at, string reason)
    {
        lock (_lock)
        {
            _failingSince ??= at;
            _lastFailure = at;
            _failures++;
            _reason = reason;
        }
    }

    internal void Stored()
    {
        lock (_lock)
        {
            if (_failingSince is not null)
            {
                (_failingSince, _failures) = (null, 0);
            }
        }
    }

    /// <summary>Since when, how many and why, while the last stores failed and none succeeded since (within 10 minutes).</summary>
    public (DateTimeOffset Since, int Count, string Reason)? Failing(DateTimeOffset now)
    {
        lock (_lock)
        {
            return _failingSince is { } since && now - _lastFailure < TimeSpan.FromMinutes(10) ? (since, _failures, _reason) : null;
        }
    }
}
