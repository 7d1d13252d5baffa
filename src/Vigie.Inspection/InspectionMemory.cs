namespace Vigie.Inspection;

/// <summary>
/// Memory that inspection holds across the whole node (Gateway:InMemoryInspectionTotal): the plaintext copies arriving
/// objects keep, the inner objects inspections extract, and the inflated data sets of deflated DICOM objects. Each
/// object may keep up to its own limit; without a shared bound, concurrent stores each held that much, however many
/// there were (64 deflated objects of 32 KB inflating to 31 MiB took the node to 4 GB until 2026-12-07). What cannot
/// have more is read back from its spool or goes to an encrypted temporary file instead.
/// </summary>
public sealed class InspectionMemory(Func<long> total)
{
    private long _used;
    private long _peak;

    /// <summary>No bound but each inspection's own (a tool run on one machine, `vigie scan`).</summary>
    public static InspectionMemory Unbounded() => new(() => long.MaxValue);

    public long Used => Volatile.Read(ref _used);

    /// <summary>The most held at once since the start.</summary>
    public long Peak => Volatile.Read(ref _peak);

    public bool TryReserve(long bytes)
    {
        var limit = total();
        while (true)
        {
            var used = Volatile.Read(ref _used);
            if (used + bytes > limit)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _used, used + bytes, used) == used)
            {
                NotePeak(used + bytes);
                return true;
            }
        }
    }

    /// <summary>Takes what a pool handed out beyond the size asked for: the array exists, so it is counted.</summary>
    public void Add(long bytes) => NotePeak(Interlocked.Add(ref _used, bytes));

    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);

    private void NotePeak(long used)
    {
        var peak = Volatile.Read(ref _peak);
        while (used > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peak, used, peak);
            if (seen == peak)
            {
                return;
            }

            peak = seen;
        }
    }
}
