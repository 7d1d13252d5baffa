namespace Vigie.Core.IO;

/// <summary>
/// Paths as the file system reaches them, symbolic links resolved: a check that a file stays out of a folder must
/// compare where the bytes land, not how the path was spelt.
/// </summary>
public static class RealPath
{
    private const int MaxLinks = 40;

    /// <summary>
    /// The absolute path with every symbolic link along it resolved; the part that does not exist yet is kept as
    /// written. A loop, or more than 40 links, is an <see cref="IOException"/>.
    /// </summary>
    public static string Resolve(string path)
    {
        var links = 0;
        return Resolve(Path.GetFullPath(path), ref links);
    }

    /// <summary>True when <paramref name="path"/>, resolved, is <paramref name="folder"/> (resolved) or lies below it.</summary>
    public static bool IsWithin(string path, string folder)
    {
        var relative = Path.GetRelativePath(Resolve(folder), Resolve(path));
        return relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    private static string Resolve(string full, ref int links)
    {
        var root = Path.GetPathRoot(full) ?? "/";
        var current = root;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(current, part);
            // LinkTarget reads the link itself (lstat): a link to a folder, or to a file not written yet, counts too.
            if (new FileInfo(next).LinkTarget is { } target)
            {
                if (++links > MaxLinks)
                {
                    throw new IOException($"{full}: more than {MaxLinks} symbolic links");
                }

                next = Resolve(Path.GetFullPath(target, current), ref links);
            }

            current = next;
        }

        return current;
    }
}
