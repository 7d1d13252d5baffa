using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using Vigie.Archive.IO;

namespace Vigie.Archive.Storage;

/// <summary>
/// Empty spool files made ahead of need in spool/reserve/, so that an arriving object does not wait for the file
/// system to allocate an inode. Creating a file was about a tenth of the server's CPU per stored object on a journal-less
/// ext4 after deletions (the allocator steps over recently freed inodes), and never cheaper than an open system call.
/// A taken file is renamed into spool/ first: files in reserve/ hold no key and no data, so key rotation and scrub
/// ignore them, and a reserve file removed meanwhile (by another node's stale-spool sweep) is never written to.
/// </summary>
internal sealed class SpoolReserve : IDisposable
{
    private readonly ConcurrentQueue<Entry> _files = new();
    private readonly ArchiveLayout _layout;
    private readonly int _capacity;
    private readonly TimeSpan _maxAge;
    private readonly TimeProvider _time;
    private readonly Func<FileAccess, FileStreamOptions> _fileOptions;
    private readonly ILogger _logger;
    private int _count;
    private int _filling;
    private int _disposed;
    private bool _folderReady;
    private DateTimeOffset _lastFailureLog = DateTimeOffset.MinValue;

    public SpoolReserve(ArchiveLayout layout, int capacity, TimeSpan maxAge, TimeProvider time, Func<FileAccess, FileStreamOptions> fileOptions,
        ILogger logger)
    {
        _layout = layout;
        _capacity = capacity;
        _maxAge = maxAge;
        _time = time;
        _fileOptions = fileOptions;
        _logger = logger;
    }

    /// <summary>Files ready to take.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Takes a reserve file, renamed to spool/&lt;name&gt;.spool and open for writing, and starts making its
    /// replacement in the background. False when the reserve is empty (the caller creates the file itself).
    /// </summary>
    public bool TryTake([NotNullWhen(true)] out string? path, [NotNullWhen(true)] out FileStream? file)
    {
        path = null;
        file = null;
        if (_capacity == 0)
        {
            return false;
        }

        try
        {
            while (_files.TryDequeue(out var entry))
            {
                Interlocked.Decrement(ref _count);
                // An old reserve file may be near the stale-spool age, at which another node's start removes spools;
                // a fresh one is safer than a race.
                if (_time.GetUtcNow() - entry.CreatedAt > _maxAge / 2)
                {
                    Discard(entry);
                    continue;
                }

                var spoolPath = _layout.SpoolPath(Path.GetFileName(entry.Path));
                try
                {
                    File.Move(entry.Path, spoolPath, overwrite: false);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Gone (swept), a name clash, or no right to move it: never write to a file that is not where the
                    // store expects it.
                    Discard(entry);
                    continue;
                }

                path = spoolPath;
                file = entry.File;
                return true;
            }

            return false;
        }
        finally
        {
            Fill();
        }
    }

    /// <summary>Starts topping the reserve up on a pool thread, unless that is already under way.</summary>
    public void Fill()
    {
        if (_capacity == 0 || Volatile.Read(ref _disposed) == 1 || Count >= _capacity
            || Interlocked.CompareExchange(ref _filling, 1, 0) != 0)
        {
            return;
        }

        ThreadPool.UnsafeQueueUserWorkItem(static reserve => reserve.FillNow(), this, preferLocal: false);
    }

    private void FillNow()
    {
        try
        {
            if (!_folderReady)
            {
                FileSync.EnsureDirectory(_layout.SpoolReserve, durable: false);
                _folderReady = true;
            }

            while (Count < _capacity && Volatile.Read(ref _disposed) == 0)
            {
                var path = Path.Combine(_layout.SpoolReserve, ArchiveLayout.NewSpoolName());
                var entry = new Entry(path, new FileStream(path, _fileOptions(FileAccess.ReadWrite)), _time.GetUtcNow());
                _files.Enqueue(entry);
                Interlocked.Increment(ref _count);
                if (Volatile.Read(ref _disposed) == 1)
                {
                    Drain();
                }
            }
        }
        catch (Exception e)
        {
            // A pool work item must not throw, and the reserve only saves time: spools are then created on demand,
            // where a real failure surfaces.
            // Once a minute: on a read-only or full folder every store tries again, and the refusal is logged already.
            var now = _time.GetUtcNow();
            if (now - _lastFailureLog >= TimeSpan.FromMinutes(1))
            {
                _lastFailureLog = now;
                _logger.LogWarning("Could not make reserve spool files in {Folder} ({Error}: {Message}); stores make their spools as they come.",
                    _layout.SpoolReserve, e.GetType().Name, e.Message);
            }
        }
        finally
        {
            Volatile.Write(ref _filling, 0);
        }
    }

    private void Discard(Entry entry)
    {
        entry.File.Dispose();
        try
        {
            File.Delete(entry.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Swept already, or removed by the stale-spool sweep of a later start.
        }
    }

    private void Drain()
    {
        while (_files.TryDequeue(out var entry))
        {
            Interlocked.Decrement(ref _count);
            Discard(entry);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Drain();
        }
    }

    private sealed record Entry(string Path, FileStream File, DateTimeOffset CreatedAt);
}
