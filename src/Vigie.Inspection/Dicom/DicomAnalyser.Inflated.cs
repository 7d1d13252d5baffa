using System.Buffers;
using System.IO.Compression;
using Vigie.Dicom;
using Vigie.Inspection.Archives;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Dicom;

internal sealed partial class DicomAnalyser
{
    /// <summary>The last bytes of a file where a ZIP's end record lies (22 bytes and a comment of up to 65,535), as ZipReader looks.</summary>
    private const int ZipEndWindow = 65_535 + 22;

    /// <summary>
    /// A deflated data set is stored as it came and served inflated: C-GET and C-MOVE send it re-encoded in explicit or
    /// implicit VR little endian (never deflated), and every decoder reads the inflated bytes. The two readings made of a
    /// whole file (a PDF header in the data set's first kilobyte, read as the PDF from there; a ZIP found from the end)
    /// are made on that inflated data set too, up to where its elements end (what follows is trailing data, inspected on
    /// its own and not served). One streaming pass keeps the head and the last 64 KiB only; the data set is inflated again
    /// into a spill buffer (memory up to the threshold, then an encrypted temporary file) only when one of them holds a
    /// PDF header or a ZIP end record. Until 2026-12-07 both readings saw the compressed bytes only, and a DICOM/PDF or
    /// DICOM/ZIP polyglot sent deflated was stored (0000) and served as the polyglot it is.
    /// </summary>
    private static async ValueTask ReadInflatedDatasetAsync(InspectionContext context, ContentSource content, DicomFile file, CancellationToken cancellationToken)
    {
        var limit = Math.Min(file.InflatedTrailingDataOffset ?? long.MaxValue, ReadOptions.MaxInflatedBytes);
        var head = new byte[PdfHeaderWindow + 4];
        var tail = new byte[ZipEndWindow];
        var headLength = 0;
        long total = 0;
        await foreach (var chunk in InflateAsync(content, file.DatasetOffset, limit, cancellationToken).ConfigureAwait(false))
        {
            var span = chunk.Span;
            if (headLength < head.Length)
            {
                var n = Math.Min(head.Length - headLength, span.Length);
                span[..n].CopyTo(head.AsSpan(headLength));
                headLength += n;
            }

            // The tail is a ring: position total % window holds the next byte.
            for (var copied = 0; copied < span.Length;)
            {
                var at = (int)((total + copied) % ZipEndWindow);
                var n = Math.Min(ZipEndWindow - at, span.Length - copied);
                if (span.Length - copied > ZipEndWindow)
                {
                    // Only the last window of a long chunk can stay.
                    copied = span.Length - ZipEndWindow;
                    continue;
                }

                span.Slice(copied, n).CopyTo(tail.AsSpan(at));
                copied += n;
            }

            total += span.Length;
        }

        var pdfAt = head.AsSpan(0, headLength).IndexOf("%PDF-"u8);
        var last = new byte[(int)Math.Min(total, ZipEndWindow)];
        var wrap = total <= ZipEndWindow ? 0 : (int)(total % ZipEndWindow);
        tail.AsSpan(wrap, last.Length - wrap).CopyTo(last);
        tail.AsSpan(0, wrap).CopyTo(last.AsSpan(last.Length - wrap));
        if (pdfAt < 0 && last.AsSpan().IndexOf("PK\u0005\u0006"u8) < 0)
        {
            return;
        }

        using var inflated = await InflateIntoSpillAsync(context, content, file.DatasetOffset, total, cancellationToken).ConfigureAwait(false);
        if (inflated is null)
        {
            // The budget said so itself (inspection.extraction-limit or a bomb).
            return;
        }

        if (pdfAt >= 0)
        {
            using var view = inflated.Slice(pdfAt, inflated.Length - pdfAt);
            await context.InspectSecondReadingAsync($"[as a PDF reader opens it, from inflated offset {pdfAt}]", ContentType.Pdf, view, cancellationToken)
                .ConfigureAwait(false);
        }

        await ReadInflatedAppendedZipAsync(context, inflated, file, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What the engine's appended-archive check does on a file (a ZIP found from its end, whose first local header is
    /// not at offset 0), done on the inflated data set: a ZIP in the last bytes of the pixel data opens with unzip in the
    /// copy the node serves. A ZIP inside a value the walk already read as a file is not reported again.
    /// </summary>
    private static async ValueTask ReadInflatedAppendedZipAsync(InspectionContext context, ContentSource inflated, DicomFile file, CancellationToken cancellationToken)
    {
        if (ZipReader.FindAppended(inflated, context.Limits.MaxEntries) is not { } zip
            || InsideValueReadAsFile(file.Meta, zip.Start, zip.EndRecord + 22) || InsideValueReadAsFile(file.Dataset, zip.Start, zip.EndRecord + 22))
        {
            return;
        }

        context.Report(Rules.AppendedArchive, Severity.Medium,
            $"a ZIP archive of {zip.Entries} entries ends the inflated data set (from its offset {zip.Start}): the copy the node serves opens as it (polyglot)",
            file.DatasetOffset);
        using var slice = inflated.Slice(zip.Start, inflated.Length - zip.Start);
        await context.InspectChildAsync("[appended zip](inflated)", slice, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether [start, end) of the inflated data set lies in a value the walk read as a file: the encapsulated document, or
    /// a value (a frame) that starts with an executable or a container. Values never overlap, so the first one that holds
    /// the range decides.
    /// </summary>
    private static bool InsideValueReadAsFile(DicomDataset dataset, long start, long end)
    {
        foreach (var element in dataset)
        {
            switch (element)
            {
                case DicomSequence sequence:
                    foreach (var item in sequence.Items)
                    {
                        if (InsideValueReadAsFile(item, start, end))
                        {
                            return true;
                        }
                    }

                    break;
                case DicomValueElement value when value.ValueOffset >= 0 && value.ValueOffset <= start && end <= value.ValueOffset + value.Length:
                {
                    if (value.Tag == DicomTags.EncapsulatedDocument)
                    {
                        return true;
                    }

                    using var source = ContentSource.FromMemory(value.Value);
                    var kind = EmbeddedContent.ClassifyValue(source, 0, source.Length);
                    return EmbeddedContent.IsExecutable(kind) || EmbeddedContent.IsContainer(kind);
                }
            }
        }

        return false;
    }

    /// <summary>The first <paramref name="length"/> inflated bytes, charged to the extraction budget; null when it runs out.</summary>
    private static async ValueTask<ContentSource?> InflateIntoSpillAsync(InspectionContext context, ContentSource content, long datasetOffset, long length,
        CancellationToken cancellationToken)
    {
        var buffer = new SpillBuffer(context);
        try
        {
            await foreach (var chunk in InflateAsync(content, datasetOffset, length, cancellationToken).ConfigureAwait(false))
            {
                if (!context.TryChargeExtraction(chunk.Length))
                {
                    buffer.Dispose();
                    return null;
                }

                await buffer.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
            }

            return buffer.Detach();
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The deflated data set, inflated chunk by chunk up to <paramref name="limit"/> bytes (each chunk valid until the next
    /// is asked for). A stream that breaks stops it: the reader and the deflate-end check report that.
    /// </summary>
    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> InflateAsync(ContentSource content, long datasetOffset, long limit,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(81920);
        try
        {
            await using var raw = content.OpenStream(datasetOffset, content.Length - datasetOffset);
            await using var inflate = new DeflateStream(raw, CompressionMode.Decompress);
            long position = 0;
            while (position < limit)
            {
                int read;
                try
                {
                    read = await inflate.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - position)), cancellationToken).ConfigureAwait(false);
                }
                catch (InvalidDataException)
                {
                    yield break;
                }

                if (read == 0)
                {
                    yield break;
                }

                position += read;
                yield return buffer.AsMemory(0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
