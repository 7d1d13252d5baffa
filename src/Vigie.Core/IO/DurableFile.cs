using System.Runtime.InteropServices;

namespace Vigie.Core.IO;

/// <summary>
/// File primitives that survive a power cut and concurrent nodes. .NET can fsync a file but refuses to open a directory,
/// and a new name is only durable once its directory is synced, so the directory part goes through libc.
/// </summary>
public static class DurableFile
{
    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000;
    private const int EExist = 17;

    /// <summary>Makes the entries of <paramref name="directory"/> (creations, renames, removals) durable.</summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return; // NTFS journals metadata; there is no directory handle to flush.
        }

        var fd = LibC.Open(directory, ORdOnly | OCloExec);
        if (fd < 0)
        {
            throw new IOException($"Cannot open directory {directory} to sync it (errno {Marshal.GetLastPInvokeError()}).");
        }

        try
        {
            if (LibC.FSync(fd) != 0)
            {
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = LibC.Close(fd);
        }
    }

    /// <summary>
    /// Moves a file to a name that must not exist yet, atomically: of two movers to one name, exactly one succeeds and
    /// the other gets an <see cref="IOException"/>. On Linux a hard link then an unlink, since rename replaces silently
    /// and .NET's File.Move without overwrite checks for the target before renaming (two movers can both pass the check).
    /// </summary>
    public static void MoveNoReplace(string source, string target)
    {
        if (!OperatingSystem.IsLinux())
        {
            File.Move(source, target, overwrite: false);
            return;
        }

        if (LibC.Link(source, target) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException(errno == EExist ? $"The file '{target}' already exists." : $"link failed (errno {errno}) for '{target}'.");
        }

        File.Delete(source);
    }

    /// <summary>
    /// Creates a small file (mode 0600) that must be created once only, such as a key file: of several processes creating
    /// it at the same moment, exactly one complete file results (link, never replace) and every caller then finds that
    /// one. Returns false when another process created it first. Either way the file is durable on return.
    /// </summary>
    public static async Task<bool> CreateOnceAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.new");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        bool created;
        try
        {
            await using (var stream = new FileStream(temporary, options))
            {
                await stream.WriteAsync(content, cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            MoveNoReplace(temporary, path);
            created = true;
        }
        catch (IOException) when (File.Exists(path))
        {
            created = false;
        }
        finally
        {
            File.Delete(temporary);
        }

        // The loser syncs too: it is about to rely on the winner's file.
        SyncDirectory(directory);
        return created;
    }
}
