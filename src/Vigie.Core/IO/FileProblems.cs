namespace Vigie.Core.IO;

/// <summary>
/// Why a file Vigie needs cannot be opened, in the operator's words. A file the account may not reach, or a folder in
/// its place, used to read as "missing" ("the key file is missing": keys lost, to a tired administrator).
/// </summary>
public static class FileProblems
{
    public const string Missing = "is missing";

    /// <summary>
    /// Null when <paramref name="path"/> opens for <paramref name="access"/>; else "is missing", "is a folder, not a
    /// file" or a permission problem.
    /// </summary>
    public static string? WhyUnreadable(string path, FileAccess access = FileAccess.Read)
    {
        if (Directory.Exists(path))
        {
            return "is a folder, not a file";
        }

        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, access);
            return null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return new FileInfo(path).LinkTarget is { } target ? $"is a symbolic link to {target}, which is missing" : Missing;
        }
        catch (UnauthorizedAccessException)
        {
            return access == FileAccess.Read
                ? $"cannot be read by the account {Environment.UserName} (permission denied): run as the account that runs vigie serve"
                : $"cannot be written: {Denied(path)}";
        }
        catch (IOException e) when (e.HResult == ReadOnlyFileSystem)
        {
            return $"cannot be written: {OnReadOnlyFileSystem}";
        }
    }

    /// <summary>
    /// Null when a file can be created in <paramref name="folder"/>, else why not: a read-only file system, the
    /// account's permissions, an immutable folder. SQLite said only "Error 14: unable to open database file" for such
    /// a data folder, which reads as a damaged index (before 2026-12-07).
    /// </summary>
    public static string? WhyNotWritable(string folder)
    {
        try
        {
            // Created and removed at once: SQLite's journal and the spool need the same right.
            using var probe = File.OpenHandle(Path.Combine(folder, $".vigie-write-check-{Environment.ProcessId}"), FileMode.CreateNew, FileAccess.Write,
                FileShare.None, FileOptions.DeleteOnClose);
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return Denied(folder);
        }
        catch (IOException e) when (e.HResult == ReadOnlyFileSystem)
        {
            return OnReadOnlyFileSystem;
        }
        catch (IOException e) when (e is not (FileNotFoundException or DirectoryNotFoundException))
        {
            return e.Message;
        }
    }

    /// <summary>EROFS, which .NET gives as the HResult of the IOException on Linux.</summary>
    private const int ReadOnlyFileSystem = 30;

    private const string OnReadOnlyFileSystem = "its file system is mounted read-only (remount it read-write, or choose another place)";

    /// <summary>
    /// A write refused by EACCES or EPERM, which .NET does not tell apart: root passes permissions, so for root it is
    /// an immutable attribute (or a security module); for another account either.
    /// </summary>
    private static string Denied(string path) => Environment.UserName == "root"
        ? $"it is immutable (chattr +i; lsattr -d {path} shows it) or a security module refuses the write"
        : $"permission denied to the account {Environment.UserName} (give that account write access), or it is immutable (lsattr -d {path})";
}
