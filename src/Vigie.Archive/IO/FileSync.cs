using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Vigie.Core.IO;

namespace Vigie.Archive.IO;

/// <summary>
/// The archive's durability primitives, counted in its telemetry: file and data syncs, early writeback, and the
/// directory and create-once parts of <see cref="DurableFile"/>.
/// </summary>
internal static partial class FileSync
{
    private const uint SyncFileRangeWrite = 2;
    private const int PosixFadviseDontNeed = 4;
    private static bool _noWriteback;

    private static readonly KeyValuePair<string, object?> FileKind = new("kind", "file");
    private static readonly KeyValuePair<string, object?> DirectoryKind = new("kind", "directory");
    private static readonly KeyValuePair<string, object?> DataKind = new("kind", "data");

    public static void SyncFile(SafeFileHandle handle)
    {
        ArchiveTelemetry.Syncs.Add(1, FileKind);
        RandomAccess.FlushToDisk(handle);
    }

    /// <summary>
    /// Asks Linux to drop a synced file's pages from the page cache (POSIX_FADV_DONTNEED), so that the next writes reuse
    /// them (see <see cref="ArchiveOptions.ReleaseWrittenPages"/>). A hint only: dirty pages stay, failures are ignored.
    /// </summary>
    public static void ReleasePages(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            using var descriptor = new Descriptor(handle);
            _ = NativeMethods.PosixFadvise(descriptor.Fd, 0, 0, PosixFadviseDontNeed);
        }
        catch (EntryPointNotFoundException)
        {
        }
    }

    public static void SyncFile(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        SyncFile(handle);
    }

    /// <summary>
    /// Asks Linux to start writing a range of a file back to disk now, without waiting. An object's bytes then go to
    /// disk while the rest of it is still arriving, and the fsync that precedes the answer has little left to do.
    /// A hint only: failures are ignored, durability still comes from <see cref="SyncFile(SafeFileHandle)"/>.
    /// </summary>
    public static void StartWriteback(SafeFileHandle handle, long offset, long count)
    {
        if (!OperatingSystem.IsLinux() || count <= 0 || _noWriteback)
        {
            return;
        }

        try
        {
            using var descriptor = new Descriptor(handle);
            _ = NativeMethods.SyncFileRange(descriptor.Fd, offset, count, SyncFileRangeWrite);
        }
        catch (EntryPointNotFoundException)
        {
            // A libc without it: no early writeback, and no exception per write from now on.
            _noWriteback = true;
        }
    }

    /// <summary>
    /// Flushes a file's data, and its metadata only where reading the data back needs it (Linux fdatasync): over space
    /// already written, no metadata at all. Elsewhere a full sync.
    /// </summary>
    public static void SyncData(SafeFileHandle handle)
    {
        ArchiveTelemetry.Syncs.Add(1, DataKind);
        if (!OperatingSystem.IsLinux())
        {
            RandomAccess.FlushToDisk(handle);
            return;
        }

        using var descriptor = new Descriptor(handle);
        if (NativeMethods.FDataSync(descriptor.Fd) != 0)
        {
            throw new IOException($"fdatasync failed (errno {Marshal.GetLastPInvokeError()}).");
        }
    }

    /// <summary>Makes the entries of <paramref name="directory"/> (creations, renames, removals) durable.</summary>
    public static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsWindows())
        {
            ArchiveTelemetry.Syncs.Add(1, DirectoryKind);
        }

        DurableFile.SyncDirectory(directory);
    }

    /// <summary>Creates a folder readable by the owner only, and syncs its parent when it is new.</summary>
    public static bool EnsureDirectory(string path, bool durable)
    {
        if (Directory.Exists(path))
        {
            return false;
        }

        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
        }
        else
        {
            Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        if (durable)
        {
            SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        }

        return true;
    }

    /// <summary>Writes a small file atomically: temporary file, fsync, rename over, directory fsync.</summary>
    public static async Task WriteAtomicallyAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 0,
            };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            await using (var stream = new FileStream(temporary, options))
            {
                await stream.WriteAsync(content, cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
            SyncDirectory(directory);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <inheritdoc cref="DurableFile.CreateOnceAsync"/>
    public static Task<bool> CreateOnceAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        ArchiveTelemetry.Syncs.Add(1, DirectoryKind);
        return DurableFile.CreateOnceAsync(path, content, cancellationToken);
    }

    /// <inheritdoc cref="DurableFile.MoveNoReplace"/>
    public static void MoveNoReplace(string source, string target) => DurableFile.MoveNoReplace(source, target);

    /// <summary>A handle's descriptor, which cannot be closed while this is held (no allocation: hot path).</summary>
    private ref struct Descriptor
    {
        private readonly SafeFileHandle _handle;
        private bool _added;

        public Descriptor(SafeFileHandle handle)
        {
            _handle = handle;
            handle.DangerousAddRef(ref _added);
            Fd = (int)handle.DangerousGetHandle();
        }

        public int Fd { get; }

        public void Dispose()
        {
            if (_added)
            {
                _handle.DangerousRelease();
                _added = false;
            }
        }
    }

    private static partial class NativeMethods
    {
        [DllImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int FDataSync(int fd);

        // Returns the error number instead of setting errno.
        [DllImport("libc", EntryPoint = "posix_fadvise", SetLastError = false)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int PosixFadvise(int fd, long offset, long length, int advice);

        [DllImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int SyncFileRange(int fd, long offset, long count, uint flags);
    }
}
