using Vigie.Core.IO;

namespace Vigie.Audit.Signing;

/// <summary>
/// The latest tree head this node signed, kept beside the signing key (outside the data folder, as the key is), as one
/// line of the head's JSON. The database alone cannot vouch for its own heads: deleted with the entries rewritten, the
/// node's genuine key signed the forged history (before 2026-12-07). With this file the signer and verification know
/// what the log held when the node last signed. It is written only after the head's commit is synced, so a power cut
/// can take what came after the recorded head, never the head itself.
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

    /// <summary>
    /// Records <paramref name="head"/> durably (mode 600, written to a temporary file, synced, renamed, folder synced),
    /// unless the file already holds a larger one; <paramref name="rebase"/> replaces it whatever it holds (a deliberate
    /// restore of the database). Throws <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/> when the
    /// key folder cannot be written (a read-only mount): the caller warns, the head stays signed.
    /// </summary>
    public static async Task WriteAsync(string path, SignedTreeHead head, CancellationToken cancellationToken, bool rebase = false)
    {
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
        {
            return; // No key folder (a key held elsewhere): nothing beside it to write.
        }

        // Another process on the same key may have recorded a later head meanwhile: never go back.
        try
        {
            if (!rebase && await ReadAsync(path, cancellationToken).ConfigureAwait(false) is { } recorded && recorded.TreeSize >= head.TreeSize)
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

    /// <summary>Keeps the recorded file whole beside itself (a deliberate restore replaces it): returns the copy's path, or null without a file.</summary>
    public static async Task<string?> KeepAsideAsync(string path, DateTimeOffset at, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var kept = $"{path}.{at.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}.replaced";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 0 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        await using (var stream = new FileStream(kept, options))
        {
            await stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }

        return kept;
    }
}
