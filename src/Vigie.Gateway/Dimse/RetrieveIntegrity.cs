using System.Diagnostics.Metrics;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;

namespace Vigie.Gateway.Dimse;

/// <summary>
/// Stored objects that failed their check when read for a C-GET or C-MOVE (a file gone, truncated, altered). The peer
/// got a failed sub-operation, and before 2026-12-06 nothing else did: no log line, no metric, /health Healthy, so the
/// damage waited for the next scrub. Kept for a day, for /health.
/// </summary>
public sealed class RetrieveIntegrity
{
    private static readonly Meter Meter = new("Vigie.Gateway.Retrieve");

    internal static readonly Counter<long> Failures = Meter.CreateCounter<long>("vigie.gateway.retrieve.integrity_failures",
        description: "Stored objects that failed their check when read for a retrieve, by problem (NotFound, Truncated, TrailerAuthenticationFailed...)");

    private readonly FailureSpell _spell = new(TimeSpan.FromDays(1));

    /// <summary>The problem's name, for the metric and the log: never an identifier.</summary>
    internal static string? Problem(Exception e) => e switch
    {
        ObjectFormatException format => format.Problem.ToString(),
        UnknownKeyEncryptionKeyException => nameof(ObjectProblem.UnknownKey),
        FileNotFoundException or DirectoryNotFoundException => nameof(ObjectProblem.NotFound),
        _ => null,
    };

    internal void Failed(DateTimeOffset at, string reason) => _spell.Failed(at, reason);

    private readonly Dictionary<ObjectId, DateTimeOffset> _alerted = [];

    /// <summary>An object repaired (its content sent again): its next failure is alerted at once.</summary>
    internal void Forget(ObjectId id)
    {
        lock (_alerted)
        {
            _alerted.Remove(id);
        }
    }

    /// <summary>Whether this object failed its check since this process started and was not repaired since.</summary>
    internal bool FoundDamaged(ObjectId id)
    {
        lock (_alerted)
        {
            return _alerted.ContainsKey(id);
        }
    }

    /// <summary>
    /// Whether this object's failure goes to the audit trail: once an hour per object, so that a viewer retrying a damaged
    /// study does not fill the trail, and at most 10,000 objects remembered.
    /// </summary>
    internal bool DueForAlert(ObjectId id, DateTimeOffset now)
    {
        lock (_alerted)
        {
            if (_alerted.TryGetValue(id, out var last) && now - last < TimeSpan.FromHours(1))
            {
                return false;
            }

            if (_alerted.Count >= 10_000)
            {
                _alerted.Clear();
            }

            _alerted[id] = now;
            return true;
        }
    }

    /// <summary>Since when, how many and the last, while an object failed its check at retrieval within the last day.</summary>
    public (DateTimeOffset Since, int Count, string Reason)? Failing(DateTimeOffset now) => _spell.Current(now);
}
