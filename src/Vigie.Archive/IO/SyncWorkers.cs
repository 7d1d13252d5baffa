namespace Vigie.Archive.IO;

/// <summary>
/// A few dedicated threads that run blocking fsync calls. Parallel fsyncs share the file system's journal commits,
/// and no thread-pool thread is parked on the disk while associations wait for CPU. Idle workers sleep on a monitor:
/// a BlockingCollection spins (sched_yield) before it sleeps, which cost 7% of the CPU of a two-core ingest.
/// </summary>
internal sealed class SyncWorkers : IDisposable
{
    private readonly Queue<Action> _queue = new();
    private readonly Thread[] _threads;
    private bool _stopping;

    public SyncWorkers(int threads)
    {
        _threads = new Thread[Math.Max(1, threads)];
        for (var i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"vigie-archive-sync-{i}" };
            _threads[i].Start();
        }
    }

    public Task RunAsync(Action work, CancellationToken cancellationToken) =>
        RunAsync(() =>
        {
            work();
            return true;
        }, cancellationToken);

    /// <summary>Runs <paramref name="work"/> on a worker and returns its result.</summary>
    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_queue)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _queue.Enqueue(() =>
            {
                try
                {
                    done.TrySetResult(work());
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                }
            });
            Monitor.Pulse(_queue);
        }

        return done.Task;
    }

    /// <summary>Runs every action on the workers and waits for all of them; the first failure is rethrown after all finished.</summary>
    public async Task RunAllAsync(IEnumerable<Action> work, CancellationToken cancellationToken)
    {
        var tasks = work.Select(w => RunAsync(w, cancellationToken)).ToList();
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private void Run()
    {
        while (true)
        {
            Action work;
            lock (_queue)
            {
                while (_queue.Count == 0)
                {
                    if (_stopping)
                    {
                        return;
                    }

                    Monitor.Wait(_queue);
                }

                work = _queue.Dequeue();
            }

            work();
        }
    }

    public void Dispose()
    {
        lock (_queue)
        {
            // Work already queued still runs: its callers are waiting for it.
            _stopping = true;
            Monitor.PulseAll(_queue);
        }

        foreach (var thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }
    }
}
