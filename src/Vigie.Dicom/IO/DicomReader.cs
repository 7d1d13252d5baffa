using System.Buffers.Binary;
using System.IO.Compression;

namespace Vigie.Dicom.IO;

/// <summary>
/// Reads DICOM Part 10 files and bare datasets from streams: with or without preamble and file meta information,
/// in every native transfer syntax (implicit and explicit VR little endian, explicit VR big endian, deflated) and
/// with encapsulated pixel data kept as it is. Large values stay in a seekable source as references.
/// </summary>
public static class DicomReader
{
    private static ReadOnlySpan<byte> Dicm => "DICM"u8;

    public static async ValueTask<DicomFile> ReadFileAsync(string path, DicomReadOptions? options, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
        return await ReadFileAsync(stream, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads a file from the stream's current position. Bulk references are offsets in that stream.</summary>
    public static ValueTask<DicomFile> ReadFileAsync(Stream stream, DicomReadOptions? options, CancellationToken cancellationToken) =>
        ReadFileAsync(stream, options, null, cancellationToken);

    /// <summary>
    /// Reads a file from the stream's current position. A deflated data set is written to <paramref name="inflatedCopy"/>
    /// as it is inflated, and its large values become references into that copy (offsets in the inflated data set)
    /// instead of being loaded: memory stays bounded by <see cref="DicomReadOptions.MaxLoadedBytes"/> whatever the data set
    /// inflates to, and the copy can live where its owner chooses (pooled chunks, a temporary file).
    /// </summary>
    public static async ValueTask<DicomFile> ReadFileAsync(Stream stream, DicomReadOptions? options, Stream? inflatedCopy, CancellationToken cancellationToken)
    {
        options ??= DicomReadOptions.Default;
        var warnings = new List<DicomWarning>();
        using var input = new DicomInput(stream, options.MaxTotalBytes);
        try
        {
            return await ReadFileCoreAsync(stream, input, options, inflatedCopy, warnings, cancellationToken).ConfigureAwait(false);
        }
        catch (SizeLimitException e)
        {
            throw new DicomParseException(DicomErrorKind.SizeLimitExceeded, $"the file is larger than the {e.Limit}-byte limit", input.Position, "");
        }
        catch (EndOfStreamException)
        {
            throw new DicomParseException(DicomErrorKind.Truncated, "the data ends inside a value", input.Position, "");
        }
    }

    /// <summary>Reads a bare dataset (a DIMSE command or data set) encoded with <paramref name="syntax"/>.</summary>
    public static async ValueTask<DicomDataset> ReadDatasetAsync(Stream stream, TransferSyntax syntax, DicomReadOptions? options,
        CancellationToken cancellationToken)
    {
        options ??= DicomReadOptions.Default;
        var dataset = new DicomDataset();
        var warnings = new List<DicomWarning>();
        if (syntax.IsDeflated)
        {
            var (source, guarded) = InflateGuard.Create(stream, options);
            await using var inflated = new DeflateStream(source, CompressionMode.Decompress, leaveOpen: true);
            using var inflatedInput = new DicomInput(guarded(inflated), Math.Min(options.MaxTotalBytes, options.MaxInflatedBytes));
            await new DatasetParser(inflatedInput, syntax, options, warnings).ReadTopLevelAsync(dataset, cancellationToken).ConfigureAwait(false);
            return dataset;
        }

        using var input = new DicomInput(stream, options.MaxTotalBytes);
        await new DatasetParser(input, syntax, options, warnings).ReadTopLevelAsync(dataset, cancellationToken).ConfigureAwait(false);
        return dataset;
    }

    /// <summary>Reads a bare dataset held in memory.</summary>
    public static ValueTask<DicomDataset> ReadDatasetAsync(ReadOnlyMemory<byte> bytes, TransferSyntax syntax, DicomReadOptions? options,
        CancellationToken cancellationToken) =>
        ReadDatasetAsync(new ReadOnlyMemoryStream(bytes), syntax, options, cancellationToken);

    private static async ValueTask<DicomFile> ReadFileCoreAsync(Stream stream, DicomInput input, DicomReadOptions options, Stream? inflatedCopy,
        List<DicomWarning> warnings, CancellationToken cancellationToken)
    {
        byte[]? preamble = null;
        var hasMeta = false;
        await input.TryFillAsync(132, cancellationToken).ConfigureAwait(false);
        var head = input.Span;
        if (head.Length >= 132 && head.Slice(128, 4).SequenceEqual(Dicm))
        {
            preamble = head[..128].ToArray();
            input.Advance(132);
            hasMeta = true;
        }
        else if (head.Length >= 4 && head[..4].SequenceEqual(Dicm))
        {
            warnings.Add(new DicomWarning(DicomWarningKind.DicmPrefixWithoutPreamble, "'DICM' prefix without the 128-byte preamble", 0, ""));
            input.Advance(4);
            hasMeta = true;
        }

        var meta = new DicomDataset();
        if (await input.TryFillAsync(8, cancellationToken).ConfigureAwait(false) && ReadGroupLE(input.Span) == 0x0002)
        {
            await ReadMetaAsync(input, meta, options, warnings, cancellationToken).ConfigureAwait(false);
            hasMeta = true;
        }
        else if (hasMeta)
        {
            warnings.Add(new DicomWarning(DicomWarningKind.MetaInformationMissing, "'DICM' present but no file meta information group", input.Position, ""));
        }

        TransferSyntax syntax;
        var tsText = meta.GetString(DicomTags.TransferSyntaxUID);
        if (tsText is not null && DicomText.TrimUid(tsText).Length > 0)
        {
            syntax = TransferSyntax.Lookup(tsText);
            if (!syntax.IsKnown)
            {
                warnings.Add(new DicomWarning(DicomWarningKind.UnknownTransferSyntax,
                    $"unknown transfer syntax {syntax.Uid}, read as explicit VR little endian", input.Position, DicomTags.TransferSyntaxUID.ToString()));
            }
        }
        else
        {
            if (hasMeta)
            {
                warnings.Add(new DicomWarning(DicomWarningKind.TransferSyntaxMissing,
                    "the file meta information has no transfer syntax; the encoding was guessed", input.Position, ""));
            }

            syntax = await GuessSyntaxAsync(input, cancellationToken).ConfigureAwait(false);
        }

        var datasetOffset = input.Position;
        var dataset = new DicomDataset();
        if (syntax.IsDeflated)
        {
            return await ReadDeflatedAsync(stream, input, preamble, meta, syntax, datasetOffset, hasMeta, options, inflatedCopy, warnings, cancellationToken).ConfigureAwait(false);
        }

        var parser = new DatasetParser(input, syntax, options, warnings);
        await parser.ReadTopLevelAsync(dataset, cancellationToken).ConfigureAwait(false);
        foreach (var element in dataset)
        {
            if (element.Tag.Group == 0x0002)
            {
                warnings.Add(new DicomWarning(DicomWarningKind.MetaElementInDataset, $"file meta element {element.Tag} inside the dataset",
                    element.SourceOffset, element.Tag.ToString()));
            }
        }

        return new DicomFile(meta, dataset, syntax)
        {
            Preamble = preamble,
            DatasetOffset = datasetOffset,
            EndOffset = parser.TrailingDataOffset ?? input.Position,
            TrailingDataOffset = parser.TrailingDataOffset,
            IsPartial = parser.Stopped,
            LoadedBytes = parser.LoadedBytes,
            HasMetaInformation = hasMeta,
            Warnings = warnings,
        };
    }

    private static async ValueTask<DicomFile> ReadDeflatedAsync(Stream stream, DicomInput input, byte[]? preamble, DicomDataset meta, TransferSyntax syntax,
        long datasetOffset, bool hasMeta, DicomReadOptions options, Stream? inflatedCopy, List<DicomWarning> warnings, CancellationToken cancellationToken)
    {
        // The rest of the file is a raw deflate stream: give it the bytes already buffered, then the stream.
        var buffered = input.Span.ToArray();
        Stream rest = stream.CanSeek
            ? new PositionedStream(stream, stream.Position - buffered.Length)
            : new PrefixedStream(buffered, stream);
        var (source, guarded) = InflateGuard.Create(rest, options);
        await using var inflate = new DeflateStream(source, CompressionMode.Decompress, leaveOpen: true);
        var checkedInflate = guarded(inflate);
        using var inflated = new DicomInput(inflatedCopy is null ? checkedInflate : new CopyingStream(checkedInflate, inflatedCopy),
            Math.Min(options.MaxTotalBytes, options.MaxInflatedBytes));
        var dataset = new DicomDataset();
        // Offsets in errors and warnings for a deflated file are positions in the inflated dataset. Without a copy to read
        // them from again, large values are loaded (or dropped); with one, they are references into it, as in a file.
        var parser = inflatedCopy is null
            ? new DatasetParser(inflated, syntax, options with { LoadLargeValues = !options.DropLargeValues }, warnings)
            : new DatasetParser(inflated, syntax, options, warnings) { SourceKept = true };
        await parser.ReadTopLevelAsync(dataset, cancellationToken).ConfigureAwait(false);
        return new DicomFile(meta, dataset, syntax)
        {
            Preamble = preamble,
            DatasetOffset = datasetOffset,
            EndOffset = stream.CanSeek ? stream.Length : datasetOffset,
            InflatedTrailingDataOffset = parser.TrailingDataOffset,
            IsPartial = parser.Stopped,
            LoadedBytes = parser.LoadedBytes,
            HasMetaInformation = hasMeta,
            Warnings = warnings,
        };
    }

    private static async ValueTask ReadMetaAsync(DicomInput input, DicomDataset meta, DicomReadOptions options, List<DicomWarning> warnings,
        CancellationToken cancellationToken)
    {
        var start = input.Position;
        long? declaredEnd = null;
        var implicitMeta = false;
        DicomTag? highest = null;
        while (await input.TryFillAsync(8, cancellationToken).ConfigureAwait(false) && ReadGroupLE(input.Span) == 0x0002)
        {
            if (input.Position - start > options.MaxMetaInformationLength)
            {
                throw new DicomParseException(DicomErrorKind.InvalidMetaInformation,
                    $"file meta information longer than {options.MaxMetaInformationLength} bytes", input.Position, "");
            }

            var span = input.Span;
            var tag = new DicomTag(BinaryPrimitives.ReadUInt16LittleEndian(span), BinaryPrimitives.ReadUInt16LittleEndian(span[2..]));
            var headerOffset = input.Position;
            var vr = DicomVRInfo.FromBytes(span[4], span[5]);
            uint length;
            int header;
            if (vr == DicomVR.None || implicitMeta)
            {
                // Some writers put the meta group in implicit VR. Accept it, and say so.
                if (!implicitMeta)
                {
                    warnings.Add(new DicomWarning(DicomWarningKind.MetaInformationImplicitVR, "file meta information encoded in implicit VR", headerOffset, tag.ToString()));
                    implicitMeta = true;
                }

                vr = DicomDictionary.VRFor(tag);
                length = BinaryPrimitives.ReadUInt32LittleEndian(span[4..]);
                header = 8;
            }
            else if (DicomVRInfo.HasLongLength(vr))
            {
                if (!await input.TryFillAsync(12, cancellationToken).ConfigureAwait(false))
                {
                    throw new DicomParseException(DicomErrorKind.Truncated, $"the file ends inside the header of {tag}", headerOffset, tag.ToString());
                }

                length = BinaryPrimitives.ReadUInt32LittleEndian(input.Span[8..]);
                header = 12;
            }
            else
            {
                length = BinaryPrimitives.ReadUInt16LittleEndian(span[6..]);
                header = 8;
            }

            if (length == 0xFFFFFFFF || length > options.MaxMetaInformationLength || (input.Remaining is { } remaining && length > remaining - header))
            {
                throw new DicomParseException(DicomErrorKind.InvalidMetaInformation,
                    $"file meta element {tag} has length {length}, beyond the meta information or the file", headerOffset, tag.ToString());
            }

            input.Advance(header);
            if (!await input.TryFillAsync((int)length, cancellationToken).ConfigureAwait(false))
            {
                throw new DicomParseException(DicomErrorKind.Truncated, $"the file ends inside {tag}", input.Position, tag.ToString());
            }

            var value = input.Span[..(int)length].ToArray();
            input.Advance((int)length);
            if (highest is { } before && tag < before)
            {
                warnings.Add(new DicomWarning(DicomWarningKind.OutOfOrderTag, $"file meta element {tag} out of order", headerOffset, tag.ToString()));
            }
            else
            {
                highest = tag;
            }

            var element = new DicomValueElement(tag, vr == DicomVR.None ? DicomVR.UN : vr, value, headerOffset) { ValueOffset = headerOffset + header };
            if (!meta.Append(element))
            {
                // As in the data set: two transfer syntaxes, say, and two readers see two different objects.
                var (kind, message) = DatasetParser.Duplicate(meta, element, "file meta element");
                warnings.Add(new DicomWarning(kind, message, headerOffset, tag.ToString()));
            }
            if (tag == DicomTags.FileMetaInformationGroupLength && length == 4)
            {
                declaredEnd = input.Position + BinaryPrimitives.ReadUInt32LittleEndian(value);
            }
        }

        if (declaredEnd is { } end && end != input.Position)
        {
            warnings.Add(new DicomWarning(DicomWarningKind.GroupLengthMismatch,
                $"file meta information group length says the group ends at {end}, it ends at {input.Position}", input.Position,
                DicomTags.FileMetaInformationGroupLength.ToString()));
        }
    }

    /// <summary>Guesses the encoding of a dataset with no usable meta information from its first element header.</summary>
    private static async ValueTask<TransferSyntax> GuessSyntaxAsync(DicomInput input, CancellationToken cancellationToken)
    {
        if (!await input.TryFillAsync(8, cancellationToken).ConfigureAwait(false))
        {
            throw new DicomParseException(DicomErrorKind.NotDicom, "too short to be a DICOM dataset", input.Position, "");
        }

        var span = input.Span;
        var groupLE = BinaryPrimitives.ReadUInt16LittleEndian(span);
        var groupBE = BinaryPrimitives.ReadUInt16BigEndian(span);
        var explicitVR = DicomVRInfo.FromBytes(span[4], span[5]) != DicomVR.None;
        bool littleEndian;
        if (PlausibleFirstGroup(groupLE) && (groupLE <= groupBE || !PlausibleFirstGroup(groupBE)))
        {
            littleEndian = true;
        }
        else if (PlausibleFirstGroup(groupBE) && explicitVR)
        {
            littleEndian = false;
        }
        else
        {
            throw new DicomParseException(DicomErrorKind.NotDicom,
                "no 'DICM' marker and the data does not start like a DICOM dataset", input.Position, "");
        }

        return (explicitVR, littleEndian) switch
        {
            (true, true) => TransferSyntax.ExplicitVRLittleEndian,
            (true, false) => TransferSyntax.ExplicitVRBigEndian,
            (false, _) => TransferSyntax.ImplicitVRLittleEndian,
        };
    }

    /// <summary>Datasets start with a low, even group (0008 usually) or a command/meta group.</summary>
    private static bool PlausibleFirstGroup(ushort group) => group is >= 0x0001 and <= 0x00FF;

    private static ushort ReadGroupLE(ReadOnlySpan<byte> span) => BinaryPrimitives.ReadUInt16LittleEndian(span);
}
