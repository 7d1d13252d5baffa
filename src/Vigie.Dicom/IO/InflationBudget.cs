namespace Vigie.Dicom.IO;

/// <summary>
/// Memory that deflated data sets inflated for sending hold across the whole process (C-GET, C-MOVE, forwarding): each
/// may take up to <see cref="UncompressedSyntax.MaxInflatedInMemory"/>, and without a shared bound six concurrent
/// retrieves of one 199 MB object took a node from 186 MiB to 2.9 GiB (until 2026-12-08). A conversion reserves the
/// most it may inflate, waits in turn while that would pass <see cref="Total"/>, and keeps only what it inflated once
/// it knows. Once a large one is sent, its memory is collected at once, and given back to the system when none is left.
/// </summary>
internal sealed class InflationBudget(long total)
{
    /// <summary>Freed at once past this, the heap is compacted (a full collection, after a large deflated object is sent only).</summary>
    private const long LargeRelease = 32L << 20;

    private readonly Lock _gate = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Granted)> _waiting = new();
    private long _used;

    public long Total => total;

    public long Used
    {
        get
        {
            lock (_gate)
            {
                return _used;
            }
        }
    }

    /// <summary>Waits until <paramref name="bytes"/> (at most <see cref="Total"/>) fit, first come first served; returns what was reserved.</summary>
    public async ValueTask<long> ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        bytes = Math.Min(bytes, total);
        LinkedListNode<(long Bytes, TaskCompletionSource Granted)> node;
        lock (_gate)
        {
            if (_waiting.Count == 0 && _used + bytes <= total)
            {
                _used += bytes;
                return bytes;
            }

            node = _waiting.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }

        try
        {
            await node.Value.Granted.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return bytes;
        }
        catch (OperationCanceledException)
        {
            lock (_gate)
            {
                if (node.List is not null)
                {
                    _waiting.Remove(node);
                    GrantWaiting();
                    throw;
                }
            }

            // Granted as it was cancelled: given back.
            GiveBackUnused(bytes);
            throw;
        }
    }

    /// <summary>Gives back the part of a reservation that was not inflated after all, or a small one: no collection.</summary>
    public void GiveBackUnused(long bytes)
    {
        lock (_gate)
        {
            _used -= bytes;
            GrantWaiting();
        }
    }

    /// <summary>Gives back what an inflated data set held, once it is no longer referenced.</summary>
    public void Release(long bytes)
    {
        if (bytes < LargeRelease)
        {
            GiveBackUnused(bytes);
            return;
        }

        bool last;
        lock (_gate)
        {
            last = _used == bytes;
        }

        // Inflated values are plain arrays on the large object heap, which a collection only frees when it gets round to it:
        // six retrieves of a 199 MB object held their garbage as well as their data (2.9 GiB, kept after they ended). The
        // next inflation waits for this one's room anyway, so the heap is compacted now, and handed back to the system
        // once nothing inflated is held any more.
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, last ? GCCollectionMode.Aggressive : GCCollectionMode.Forced, blocking: true, compacting: true);

        // Only then does the next one start inflating.
        GiveBackUnused(bytes);
    }

    private void GrantWaiting()
    {
        while (_waiting.First is { } first && _used + first.Value.Bytes <= total)
        {
            _used += first.Value.Bytes;
            _waiting.RemoveFirst();
            first.Value.Granted.TrySetResult();
        }
    }
}
