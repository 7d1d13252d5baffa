using System.Buffers.Binary;
using SharpCompress.Archives;
using SharpCompress.Common;
using SharpCompress.Readers;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Archives;

/// <summary>
/// Tar, 7z and RAR through SharpCompress, read sequentially (solid archives are decoded once), with the same
/// checks and limits as ZIP: names, links, encryption, ratio, inner size, budget; each entry inspected as a child.
/// A 7z whose sequential reader stops (at an encrypted folder it cannot skip, or a corrupt one) has its later
/// entries opened one by one, so an encrypted decoy does not hide what follows it.
/// </summary>
internal sealed class ArchiveAnalyser : IContentAnalyser
{
    public string Name => "archive";

    public bool CanAnalyse(ContentType type) => type is ContentType.Tar or ContentType.SevenZip or ContentType.Rar;

    private sealed class Progress
    {
        public int Count;
        public int Files;
        public Exception? ReaderFailure;
    }

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        await using var stream = content.OpenStream();
        var options = new ReaderOptions { LeaveStreamOpen = true, LookForHeader = false };
        if (context.ContentType == ContentType.SevenZip)
        {
            await AnalyseSevenZipAsync(context, content, stream, options, cancellationToken).ConfigureAwait(false);
            return;
        }

        IReader reader;
        try
        {
            reader = ReaderFactory.OpenReader(stream, options);
        }
        catch (Exception ex) when (IsEncryption(ex))
        {
            ReportEncryptedArchive(context);
            return;
        }
        catch (Exception ex) when (Extraction.IsDecoderFailure(ex))
        {
            context.Report(Rules.ArchiveMalformed, Severity.Medium, $"the {context.ContentType} archive cannot be opened: {ex.Message}", 0);
            return;
        }

        using (reader)
        {
            var progress = new Progress();
            await InspectEntriesAsync(context, content, reader, progress, cancellationToken).ConfigureAwait(false);
            if (progress.ReaderFailure is { } failure)
            {
                context.Report(IsEncryption(failure) ? Rules.ArchiveEncryptedEntry : Rules.ArchiveMalformed, Severity.Medium,
                    $"reading entry {progress.Count + 1} failed: {failure.Message}; the rest of the archive was not inspected");
            }
        }
    }

    private static void ReportEncryptedArchive(InspectionContext context) =>
        context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"the {context.ContentType} archive is encrypted (headers included): its content cannot be inspected", 0);

    private static async ValueTask AnalyseSevenZipAsync(InspectionContext context, ContentSource content, Stream stream, ReaderOptions options,
        CancellationToken cancellationToken, bool repaired = false)
    {
        IArchive archive;
        List<IArchiveEntry> entries;
        IReader reader;
        if (!repaired && SevenZipHeaderRepair.LacksSubStreamsInfo(content))
        {
            await ReadUnreadableHeaderAsync(context, content, options, new InvalidDataException("the header has no SubStreamsInfo block, which SharpCompress cannot read"),
                repaired, cancellationToken, lacksSubStreams: true).ConfigureAwait(false);
            return;
        }

        try
        {
            // 7z needs random access; its reader decodes solid blocks once, in order.
            archive = ArchiveFactory.OpenArchive(stream, options);
        }
        catch (Exception ex) when (IsEncryption(ex))
        {
            ReportEncryptedArchive(context);
            return;
        }
        catch (Exception ex) when (IsLibraryFailure(ex))
        {
            await ReadUnreadableHeaderAsync(context, content, options, ex, repaired, cancellationToken).ConfigureAwait(false);
            return;
        }

        using (archive)
        {
            try
            {
                entries = [.. archive.Entries];
                reader = archive.ExtractAllEntries();
            }
            catch (Exception ex) when (IsEncryption(ex))
            {
                ReportEncryptedArchive(context);
                return;
            }
            catch (Exception ex) when (IsLibraryFailure(ex))
            {
                archive.Dispose();
                await ReadUnreadableHeaderAsync(context, content, options, ex, repaired, cancellationToken).ConfigureAwait(false);
                return;
            }

            var progress = new Progress();
            using (reader)
            {
                await InspectEntriesAsync(context, content, reader, progress, cancellationToken).ConfigureAwait(false);
            }

            if (progress.ReaderFailure is { } failure)
            {
                if (!IsEncryption(failure))
                {
                    context.Report(Rules.ArchiveMalformed, Severity.Medium,
                        $"reading on after entry {progress.Count} failed: {failure.Message}; the following entries are opened one by one");
                }

                await InspectRemainingAsync(context, content, entries.Where(e => !e.IsDirectory).Skip(progress.Files), progress, cancellationToken)
                    .ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// SharpCompress cannot read every valid header: one without the optional SubStreamsInfo throws
    /// NullReferenceException, and is read again with an empty one added (an in-memory copy, up to
    /// InMemoryThreshold). Otherwise the reason is reported and the packed streams, between the start header and the
    /// next header, are inspected raw, which shows stored (Copy) content to every engine.
    /// </summary>
    private static async ValueTask ReadUnreadableHeaderAsync(InspectionContext context, ContentSource content, ReaderOptions options, Exception ex,
        bool repaired, CancellationToken cancellationToken, bool lacksSubStreams = false)
    {
        if (!repaired && (lacksSubStreams || ex is NullReferenceException) && SevenZipHeaderRepair.TryAddSubStreamsInfo(content, context.Limits.InMemoryThreshold) is { } copy)
        {
            await using var fixedStream = new MemoryStream(copy, writable: false);
            await AnalyseSevenZipAsync(context, content, fixedStream, options, cancellationToken, repaired: true).ConfigureAwait(false);
            return;
        }

        // A NullReferenceException is the library failing on a layout it does not expect, not something to name.
        var reason = ex is NullReferenceException ? "a layout the 7z library does not read" : $"{ex.GetType().Name}: {ex.Message}";
        if (SevenZipHeaderRepair.TryReadFolders(content) is { } folders)
        {
            context.Report(Rules.ArchiveMalformed, Severity.Medium,
                $"the {context.ContentType} archive's header cannot be read ({reason}): its {folders.Count} folder(s) are read one by one, stored ones inspected raw", 0);
            for (var i = 0; i < folders.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (context.BombFound())
                {
                    return;
                }

                var folder = folders[i];
                if (folder.Encrypted)
                {
                    context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"folder {i + 1} is encrypted (AES): its content cannot be inspected");
                }
                else if (folder.Copy && folder.Length > 0)
                {
                    using var stored = content.Slice(folder.Offset, folder.Length);
                    await context.InspectChildAsync($"folder {i + 1} (stored)", stored, cancellationToken).ConfigureAwait(false);
                }
                else if (folder.Length > 0)
                {
                    using var coded = content.Slice(folder.Offset, folder.Length);
                    await context.InspectChildAsync($"folder {i + 1} (packed, not decoded)", coded, cancellationToken).ConfigureAwait(false);
                }
            }

            return;
        }

        context.Report(Rules.ArchiveMalformed, Severity.Medium,
            $"the {context.ContentType} archive's header cannot be read ({reason}): only its packed data is inspected, raw", 0);
        var start = new byte[32];
        if (content.ReadAt(0, start) < 32)
        {
            return;
        }

        var packed = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(start.AsSpan(12)), (ulong)Math.Max(0, content.Length - 32));
        if (packed > 0)
        {
            using var data = content.Slice(32, packed);
            await context.InspectChildAsync("packed data (header unread)", data, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async ValueTask InspectEntriesAsync(InspectionContext context, ContentSource content, IReader reader, Progress progress, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (context.BombFound())
            {
                return;
            }

            bool more;
            try
            {
                more = reader.MoveToNextEntry();
            }
            catch (Exception ex) when (IsEncryption(ex) || IsLibraryFailure(ex))
            {
                // An entry the reader must skip by decoding it (an encrypted folder) stops it: the caller decides what follows.
                progress.ReaderFailure = ex;
                return;
            }

            if (!more)
            {
                return;
            }

            if (!reader.Entry.IsDirectory)
            {
                progress.Files++;
            }

            if (!await InspectEntryAsync(context, content, reader.Entry, reader.OpenEntryStream, progress, cancellationToken).ConfigureAwait(false))
            {
                return;
            }
        }
    }

    /// <summary>Entries after the reader stopped, each opened on its own (a solid folder is decoded up to each of its entries, under a budget).</summary>
    private static async ValueTask InspectRemainingAsync(InspectionContext context, ContentSource content, IEnumerable<IArchiveEntry> remaining, Progress progress,
        CancellationToken cancellationToken)
    {
        var budget = context.Limits.MaxTotalExtracted;
        long decodedBefore = 0;
        foreach (var entry in remaining)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (context.BombFound())
            {
                return;
            }

            decodedBefore = entry.IsSolid ? decodedBefore : 0;
            if (!entry.IsEncrypted && decodedBefore > 0 && (budget -= decodedBefore) < 0)
            {
                context.Report(Rules.ExtractionLimit, Severity.Medium,
                    $"entries after entry {progress.Count} sit deep in solid blocks: decoding up to each of them exceeds the extraction budget; the rest were not inspected");
                return;
            }

            if (!await InspectEntryAsync(context, content, entry, entry.OpenEntryStream, progress, cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            decodedBefore += Math.Max(0, entry.Size);
        }
    }

    /// <summary>The checks for one entry, then its content inspected as a child; false when the archive is not to be read further.</summary>
    private static async ValueTask<bool> InspectEntryAsync(InspectionContext context, ContentSource content, IEntry entry, Func<Stream> open, Progress progress,
        CancellationToken cancellationToken)
    {
        var limits = context.Limits;
        if (++progress.Count > limits.MaxEntries)
        {
            context.Report(Rules.ArchiveTooManyEntries, Severity.Medium, $"more than {limits.MaxEntries} entries: the rest were not inspected");
            return false;
        }

        var name = entry.Key ?? $"entry {progress.Count}";
        var safe = Inspector.SanitiseName(name);
        if (NameChecks.TraversalReason(name) is { } traversal)
        {
            context.Report(Rules.ArchivePathTraversal, Severity.High, $"entry '{safe}' has {traversal}: extracting it writes outside the target folder");
        }

        if (!string.IsNullOrEmpty(entry.LinkTarget))
        {
            var target = entry.LinkTarget;
            var escapes = NameChecks.TraversalReason(target) is not null;
            context.Report(escapes ? Rules.ArchivePathTraversal : Rules.ArchiveLinkEntry, escapes ? Severity.High : Severity.Low,
                $"entry '{safe}' is a link to '{Inspector.SanitiseName(target)}'{(escapes ? ", outside the extraction folder" : "")}");
            return true;
        }

        if (entry.IsDirectory)
        {
            return true;
        }

        if (entry.IsEncrypted)
        {
            context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"entry '{safe}' is encrypted: its content cannot be inspected");
            return true;
        }

        if (entry.CompressedSize > 0 && entry.Size > limits.RatioCheckFloor && entry.Size > entry.CompressedSize * limits.MaxCompressionRatio && !entry.IsSolid)
        {
            context.ReportBomb(Rules.ArchiveBombRatio,
                $"entry '{safe}' declares {entry.Size} bytes from {entry.CompressedSize} (more than {limits.MaxCompressionRatio}:1): decompression bomb");
            return false;
        }

        ExtractionResult result;
        try
        {
            await using var entryStream = open();
            // Solid archives share one compressed stream: judge the ratio against the whole archive.
            var compressed = entry.CompressedSize > 0 && !entry.IsSolid ? entry.CompressedSize : content.Length;
            result = await Extraction.ExtractAsync(context, entryStream, compressed, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsEncryption(ex))
        {
            context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"entry '{safe}' is encrypted: its content cannot be inspected");
            return true;
        }
        catch (Exception ex) when (IsLibraryFailure(ex))
        {
            context.Report(Rules.ArchiveMalformed, Severity.Medium, $"entry '{safe}' cannot be decoded: {ex.Message}");
            return true;
        }

        using var extracted = result.Content;
        if (context.ReportExtractionProblem(result, $"entry '{safe}'", Rules.ArchiveBombRatio, Rules.ArchiveMalformed, null))
        {
            return false;
        }

        if (extracted is not null && entry.Size > 0 && extracted.Length < entry.Size)
        {
            // A cut archive: the reader hands over what there is without a word, and calling it clean would say the
            // whole entry was seen.
            context.Report(Rules.ArchiveMalformed, Severity.Medium,
                $"entry '{safe}' ends after {extracted.Length} of its {entry.Size} bytes: the archive is truncated");
        }

        if (extracted is not null)
        {
            await context.InspectChildAsync(name, extracted, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    /// <summary>Decoder failures, and the NullReferenceException SharpCompress throws on headers it does not expect.</summary>
    private static bool IsLibraryFailure(Exception ex) => Extraction.IsDecoderFailure(ex) || ex is NullReferenceException;

    private static bool IsEncryption(Exception ex) =>
        ex is SharpCompress.Common.CryptographicException or System.Security.Cryptography.CryptographicException
        || ex.Message.Contains("password", StringComparison.OrdinalIgnoreCase)
        || ex.Message.Contains("encrypted", StringComparison.OrdinalIgnoreCase);
}
