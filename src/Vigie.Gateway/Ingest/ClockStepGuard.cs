using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// After a power cut, recovery looks at the files written since shortly before the newest object the index knows. A wall
/// clock stepped back by more than that margin (an NTP correction, a virtual machine restored or moved) would hide the
/// files written since, and with them objects already acknowledged. So the first store that finds the clock that far
/// behind lowers, durably and before its answer, where recovery starts looking (the index's recovery floor).
/// Only SQLite defers ingest commits; elsewhere this is never started and costs one comparison per store.
/// </summary>
public sealed class ClockStepGuard(IArchiveIndex index, IOptionsMonitor<GatewayOptions> options, ILogger<ClockStepGuard> logger)
{
    private static readonly Counter<long> FloorsLowered = ArchiveRecovery.Meter.CreateCounter<long>("vigie.gateway.recovery.floor_lowered", "{step}",
        "Stores that found the clock behind the newest object filed and lowered where recovery starts looking");

    private readonly SemaphoreSlim _lowering = new(1, 1);

    /// <summary>Newest filing time this process knows of (Unix ms); only grows.</summary>
    private long _latest = long.MinValue;

    /// <summary>The recovery floor as this process set it (Unix ms); long.MaxValue when none.</summary>
    private long _floor = long.MaxValue;

    private int _started;

    private TimeSpan Window => options.CurrentValue.RecoveryWindow;

    /// <summary>Called by recovery at start, once what was lost is filed again and the floor cleared.</summary>
    internal void Start(DateTimeOffset? latest)
    {
        Volatile.Write(ref _latest, latest?.ToUnixTimeMilliseconds() ?? long.MinValue);
        Volatile.Write(ref _floor, long.MaxValue);
        Volatile.Write(ref _started, 1);
    }

    /// <summary>
    /// Before a store is answered: if recovery would not look at a file written now (the clock is more than half the
    /// window behind what it starts from), lowers the floor to a window before now first.
    /// </summary>
    public ValueTask BeforeStoreAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _started) == 0)
        {
            return ValueTask.CompletedTask;
        }

        var at = now.ToUnixTimeMilliseconds();
        if (Covers(at))
        {
            Raise(at);
            return ValueTask.CompletedTask;
        }

        return LowerAsync(now, cancellationToken);
    }

    /// <summary>
    /// Whether recovery would look at a file written at <paramref name="at"/>, with half a window to spare, from where it
    /// would start looking as far as this process knows (never later than on disk).
    /// </summary>
    private bool Covers(long at)
    {
        var window = (long)Window.TotalMilliseconds;
        var latest = Volatile.Read(ref _latest);
        var scanFrom = Math.Min(latest == long.MinValue ? long.MinValue : latest - window, Volatile.Read(ref _floor));
        return at >= scanFrom + window / 2;
    }

    private void Raise(long at)
    {
        var seen = Volatile.Read(ref _latest);
        while (at > seen)
        {
            var previous = Interlocked.CompareExchange(ref _latest, at, seen);
            if (previous == seen)
            {
                return;
            }

            seen = previous;
        }
    }

    private async ValueTask LowerAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        await _lowering.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Covers(now.ToUnixTimeMilliseconds()))
            {
                // Another store lowered it meanwhile.
                return;
            }

            var floor = now - Window;
            await index.LowerRecoveryFloorAsync(floor, cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _floor, Math.Min(Volatile.Read(ref _floor), floor.ToUnixTimeMilliseconds()));
            FloorsLowered.Add(1);
            logger.LogWarning("The clock is behind the newest object filed ({Behind:F0} min): recovery after a power cut will look back to {Floor:O}",
                (DateTimeOffset.FromUnixTimeMilliseconds(Volatile.Read(ref _latest)) - now).TotalMinutes, floor);
        }
        finally
        {
            _lowering.Release();
        }
    }
}
