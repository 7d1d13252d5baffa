using Microsoft.Extensions.Logging;
using Vigie.Core.IO;

namespace Vigie.Archive.Storage;

/// <summary>
/// Room set aside on the data folder's file system (a preallocated file, <c>Archive:FullDiskReserve</c>) and given back
/// when the file system fills to its last byte. Vigie's own floor stops its stores well before that, but another writer
/// (logs, a backup, a core dump) can go on; then SQLite cannot even make its shared-memory file, so a node restarted
/// there did not start at all (no queries, no retrieves in an emergency) and a running one could no longer write the
/// audit entries its retrieves need. The room comes back once the file system has it to spare again.
/// </summary>
public sealed class FullDiskReserve
{
    public const string FileName = "full-disk-reserve";

    private static readonly TimeSpan RestoreEvery = TimeSpan.FromMinutes(1);

    private readonly string _folder;
    private readonly long _minFreeBytes;
    private readonly Func<string, long> _probe;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private long _lastRestoreAttempt = long.MinValue;
    private int _restoring;

    internal FullDiskReserve(string dataFolder, long size, long minFreeBytes, TimeProvider time, ILogger logger, Func<string, long>? probe = null)
    {
        _folder = System.IO.Path.GetFullPath(dataFolder);
        Path = System.IO.Path.Combine(_folder, FileName);
        Size = size;
        _minFreeBytes = minFreeBytes;
        _time = time;
        _logger = logger;
        _probe = probe ?? (static path => new DriveInfo(path).AvailableFreeSpace);
    }

    public string Path { get; }

    /// <summary>Bytes set aside; 0 when there is no reserve.</summary>
    public long Size { get; }

    /// <summary>
    /// Gives the room back when less than <see cref="Size"/> is free (<paramref name="free"/>, or measured now).
    /// Returns true when it did: the caller measures again.
    /// </summary>
    public bool ReleaseIfFull(long? free = null)
    {
        if (Size == 0 || !File.Exists(Path))
        {
            return false;
        }

        free ??= Free();
        if (free is null || free >= Size)
        {
            return false;
        }

        lock (_gate)
        {
            try
            {
                File.Delete(Path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _logger.LogError("The file system holding the data folder is full ({Free:N0} bytes free) and the reserve {Reserve} could not be released: {Reason}",
                    free, Path, e.Message);
                return false;
            }
        }

        _logger.LogError(
            "The file system holding the data folder is full ({Free:N0} bytes free): Vigie released its {Size} MiB reserve so that queries, retrieves and the audit trail go on. New objects are refused until space is freed there; the reserve is set aside again once there is room",
            free, Size >> 20);
        return true;
    }

    /// <summary>
    /// Sets the room aside again, in the background and at most once a minute, when it is missing and the file system
    /// has it to spare (what stays free is at least the reserve and <c>Archive:MinFreeSpace</c>).
    /// </summary>
    public void RestoreLater(long free)
    {
        if (Size == 0 || !HasRoomToSpare(free))
        {
            return;
        }

        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastRestoreAttempt);
        if ((last != long.MinValue && _time.GetElapsedTime(last, now) < RestoreEvery) || Interlocked.CompareExchange(ref _restoring, 1, 0) != 0)
        {
            return;
        }

        Interlocked.Exchange(ref _lastRestoreAttempt, now);
        _ = Task.Run(() =>
        {
            try
            {
                Restore();
            }
            finally
            {
                Volatile.Write(ref _restoring, 0);
            }
        });
    }

    /// <summary>Sets the room aside now when it is missing and there is room to spare; true when the reserve is in place.</summary>
    public bool Restore()
    {
        if (Size == 0)
        {
            return false;
        }

        lock (_gate)
        {
            if (File.Exists(Path))
            {
                return true;
            }

            if (Free() is not { } free || !HasRoomToSpare(free))
            {
                return false;
            }

            var partial = Path + ".partial";
            try
            {
                // Blocks really allocated (fallocate), not a sparse file that would give nothing back.
                var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, PreallocationSize = Size };
                if (!OperatingSystem.IsWindows())
                {
                    options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
                }

                using (new FileStream(partial, options))
                {
                }

                File.Move(partial, Path, overwrite: true);
                DurableFile.SyncDirectory(_folder);
                _logger.LogInformation("Set aside {Size} MiB in {Reserve}, given back if the file system ever fills to its last byte", Size >> 20, Path);
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                TryDelete(partial);
                _logger.LogWarning("The {Size} MiB reserve for a full file system could not be set aside in {Folder}: {Reason}", Size >> 20, _folder, e.Message);
                return false;
            }
        }
    }

    /// <summary>What stays free once the reserve is set aside is at least the reserve and <c>Archive:MinFreeSpace</c>.</summary>
    private bool HasRoomToSpare(long free) => free >= Size + Math.Max(Size, _minFreeBytes);

    /// <summary>Free bytes on the data folder's file system; null when it cannot be measured.</summary>
    private long? Free()
    {
        try
        {
            return _probe(_folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left for the next attempt, which creates it again.
        }
    }
}
