using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vigie.Core.IO;

/// <summary>
/// A folder held open by its handle. Files are created, renamed and removed relative to the handle (openat, renameat,
/// unlinkat), and where the folder really is comes from the handle too: so a check of that location stays true for
/// every later write, even if someone swaps the folder's path for a symbolic link in between. Path-based writes
/// checked once could be redirected between the check and the write.
/// </summary>
public sealed class FolderHandle : IDisposable
{
    private const int EExist = 17;
    private const int ENoEnt = 2;
    private const int OWrOnly = 1;
    private const int ORdWr = 2;
    private const int OCreat = 0x40;
    private const int OExcl = 0x80;
    private const int OCloExec = 0x80000;
    private const int OwnerReadWrite = 0x180; // 0600

    private readonly string _path;
    private readonly int _fd = -1;

    private FolderHandle(string path, int fd, string location)
    {
        _path = path;
        _fd = fd;
        Location = location;
    }

    /// <summary>Where the folder was when opened, every link resolved, read from the handle.</summary>
    public string Location { get; }

    // arm and arm64 number these two flags differently from x86.
    private static bool ArmFlags => RuntimeInformation.ProcessArchitecture is Architecture.Arm or Architecture.Arm64;

    private static int ODirectory => ArmFlags ? 0x4000 : 0x10000;

    private static int ONoFollow => ArmFlags ? 0x8000 : 0x20000;

    /// <summary>Opens the folder at <paramref name="path"/>; a missing one, a file or a folder the account may not enter is an <see cref="IOException"/> that says which.</summary>
    public static FolderHandle Open(string path)
    {
        var full = Path.GetFullPath(path);
        if (!OperatingSystem.IsLinux())
        {
            return Directory.Exists(full) ? new FolderHandle(full, -1, RealPath.Resolve(full)) : throw new IOException($"{full} is not a folder");
        }

        var fd = LibC.Open(full, ODirectory | OCloExec);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException(errno switch
            {
                ENoEnt => $"{full}: no such folder",
                20 => $"{full} is not a folder",
                13 => $"{full}: the account {Environment.UserName} may not enter it (permission denied)",
                _ => $"{full} cannot be opened (errno {errno})",
            });
        }

        try
        {
            var location = new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? throw new IOException($"{full}: where it is cannot be read from /proc");
            return new FolderHandle(full, fd, location);
        }
        catch
        {
            _ = LibC.Close(fd);
            throw;
        }
    }

    /// <summary>
    /// Creates <paramref name="name"/> in the folder, owner-only, never through a link and never over an existing
    /// entry; null when the name is taken.
    /// </summary>
    public FileStream? CreateNew(string name, FileAccess access)
    {
        CheckName(name);
        if (_fd < 0)
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = access };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            try
            {
                return new FileStream(Path.Combine(_path, name), options);
            }
            catch (IOException) when (File.Exists(Path.Combine(_path, name)))
            {
                return null;
            }
        }

        var flags = OCreat | OExcl | ONoFollow | OCloExec | (access == FileAccess.Write ? OWrOnly : ORdWr);
        var fd = LibC.OpenAt(_fd, name, flags, OwnerReadWrite);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == EExist ? null : throw new IOException($"{Path.Combine(Location, name)} cannot be created (errno {errno})");
        }

        return new FileStream(new SafeFileHandle(fd, ownsHandle: true), access, bufferSize: 1 << 16);
    }

    /// <summary>Renames <paramref name="from"/> to <paramref name="to"/> within the folder, replacing whatever entry <paramref name="to"/> was (a link itself, not its target).</summary>
    public void Rename(string from, string to)
    {
        CheckName(from);
        CheckName(to);
        if (_fd < 0)
        {
            File.Move(Path.Combine(_path, from), Path.Combine(_path, to), overwrite: true);
        }
        else if (LibC.RenameAt(_fd, from, _fd, to) != 0)
        {
            throw new IOException($"{Path.Combine(Location, from)} cannot be renamed to {to} (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    /// <summary>Removes <paramref name="name"/> from the folder if it is there.</summary>
    public void Delete(string name)
    {
        CheckName(name);
        if (_fd < 0)
        {
            File.Delete(Path.Combine(_path, name));
        }
        else if (LibC.UnlinkAt(_fd, name, 0) != 0 && Marshal.GetLastPInvokeError() is var errno and not ENoEnt)
        {
            throw new IOException($"{Path.Combine(Location, name)} cannot be removed (errno {errno})");
        }
    }

    /// <summary>Makes the folder's entries (creations, renames) durable.</summary>
    public void Sync()
    {
        if (_fd >= 0 && LibC.FSync(_fd) != 0)
        {
            throw new IOException($"fsync of folder {Location} failed (errno {Marshal.GetLastPInvokeError()})");
        }
    }

    public void Dispose()
    {
        if (_fd >= 0)
        {
            _ = LibC.Close(_fd);
        }
    }

    private static void CheckName(string name)
    {
        if (name.Length == 0 || name is "." or ".." || name.Contains('/', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a single file name", nameof(name));
        }
    }
}
