using System.IO.Compression;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Archives;

/// <summary>
/// ZIP (and therefore OOXML and OpenDocument) structure: the central directory is checked against each local
/// header, data ranges against each other (overlaps, hidden local headers), names for traversal, entries for
/// encryption and compression ratio; then every entry is extracted under the limits and inspected as a child.
/// </summary>
internal sealed class ZipAnalyser : IContentAnalyser
{
    /// <summary>How much unexplained space between entries is searched for hidden local headers.</summary>
    private const long MaxGapScan = 64L * 1024 * 1024;

    public string Name => "zip";

    public bool CanAnalyse(ContentType type) => type is ContentType.Zip or ContentType.Ooxml or ContentType.OpenDocument;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        ZipDirectory directory;
        try
        {
            directory = ZipReader.Read(content, context.Limits.MaxEntries);
        }
        catch (ZipFormatException ex)
        {
            context.Report(Rules.ZipMalformed, Severity.Medium, $"unreadable central directory: {ex.Message}; falling back to local headers", ex.Offset);
            await InspectLocalHeadersAsync(context, content, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (directory.Truncated)
        {
            context.Report(Rules.ZipTooManyEntries, Severity.Medium,
                $"the archive declares {directory.DeclaredCount} entries; only the first {context.Limits.MaxEntries} were inspected");
        }
        else if (directory.DeclaredCount != directory.Entries.Count)
        {
            context.Report(Rules.ZipHeaderMismatch, Severity.Medium,
                $"the end record declares {directory.DeclaredCount} entries but the central directory holds {directory.Entries.Count}", directory.EndRecordOffset);
        }

        var ranges = new List<(long Start, long End, string Name)>(directory.Entries.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var locals = new ZipLocalHeader?[directory.Entries.Count];
        for (var i = 0; i < directory.Entries.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var entry = directory.Entries[i];
            CheckName(context, entry);
            if (!names.Add(entry.Name))
            {
                context.Report(Rules.ZipDuplicateName, Severity.Medium,
                    $"'{Inspector.SanitiseName(entry.Name)}' appears twice: extractors disagree on which one wins", entry.CentralRecordOffset);
            }

            var local = ZipReader.ReadLocalHeader(content, entry.LocalHeaderOffset);
            locals[i] = local;
            if (local is null)
            {
                context.Report(Rules.ZipHeaderMismatch, Severity.Medium,
                    $"'{Inspector.SanitiseName(entry.Name)}': no local header at offset {entry.LocalHeaderOffset}", entry.CentralRecordOffset);
                continue;
            }

            CompareHeaders(context, entry, local);
            CheckLocalNames(context, entry, local);
            ranges.Add((entry.LocalHeaderOffset, local.DataOffset + entry.CompressedSize, entry.Name));
        }

        CheckOverlaps(context, ranges);
        if (!directory.Truncated)
        {
            // Past MaxEntries the directory's other entries were not read: their local headers are not hidden data
            // (before 2026-12-06 the first of them was reported as such; too-many-entries says what happened).
            CheckHiddenData(context, content, directory, ranges, cancellationToken);
        }

        for (var i = 0; i < directory.Entries.Count; i++)
        {
            if (context.BombFound())
            {
                return;
            }

            var entry = directory.Entries[i];
            if (locals[i] is { } local && !await InspectEntryAsync(context, content, entry, local.DataOffset, cancellationToken).ConfigureAwait(false))
            {
                return;
            }
        }
    }

    private static void CheckName(InspectionContext context, ZipEntry entry)
    {
        var safe = Inspector.SanitiseName(entry.Name);
        if (NameChecks.TraversalReason(entry.Name) is { } traversal)
        {
            context.Report(Rules.ZipPathTraversal, Severity.High, $"entry '{safe}' has {traversal}: extracting it writes outside the target folder", entry.CentralRecordOffset);
        }
        else if (entry.UnicodePath is { } unicode && NameChecks.TraversalReason(unicode) is { } hidden)
        {
            // Before 2026-12-06 only the header name was checked: unzip writes to this one.
            context.Report(Rules.ZipPathTraversal, Severity.High,
                $"entry '{safe}' is named '{Inspector.SanitiseName(unicode)}' in its Unicode Path field, which has {hidden}: extracting it writes outside the target folder",
                entry.CentralRecordOffset);
        }
        else if (NameChecks.OddityReason(entry.Name) is { } oddity)
        {
            context.Report(Rules.ZipSuspiciousName, Severity.Low, $"entry '{safe}' has {oddity}", entry.CentralRecordOffset);
        }
    }

    /// <summary>
    /// Streaming extractors read the local header's names, not the directory's: a traversal there is one too (before
    /// 2026-12-06 only a header mismatch).
    /// </summary>
    private static void CheckLocalNames(InspectionContext context, ZipEntry entry, ZipLocalHeader local)
    {
        if (NameChecks.TraversalReason(entry.Name) is not null || (entry.UnicodePath is { } path && NameChecks.TraversalReason(path) is not null))
        {
            return; // reported already
        }

        foreach (var name in new[] { local.Name, local.UnicodePath })
        {
            if (name is not null && NameChecks.TraversalReason(name) is { } traversal)
            {
                context.Report(Rules.ZipPathTraversal, Severity.High,
                    $"entry '{Inspector.SanitiseName(entry.Name)}' is named '{Inspector.SanitiseName(name)}' in its local header, which has {traversal}: "
                    + "extracting it writes outside the target folder", local.Offset);
                return;
            }
        }
    }

    private static void CompareHeaders(InspectionContext context, ZipEntry entry, ZipLocalHeader local)
    {
        var differences = new List<string>();
        if (!string.Equals(local.Name, entry.Name, StringComparison.Ordinal))
        {
            differences.Add($"name '{Inspector.SanitiseName(local.Name)}'");
        }

        if (local.Method != entry.Method)
        {
            differences.Add($"method {local.Method} instead of {entry.Method}");
        }

        if ((local.Flags & 1) != (entry.Flags & 1))
        {
            differences.Add("encryption flag");
        }

        // With a data descriptor the local header may legitimately carry zeros.
        if (!entry.HasDataDescriptor && !local.IsDescriptorPlaceholder())
        {
            if (local.CompressedSize != entry.CompressedSize)
            {
                differences.Add($"compressed size {local.CompressedSize} instead of {entry.CompressedSize}");
            }

            if (local.UncompressedSize != entry.UncompressedSize)
            {
                differences.Add($"size {local.UncompressedSize} instead of {entry.UncompressedSize}");
            }

            if (local.Crc != entry.Crc)
            {
                differences.Add("CRC");
            }
        }

        if (differences.Count > 0)
        {
            context.Report(Rules.ZipHeaderMismatch, Severity.Medium,
                $"entry '{Inspector.SanitiseName(entry.Name)}': the local header disagrees with the central directory ({string.Join(", ", differences)}); extractors may see different content",
                local.Offset);
        }
    }

    private static void CheckOverlaps(InspectionContext context, List<(long Start, long End, string Name)> ranges)
    {
        ranges.Sort((a, b) => a.Start.CompareTo(b.Start));
        var reported = 0;
        for (var i = 1; i < ranges.Count && reported < 5; i++)
        {
            if (ranges[i].Start < ranges[i - 1].End)
            {
                context.Report(Rules.ZipOverlappingEntries, Severity.High,
                    $"entries '{Inspector.SanitiseName(ranges[i - 1].Name)}' and '{Inspector.SanitiseName(ranges[i].Name)}' share bytes (overlapping-entry bombs and parser confusion)",
                    ranges[i].Start);
                reported++;
            }
        }
    }

    private static void CheckHiddenData(InspectionContext context, ContentSource content, ZipDirectory directory,
        List<(long Start, long End, string Name)> ranges, CancellationToken cancellationToken)
    {
        // The spaces no listed entry explains: before the first entry, between entries, before the directory.
        var gaps = new List<(long Start, long End)>();
        var cursor = directory.PrefixLength;
        foreach (var range in ranges)
        {
            if (range.Start > cursor)
            {
                gaps.Add((cursor, range.Start));
            }

            cursor = Math.Max(cursor, range.End);
        }

        if (directory.CentralDirectoryOffset > cursor)
        {
            gaps.Add((cursor, directory.CentralDirectoryOffset));
        }

        long scanned = 0;
        var buffer = new byte[64 * 1024];
        foreach (var (start, end) in gaps)
        {
            for (var offset = start; offset < end && scanned < MaxGapScan; offset += buffer.Length - 3)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(offset, buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - offset)));
                scanned += read;
                var hit = buffer.AsSpan(0, read).IndexOf("PK\x03\x04"u8);
                if (hit >= 0)
                {
                    context.Report(Rules.ZipHiddenData, Severity.Medium,
                        $"a local file header at offset {offset + hit} belongs to no entry of the central directory: content some extractors see and others do not",
                        offset + hit);
                    return;
                }

                if (read < 4)
                {
                    break;
                }
            }
        }
    }

    /// <summary>Extracts and inspects one entry; false when the container should stop (bomb, budget).</summary>
    private static async ValueTask<bool> InspectEntryAsync(InspectionContext context, ContentSource content, ZipEntry entry, long dataOffset,
        CancellationToken cancellationToken)
    {
        if (entry.IsDirectory)
        {
            return true;
        }

        var safe = Inspector.SanitiseName(entry.Name);
        if (entry.IsEncrypted)
        {
            context.Report(Rules.ZipEncryptedEntry, Severity.Medium, $"entry '{safe}' is encrypted: its content cannot be inspected", entry.LocalHeaderOffset);
            return true;
        }

        var limits = context.Limits;
        if (entry.UncompressedSize > limits.RatioCheckFloor && entry.UncompressedSize > entry.CompressedSize * limits.MaxCompressionRatio)
        {
            context.ReportBomb(Rules.ZipBombRatio,
                $"entry '{safe}' declares {entry.UncompressedSize} bytes from {entry.CompressedSize} (more than {limits.MaxCompressionRatio}:1): decompression bomb",
                entry.LocalHeaderOffset);
            return false;
        }

        if (entry.Method is not (0 or 8))
        {
            context.Report(Rules.ZipUnsupportedMethod, Severity.Low,
                $"entry '{safe}' uses compression method {entry.Method}, which is not inspected", entry.LocalHeaderOffset);
            return true;
        }

        var available = Math.Max(0, Math.Min(entry.CompressedSize, content.Length - dataOffset));
        await using var raw = content.OpenStream(Math.Min(dataOffset, content.Length), available);
        await using Stream decoded = entry.Method == 8 ? new DeflateStream(raw, CompressionMode.Decompress, leaveOpen: true) : raw;
        var result = await Extraction.ExtractAsync(context, decoded, Math.Max(1, available), cancellationToken).ConfigureAwait(false);
        using var extracted = result.Content;
        if (context.ReportExtractionProblem(result, $"entry '{safe}'", Rules.ZipBombRatio, Rules.ZipMalformed, entry.LocalHeaderOffset))
        {
            return false;
        }

        if (extracted is null)
        {
            return true;
        }

        if (entry.Method == 0 && available < entry.CompressedSize)
        {
            context.Report(Rules.ZipMalformed, Severity.Medium, $"entry '{safe}' is truncated: {available} of {entry.CompressedSize} bytes present", entry.LocalHeaderOffset);
        }

        // Extractors (unzip, 7-Zip, Windows) write the file under its Unicode Path field's name when it has one: that is
        // the name its reader sees and double-clicks (a "facture.pdf" that was facture.pdf.js passed until 2026-12-07).
        await context.InspectChildAsync(entry.UnicodePath ?? entry.Name, extracted, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>When the central directory is unusable, walk local headers from the start, as streaming extractors do.</summary>
    private static async ValueTask InspectLocalHeadersAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        long offset = 0;
        var count = 0;
        while (offset < content.Length && count < context.Limits.MaxEntries && !context.BombFound())
        {
            cancellationToken.ThrowIfCancellationRequested();
            var local = ZipReader.ReadLocalHeader(content, offset);
            if (local is null || local.HasDataDescriptorFlag() || local.CompressedSize <= 0 && local.UncompressedSize > 0)
            {
                // Without sizes in the local header the walk cannot go on safely.
                return;
            }

            count++;
            var entry = new ZipEntry(count - 1, local.Name, local.Flags, local.Method, local.Crc, local.CompressedSize, local.UncompressedSize, local.Offset, local.Offset);
            CheckName(context, entry);
            if (!await InspectEntryAsync(context, content, entry, local.DataOffset, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            offset = local.DataOffset + local.CompressedSize;
        }
    }
}

internal static class ZipLocalHeaderExtensions
{
    public static bool HasDataDescriptorFlag(this ZipLocalHeader header) => (header.Flags & 0x0008) != 0;

    /// <summary>Local headers written before the sizes were known carry zeros and rely on a data descriptor.</summary>
    public static bool IsDescriptorPlaceholder(this ZipLocalHeader header) =>
        header.HasDataDescriptorFlag() && header.CompressedSize == 0 && header.UncompressedSize == 0 && header.Crc == 0;
}
