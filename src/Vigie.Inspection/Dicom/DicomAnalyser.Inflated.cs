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
    /// its own and not served). They read the copy the reader kept as it inflated (since 2026-12-07; before, the data set
    /// was inflated twice more, once for its head and tail, then into a spill buffer), charged to the extraction budget
    /// only when one of them holds a PDF header or a ZIP end record. Until 2026-12-07 both readings saw the compressed
    /// bytes only, and a DICOM/PDF or DICOM/ZIP polyglot sent deflated was stored (0000) and served as the polyglot it is.
    /// </summary>
    private static async ValueTask ReadInflatedDatasetAsync(InspectionContext context, ContentSource inflated, DicomFile file, CancellationToken cancellationToken)
    {
        // The copy holds what the reader read: the whole data set, and past the elements at most what it read ahead.
        var total = Math.Min(Math.Min(file.InflatedTrailingDataOffset ?? long.MaxValue, ReadOptions.MaxInflatedBytes), inflated.Length);
        var head = new byte[(int)Math.Min(total, PdfHeaderWindow + 4)];
        inflated.ReadAt(0, head);
        var last = new byte[(int)Math.Min(total, ZipEndWindow)];
        inflated.ReadAt(total - last.Length, last);
        var pdfAt = head.AsSpan().IndexOf("%PDF-"u8);
        if (pdfAt < 0 && last.AsSpan().IndexOf("PK\u0005\u0006"u8) < 0)
        {
            return;
        }

        if (!context.TryChargeExtraction(total))
        {
            // The budget said so itself (inspection.extraction-limit or a bomb).
            return;
        }

        using var dataset = inflated.Slice(0, total);
        if (pdfAt >= 0)
        {
            using var view = dataset.Slice(pdfAt, dataset.Length - pdfAt);
            await context.InspectSecondReadingAsync($"[as a PDF reader opens it, from inflated offset {pdfAt}]", ContentType.Pdf, view, cancellationToken)
                .ConfigureAwait(false);
        }

        await ReadInflatedAppendedZipAsync(context, dataset, file, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What the engine's appended-archive check does on a file (a ZIP found from its end, whose first local header is
    /// not at offset 0), done on the inflated data set: a ZIP in the last bytes of the pixel data opens with unzip in the
    /// copy the node serves. A ZIP inside a value the walk already read as a file is not reported again.
    /// </summary>
    private static async ValueTask ReadInflatedAppendedZipAsync(InspectionContext context, ContentSource inflated, DicomFile file, CancellationToken cancellationToken)
    {
        if (ZipReader.FindAppended(inflated, context.Limits.MaxEntries) is not { } zip
            || InsideValueReadAsFile(inflated, file.Meta, zip.Start, zip.EndRecord + 22) || InsideValueReadAsFile(inflated, file.Dataset, zip.Start, zip.EndRecord + 22))
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
    private static bool InsideValueReadAsFile(ContentSource inflated, DicomDataset dataset, long start, long end)
    {
        foreach (var element in dataset)
        {
            switch (element)
            {
                case DicomSequence sequence:
                    foreach (var item in sequence.Items)
                    {
                        if (InsideValueReadAsFile(inflated, item, start, end))
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

                    using var source = ValueSource(inflated, value);
                    if (source is null)
                    {
                        return false;
                    }

                    var kind = EmbeddedContent.ClassifyValue(source, 0, source.Length);
                    return EmbeddedContent.IsExecutable(kind) || EmbeddedContent.IsContainer(kind);
                }
            }
        }

        return false;
    }
}
