using System.Collections.Concurrent;

namespace Vigie.Archive.IO;

/// <summary>
/// A few dedicated threads that run blocking fsync calls. Parallel fsyncs share the file system's journal commits,
/// and no thread-pool thread is parked on the disk while associations wait for CPU.
/// </summary>
internal sealed class SyncWorkers : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread[] _threads;

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
        _queue.Add(() =>
        {
            try
            {
                done.TrySetResult(work());
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        }, cancellationToken);
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
        foreach (var work in _queue.GetConsumingEnumerable())
        {
            work();
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        foreach (var thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }

        _queue.Dispose();
    }
}
