using System.Globalization;
using Microsoft.Extensions.Options;
using Vigie.Audit.Storage;

namespace Vigie.Audit;

/// <summary>
/// Entries left unsigned well past the signing rhythm (3 × TreeHeadEveryEntries entries, or the first of them older than
/// 3 × TreeHeadInterval), whoever holds the signing lease: they are protected by the hash chain only, which a database
/// writer can rebuild. Before 2026-12-08 a lease written into the database stopped every head while /health said
/// "audit tree heads signed" and verify "intact".
/// </summary>
public sealed class AuditUnsignedTail
{
    /// <summary>How many times the signing rhythm the newest entries may wait before it is said.</summary>
    public const int Overdue = 3;

    private readonly AuditStore _store;
    private readonly IOptions<AuditOptions> _options;
    private readonly TimeProvider _time;

    internal AuditUnsignedTail(AuditStore store, IOptions<AuditOptions> options, TimeProvider time)
    {
        _store = store;
        _options = options;
        _time = time;
    }

    /// <summary>What is overdue, with the figures, or null when the unsigned tail is within the rhythm.</summary>
    public async ValueTask<string?> FindOverdueAsync(CancellationToken cancellationToken)
    {
        var (size, signed, headMs, firstMs) = await _store.ReadUnsignedTailAsync(cancellationToken).ConfigureAwait(false);
        if (size <= signed)
        {
            return null;
        }

        var o = _options.Value;
        var unsigned = size - signed;
        // Waiting since the later of the last head and the first entry after it: an entry's time is its event's, which
        // may be older than its append (a spill written back), and a head is due one interval after the last one.
        var since = Math.Max(headMs ?? long.MinValue, firstMs ?? long.MinValue);
        var waited = since == long.MinValue ? TimeSpan.Zero : _time.GetUtcNow() - DateTimeOffset.FromUnixTimeMilliseconds(since);
        var entryLimit = (long)Overdue * Math.Max(1, o.TreeHeadEveryEntries);
        var timeLimit = o.TreeHeadInterval * Overdue;
        if (unsigned <= entryLimit && waited <= timeLimit)
        {
            return null;
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"{unsigned} entries not under a signed tree head (latest head size {signed}), waiting for {(long)waited.TotalSeconds} s: beyond {Overdue} × "
            + $"TreeHeadEveryEntries ({entryLimit}) or {Overdue} × TreeHeadInterval ({(long)timeLimit.TotalSeconds} s); no node signs them");
    }
}
