namespace Vigie.Inspection.Signatures;

/// <summary>The files of a rules folder that the signature loader reads, so that other readers (the configuration audit) see the same.</summary>
public static class SignatureFolder
{
    /// <summary>Folder links are followed this deep, no further: a link to a parent ("current -> .") made the walk endless.</summary>
    private const int MaxDepth = 16;

    /// <summary>
    /// Signature files under <paramref name="directory"/> by their extension, hidden ones too (skipping them was a way
    /// to leave a rule out without a word), in ordinal order, at most <see cref="SignatureDatabase.MaxFiles"/> + 1 (the
    /// loader refuses more); <paramref name="ignored"/> collects the others.
    /// </summary>
    public static IReadOnlyList<string> Files(string directory, List<string>? ignored = null) =>
        [.. Directory.EnumerateFiles(directory, "*",
                new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = false, AttributesToSkip = FileAttributes.None, MaxRecursionDepth = MaxDepth })
            .Where(f =>
            {
                if (SignatureDatabase.KnownExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                {
                    return true;
                }

                ignored?.Add(Path.GetRelativePath(directory, f));
                return false;
            })
            .Take(SignatureDatabase.MaxFiles + 1)
            .Order(StringComparer.Ordinal)];
}
