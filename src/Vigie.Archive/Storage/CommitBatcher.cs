using System.Collections.Concurrent;
using System.Diagnostics;
using Vigie.Archive.IO;

namespace Vigie.Archive.Storage;

/// <summary>
/// Group commit. Each committer has already synced its own file (off everyone else's path); the batcher takes every
/// commit waiting, renames them into place, syncs each fan-out directory once, and releases them together. While one
/// round syncs, the next round gathers.
/// </summary>
internal sealed class CommitBatcher : IDisposable
{
    private readonly BlockingCollection<Request> _queue = new();
    private readonly FileObjectStore _store;
    private readonly SyncWorkers _workers;
    private readonly int _maxBatch;
    private readonly Thread _thread;

    public CommitBatcher(FileObjectStore store, SyncWorkers workers, int maxBatch)
    {
        _store = store;
        _workers = workers;
        _maxBatch = maxBatch;
        _thread = new Thread(Run) { IsBackground = true, Name = "vigie-archive-commit" };
        _thread.Start();
    }

    public Task<CommittedObject> SubmitAsync(SpooledObject spool, CancellationToken cancellationToken)
    {
        var request = new Request(spool, new TaskCompletionSource<CommittedObject>(TaskCreationOptions.RunContinuationsAsynchronously));
        _queue.Add(request, cancellationToken);
        return request.Done.Task;
    }

    private void Run()
    {
        var batch = new List<Request>(_maxBatch);
        foreach (var first in _queue.GetConsumingEnumerable())
        {
            batch.Clear();
            batch.Add(first);
            while (batch.Count < _maxBatch && _queue.TryTake(out var next))
            {
                batch.Add(next);
            }

            Process(batch);
        }
    }

    private void Process(List<Request> batch)
    {
        var moved = new List<(Request Request, CommittedObject Result, string[] Directories)>(batch.Count);
        foreach (var request in batch)
        {
            try
            {
                var (result, toSync) = _store.MoveIntoPlace(request.Spool);
                moved.Add((request, result, toSync));
            }
            catch (Exception e)
            {
                request.Done.TrySetException(e);
            }
        }

        if (moved.Count == 0)
        {
            return;
        }

        var started = Stopwatch.GetTimestamp();
        var directories = moved.SelectMany(m => m.Directories).Distinct(StringComparer.Ordinal).ToList();
        Exception? failure = null;
        try
        {
            // Parallel directory syncs share the file system's journal commit; the first runs here, saving a thread hop.
            var others = _workers.RunAllAsync(directories.Skip(1).Select(d => (Action)(() => FileSync.SyncDirectory(d))), CancellationToken.None);
            FileSync.SyncDirectory(directories[0]);
            others.GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            failure = e;
        }

        ArchiveTelemetry.CommitBatchSize.Record(moved.Count);
        ArchiveTelemetry.DirectorySyncDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        foreach (var (request, result, _) in moved)
        {
            if (failure is null)
            {
                request.Done.TrySetResult(result);
            }
            else
            {
                request.Done.TrySetException(new IOException("The object was moved into place but its directory could not be synced.", failure));
            }
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(10));
        _queue.Dispose();
    }

    private sealed record Request(SpooledObject Spool, TaskCompletionSource<CommittedObject> Done);
}
