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
    private bool _settled;

    public void Failed(DateTimeOffset at, string reason)
    {
        lock (_lock)
        {
            // A failure after the spell was seen to end, or past the window, begins a new one: /health gave the first
            // outage's start for the next one (before 2026-12-07).
            if (_since is null || _settled || at - _last >= window)
            {
                (_since, _count, _settled) = (at, 0, false);
            }

            _last = at;
            _count++;
            _reason = reason;
        }
    }

    public void Succeeded()
    {
        lock (_lock)
        {
            (_since, _count, _settled) = (null, 0, false);
        }
    }

    /// <summary>
    /// The cause is known to be gone (the database answers again) though nothing succeeded yet: the spell is still
    /// reported until then, and the next failure begins a new one.
    /// </summary>
    public void Settle()
    {
        lock (_lock)
        {
            _settled = _since is not null;
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
