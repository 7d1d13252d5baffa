namespace Vigie.Gateway.Dimse;

/// <summary>
/// A run of failures with no success since: when it began, how many, the last reason. It ends at the next success, or
/// once no failure came for <paramref name="window"/> (nothing tried since proves nothing either way).
/// </summary>
internal sealed class FailureSpell(TimeSpan window)
{
    private readonly Lock _lock = new();
    private DateTimeOffset? _since;
    private DateTimeOffset _last;
    private int _count;
    private string _reason = "";

    public void Failed(DateTimeOffset at, string reason)
    {
        lock (_lock)
        {
            _since ??= at;
            _last = at;
            _count++;
            _reason = reason;
        }
    }

    public void Succeeded()
    {
        lock (_lock)
        {
            (_since, _count) = (null, 0);
        }
    }

    /// <summary>When the last failure of the current spell came.</summary>
    public DateTimeOffset LastFailure
    {
        get
        {
            lock (_lock)
            {
                return _last;
            }
        }
    }

    public (DateTimeOffset Since, int Count, string Reason)? Current(DateTimeOffset now)
    {
        lock (_lock)
        {
            return _since is { } since && now - _last < window ? (since, _count, _reason) : null;
        }
    }
}
