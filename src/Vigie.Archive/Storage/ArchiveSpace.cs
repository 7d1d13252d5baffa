namespace Vigie.Archive.Storage;

/// <summary>
/// The free space of the data folder, against the floor kept for the index and the audit trail. New objects are
/// refused below it, so that a full disk shows as refused stores (answered, audited, counted) rather than as failed
/// database commits, lost audit entries and aborted associations. Far from the floor a reading serves for a second;
/// within a gibibyte of it every object reads again (one statvfs), since a second of ingest can fill hundreds of MiB.
/// </summary>
public sealed class ArchiveSpace
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(1);
    private const long CloseToFloor = 1L << 30;

    private readonly string _folder;
    private readonly TimeProvider _time;
    private readonly Func<string, long> _probe;
    private long _free = -1;
    private long _readAt;

    internal ArchiveSpace(string folder, long minFreeBytes, TimeProvider time, Func<string, long>? probe = null, FullDiskReserve? reserve = null)
    {
        _folder = Path.GetFullPath(folder);
        MinFreeBytes = minFreeBytes;
        _time = time;
        _probe = probe ?? (static path => new DriveInfo(path).AvailableFreeSpace);
        Reserve = reserve;
    }

    /// <summary>The room given back when the file system fills to its last byte, if one is configured.</summary>
    public FullDiskReserve? Reserve { get; }

    /// <summary>Archive:MinFreeSpace: new objects are refused once the data folder has less free.</summary>
    public long MinFreeBytes { get; }

    /// <summary>Free bytes for this process on the data folder's file system, as last read (at most a second old).</summary>
    public long FreeBytes
    {
        get
        {
            var now = _time.GetTimestamp();
            var free = Volatile.Read(ref _free);
            if (free < 0 || free - MinFreeBytes < CloseToFloor || _time.GetElapsedTime(Volatile.Read(ref _readAt), now) > CacheFor)
            {
                Refresh(now);
            }

            return Volatile.Read(ref _free);
        }
    }

    /// <summary>True when new objects are refused.</summary>
    public bool IsFull =>
        // Read with no floor too when there is a reserve: it is given back, or set aside again, as space is read.
        (MinFreeBytes > 0 || Reserve is { Size: > 0 }) && FreeBytes < MinFreeBytes;

    /// <summary>Throws <see cref="ArchiveFullException"/> when the data folder is under its floor.</summary>
    public void EnsureRoomForObject()
    {
        if (IsFull)
        {
            throw new ArchiveFullException(Volatile.Read(ref _free), MinFreeBytes);
        }
    }

    private void Refresh(long now)
    {
        long free;
        try
        {
            free = _probe(_folder);
            if (Reserve is { } reserve)
            {
                // Read at each object when close to the floor: a file system another writer filled gets its room back at once.
                if (reserve.ReleaseIfFull(free))
                {
                    free = _probe(_folder);
                }
                else
                {
                    reserve.RestoreLater(free);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // A folder that cannot be measured is not called full: writing to it will say what is wrong.
            free = long.MaxValue;
        }

        Volatile.Write(ref _free, free);
        Volatile.Write(ref _readAt, now);
    }
}

/// <summary>The data folder is under Archive:MinFreeSpace: the object was not accepted, nothing of it was written.</summary>
public sealed class ArchiveFullException(long freeBytes, long minFreeBytes)
    : IOException($"the data folder has {freeBytes >> 20} MiB free, under the {minFreeBytes >> 20} MiB kept for the index and audit trail (Archive:MinFreeSpace)")
{
    public long FreeBytes { get; } = freeBytes;

    public long MinFreeBytes { get; } = minFreeBytes;
}
