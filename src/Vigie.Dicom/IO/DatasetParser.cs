using System.Buffers.Binary;
using System.Text;

namespace Vigie.Dicom.IO;

/// <summary>
/// Reads data elements from a <see cref="DicomInput"/> under one transfer syntax. Every declared length is checked
/// against what remains (of the data, and of the enclosing item or sequence) before anything is read or allocated;
/// depth, element count and total size are bounded. Failures are <see cref="DicomParseException"/>s carrying the
/// offset and the tag path.
/// </summary>
internal sealed class DatasetParser
{
    private const uint UndefinedLength = 0xFFFFFFFF;

    private readonly DicomInput _input;
    private readonly DicomReadOptions _options;
    private readonly List<DicomWarning> _warnings;
    private readonly List<(DicomTag Tag, int Item)> _path = [];
    private readonly long _offsetBase;
    private bool _explicitVR;
    private bool _endedAtBoundary;
    private bool _littleEndian;
    private int _depth;
    private int _elements;
    private long _loaded;
    private int _outOfOrder;

    public DatasetParser(DicomInput input, TransferSyntax syntax, DicomReadOptions options, List<DicomWarning> warnings, long offsetBase = 0)
    {
        _input = input;
        _options = options;
        _warnings = warnings;
        _explicitVR = syntax.IsExplicitVR;
        _littleEndian = syntax.IsLittleEndian;
        _offsetBase = offsetBase;
    }

    /// <summary>
    /// The caller keeps a copy of what the input gives (a deflated data set's inflated bytes): large values may stay
    /// references into it, as into a seekable source.
    /// </summary>
    public bool SourceKept { get; init; }

    /// <summary>With ReportTrailingData: where the top-level dataset stopped parsing.</summary>
    public long? TrailingDataOffset { get; private set; }

    /// <summary>Set when <see cref="DicomReadOptions.StopAtTag"/> ended the read early.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Bytes of values and fragments loaded into memory so far (what <see cref="DicomReadOptions.MaxLoadedBytes"/> bounds).</summary>
    public long LoadedBytes => _loaded;

    /// <summary>Reads a top-level dataset to the end of the data.</summary>
    public async ValueTask ReadTopLevelAsync(DicomDataset dataset, CancellationToken cancellationToken)
    {
        try
        {
            await ReadDatasetAsync(dataset, -1, isItem: false, cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            throw Error(DicomErrorKind.Truncated, "the data ends inside a value");
        }
        catch (SizeLimitException e)
        {
            throw Error(DicomErrorKind.SizeLimitExceeded, $"the dataset is larger than the {e.Limit}-byte limit");
        }
        catch (InvalidDataException e)
        {
            throw Error(DicomErrorKind.InvalidDeflateStream, "the deflate stream is corrupt: " + e.Message, e);
        }
        catch (DeflateRatioException e)
        {
            throw Error(DicomErrorKind.SizeLimitExceeded, $"the deflated data set inflates more than {e.Ratio} times its compressed size (a decompression bomb): {e.Message}");
        }
    }

    private async ValueTask ReadDatasetAsync(DicomDataset dataset, long end, bool isItem, CancellationToken cancellationToken)
    {
        var previous = 0u;
        var first = true;
        var hasAmbiguous = false;
        while (true)
        {
            if (end >= 0 && _input.Position >= end)
            {
                break;
            }

            if (_endedAtBoundary)
            {
                break;
            }

            if (!await _input.TryFillAsync(4, cancellationToken).ConfigureAwait(false))
            {
                if (_input.Buffered == 0)
                {
                    if (isItem)
                    {
                        // dcmdump and pydicom accept data that stops at an element boundary inside an item; so do we, loudly.
                        EndedAtBoundary("the data ends inside an item, at an element boundary");
                    }

                    break;
                }

                if (_options.ReportTrailingData && !isItem && _depth == 0 && dataset.Count > 0)
                {
                    TrailingDataOffset = _offsetBase + _input.Position;
                    break;
                }

                throw Error(DicomErrorKind.Truncated, $"the data ends inside an element header ({_input.Buffered} bytes left)");
            }

            var headerOffset = _input.Position;
            var tag = ReadTag(_input.Span);
            if (tag.Group == 0xFFFE && _options.ReportTrailingData && !isItem && _depth == 0 && dataset.Count > 0 && tag != DicomTag.SequenceDelimitation
                && tag != DicomTag.ItemDelimitation)
            {
                TrailingDataOffset = _offsetBase + headerOffset;
                break;
            }

            if (tag.Group == 0xFFFE)
            {
                if (await HandleDelimiterInDatasetAsync(tag, end, isItem, cancellationToken).ConfigureAwait(false))
                {
                    break;
                }

                continue;
            }

            if (_options.StopAtTag is { } stop && !isItem && _depth == 0 && tag >= stop)
            {
                Stopped = true;
                break;
            }

            var trailingCandidate = _options.ReportTrailingData && !isItem && _depth == 0 && dataset.Count > 0;
            if (trailingCandidate && tag.Value < previous && previous >= DicomTags.PixelData.Value)
            {
                // Elements "after" the pixel data that go backwards are bytes appended to the file that happen to parse.
                TrailingDataOffset = _offsetBase + headerOffset;
                break;
            }

            DicomVR vr;
            uint length;
            try
            {
                (vr, length, var headerLength) = await ReadHeaderAsync(tag, dataset, cancellationToken).ConfigureAwait(false);
                _input.Advance(headerLength);
                // A known element longer than the data is truncation; an unknown one is more likely appended bytes.
                if (trailingCandidate && length != UndefinedLength && vr != DicomVR.SQ && _input.Remaining is { } left && length > left
                    && DicomDictionary.Find(tag) is null)
                {
                    TrailingDataOffset = _offsetBase + headerOffset;
                    break;
                }
            }
            catch (DicomParseException e) when (trailingCandidate && e.Kind is DicomErrorKind.InvalidVR or DicomErrorKind.TransferSyntaxMismatch
                                                    or DicomErrorKind.Truncated)
            {
                TrailingDataOffset = _offsetBase + headerOffset;
                break;
            }

            if (++_elements > _options.MaxElements)
            {
                throw Error(DicomErrorKind.ElementLimitExceeded, $"more than {_options.MaxElements} elements", tag);
            }

            if (!first && tag.Value < previous)
            {
                Warn(DicomWarningKind.OutOfOrderTag, $"element {tag} out of order", headerOffset, tag);
                if (++_outOfOrder > _options.MaxOutOfOrderElements)
                {
                    throw Error(DicomErrorKind.InvalidStructure, $"more than {_options.MaxOutOfOrderElements} elements out of ascending tag order", tag);
                }
            }

            first = false;
            previous = Math.Max(previous, tag.Value);
            if (length != UndefinedLength && vr != DicomVR.SQ)
            {
                CheckRemaining(length, tag);
            }

            if (end >= 0 && length != UndefinedLength && _input.Position + length > end)
            {
                throw Error(DicomErrorKind.LengthExceedsRemaining,
                    $"value length {length} of {tag} goes {_input.Position + length - end} bytes beyond the end of its item", tag);
            }

            _path.Add((tag, -1));
            var element = await ReadValueAsync(dataset, tag, vr, length, headerOffset, cancellationToken).ConfigureAwait(false);
            _path.RemoveAt(_path.Count - 1);
            if (!dataset.Append(element))
            {
                var (kind, message) = Duplicate(dataset, element, "element");
                Warn(kind, message, headerOffset, tag);
            }

            if (element is DicomSequence sequence)
            {
                foreach (var item in sequence.Items)
                {
                    item.Parent = dataset;
                }
            }

            if (!_explicitVR && element.VR != DicomVR.SQ && DicomDictionary.Find(tag) is { IsAmbiguous: true })
            {
                hasAmbiguous = true;
            }
        }

        if (end >= 0 && _input.Position > end)
        {
            throw Error(DicomErrorKind.LengthExceedsRemaining, $"elements run {_input.Position - end} bytes past the end of their item");
        }

        if (hasAmbiguous)
        {
            AmbiguousVR.Resolve(dataset);
        }
    }

    /// <summary>Handles group FFFE met where an element was expected; true when it ends the current item.</summary>
    private async ValueTask<bool> HandleDelimiterInDatasetAsync(DicomTag tag, long end, bool isItem, CancellationToken cancellationToken)
    {
        if (!await _input.TryFillAsync(8, cancellationToken).ConfigureAwait(false))
        {
            throw Error(DicomErrorKind.Truncated, $"the data ends inside {tag}");
        }

        var length = ReadUInt32(_input.Span[4..]);
        var offset = _input.Position;
        if (tag == DicomTag.ItemDelimitation && isItem && end < 0)
        {
            _input.Advance(8);
            if (length != 0)
            {
                Warn(DicomWarningKind.NonZeroDelimiterLength, $"item delimitation with length {length}", offset, tag);
            }

            return true;
        }

        if (tag == DicomTag.ItemDelimitation || tag == DicomTag.SequenceDelimitation)
        {
            // Stray delimiters are common in files written by buggy tools; they carry no data.
            _input.Advance(8);
            Warn(DicomWarningKind.StrayDelimiter, $"unexpected {(tag == DicomTag.ItemDelimitation ? "item" : "sequence")} delimitation", offset, tag);
            return false;
        }

        throw Error(DicomErrorKind.InvalidStructure, tag == DicomTag.Item
            ? "an item where a data element was expected"
            : $"invalid tag {tag} where a data element was expected", tag);
    }

    private async ValueTask<(DicomVR Vr, uint Length, int HeaderLength)> ReadHeaderAsync(DicomTag tag, DicomDataset dataset, CancellationToken cancellationToken)
    {
        if (!await _input.TryFillAsync(8, cancellationToken).ConfigureAwait(false))
        {
            throw Error(DicomErrorKind.Truncated, $"the data ends inside the header of {tag}", tag);
        }

        var span = _input.Span;
        if (!_explicitVR)
        {
            var length = ReadUInt32(span[4..]);
            var vr = tag.IsPrivate && !tag.IsPrivateCreator ? PrivateEntry(dataset, tag)?.VR ?? DicomVR.UN : DicomDictionary.VRFor(tag);
            if (vr == DicomVR.None)
            {
                vr = DicomVR.UN;
            }

            // Unknown and private elements of undefined length are sequences in implicit VR (PS3.5 7.5.1).
            return (length == UndefinedLength && vr == DicomVR.UN ? DicomVR.SQ : vr, length, 8);
        }

        var explicitVR = DicomVRInfo.FromBytes(span[4], span[5]);
        if (explicitVR == DicomVR.None)
        {
            var asImplicitLength = ReadUInt32(span[4..]);
            var remaining = _input.Remaining;
            if (remaining is { } r && (asImplicitLength == UndefinedLength || asImplicitLength <= r - 8) && DicomDictionary.Find(tag) is not null)
            {
                throw Error(DicomErrorKind.TransferSyntaxMismatch,
                    $"{tag} is encoded with implicit VR although the transfer syntax says explicit VR", tag);
            }

            throw Error(DicomErrorKind.InvalidVR, $"invalid VR '{Printable(span[4])}{Printable(span[5])}' (0x{span[4]:X2}{span[5]:X2}) for {tag}", tag);
        }

        if (!DicomVRInfo.HasLongLength(explicitVR))
        {
            return (explicitVR, _littleEndian ? BinaryPrimitives.ReadUInt16LittleEndian(span[6..]) : BinaryPrimitives.ReadUInt16BigEndian(span[6..]), 8);
        }

        if (!await _input.TryFillAsync(12, cancellationToken).ConfigureAwait(false))
        {
            throw Error(DicomErrorKind.Truncated, $"the data ends inside the header of {tag}", tag);
        }

        span = _input.Span;
        if (span[6] != 0 || span[7] != 0)
        {
            Warn(DicomWarningKind.NonZeroReservedBytes, $"non-zero reserved bytes in the header of {tag}", _input.Position, tag);
        }

        return (explicitVR, ReadUInt32(span[8..]), 12);
    }

    private async ValueTask<DicomElement> ReadValueAsync(DicomDataset dataset, DicomTag tag, DicomVR vr, uint length, long headerOffset, CancellationToken cancellationToken)
    {
        var sourceOffset = _offsetBase + headerOffset;
        if (length == UndefinedLength)
        {
            if (vr == DicomVR.SQ)
            {
                return await ReadSequenceAsync(tag, -1, sourceOffset, switchToImplicit: false, cancellationToken).ConfigureAwait(false);
            }

            if (vr == DicomVR.UN)
            {
                // CP-246: an explicit UN of undefined length is a sequence encoded in implicit VR little endian.
                var element = await ReadSequenceAsync(tag, -1, sourceOffset, switchToImplicit: true, cancellationToken).ConfigureAwait(false);
                Warn(DicomWarningKind.UndefinedLengthUnknown, $"{tag} is UN of undefined length, read as an implicit VR sequence", headerOffset, tag);
                return element;
            }

            if (vr is DicomVR.OB or DicomVR.OW || tag == DicomTags.PixelData)
            {
                return await ReadFragmentsAsync(tag, vr, sourceOffset, cancellationToken).ConfigureAwait(false);
            }

            throw Error(DicomErrorKind.UndefinedLengthNotAllowed, $"{tag} ({DicomVRInfo.Code(vr)}) has undefined length", tag);
        }

        if (vr == DicomVR.SQ)
        {
            if (_input.Remaining is { } remaining && length > remaining)
            {
                Warn(DicomWarningKind.LengthBeyondEnd, $"sequence length {length} exceeds the {remaining} bytes remaining; read to the end of the data", headerOffset, tag);
                length = (uint)remaining;
            }

            return await ReadSequenceAsync(tag, length, sourceOffset, switchToImplicit: false, cancellationToken).ConfigureAwait(false);
        }

        CheckRemaining(length, tag);
        if ((length & 1) != 0)
        {
            Warn(DicomWarningKind.OddLength, $"{tag} has odd length {length}", headerOffset, tag);
        }

        var sourceVR = DicomVR.None;
        var known = vr != DicomVR.UN ? null : tag.IsPrivate && !tag.IsPrivateCreator ? PrivateEntry(dataset, tag) : DicomDictionary.Find(tag);
        if (known is { } entry && entry.VR is not (DicomVR.UN or DicomVR.None))
        {
            // An explicit UN for an element the dictionary knows: read it as its real VR, as other toolkits do.
            Warn(DicomWarningKind.UnknownVRReinterpreted, $"{tag} sent as UN, read as {DicomVRInfo.Code(entry.VR)}", headerOffset, tag);
            if (entry.VR == DicomVR.SQ)
            {
                var sequence = await ReadSequenceAsync(tag, length, sourceOffset, switchToImplicit: true, cancellationToken).ConfigureAwait(false);
                sequence.SourceVR = DicomVR.UN;
                return sequence;
            }

            vr = entry.VR;
            sourceVR = DicomVR.UN;
        }
        else if (vr == DicomVR.UN && _options.ReadSequencesInUnknownValues && length >= 8 && await StartsWithItemAsync(cancellationToken).ConfigureAwait(false))
        {
            Warn(DicomWarningKind.UnknownVRReinterpreted, $"{tag} is UN and starts with an item: read as an implicit VR sequence", headerOffset, tag);
            var sequence = await ReadSequenceAsync(tag, length, sourceOffset, switchToImplicit: true, cancellationToken).ConfigureAwait(false);
            sequence.SourceVR = DicomVR.UN;
            return sequence;
        }

        var valueOffset = _input.StreamOffset;
        if (KeepAsReference(length))
        {
            var bulk = new DicomBulkReference(valueOffset, length, _littleEndian ? 1 : DicomVRInfo.UnitSize(vr));
            await _input.SkipAsync(length, cancellationToken).ConfigureAwait(false);
            return new DicomValueElement(tag, vr, bulk, sourceOffset) { SourceVR = sourceVR, ValueOffset = valueOffset };
        }

        if (length > _options.MaxValueInMemory)
        {
            throw Error(DicomErrorKind.ValueTooLarge, $"value of {length} bytes exceeds the in-memory limit of {_options.MaxValueInMemory} bytes", tag);
        }

        _loaded += length;
        var bytes = length == 0 ? [] : await _input.ReadArrayAsync((int)length, cancellationToken).ConfigureAwait(false);
        if (!_littleEndian)
        {
            SwapInPlace(bytes, vr);
        }

        return new DicomValueElement(tag, vr, bytes, sourceOffset) { SourceVR = sourceVR, ValueOffset = valueOffset };
    }

    private async ValueTask<DicomSequence> ReadSequenceAsync(DicomTag tag, long length, long sourceOffset, bool switchToImplicit, CancellationToken cancellationToken)
    {
        if (++_depth > _options.MaxDepth)
        {
            throw Error(DicomErrorKind.DepthLimitExceeded, $"sequences nested deeper than {_options.MaxDepth}", tag);
        }

        var savedExplicit = _explicitVR;
        var savedLittle = _littleEndian;
        if (switchToImplicit)
        {
            _explicitVR = false;
            _littleEndian = true;
        }

        var sequence = new DicomSequence(tag, length < 0, sourceOffset);
        var end = length < 0 ? -1 : _input.Position + length;
        var index = 0;
        while (true)
        {
            if (end >= 0 && _input.Position >= end)
            {
                break;
            }

            if (_endedAtBoundary)
            {
                break;
            }

            if (!await _input.TryFillAsync(8, cancellationToken).ConfigureAwait(false))
            {
                if (_input.Buffered == 0)
                {
                    EndedAtBoundary(end < 0
                        ? "the data ends inside a sequence of undefined length (no sequence delimitation), at an item boundary"
                        : "the data ends inside a sequence, at an item boundary");
                    break;
                }

                throw Error(DicomErrorKind.Truncated, "the data ends inside an item header");
            }

            var itemTag = ReadTag(_input.Span);
            var itemLength = ReadUInt32(_input.Span[4..]);
            var itemOffset = _input.Position;
            if (itemTag == DicomTag.SequenceDelimitation)
            {
                _input.Advance(8);
                if (itemLength != 0)
                {
                    Warn(DicomWarningKind.NonZeroDelimiterLength, $"sequence delimitation with length {itemLength}", itemOffset, itemTag);
                }

                if (end >= 0)
                {
                    Warn(DicomWarningKind.StrayDelimiter, "sequence delimitation inside a sequence of defined length", itemOffset, itemTag);
                    continue;
                }

                break;
            }

            if (itemTag != DicomTag.Item)
            {
                throw Error(DicomErrorKind.InvalidStructure, $"expected an item in the sequence, found {itemTag}");
            }

            _input.Advance(8);
            if (++_elements > _options.MaxElements)
            {
                throw Error(DicomErrorKind.ElementLimitExceeded, $"more than {_options.MaxElements} elements and items");
            }

            // Sized as it fills: a list of 16 made ahead for each item cost about 300 bytes per empty item.
            var item = new DicomDataset(null, capacity: 0) { SourceOffset = _offsetBase + itemOffset };
            _path[^1] = (_path[^1].Tag, index);
            if (itemLength == UndefinedLength)
            {
                await ReadDatasetAsync(item, -1, isItem: true, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                if (_input.Remaining is { } remaining && itemLength > remaining)
                {
                    Warn(DicomWarningKind.LengthBeyondEnd, $"item length {itemLength} exceeds the {remaining} bytes remaining; read to the end of the data",
                        itemOffset, itemTag);
                    itemLength = (uint)remaining;
                }

                if (end >= 0 && _input.Position + itemLength > end)
                {
                    throw Error(DicomErrorKind.LengthExceedsRemaining,
                        $"item length {itemLength} goes {_input.Position + itemLength - end} bytes beyond the end of its sequence");
                }

                await ReadDatasetAsync(item, _input.Position + itemLength, isItem: true, cancellationToken).ConfigureAwait(false);
            }

            sequence.Items.Add(item);
            sequence.ItemUndefinedLength.Add(itemLength == UndefinedLength);
            index++;
        }

        if (end >= 0 && _input.Position > end)
        {
            throw Error(DicomErrorKind.LengthExceedsRemaining, $"items run {_input.Position - end} bytes past the end of their sequence");
        }

        _explicitVR = savedExplicit;
        _littleEndian = savedLittle;
        _depth--;
        _path[^1] = (_path[^1].Tag, -1);
        return sequence;
    }

    private async ValueTask<DicomFragmentSequence> ReadFragmentsAsync(DicomTag tag, DicomVR vr, long sourceOffset, CancellationToken cancellationToken)
    {
        var fragments = new DicomFragmentSequence(tag, vr == DicomVR.OW ? DicomVR.OW : DicomVR.OB, sourceOffset)
        {
            ValueOffset = _input.StreamOffset,
        };
        while (true)
        {
            if (!await _input.TryFillAsync(8, cancellationToken).ConfigureAwait(false))
            {
                throw Error(DicomErrorKind.Truncated, "the data ends inside encapsulated pixel data (no sequence delimitation)");
            }

            var itemTag = ReadTag(_input.Span);
            var length = ReadUInt32(_input.Span[4..]);
            var offset = _input.Position;
            if (itemTag == DicomTag.SequenceDelimitation)
            {
                _input.Advance(8);
                if (length != 0)
                {
                    Warn(DicomWarningKind.NonZeroDelimiterLength, $"sequence delimitation with length {length}", offset, itemTag);
                }

                fragments.ValueLength = _input.StreamOffset - fragments.ValueOffset;
                return fragments;
            }

            if (itemTag != DicomTag.Item)
            {
                throw Error(DicomErrorKind.InvalidStructure, $"expected a fragment item in encapsulated pixel data, found {itemTag}");
            }

            if (length == UndefinedLength)
            {
                throw Error(DicomErrorKind.UndefinedLengthNotAllowed, "a pixel data fragment has undefined length");
            }

            _input.Advance(8);
            if (++_elements > _options.MaxElements)
            {
                throw Error(DicomErrorKind.ElementLimitExceeded, $"more than {_options.MaxElements} elements and fragments");
            }

            CheckRemaining(length, itemTag);
            var itemSourceOffset = _offsetBase + offset;
            if (KeepAsReference(length))
            {
                var bulk = new DicomBulkReference(_input.StreamOffset, length, 1);
                await _input.SkipAsync(length, cancellationToken).ConfigureAwait(false);
                fragments.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, bulk, length, itemSourceOffset));
                continue;
            }

            if (length > _options.MaxValueInMemory)
            {
                throw Error(DicomErrorKind.ValueTooLarge, $"fragment of {length} bytes exceeds the in-memory limit");
            }

            _loaded += length;

            var bytes = length == 0 ? [] : await _input.ReadArrayAsync((int)length, cancellationToken).ConfigureAwait(false);
            fragments.Items.Add(new DicomFragment(bytes, null, length, itemSourceOffset));
        }
    }

    /// <summary>
    /// Whether a value stays in the source, read later by its range, rather than loaded. Values over the threshold do,
    /// unless every value is wanted in memory. Values of any VR and fragments over 64 bytes do too once loading them
    /// would take the loaded bytes past <see cref="DicomReadOptions.MaxLoadedBytes"/>: a data set of many values or
    /// fragments each under the threshold (64 KiB fragments of a 1 GB image; until 2026-12-07, 6,000 LT values of
    /// 65,000 bytes, +463 MB in the node) was otherwise loaded whole. A source that cannot be read again (a deflated data
    /// set) keeps its large values in memory, or, when the reader only wants the attributes, drops them, unless its caller
    /// keeps the inflated bytes (<see cref="SourceKept"/>): then they are references into that copy.
    /// </summary>
    private bool KeepAsReference(long length)
    {
        if (_options.LoadLargeValues && length <= _options.MaxValueInMemory)
        {
            return false;
        }

        var large = length > _options.LargeValueThreshold || (length > SmallValue && _loaded + length > _options.MaxLoadedBytes);
        return large && (_input.CanSeek || SourceKept || _options.DropLargeValues);
    }

    /// <summary>
    /// Always loaded: a reference would take about as much memory as the value, and identifiers (UIDs, IDs, codes,
    /// dates) fit in it, so readers of attributes still find them past the budget.
    /// </summary>
    private const int SmallValue = 64;

    /// <summary>The private dictionary entry of a private data element, found through its creator in the same dataset.</summary>
    private static DicomDictionaryEntry? PrivateEntry(DicomDataset dataset, DicomTag tag)
    {
        if (tag.Element < 0x1000 || !dataset.TryGet(new DicomTag(tag.Group, (ushort)(tag.Element >> 8)), out var element)
            || element is not DicomValueElement { IsBulk: false, Length: > 0 and <= 64 } creator)
        {
            return null;
        }

        return DicomDictionary.FindPrivate(Encoding.Latin1.GetString(creator.Span).TrimEnd(' ', '\0'), tag);
    }

    /// <summary>True when the next 4 bytes are an item tag (FFFE,E000) in little endian, the encoding of a UN sequence's items.</summary>
    private async ValueTask<bool> StartsWithItemAsync(CancellationToken cancellationToken) =>
        await _input.TryFillAsync(4, cancellationToken).ConfigureAwait(false) && _input.Span[..4].SequenceEqual((ReadOnlySpan<byte>)[0xFE, 0xFF, 0x00, 0xE0]);

    private void EndedAtBoundary(string message)
    {
        _endedAtBoundary = true;
        Warn(DicomWarningKind.EndedInsideItem, message, _input.Position, _path.Count > 0 ? _path[^1].Tag : default);
    }

    private void CheckRemaining(uint length, DicomTag tag)
    {
        if (_input.Remaining is { } remaining && length > remaining)
        {
            throw Error(DicomErrorKind.LengthExceedsRemaining,
                $"value length {length} of {tag} exceeds the {remaining} bytes remaining", tag);
        }
    }

    private DicomTag ReadTag(ReadOnlySpan<byte> span) => _littleEndian
        ? new DicomTag(BinaryPrimitives.ReadUInt16LittleEndian(span), BinaryPrimitives.ReadUInt16LittleEndian(span[2..]))
        : new DicomTag(BinaryPrimitives.ReadUInt16BigEndian(span), BinaryPrimitives.ReadUInt16BigEndian(span[2..]));

    private uint ReadUInt32(ReadOnlySpan<byte> span) =>
        _littleEndian ? BinaryPrimitives.ReadUInt32LittleEndian(span) : BinaryPrimitives.ReadUInt32BigEndian(span);

    private static void SwapInPlace(byte[] bytes, DicomVR vr)
    {
        var unit = DicomVRInfo.UnitSize(vr);
        if (unit == 1)
        {
            return;
        }

        for (var i = 0; i + unit <= bytes.Length; i += unit)
        {
            bytes.AsSpan(i, unit).Reverse();
        }
    }

    private static char Printable(byte b) => b is >= 0x20 and < 0x7F ? (char)b : '.';

    /// <summary>
    /// What to say of an element whose tag <paramref name="dataset"/> already holds (the first is kept, as dcmtk does).
    /// Two different values are the dangerous case: two readers can then see two different objects.
    /// </summary>
    internal static (DicomWarningKind Kind, string Message) Duplicate(DicomDataset dataset, DicomElement element, string what)
    {
        var same = dataset[element.Tag] is DicomValueElement { IsBulk: false } kept && element is DicomValueElement { IsBulk: false } duplicate
            && kept.Span.SequenceEqual(duplicate.Span);
        return same
            ? (DicomWarningKind.DuplicateTag, $"{what} {element.Tag} appears twice with the same value")
            : (DicomWarningKind.ConflictingDuplicateTag, $"{what} {element.Tag} appears twice with different values; the first is kept");
    }

    private void Warn(DicomWarningKind kind, string message, long offset, DicomTag tag)
    {
        if (_warnings.Count < 1000)
        {
            _warnings.Add(new DicomWarning(kind, message, _offsetBase + offset, PathString(tag)));
        }
    }

    private DicomParseException Error(DicomErrorKind kind, string reason, DicomTag? tag = null) =>
        new(kind, reason, _offsetBase + _input.Position, PathString(tag));

    private DicomParseException Error(DicomErrorKind kind, string reason, Exception inner) =>
        new(kind, reason, _offsetBase + _input.Position, PathString(null), inner);

    private string PathString(DicomTag? last)
    {
        var builder = new StringBuilder();
        foreach (var (tag, item) in _path)
        {
            if (builder.Length > 0)
            {
                builder.Append('.');
            }

            builder.Append(tag);
            if (item >= 0)
            {
                builder.Append('[').Append(item).Append(']');
            }
        }

        if (last is { } t && (_path.Count == 0 || _path[^1].Tag != t))
        {
            if (builder.Length > 0)
            {
                builder.Append('.');
            }

            builder.Append(t);
        }

        return builder.ToString();
    }
}
