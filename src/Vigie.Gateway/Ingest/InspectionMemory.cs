namespace Vigie.Gateway.Ingest;

/// <summary>
/// The plaintext copies that arriving objects keep for inspection, bounded across every association. Each object may keep
/// up to Gateway:InMemoryInspectionLimit; without a shared bound, concurrent large stores each held that much (with the
/// buffer it was outgrowing), however many there were. An object that cannot have more is read back from its spool.
/// </summary>
internal sealed class InspectionMemory(Func<long> total)
{
    private long _used;

    public long Used => Volatile.Read(ref _used);

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
                return true;
            }
        }
    }

    /// <summary>Takes what a pool handed out beyond the size asked for: the array exists, so it is counted.</summary>
    public void Add(long bytes) => Interlocked.Add(ref _used, bytes);

    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);
}
