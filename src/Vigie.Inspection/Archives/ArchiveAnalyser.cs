using SharpCompress.Archives;
using SharpCompress.Readers;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Archives;

/// <summary>
/// Tar, 7z and RAR through SharpCompress, read sequentially (solid archives are decoded once), with the same
/// checks and limits as ZIP: names, links, encryption, ratio, inner size, budget; each entry inspected as a child.
/// </summary>
internal sealed class ArchiveAnalyser : IContentAnalyser
{
    public string Name => "archive";

    public bool CanAnalyse(ContentType type) => type is ContentType.Tar or ContentType.SevenZip or ContentType.Rar;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        await using var stream = content.OpenStream();
        var options = new ReaderOptions { LeaveStreamOpen = true, LookForHeader = false };
        IArchive? archive = null;
        IReader reader;
        try
        {
            if (context.ContentType == ContentType.SevenZip)
            {
                // 7z needs random access; its reader decodes solid blocks once, in order.
                archive = ArchiveFactory.OpenArchive(stream, options);
                reader = archive.ExtractAllEntries();
            }
            else
            {
                reader = ReaderFactory.OpenReader(stream, options);
            }
        }
        catch (Exception ex) when (IsEncryption(ex))
        {
            archive?.Dispose();
            context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"the {context.ContentType} archive is encrypted (headers included): its content cannot be inspected", 0);
            return;
        }
        catch (Exception ex) when (Extraction.IsDecoderFailure(ex))
        {
            archive?.Dispose();
            context.Report(Rules.ArchiveMalformed, Severity.Medium, $"the {context.ContentType} archive cannot be opened: {ex.Message}", 0);
            return;
        }

        using (archive)
        using (reader)
        {
            await InspectEntriesAsync(context, content, reader, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async ValueTask InspectEntriesAsync(InspectionContext context, ContentSource content, IReader reader, CancellationToken cancellationToken)
    {
        var limits = context.Limits;
        var count = 0;
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
            catch (Exception ex) when (IsEncryption(ex) || Extraction.IsDecoderFailure(ex))
            {
                context.Report(IsEncryption(ex) ? Rules.ArchiveEncryptedEntry : Rules.ArchiveMalformed, Severity.Medium,
                    $"reading entry {count + 1} failed: {ex.Message}; the rest of the archive was not inspected");
                return;
            }

            if (!more)
            {
                return;
            }

            if (++count > limits.MaxEntries)
            {
                context.Report(Rules.ArchiveTooManyEntries, Severity.Medium, $"more than {limits.MaxEntries} entries: the rest were not inspected");
                return;
            }

            var entry = reader.Entry;
            var name = entry.Key ?? $"entry {count}";
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
                continue;
            }

            if (entry.IsDirectory)
            {
                continue;
            }

            if (entry.IsEncrypted)
            {
                context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"entry '{safe}' is encrypted: its content cannot be inspected");
                continue;
            }

            if (entry.CompressedSize > 0 && entry.Size > limits.RatioCheckFloor && entry.Size > entry.CompressedSize * limits.MaxCompressionRatio && !entry.IsSolid)
            {
                context.ReportBomb(Rules.ArchiveBombRatio,
                    $"entry '{safe}' declares {entry.Size} bytes from {entry.CompressedSize} (more than {limits.MaxCompressionRatio}:1): decompression bomb");
                return;
            }

            ExtractionResult result;
            try
            {
                await using var entryStream = reader.OpenEntryStream();
                // Solid archives share one compressed stream: judge the ratio against the whole archive.
                var compressed = entry.CompressedSize > 0 && !entry.IsSolid ? entry.CompressedSize : content.Length;
                result = await Extraction.ExtractAsync(context, entryStream, compressed, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsEncryption(ex))
            {
                context.Report(Rules.ArchiveEncryptedEntry, Severity.Medium, $"entry '{safe}' is encrypted: its content cannot be inspected");
                continue;
            }
            catch (Exception ex) when (Extraction.IsDecoderFailure(ex))
            {
                context.Report(Rules.ArchiveMalformed, Severity.Medium, $"entry '{safe}' cannot be decoded: {ex.Message}");
                continue;
            }

            using var extracted = result.Content;
            if (context.ReportExtractionProblem(result, $"entry '{safe}'", Rules.ArchiveBombRatio, Rules.ArchiveMalformed, null))
            {
                return;
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
        }
    }

    private static bool IsEncryption(Exception ex) =>
        ex is SharpCompress.Common.CryptographicException or System.Security.Cryptography.CryptographicException
        || ex.Message.Contains("password", StringComparison.OrdinalIgnoreCase)
        || ex.Message.Contains("encrypted", StringComparison.OrdinalIgnoreCase);
}
