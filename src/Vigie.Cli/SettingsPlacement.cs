using Vigie.Core.IO;

namespace Vigie.Cli;

/// <summary>
/// Whether a settings file lies inside the data folder, however either path is spelt: the path as given (full, `..`
/// removed), the same with its folders' links resolved, and the file's own link resolved, each against the data folder
/// with its links resolved, names spelt as the file system keeps them (a folder that ignores case matched another
/// spelling). Before 2026-12-07 only the resolved target was compared, and a link in the data folder to a file elsewhere passed.
/// </summary>
internal static class SettingsPlacement
{
    /// <summary>Null when outside; else "" (the path itself is inside) or how it gets there (" (a link to ...)").</summary>
    public static string? InsideFolder(string file, string folder)
    {
        var full = Path.GetFullPath(file);
        var data = Canonical(folder);
        if (IsWithin(full, Path.GetFullPath(folder)) || IsWithin(full, data))
        {
            return "";
        }

        var name = Path.GetFileName(full);
        var parent = Path.GetDirectoryName(full) is { } p ? Canonical(p) : null;
        if (parent is not null && IsWithin(name.Length == 0 ? parent : Path.Combine(parent, name), data))
        {
            return $" (found at {Path.Combine(parent, name)})";
        }

        var target = Canonical(full);
        return IsWithin(target, data) ? $" (a link to {target})" : null;
    }

    /// <summary>The absolute path with its links resolved and each name spelt as its folder lists it.</summary>
    internal static string Canonical(string path)
    {
        var resolved = RealPath.Resolve(path);
        var root = Path.GetPathRoot(resolved) ?? "/";
        var current = root;
        foreach (var part in resolved[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            current = Path.Combine(current, Spelling(current, part));
        }

        return current;
    }

    private static bool IsWithin(string path, string folder)
    {
        var relative = Path.GetRelativePath(Path.TrimEndingDirectorySeparator(folder), path);
        return relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    /// <summary>
    /// The name as <paramref name="folder"/> lists it: the same, or, when the folder reaches it under another case (it
    /// folds case), the one spelling it keeps. A folder that cannot be listed keeps the name as written.
    /// </summary>
    private static string Spelling(string folder, string name)
    {
        try
        {
            string? folded = null;
            foreach (var entry in Directory.EnumerateFileSystemEntries(folder))
            {
                var listed = Path.GetFileName(entry);
                if (string.Equals(listed, name, StringComparison.Ordinal))
                {
                    return name;
                }

                if (folded is null && string.Equals(listed, name, StringComparison.OrdinalIgnoreCase))
                {
                    folded = listed;
                }
            }

            return folded is not null && Path.Exists(Path.Combine(folder, name)) ? folded : name;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return name;
        }
    }
}
