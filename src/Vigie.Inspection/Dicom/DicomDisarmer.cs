using Vigie.Dicom;
using Vigie.Dicom.IO;

namespace Vigie.Inspection.Dicom;

/// <summary>
/// Content disarm for DICOM: rewrites the object with a zero preamble, without the bytes that followed the dataset,
/// without elements that hold executables, and optionally without private elements. Each change is listed.
/// Pixel data and every other value are copied as they are.
/// </summary>
internal sealed class DicomDisarmer : IDisarmer
{
    private static readonly DicomReadOptions ReadOptions = new() { ReportTrailingData = true };

    public bool CanDisarm(ContentType type) => type == ContentType.Dicom;

    public async ValueTask<IReadOnlyList<DisarmAction>> DisarmAsync(ContentSource content, Stream output, DisarmOptions options, CancellationToken cancellationToken)
    {
        var actions = new List<DisarmAction>();
        await using var source = content.OpenStream();
        DicomFile file;
        try
        {
            file = await DicomReader.ReadFileAsync(source, ReadOptions, cancellationToken).ConfigureAwait(false);
        }
        catch (DicomParseException e)
        {
            throw new InvalidDataException($"cannot disarm an unreadable DICOM object: {e.Message}", e);
        }

        if (file.Preamble is { } preamble && preamble.AsSpan().IndexOfAnyExcept((byte)0) >= 0)
        {
            actions.Add(new DisarmAction("dicom.preamble", "preamble set to 128 zero bytes", 0, ""));
        }

        if (file.TrailingDataOffset is { } trailing)
        {
            actions.Add(new DisarmAction("dicom.trailing-data", $"removed {content.Length - trailing} bytes after the dataset", trailing, ""));
        }

        if (file.TransferSyntax.IsDeflated
            && (await DeflateEnd.FindAsync(content, file.DatasetOffset, 256L << 20, cancellationToken).ConfigureAwait(false)).End is { } end
            && content.Length - end > 9)
        {
            // Not written again: the copy's stream is deflated anew and ends where its data set does.
            actions.Add(new DisarmAction("dicom.trailing-data", $"removed {content.Length - end} bytes after the deflate stream", end, ""));
        }

        RemoveFromMeta(file.Meta, content, actions);
        RemoveDangerous(file.Dataset, content, options, actions, "");
        if (!file.TransferSyntax.IsLittleEndian)
        {
            actions.Add(new DisarmAction("dicom.transfer-syntax", "re-encoded from explicit VR big endian to explicit VR little endian", null, ""));
        }

        source.Position = 0;
        await DicomWriter.WriteFileAsync(output, file, new DicomWriteOptions { BulkSource = source, TransferSyntax = file.TransferSyntax.IsLittleEndian ? file.TransferSyntax : null },
            cancellationToken).ConfigureAwait(false);
        return actions;
    }

    /// <summary>
    /// Private Information (0002,0102) that holds a program or a file goes, with its creator (0002,0100): nothing reads
    /// it but its creator's software, and the copy was called clean with a PE still in it until 2026-12-07. Other meta
    /// elements are rebuilt by the writer or hold UIDs.
    /// </summary>
    private static void RemoveFromMeta(DicomDataset meta, ContentSource content, List<DisarmAction> actions)
    {
        if (meta[DicomTags.PrivateInformation] is not DicomValueElement value || value.Length < 4)
        {
            return;
        }

        using var source = value.Bulk is { } bulk ? content.Slice(bulk.Offset, bulk.Length) : ContentSource.FromMemory(value.Value);
        var kind = EmbeddedContent.ClassifyValue(source, 0, source.Length);
        if (EmbeddedContent.IsExecutable(kind) || EmbeddedContent.IsContainer(kind) || kind == EmbeddedKind.MzStub)
        {
            meta.Remove(DicomTags.PrivateInformation);
            meta.Remove(DicomTags.PrivateInformationCreatorUID);
            actions.Add(new DisarmAction(EmbeddedContent.IsExecutable(kind) ? "dicom.element.executable" : "dicom.element.embedded-file",
                $"removed {DicomTags.PrivateInformation} Private Information and its creator (0002,0100), which held {EmbeddedContent.Describe(kind)}", value.SourceOffset, ""));
        }
    }

    private static void RemoveDangerous(DicomDataset dataset, ContentSource content, DisarmOptions options, List<DisarmAction> actions, string path)
    {
        var remove = new List<DicomTag>();
        foreach (var element in dataset)
        {
            var here = path.Length == 0 ? element.Tag.ToString() : $"{path}.{element.Tag}";
            if (options.StripDicomPrivateTags && element.Tag.IsPrivate)
            {
                remove.Add(element.Tag);
                actions.Add(new DisarmAction("dicom.private-tag", $"removed private element {here}", element.SourceOffset, ""));
                continue;
            }

            switch (element)
            {
                case DicomSequence sequence:
                    for (var i = 0; i < sequence.Items.Count; i++)
                    {
                        RemoveDangerous(sequence.Items[i], content, options, actions, $"{here}[{i}]");
                    }

                    break;
                case DicomValueElement value when value.Tag != DicomTags.PixelData && value.Length >= 4:
                {
                    using var source = value.Bulk is { } bulk ? content.Slice(bulk.Offset, bulk.Length) : ContentSource.FromMemory(value.Value);
                    var kind = EmbeddedContent.Classify(source, 0, source.Length);
                    if (EmbeddedContent.IsExecutable(kind))
                    {
                        remove.Add(element.Tag);
                        actions.Add(new DisarmAction("dicom.element.executable", $"removed {here}, which held {EmbeddedContent.Describe(kind)}", element.SourceOffset, ""));
                    }

                    break;
                }
            }
        }

        foreach (var tag in remove)
        {
            dataset.Remove(tag);
        }
    }
}
