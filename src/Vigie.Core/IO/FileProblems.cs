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
            return $"cannot be {(access == FileAccess.Read ? "read" : "written")} by the account {Environment.UserName} (permission denied): run as the account that runs vigie serve";
        }
    }
}
