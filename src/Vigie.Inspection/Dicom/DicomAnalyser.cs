using System.Globalization;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Inspection.Engine;
using Vigie.Inspection.Archives;

namespace Vigie.Inspection.Dicom;

/// <summary>
/// Finds threats in DICOM objects: preamble polyglots (CVE-2019-11687), data after the dataset, executables and
/// archives in private, OB, UN and text elements or in pixel data, encapsulated documents (extracted and inspected),
/// meta-header inconsistencies, and every structural anomaly the Part 10 reader reports. Rule ids in docs/rules.md.
/// </summary>
internal sealed partial class DicomAnalyser : IContentAnalyser
{
    private const int PreambleLength = 128;

    private static readonly DicomReadOptions ReadOptions = new()
    {
        ReportTrailingData = true, MaxInflatedBytes = 256 * 1024 * 1024, ReadSequencesInUnknownValues = true,
    };

    /// <summary>Frames of native pixel data whose starts are looked at (each read is one small range).</summary>
    private const int MaxFramesChecked = 100_000;

    /// <summary>Largest Basic Offset Table that is checked entry by entry (1 M frames).</summary>
    private const int MaxOffsetTableChecked = 4 * 1024 * 1024;

    public string Name => "dicom";

    public bool CanAnalyse(ContentType type) => type == ContentType.Dicom;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var (preambleIsZip, preamblePdf) = await AnalysePreambleAsync(context, content, cancellationToken).ConfigureAwait(false);
        DicomFile file;
        // A deflated data set is kept as it inflates (pooled chunks within the node's memory budget, else an encrypted
        // temporary file), and its large values are ranges of that copy: until 2026-12-07 each was loaded into an array of
        // its own size, and 64 objects of 32 KB inflating to 31 MiB took the node to 4 GB, most of it kept once idle.
        using var copy = new ChunkedSpill(context);
        try
        {
            await using var stream = content.OpenStream();
            file = await DicomReader.ReadFileAsync(stream, ReadOptions, copy, cancellationToken).ConfigureAwait(false);
        }
        catch (DicomParseException e)
        {
            context.Report("dicom.structure." + Kebab(e.Kind.ToString()), SeverityOf(e.Kind), $"unreadable DICOM: {e.Reason}{(e.TagPath.Length > 0 ? " in " + e.TagPath : "")}", e.Offset);
            if (!preamblePdf)
            {
                await ReadAsPdfReaderAsync(context, content, 0, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        foreach (var warning in file.Warnings)
        {
            var severity = SeverityOf(warning.Kind);
            context.Report("dicom.structure." + Kebab(warning.Kind.ToString()), severity, warning.Message + (warning.TagPath.Length > 0 ? $" ({warning.TagPath})" : ""), warning.Offset);
        }

        using var inflated = file.TransferSyntax.IsDeflated ? copy.Detach() : null;
        // Where the data set's values lie: the file, or the inflated copy of a deflated data set.
        var values = inflated ?? content;
        CheckMeta(context, file);
        if (file.TrailingDataOffset is { } trailing)
        {
            await AnalyseTrailingAsync(context, content, trailing, preambleIsZip, cancellationToken).ConfigureAwait(false);
        }
        else if (file.InflatedTrailingDataOffset is { } inflatedTrailing)
        {
            await AnalyseInflatedTrailingAsync(context, content, file.DatasetOffset, inflatedTrailing, cancellationToken).ConfigureAwait(false);
        }

        if (file.TransferSyntax.IsDeflated)
        {
            await AnalyseAfterDeflateStreamAsync(context, content, file.DatasetOffset, preambleIsZip, cancellationToken).ConfigureAwait(false);
        }

        // The meta group's values are values like any other (a program in (0002,0102) Private Information was never
        // looked at until 2026-12-07), and a data set sent with group 0002 elements has them read there too.
        await WalkAsync(context, content, file.Meta, "", cancellationToken).ConfigureAwait(false);
        await WalkAsync(context, values, file.Dataset, "", cancellationToken).ConfigureAwait(false);
        await CheckPixelDataAsync(context, values, file, cancellationToken).ConfigureAwait(false);
        if (!preamblePdf)
        {
            await ReadAsPdfReaderAsync(context, content, file.TransferSyntax.IsDeflated ? 0 : file.DatasetOffset, cancellationToken).ConfigureAwait(false);
        }

        // Whatever the preamble: it is not served, the inflated data set is.
        if (inflated is not null)
        {
            await ReadInflatedDatasetAsync(context, inflated, file, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The window a PDF reader searches for the header: the file's first kilobyte.</summary>
    private const int PdfHeaderWindow = 1024;

    /// <summary>
    /// PDF readers open a file whose header lies anywhere in its first kilobyte, whatever holds it (a Manufacturer,
    /// a meta element, a value of any VR or length) and wherever its objects are (a private OB further on). The file is
    /// read once more from the header as that PDF, its Low and Medium findings as Info (the DICOM reading judged the
    /// structure), its active content counting. The window also covers the data set's first kilobyte past the meta
    /// information: stored, retrieved and written again by a peer with a shorter meta group, the object's offsets move
    /// down. A benign encapsulated PDF there reads clean; until 2026-12-07 the file was never read so, and a DICOM
    /// object that PDF readers open with an auto-run script was stored and served.
    /// </summary>
    private static async ValueTask ReadAsPdfReaderAsync(InspectionContext context, ContentSource content, long datasetOffset, CancellationToken cancellationToken)
    {
        var window = (int)Math.Min(content.Length, Math.Min(datasetOffset, int.MaxValue / 2) + PdfHeaderWindow + 4);
        if (window < 8)
        {
            return;
        }

        var head = System.Buffers.ArrayPool<byte>.Shared.Rent(window);
        int start;
        try
        {
            start = head.AsSpan(0, content.ReadAt(0, head.AsSpan(0, window))).IndexOf("%PDF-"u8);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(head);
        }

        if (start < 0)
        {
            return;
        }

        using var view = content.Slice(start, content.Length - start);
        await context.InspectSecondReadingAsync($"[as a PDF reader opens it, from offset {start}]", ContentType.Pdf, view, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Bytes after the end of a deflated data set's deflate stream: no decoder reads them, every carving tool does.
    /// They are trailing data as after any data set (until 2026-12-07 they were never looked at). The one zero byte
    /// writers add to make the stream's length even (PS3.5 A.5) is not.
    /// </summary>
    private static async ValueTask AnalyseAfterDeflateStreamAsync(InspectionContext context, ContentSource content, long datasetOffset, bool preambleIsZip,
        CancellationToken cancellationToken)
    {
        var found = await DeflateEnd.FindAsync(content, datasetOffset, ReadOptions.MaxInflatedBytes, cancellationToken).ConfigureAwait(false);
        if (found.Corrupt)
        {
            context.Report("dicom.structure.invalid-deflate-stream", Severity.Medium,
                "the deflate stream breaks after the data set's elements: where it ends, and what follows it, cannot be told", datasetOffset);
            return;
        }

        if (found.TooLarge)
        {
            context.Report(Rules.InnerSizeLimit, Severity.Medium,
                $"the deflate stream inflates past {ReadOptions.MaxInflatedBytes} bytes: where it ends, and what follows it, was not checked", datasetOffset);
            return;
        }

        if (found.End is not { } end || end >= content.Length)
        {
            return;
        }

        if (IsChecksumTrailer(content, end, found))
        {
            return;
        }

        await AnalyseTrailingAsync(context, content, end, preambleIsZip, cancellationToken, " (after the deflate stream)").ConfigureAwait(false);
    }

    /// <summary>
    /// Reports what the preamble makes of the file; says whether it opens as a ZIP and whether it was read as a PDF
    /// (both then read as such).
    /// </summary>
    private static async ValueTask<(bool Zip, bool Pdf)> AnalysePreambleAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var head = new byte[132];
        var read = content.ReadAt(0, head);
        if (read < 132 || !head.AsSpan(128, 4).SequenceEqual("DICM"u8) || head.AsSpan(0, PreambleLength).IndexOfAnyExcept((byte)0) < 0)
        {
            return (false, false);
        }

        var kind = EmbeddedContent.Classify(content, 0, content.Length);
        switch (kind)
        {
            case EmbeddedKind.WindowsExecutable:
                context.Report("dicom.preamble.pe", Severity.Critical, "the preamble is a Windows executable header: the file runs as a program (CVE-2019-11687 polyglot)", 0);
                // Read as the program it also is, known-bad signatures for executables (and their entry point) apply.
                await context.InspectAsAsync("polyglot.exe", ContentType.Pe, content, cancellationToken).ConfigureAwait(false);
                break;
            case EmbeddedKind.Elf:
                context.Report("dicom.preamble.elf", Severity.Critical, "the preamble is an ELF executable header (polyglot)", 0);
                await context.InspectAsAsync("polyglot.elf", ContentType.Elf, content, cancellationToken).ConfigureAwait(false);
                break;
            case EmbeddedKind.MachO:
                context.Report("dicom.preamble.macho", Severity.Critical, "the preamble is a Mach-O executable header (polyglot)", 0);
                await context.InspectAsAsync("polyglot.macho", ContentType.MachO, content, cancellationToken).ConfigureAwait(false);
                break;
            case EmbeddedKind.Script:
                context.Report("dicom.preamble.script", Severity.High, "the preamble starts with a script interpreter line (polyglot)", 0);
                break;
            case EmbeddedKind.MzStub:
                context.Report("dicom.preamble.mz", Severity.Medium, "the preamble starts with an MZ header without a valid PE signature", 0);
                break;
            case EmbeddedKind.Zip:
                context.Report("dicom.preamble.zip", Severity.High, "the preamble is a ZIP/JAR local header: the file opens as an archive (polyglot)", 0);
                await context.InspectAsAsync("polyglot.zip", ContentType.Zip, content, cancellationToken).ConfigureAwait(false);
                break;
            case EmbeddedKind.Pdf:
                context.Report("dicom.preamble.pdf", Severity.High, "the preamble is a PDF header: the file opens as a PDF (polyglot)", 0);
                await context.InspectAsAsync("polyglot.pdf", ContentType.Pdf, content, cancellationToken).ConfigureAwait(false);
                break;
            case EmbeddedKind.Html:
                // Reported with the markup it holds (AnalysePreambleTextAsync).
                break;
            case EmbeddedKind.Ole2 or EmbeddedKind.Rar or EmbeddedKind.SevenZip or EmbeddedKind.Gzip:
                context.Report("dicom.preamble.archive", Severity.High, $"the preamble starts with {EmbeddedContent.Describe(kind)} (polyglot)", 0);
                break;
            case EmbeddedKind.Tiff:
                context.Report("dicom.preamble.tiff", Severity.Info, "the preamble holds a TIFF header (dual-personality DICOM/TIFF file)", 0);
                break;
            case EmbeddedKind.None:
                context.Report("dicom.preamble.nonzero", Severity.Info, "the preamble is not zero", 0);
                break;
        }

        // What starts the preamble does not decide alone: PDF readers find a header anywhere in the first kilobyte
        // (behind junk, a NUL, a TIFF or MZ header), and a browser renders markup whatever comes before it. Until
        // 2026-12-07 only offset 0 was looked at, and such files were clean.
        var pdfAt = head.AsSpan(0, PreambleLength).IndexOf("%PDF-"u8);
        if (kind != EmbeddedKind.Pdf && pdfAt > 0)
        {
            context.Report("dicom.preamble.pdf", Severity.High,
                $"the preamble holds a PDF header at offset {pdfAt}: PDF readers open the file from there (polyglot)", pdfAt);
            using var view = content.Slice(pdfAt, content.Length - pdfAt);
            await context.InspectAsAsync("polyglot.pdf", ContentType.Pdf, view, cancellationToken).ConfigureAwait(false);
        }

        await AnalysePreambleTextAsync(context, content, head, kind, cancellationToken).ConfigureAwait(false);
        return (kind == EmbeddedKind.Zip, kind == EmbeddedKind.Pdf || pdfAt > 0);
    }

    /// <summary>
    /// The preamble as a browser, a word processor and a shell read it (PreambleContent): any tag (after a byte order
    /// mark too) makes the file a page, read whole as one (`polyglot.html`); an RTF document opens in Word from its
    /// start (`polyglot.rtf`); a complete command line runs under `sh file.dcm`. Until 2026-12-07 only five tags (in
    /// ASCII) and "#!" at offset 0 counted: `&lt;body onload&gt;`, a UTF-16 page, shell lines and a DDE field were clean.
    /// </summary>
    private static async ValueTask AnalysePreambleTextAsync(InspectionContext context, ContentSource content, byte[] head, EmbeddedKind kind,
        CancellationToken cancellationToken)
    {
        var markup = PreambleContent.FindMarkup(head.AsSpan(0, PreambleLength));
        var page = kind == EmbeddedKind.Html || markup is not null || EmbeddedContent.HoldsMarkup(head.AsSpan(0, PreambleLength));
        if (page)
        {
            context.Report("dicom.preamble.html", Severity.High,
                $"the preamble holds HTML or script markup{(markup is { } m ? $" ({m.Describe()}, offset {m.Offset})" : string.Empty)}: a browser renders the file as a page (polyglot)",
                markup?.Offset ?? 0);
            await context.InspectAsAsync("polyglot.html", ContentType.Html, content, cancellationToken).ConfigureAwait(false);
        }

        var rtfAt = PreambleContent.FindRtf(head.AsSpan(0, PreambleLength));
        if (rtfAt >= 0)
        {
            context.Report("dicom.preamble.rtf", Severity.High,
                $"the preamble holds an RTF document at offset {rtfAt}: word processors open the file as that document (polyglot)", rtfAt);
            using var view = content.Slice(rtfAt, content.Length - rtfAt);
            await context.InspectAsAsync("polyglot.rtf", ContentType.Rtf, view, cancellationToken).ConfigureAwait(false);
        }

        var command = kind == EmbeddedKind.Script ? -1 : PreambleContent.FindCommandLine(head.AsSpan(0, PreambleLength));
        if (command >= 0)
        {
            context.Report("dicom.preamble.script", Severity.Medium,
                $"the preamble holds a shell command line at offset {command}: `sh` runs it when given the file (polyglot)", command);
        }
    }

    private static async ValueTask AnalyseTrailingAsync(InspectionContext context, ContentSource content, long offset, bool preambleIsZip,
        CancellationToken cancellationToken, string where = "")
    {
        var length = content.Length - offset;
        var kind = EmbeddedContent.Classify(content, offset, length);
        var (severity, what) = Trailing(kind);
        var tail = content.Slice(offset, length);
        // A ZIP polyglot's archive is also the trailing data. Read on its own, it is the same archive when every entry
        // lands on the same local header; a crafted directory can make the two readings differ, and then both stay.
        if (preambleIsZip && kind == EmbeddedKind.Zip && SameArchive(content, tail, offset, context.Limits.MaxEntries))
        {
            context.Report("dicom.trailing-data", severity, $"{length} bytes after the end of the dataset{where}: {what}, the one the preamble opens (read as polyglot.zip)",
                offset);
            context.MarkInspected(tail);
            return;
        }

        context.Report("dicom.trailing-data", severity, $"{length} bytes after the end of the dataset{where}: {what}", offset);
        await context.InspectChildAsync("trailing-data", tail, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What follows the elements inside a deflated data set: deflated with them, it is not in the file as such, so it
    /// is inflated again (under the extraction budget and the inner size limit) and inspected like trailing data.
    /// </summary>
    private static async ValueTask AnalyseInflatedTrailingAsync(InspectionContext context, ContentSource content, long datasetOffset, long at,
        CancellationToken cancellationToken)
    {
        var tail = new SpillBuffer(context);
        try
        {
            await using (var raw = content.OpenStream(datasetOffset, content.Length - datasetOffset))
            await using (var inflate = new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress))
            {
                var buffer = new byte[81920];
                long position = 0;
                int read;
                while ((read = await inflate.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    var skip = (int)Math.Clamp(at - position, 0, read);
                    position += read;
                    if (skip == read)
                    {
                        continue;
                    }

                    if (tail.Length + read - skip > context.Limits.MaxInnerSize || !context.TryChargeExtraction(read - skip))
                    {
                        context.Report(Rules.InnerSizeLimit, Severity.Medium,
                            $"the data after the deflated data set's elements exceeds the {context.Limits.MaxInnerSize}-byte inner object limit: inspected as far as the limit");
                        break;
                    }

                    await tail.WriteAsync(buffer.AsMemory(skip, read - skip), cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (InvalidDataException)
        {
            // The reader inflated this far already; a stream that breaks after the elements is still reported below.
        }

        using var bytes = tail.Detach();
        if (bytes.Length == 0)
        {
            return;
        }

        var (severity, what) = Trailing(EmbeddedContent.Classify(bytes, 0, bytes.Length));
        context.Report("dicom.trailing-data", severity,
            $"{bytes.Length} bytes after the end of the deflated data set (inflated offset {at}): {what}", datasetOffset);
        await context.InspectChildAsync("trailing-data(inflated)", bytes, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What writers leave after a deflate stream that is not data: the zero byte that makes its length even (PS3.5
    /// A.5), a gzip trailer (CRC-32 and the inflated length, pydicom's image_dfl.dcm) or a zlib one (Adler-32), each
    /// optionally padded. Too short to hold a file, and checked against what the stream inflated to.
    /// </summary>
    private static bool IsChecksumTrailer(ContentSource content, long end, DeflateEndResult found)
    {
        var length = content.Length - end;
        if (length > 9)
        {
            return false;
        }

        var tail = new byte[length];
        var n = content.ReadAt(end, tail);
        if (n % 2 == 1 && tail[n - 1] == 0)
        {
            n--;
        }

        return n switch
        {
            0 => true,
            8 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(4)) == (uint)found.Inflated,
            4 => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(tail) == found.Adler32,
            _ => false,
        };
    }

    /// <summary>How grave bytes after the data set are, by what they are, and what to call them.</summary>
    private static (Severity Severity, string What) Trailing(EmbeddedKind kind) =>
        EmbeddedContent.IsExecutable(kind) ? (Severity.Critical, EmbeddedContent.Describe(kind))
        : EmbeddedContent.IsContainer(kind) ? (Severity.High, EmbeddedContent.Describe(kind))
        : (Severity.Medium, "bytes that are not DICOM elements");

    private static bool SameArchive(ContentSource whole, ContentSource tail, long offset, int maxEntries)
    {
        try
        {
            var all = ZipReader.Read(whole, maxEntries).Entries;
            var part = ZipReader.Read(tail, maxEntries).Entries;
            return all.Count == part.Count && all.Zip(part).All(p => p.First.LocalHeaderOffset == offset + p.Second.LocalHeaderOffset
                && p.First.CompressedSize == p.Second.CompressedSize && p.First.UncompressedSize == p.Second.UncompressedSize
                && p.First.Method == p.Second.Method && p.First.Flags == p.Second.Flags && string.Equals(p.First.Name, p.Second.Name, StringComparison.Ordinal));
        }
        catch (ZipFormatException)
        {
            return false;
        }
    }

    private static void CheckMeta(InspectionContext context, DicomFile file)
    {
        if (!file.HasMetaInformation)
        {
            return;
        }

        // A different SOP class changes how the object is routed and rendered; a different instance UID is common in
        // edited files (anonymisation tools rewrite one and not the other) and only noted.
        Compare(DicomTags.MediaStorageSOPClassUID, DicomTags.SOPClassUID, "SOP class", "dicom.meta.sop-class-mismatch", Severity.Medium);
        Compare(DicomTags.MediaStorageSOPInstanceUID, DicomTags.SOPInstanceUID, "SOP instance", "dicom.meta.sop-instance-mismatch", Severity.Info);
        var pixel = file.Dataset[DicomTags.PixelData];
        if (pixel is DicomFragmentSequence && !file.TransferSyntax.IsEncapsulated)
        {
            context.Report("dicom.meta.syntax-mismatch", Severity.Medium, $"encapsulated pixel data under the native transfer syntax {file.TransferSyntax.Uid}", pixel.SourceOffset);
        }
        else if (pixel is DicomValueElement && file.TransferSyntax.IsEncapsulated && file.TransferSyntax.IsKnown)
        {
            context.Report("dicom.meta.syntax-mismatch", Severity.Medium, $"native pixel data under the encapsulated transfer syntax {file.TransferSyntax.Uid}", pixel.SourceOffset);
        }

        void Compare(DicomTag metaTag, DicomTag datasetTag, string what, string rule, Severity severity)
        {
            var meta = file.Meta.GetString(metaTag) is { } m ? DicomText.TrimUid(m) : null;
            var data = file.Dataset.GetString(datasetTag) is { } d ? DicomText.TrimUid(d) : null;
            if (!string.IsNullOrEmpty(meta) && !string.IsNullOrEmpty(data) && meta != data)
            {
                context.Report(rule, severity, $"the file meta information and the dataset name different {what}s", file.Meta[metaTag]?.SourceOffset);
            }
        }
    }

    private static async ValueTask WalkAsync(InspectionContext context, ContentSource content, DicomDataset dataset, string path, CancellationToken cancellationToken)
    {
        foreach (var element in dataset)
        {
            var here = path.Length == 0 ? element.Tag.ToString() : $"{path}.{element.Tag}";
            switch (element)
            {
                case DicomSequence sequence:
                    for (var i = 0; i < sequence.Items.Count; i++)
                    {
                        await WalkAsync(context, content, sequence.Items[i], $"{here}[{i}]", cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case DicomFragmentSequence fragments:
                    if (element.Tag != DicomTags.PixelData)
                    {
                        // dcmtk and most PACS refuse such an object outright; left in, it hides its fragments from readers.
                        context.Report("dicom.structure.encapsulated-outside-pixel-data", Severity.Medium,
                            $"{here} ({DicomVRInfo.Code(element.VR)}) has undefined length and fragments: only Pixel Data may be encapsulated (PS3.5 A.4)",
                            element.SourceOffset);
                    }

                    // The top-level Pixel Data is checked with its image attributes (CheckPixelDataAsync).
                    if (element.Tag != DicomTags.PixelData || path.Length > 0)
                    {
                        await CheckFragmentsAsync(context, content, fragments, here, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case DicomValueElement value when element.Tag == DicomTags.EncapsulatedDocument:
                    await AnalyseDocumentAsync(context, content, dataset, value, here, cancellationToken).ConfigureAwait(false);
                    break;
                // The top-level Pixel Data is checked with its image attributes; one inside an item (an icon) like any value.
                case DicomValueElement value when (element.Tag != DicomTags.PixelData || path.Length > 0) && value.Length >= 4 && MayHideContent(value):
                    await AnalyseValueAsync(context, content, value, here, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>
    /// Binary and free-text elements, and anything private, can carry a file; typed numbers and short strings cannot. A
    /// value that starts a PDF is looked at whatever its VR and length (a Manufacturer "%PDF-1.4" passed until 2026-12-07).
    /// </summary>
    private static bool MayHideContent(DicomValueElement value) =>
        value.Tag.IsPrivate || value.Length >= LongValue || value.VR is DicomVR.OB or DicomVR.OW or DicomVR.UN or DicomVR.OD or DicomVR.OF or DicomVR.OL or DicomVR.OV
            or DicomVR.UT or DicomVR.LT or DicomVR.ST or DicomVR.UC or DicomVR.UR
        || (value.Bulk is null && value.Value.Span.TrimStart(" \0"u8).StartsWith("%PDF-"u8));

    /// <summary>Largest file in an element that can be found clean (vendor protocols and reports are far smaller).</summary>
    private const long MaxVendorFileChecked = 16L << 20;

    /// <summary>Longer than any short string or number list of a real object (an LO is 64 characters): looked at whatever its VR.</summary>
    private const int LongValue = 256;

    private static async ValueTask AnalyseValueAsync(InspectionContext context, ContentSource content, DicomValueElement value, string path,
        CancellationToken cancellationToken)
    {
        using var source = ValueSource(content, value);
        if (source is null)
        {
            return;
        }

        var kind = EmbeddedContent.ClassifyValue(source, 0, source.Length);
        var offset = value.Bulk?.Offset ?? value.SourceOffset;
        if (EmbeddedContent.IsExecutable(kind))
        {
            context.Report("dicom.element.executable", Severity.Critical, $"{path} ({DicomVRInfo.Code(value.VR)}) holds {EmbeddedContent.Describe(kind)}", offset);
        }
        else if (!EmbeddedContent.IsContainer(kind))
        {
            await ReadAsPageAsync(context, value, source, path, cancellationToken).ConfigureAwait(false);
            return;
        }

        context.MarkInspected(source, value.ValueOffset);
        var before = context.ConcerningReports;
        await context.InspectChildAsync(path, source, cancellationToken).ConfigureAwait(false);
        if (!EmbeddedContent.IsExecutable(kind))
        {
            // Vendors keep protocols and reports in private elements (GE's gzipped protocol block, a zipped XML, a PDF),
            // which quarantined the image until 2026-12-06. Such a file is noted only when it is of those kinds, was read
            // whole with nothing of concern, and carries no program in its raw bytes (an archive comment, a second gzip
            // member); anything else stays Medium, as a second review showed the ways around a looser rule.
            var clean = before is not null && context.ConcerningReports == before && kind is EmbeddedKind.Zip or EmbeddedKind.Gzip or EmbeddedKind.Pdf
                && !EmbeddedContent.MayHideProgram(source, kind, MaxVendorFileChecked);
            context.Report("dicom.element.embedded-file", clean ? Severity.Info : Severity.Medium,
                $"{path} ({DicomVRInfo.Code(value.VR)}) holds {EmbeddedContent.Describe(kind)}{(clean ? ", inspected: nothing found in it" : string.Empty)}", offset);
        }
    }

    /// <summary>
    /// A text value (or one of unknown VR) that does not start as a page can still be one: a browser renders a page
    /// whatever comes before its first tag. The whole value (a reference past the memory budget read in chunks) goes to
    /// the HTML analyser's smuggling check when it holds a trigger and a script, link or handler, so "Report follows. "
    /// or 100 spaces before a smuggling page no longer hide it (until 2026-12-07 only the value's first 64 bytes were
    /// looked at). A report that merely mentions "&lt;script&gt;" has no trigger and is not read so.
    /// </summary>
    private static async ValueTask ReadAsPageAsync(InspectionContext context, DicomValueElement value, ContentSource source, string path,
        CancellationToken cancellationToken)
    {
        if (!HoldsText(value.VR) || (value.VR == DicomVR.UN && !StartsAsText(source)) || !Html.HtmlAnalyser.MayBeSmugglingPage(source, cancellationToken))
        {
            return;
        }

        await context.InspectAsAsync(path, ContentType.Html, source, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether a UN value's first kilobyte is text (no control byte but tab, line breaks, form feed and escape; a NUL
    /// only as the last byte's padding): a viewer shows such a value as text, and binary vendor blobs (tens of MB of
    /// them in one file) are not searched.
    /// </summary>
    private static bool StartsAsText(ContentSource source)
    {
        Span<byte> head = stackalloc byte[1024];
        head = head[..source.ReadAt(0, head[..(int)Math.Min(head.Length, source.Length)])];
        if (head.Length == source.Length && head.Length > 0 && head[^1] == 0)
        {
            head = head[..^1];
        }

        foreach (var b in head)
        {
            if (b < 0x20 && b is not ((byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0C or 0x1B))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>VRs whose value is characters, and UN (a private text sent in implicit VR, or a VR the sender did not know).</summary>
    private static bool HoldsText(DicomVR vr) => vr is DicomVR.LT or DicomVR.ST or DicomVR.UT or DicomVR.UC or DicomVR.UR or DicomVR.LO or DicomVR.SH
        or DicomVR.PN or DicomVR.CS or DicomVR.AE or DicomVR.UN;

    private static async ValueTask AnalyseDocumentAsync(InspectionContext context, ContentSource content, DicomDataset dataset, DicomValueElement value, string path,
        CancellationToken cancellationToken)
    {
        using var source = ValueSource(content, value);
        if (source is null || source.Length == 0)
        {
            return;
        }

        var declared = dataset.GetString(DicomTags.MIMETypeOfEncapsulatedDocument)?.Trim().ToLowerInvariant() ?? string.Empty;
        var kind = EmbeddedContent.Classify(source, 0, source.Length);
        var offset = value.Bulk?.Offset ?? value.SourceOffset;
        if (EmbeddedContent.IsExecutable(kind))
        {
            context.Report("dicom.document.executable", Severity.Critical, $"the encapsulated document ({declared}) is {EmbeddedContent.Describe(kind)}", offset);
        }
        else if (declared == "application/pdf" && kind != EmbeddedKind.Pdf)
        {
            context.Report("dicom.document.type-mismatch", Severity.Medium, $"declared application/pdf but the document starts with {EmbeddedContent.Describe(kind)}", offset);
        }

        context.MarkInspected(source, value.ValueOffset);
        using var unpadded = WithoutNulPadding(source);
        await context.InspectChildAsync(path + ":" + (declared.Length > 0 ? declared : "document"), unpadded ?? source, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The document without the NUL bytes that pad it to an even length, when they alone made it unidentifiable: a NUL
    /// in its first kilobytes makes a text "unknown", and an Encapsulated CDA of odd length was read as no type at all,
    /// its XML never analysed (until 2026-12-07). Null for other documents, read as they are.
    /// </summary>
    private static ContentSource? WithoutNulPadding(ContentSource document)
    {
        var end = document.Length;
        Span<byte> tail = stackalloc byte[4096];
        while (end > 0)
        {
            var chunk = (int)Math.Min(tail.Length, end);
            if (document.ReadAt(end - chunk, tail[..chunk]) < chunk)
            {
                break;
            }

            var kept = tail[..chunk].TrimEnd((byte)0).Length;
            end -= chunk - kept;
            if (kept > 0)
            {
                break;
            }
        }

        if (end == document.Length || end == 0 || Inspector.Identify(document) != ContentType.Unknown)
        {
            return null;
        }

        var trimmed = document.Slice(0, end);
        if (Inspector.Identify(trimmed) != ContentType.Unknown)
        {
            return trimmed;
        }

        trimmed.Dispose();
        return null;
    }

    private static async ValueTask CheckPixelDataAsync(InspectionContext context, ContentSource content, DicomFile file, CancellationToken cancellationToken)
    {
        var ds = file.Dataset;
        switch (ds[DicomTags.PixelData])
        {
            case DicomValueElement pixels:
            {
                // One source for the frames and what follows them: a big-endian value is read as it decodes in both.
                using var whole = ValueSource(content, pixels);
                if (whole is null)
                {
                    return;
                }

                var expected = ExpectedNativeLength(ds);
                await CheckFrameStartsAsync(context, whole, ds, pixels, expected, cancellationToken).ConfigureAwait(false);
                if (expected is not { } bytes || whole.Length <= bytes + 1)
                {
                    return;
                }

                var excess = whole.Length - bytes;
                using var tail = whole.Slice(bytes, excess);
                await ReportExcessAsync(context, tail, excess, pixels.Bulk is { } bulk ? bulk.Offset + bytes : pixels.SourceOffset, cancellationToken)
                    .ConfigureAwait(false);
                break;
            }

            case DicomFragmentSequence fragments:
                await CheckFragmentsAsync(context, content, fragments, DicomTags.PixelData.ToString(), cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>
    /// Every item of an encapsulated value, the Basic Offset Table included: it is the first item, and nothing but its
    /// validity says it holds offsets (a file put there was never looked at).
    /// </summary>
    private static async ValueTask CheckFragmentsAsync(InspectionContext context, ContentSource content, DicomFragmentSequence fragments, string path,
        CancellationToken cancellationToken)
    {
        for (var i = 0; i < fragments.Items.Count; i++)
        {
            var fragment = fragments.Items[i];
            using var source = FragmentSource(content, fragment);
            if (source is null)
            {
                continue;
            }

            if (i == 0 && source.Length > 0 && OffsetTableProblem(source, fragments) is { } problem)
            {
                context.Report("dicom.pixel-data.invalid-offset-table", problem.Severity, $"{path}: the basic offset table {problem.Reason}", fragment.SourceOffset);
            }

            var kind = EmbeddedContent.ClassifyValue(source, 0, source.Length);
            // No compressed image starts like any of these (JPEG FFD8, JPEG 2000 FF4F, RLE a segment count, MPEG 000001).
            if (EmbeddedContent.IsExecutable(kind) || EmbeddedContent.IsContainer(kind) || kind == EmbeddedKind.MzStub)
            {
                var what = i == 0 ? "the basic offset table (item 0)" : $"fragment {i}";
                context.Report("dicom.pixel-data.embedded-file",
                    EmbeddedContent.IsExecutable(kind) ? Severity.Critical : kind == EmbeddedKind.MzStub ? Severity.Medium : Severity.High,
                    $"{path} {what} is {EmbeddedContent.Describe(kind)}, not compressed image data", fragment.SourceOffset);
                await context.InspectChildAsync($"{path}[{(i == 0 ? "offset table" : $"fragment {i}")}]", source, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static ContentSource? FragmentSource(ContentSource content, DicomFragment fragment) => Source(content, fragment.Bulk, fragment.Value);

    /// <summary>
    /// Why a non-empty Basic Offset Table is not one (PS3.5 A.4): 32-bit entries, the first 0, rising, each inside the
    /// fragments, at most one per fragment. Null when it is valid. Entries that are offsets inside the fragments but in
    /// the wrong order (a table left zeroed by a device) are Info: readers walk the fragments instead. What does not fit
    /// is Low: bytes that are not offsets at all are what other content put there looks like.
    /// </summary>
    private static (string Reason, Severity Severity)? OffsetTableProblem(ContentSource table, DicomFragmentSequence fragments)
    {
        if (table.Length % 4 != 0)
        {
            return ($"is {table.Length} bytes long, not a whole number of 32-bit offsets", Severity.Low);
        }

        var entries = table.Length / 4;
        if (entries > fragments.Items.Count - 1)
        {
            return ($"holds {entries} offsets for {fragments.Items.Count - 1} fragments", Severity.Low);
        }

        if (table.Length > MaxOffsetTableChecked)
        {
            return null;
        }

        long fragmentBytes = 0;
        for (var i = 1; i < fragments.Items.Count; i++)
        {
            fragmentBytes += 8 + fragments.Items[i].Length;
        }

        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent((int)table.Length);
        try
        {
            var read = table.ReadAt(0, bytes.AsSpan(0, (int)table.Length));
            long previous = -1;
            (string, Severity)? disorder = null;
            for (var i = 0; i + 4 <= read; i += 4)
            {
                long offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
                if (offset >= fragmentBytes)
                {
                    return ($"entry {i / 4} ({offset}) points past the {fragmentBytes} bytes of fragments", Severity.Low);
                }

                if (disorder is null && ((i == 0 && offset != 0) || offset <= previous))
                {
                    disorder = ($"entry {i / 4} ({offset}) does not follow the previous one", Severity.Info);
                }

                previous = offset;
            }

            return disorder;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>
    /// A frame of native pixel data that starts with an executable or an archive header: image bytes do not look like
    /// one (headers are checked structurally), a file put in place of a frame does.
    /// </summary>
    private static async ValueTask CheckFrameStartsAsync(InspectionContext context, ContentSource whole, DicomDataset ds, DicomValueElement pixels, long? imageBytes,
        CancellationToken cancellationToken)
    {
        if (whole.Length < 4)
        {
            return;
        }

        // Without usable image attributes (no Rows, frames too small to hold a header), the value's start is still checked.
        var frames = ds.GetSingleString(DicomTags.NumberOfFrames) is { } f && long.TryParse(f, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 1;
        var frameBytes = imageBytes is { } bytes && bytes % frames == 0 && bytes / frames >= 64 ? bytes / frames : whole.Length;
        for (long i = 0; i < MaxFramesChecked && i * frameBytes < whole.Length; i++)
        {
            var start = i * frameBytes;
            var length = Math.Min(frameBytes, whole.Length - start);
            var kind = EmbeddedContent.ClassifyValue(whole, start, length);
            // Structural headers only: a script's "#!" is two bytes, as likely as any two pixel values.
            if (kind is EmbeddedKind.WindowsExecutable or EmbeddedKind.Elf or EmbeddedKind.MachO
                or EmbeddedKind.Zip or EmbeddedKind.Pdf or EmbeddedKind.Ole2 or EmbeddedKind.Rar or EmbeddedKind.SevenZip or EmbeddedKind.Gzip
                // Pixel values spelling a magic by chance made an image Malicious until 2026-12-06.
                && EmbeddedContent.HasStructure(whole, start, length, kind))
            {
                context.Report("dicom.pixel-data.embedded-file", EmbeddedContent.IsExecutable(kind) ? Severity.Critical : Severity.High,
                    $"frame {i} of the native pixel data starts with {EmbeddedContent.Describe(kind)}", (pixels.Bulk?.Offset ?? pixels.SourceOffset) + start);
                using var frame = whole.Slice(start, length);
                await context.InspectChildAsync($"(7FE0,0010)[frame {i}]", frame, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
    }

    private static async ValueTask ReportExcessAsync(InspectionContext context, ContentSource excess, long length, long offset, CancellationToken cancellationToken)
    {
        var kind = EmbeddedContent.Classify(excess, 0, length);
        if (EmbeddedContent.IsExecutable(kind) || EmbeddedContent.IsContainer(kind))
        {
            context.Report("dicom.pixel-data.appended-file", EmbeddedContent.IsExecutable(kind) ? Severity.Critical : Severity.High,
                $"{length} bytes past the end of the image in the pixel data: {EmbeddedContent.Describe(kind)}", offset);
            await context.InspectChildAsync("(7FE0,0010)[appended]", excess, cancellationToken).ConfigureAwait(false);
        }
        else if (length > 1024)
        {
            context.Report("dicom.pixel-data.excess", Severity.Info, $"pixel data is {length} bytes longer than its rows, columns, samples and frames say", offset);
        }
    }

    /// <summary>Rows x Columns x Samples x BitsAllocated/8 x Frames, or null when the attributes are missing or odd.</summary>
    private static long? ExpectedNativeLength(DicomDataset ds)
    {
        if (!ds.TryGetInt64(DicomTags.Rows, out var rows) || !ds.TryGetInt64(DicomTags.Columns, out var columns)
            || !ds.TryGetInt64(DicomTags.BitsAllocated, out var bits) || rows <= 0 || columns <= 0 || bits <= 0)
        {
            return null;
        }

        var samples = ds.TryGetInt64(DicomTags.SamplesPerPixel, out var s) && s > 0 ? s : 1;
        var frames = ds.GetSingleString(DicomTags.NumberOfFrames) is { } f && long.TryParse(f, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 1;
        var photometric = ds.GetSingleString(DicomTags.PhotometricInterpretation) ?? string.Empty;
        var pixelsPerFrame = rows * columns;
        var bitsPerFrame = photometric.StartsWith("YBR_FULL_422", StringComparison.Ordinal) || photometric.StartsWith("YBR_PARTIAL_422", StringComparison.Ordinal)
            ? pixelsPerFrame * 2 * bits
            : pixelsPerFrame * samples * bits;
        return (bitsPerFrame * frames + 7) / 8;
    }

    private static ContentSource? ValueSource(ContentSource content, DicomValueElement value) => Source(content, value.Bulk, value.Value);

    /// <summary>A value or an encapsulated item as readers see it: in memory, or its range of the file; null when that range is not in the file.</summary>
    private static ContentSource? Source(ContentSource content, DicomBulkReference? bulk, ReadOnlyMemory<byte> inMemory)
    {
        if (bulk is null)
        {
            return ContentSource.FromMemory(inMemory);
        }

        if (bulk.Offset < 0 || bulk.Offset + bulk.Length > content.Length)
        {
            return null;
        }

        var raw = content.Slice(bulk.Offset, bulk.Length);
        // Big endian: values in memory are already swapped by the reader, ranges of the file are not.
        return bulk.SwapUnit > 1 ? new SwappedContentSource(raw, bulk.SwapUnit) : raw;
    }

    private static Severity SeverityOf(DicomErrorKind kind) => kind switch
    {
        DicomErrorKind.DepthLimitExceeded or DicomErrorKind.ElementLimitExceeded or DicomErrorKind.SizeLimitExceeded or DicomErrorKind.ValueTooLarge => Severity.High,
        DicomErrorKind.TransferSyntaxMismatch or DicomErrorKind.InvalidStructure or DicomErrorKind.InvalidVR or DicomErrorKind.InvalidMetaInformation
            or DicomErrorKind.UndefinedLengthNotAllowed or DicomErrorKind.InvalidDeflateStream or DicomErrorKind.NotDicom => Severity.Medium,
        DicomErrorKind.Truncated or DicomErrorKind.LengthExceedsRemaining => Severity.Low,
        _ => Severity.Medium,
    };

    /// <summary>
    /// Most anomalies are common in real files from real devices (odd lengths, group lengths, stray delimiters): Info.
    /// Those that let two readers see two different objects (duplicates, meta elements in the dataset) are not.
    /// </summary>
    private static Severity SeverityOf(DicomWarningKind kind) => kind switch
    {
        DicomWarningKind.ConflictingDuplicateTag => Severity.Medium,
        DicomWarningKind.MetaElementInDataset => Severity.Low,
        DicomWarningKind.UnknownTransferSyntax => Severity.Low,
        // Ended before an item or sequence it opened was closed: what a truncated transfer leaves, and what no peer reads.
        DicomWarningKind.EndedInsideItem => Severity.Low,
        _ => Severity.Info,
    };

    private static string Kebab(string name)
    {
        var builder = new StringBuilder(name.Length + 8);
        for (var i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0)
            {
                builder.Append('-');
            }

            builder.Append(char.ToLowerInvariant(name[i]));
        }

        return builder.ToString();
    }
}
