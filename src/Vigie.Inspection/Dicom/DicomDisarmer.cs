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
