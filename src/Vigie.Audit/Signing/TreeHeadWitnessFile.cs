using Vigie.Core.IO;

namespace Vigie.Audit.Signing;

/// <summary>
/// The latest tree head this node signed, kept beside the signing key (outside the data folder, as the key is), as one
/// line of the head's JSON. The database alone cannot vouch for its own heads: deleted with the entries rewritten, the
/// node's genuine key signed the forged history (before 2026-12-07). With this file the signer and verification know
/// what the log held when the node last signed.
/// </summary>
internal static class TreeHeadWitnessFile
{
    /// <summary>The witness file of a signing key file: its path with <c>.heads</c> added.</summary>
    public static string? PathFor(string? signingKeyPath) => string.IsNullOrWhiteSpace(signingKeyPath) ? null : Path.GetFullPath(signingKeyPath) + ".heads";

    /// <summary>The head recorded, or null when there is no file; a file that does not hold a head is an error, not an absence.</summary>
    public static async Task<SignedTreeHead?> ReadAsync(string path, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var info = new FileInfo(path);
        if (info.Length > 64 * 1024)
        {
            throw new InvalidDataException($"The tree head witness file {path} is too large to hold a tree head.");
        }

        try
        {
            var heads = TreeHeadJson.Parse(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false));
            return heads.Count == 0
                ? throw new FormatException("no signed tree head in it")
                : heads.MaxBy(h => h.TreeSize);
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"The tree head witness file {path} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>Records <paramref name="head"/> durably (mode 600, replaced atomically), unless the file already holds a larger one.</summary>
    public static async Task WriteAsync(string path, SignedTreeHead head, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
        {
            return; // No key folder (a key held elsewhere): nothing beside it to write.
        }

        // Another process on the same key may have recorded a later head meanwhile: never go back.
        try
        {
            if (await ReadAsync(path, cancellationToken).ConfigureAwait(false) is { } recorded && recorded.TreeSize >= head.TreeSize)
            {
                return;
            }
        }
        catch (InvalidDataException)
        {
            // A damaged file is replaced by the head just signed, which the database holds too.
        }

        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.new");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            await using (var stream = new FileStream(temporary, options))
            {
                await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(TreeHeadJson.Write(head) + "\n"), cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }

        DurableFile.SyncDirectory(directory);
    }
}
