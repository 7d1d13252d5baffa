using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;

namespace Vigie.Dicom.IO;

public sealed record DicomWriteOptions
{
    /// <summary>Output transfer syntax; null keeps an encapsulated source syntax and writes explicit VR little endian otherwise.</summary>
    public TransferSyntax? TransferSyntax { get; init; }

    /// <summary>The 128-byte preamble to write; null writes zeros (disarm relies on that default).</summary>
    public byte[]? Preamble { get; init; }

    /// <summary>The stream the dataset was read from, for values left there as bulk references.</summary>
    public Stream? BulkSource { get; init; }

    /// <summary>Keep (recomputed) group length elements found in the dataset; off drops them, as PS3.5 7.2 recommends.</summary>
    public bool KeepGroupLengths { get; init; } = true;
}

/// <summary>
/// Writes Part 10 files and bare datasets. Output is explicit VR little endian (or implicit VR little endian for DIMSE,
/// or deflated explicit VR little endian), whatever the source; encapsulated pixel data keeps its syntax and fragments.
/// Values are written as read (no re-encoding of text), so a read-write round trip changes only the encoding, except
/// that an odd-length value or fragment gets one padding byte (PS3.5 7.1.1, A.4): peers such as dcmtk refuse a data set
/// of odd total length. Since 2026-12-07; before, odd lengths were written as read.
/// </summary>
public static class DicomWriter
{
    private const uint UndefinedLength = 0xFFFFFFFF;

    public static async ValueTask WriteFileAsync(Stream output, DicomFile file, DicomWriteOptions? options, CancellationToken cancellationToken)
    {
        options ??= new DicomWriteOptions();
        var syntax = options.TransferSyntax ?? (file.TransferSyntax.IsEncapsulated ? file.TransferSyntax : TransferSyntax.ExplicitVRLittleEndian);
        if (!syntax.IsLittleEndian)
        {
            throw new NotSupportedException("Big endian output is not supported (the syntax is retired).");
        }

        if (HasFragments(file.Dataset) && !syntax.IsEncapsulated)
        {
            throw new NotSupportedException($"Cannot write encapsulated pixel data as {syntax}: decompression is not supported.");
        }

        var meta = BuildMeta(file, syntax);
        var datasetStart = 132 + new DatasetEncoder(TransferSyntax.ExplicitVRLittleEndian, keepGroupLengths: true).Measure(meta);
        var overrides = DirectoryOffsets.Remap(file.Dataset, new DatasetEncoder(syntax, options.KeepGroupLengths), datasetStart);
        await using var writer = new ElementWriter(output, options.BulkSource);
        var preamble = options.Preamble ?? new byte[128];
        if (preamble.Length != 128)
        {
            throw new ArgumentException("The preamble must be 128 bytes.", nameof(options));
        }

        writer.WriteBytes(preamble);
        writer.WriteBytes("DICM"u8);
        var metaWriter = new DatasetEncoder(TransferSyntax.ExplicitVRLittleEndian, keepGroupLengths: true);
        await metaWriter.WriteAsync(writer, meta, cancellationToken).ConfigureAwait(false);
        if (syntax.IsDeflated)
        {
            await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            await using (var deflate = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true))
            await using (var inner = new ElementWriter(deflate, options.BulkSource))
            {
                await new DatasetEncoder(syntax, options.KeepGroupLengths, overrides).WriteAsync(inner, file.Dataset, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        await new DatasetEncoder(syntax, options.KeepGroupLengths, overrides).WriteAsync(writer, file.Dataset, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes a bare dataset (a DIMSE data set, a C-FIND identifier).</summary>
    public static async ValueTask WriteDatasetAsync(Stream output, DicomDataset dataset, TransferSyntax syntax, Stream? bulkSource, CancellationToken cancellationToken)
    {
        if (!syntax.IsLittleEndian)
        {
            throw new NotSupportedException("Big endian output is not supported.");
        }

        if (syntax.IsDeflated)
        {
            await using var deflate = new DeflateStream(output, CompressionLevel.Fastest, leaveOpen: true);
            await using var deflated = new ElementWriter(deflate, bulkSource);
            await new DatasetEncoder(syntax, keepGroupLengths: false).WriteAsync(deflated, dataset, cancellationToken).ConfigureAwait(false);
            return;
        }

        await using var writer = new ElementWriter(output, bulkSource);
        await new DatasetEncoder(syntax, keepGroupLengths: true).WriteAsync(writer, dataset, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Encodes a small dataset held in memory (command sets, query identifiers).</summary>
    public static byte[] Encode(DicomDataset dataset, TransferSyntax syntax)
    {
        using var stream = new MemoryStream();
        WriteDatasetAsync(stream, dataset, syntax, null, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return stream.ToArray();
    }

    /// <summary>The encoded length of a dataset (without bulk data needing the source), e.g. for command group lengths.</summary>
    public static long MeasureDataset(DicomDataset dataset, TransferSyntax syntax) =>
        new DatasetEncoder(syntax, keepGroupLengths: true).Measure(dataset);

    private static bool HasFragments(DicomDataset dataset) => dataset.Any(e => e is DicomFragmentSequence);

    private static DicomDataset BuildMeta(DicomFile file, TransferSyntax syntax)
    {
        var meta = new DicomDataset();
        foreach (var element in file.Meta)
        {
            if (element.Tag != DicomTags.FileMetaInformationGroupLength)
            {
                meta.AddOrUpdate(element);
            }
        }

        if (!meta.Contains(DicomTags.FileMetaInformationVersion))
        {
            meta.SetBytes(DicomTags.FileMetaInformationVersion, DicomVR.OB, new byte[] { 0, 1 });
        }

        SetUidIfMissing(meta, DicomTags.MediaStorageSOPClassUID, file.Dataset.GetString(DicomTags.SOPClassUID));
        SetUidIfMissing(meta, DicomTags.MediaStorageSOPInstanceUID, file.Dataset.GetString(DicomTags.SOPInstanceUID));
        meta.SetString(DicomTags.TransferSyntaxUID, DicomVR.UI, syntax.Uid);
        meta.SetString(DicomTags.ImplementationClassUID, DicomVR.UI, DicomImplementation.ClassUid);
        meta.SetString(DicomTags.ImplementationVersionName, DicomVR.SH, DicomImplementation.VersionName);
        var length = new DatasetEncoder(TransferSyntax.ExplicitVRLittleEndian, keepGroupLengths: false).Measure(meta);
        meta.SetUInt32(DicomTags.FileMetaInformationGroupLength, DicomVR.UL, (uint)length);
        return meta;
    }

    private static void SetUidIfMissing(DicomDataset meta, DicomTag tag, string? value)
    {
        if (value is not null && string.IsNullOrEmpty(meta.GetString(tag)))
        {
            meta.SetString(tag, DicomVR.UI, value);
        }
    }

    /// <summary>Measures and writes elements under one transfer syntax.</summary>
    private sealed class DatasetEncoder(TransferSyntax syntax, bool keepGroupLengths, IReadOnlyDictionary<DicomElement, byte[]>? overrides = null)
    {
        private readonly bool _explicit = syntax.IsExplicitVR;
        private DatasetEncoder? _implicitContent;

        public bool KeepGroupLengths => keepGroupLengths;

        /// <summary>Encodes the content of sequences that were sent as UN (CP-246): implicit VR little endian.</summary>
        private DatasetEncoder ImplicitContent => _implicitContent ??= _explicit
            ? new DatasetEncoder(TransferSyntax.ImplicitVRLittleEndian, keepGroupLengths, overrides)
            : this;

        public long Measure(DicomDataset dataset)
        {
            long total = 0;
            foreach (var element in dataset)
            {
                if (element.Tag.IsGroupLength && !keepGroupLengths)
                {
                    continue;
                }

                total += MeasureElement(element);
            }

            return total;
        }

        public async ValueTask WriteAsync(ElementWriter writer, DicomDataset dataset, CancellationToken cancellationToken)
        {
            var elements = dataset.ToList();
            for (var i = 0; i < elements.Count; i++)
            {
                var element = elements[i];
                if (element.Tag.IsGroupLength && element.Tag.Group != 0xFFFE)
                {
                    if (!keepGroupLengths)
                    {
                        continue;
                    }

                    // Recomputed for this encoding: the source's value counted another encoding's header sizes.
                    long groupLength = 0;
                    for (var j = i + 1; j < elements.Count && elements[j].Tag.Group == element.Tag.Group; j++)
                    {
                        groupLength += MeasureElement(elements[j]);
                    }

                    var bytes = new byte[4];
                    BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)groupLength);
                    WriteHeader(writer, element.Tag, DicomVR.UL, 4);
                    writer.WriteBytes(bytes);
                    continue;
                }

                await WriteElementAsync(writer, element, cancellationToken).ConfigureAwait(false);
            }
        }

        public long MeasureElement(DicomElement element)
        {
            switch (element)
            {
                case DicomSequence sequence:
                {
                    var encoder = ContentEncoder(sequence);
                    long content = 0;
                    for (var i = 0; i < sequence.Items.Count; i++)
                    {
                        content += 8 + encoder.Measure(sequence.Items[i]) + (ItemUndefined(sequence, i) ? 8 : 0);
                    }

                    return HeaderLength(SequenceVR(sequence)) + content + (sequence.UndefinedLength ? 8 : 0);
                }

                case DicomFragmentSequence fragments:
                    return HeaderLength(fragments.VR) + fragments.Items.Sum(f => 8 + Even(f.Length)) + 8;
                case DicomValueElement value:
                    return HeaderLength(WireVR(value)) + Even(value.Length);
                default:
                    throw new InvalidOperationException($"Unknown element type {element.GetType().Name}.");
            }
        }

        private async ValueTask WriteElementAsync(ElementWriter writer, DicomElement element, CancellationToken cancellationToken)
        {
            switch (element)
            {
                case DicomSequence sequence:
                {
                    var vr = SequenceVR(sequence);
                    var encoder = ContentEncoder(sequence);
                    long content = 0;
                    if (!sequence.UndefinedLength)
                    {
                        content = MeasureElement(sequence) - HeaderLength(vr);
                    }

                    WriteHeader(writer, element.Tag, vr, sequence.UndefinedLength ? UndefinedLength : checked((uint)content));
                    for (var i = 0; i < sequence.Items.Count; i++)
                    {
                        var item = sequence.Items[i];
                        var undefined = ItemUndefined(sequence, i);
                        writer.WriteTagAndLength(DicomTag.Item, undefined ? UndefinedLength : checked((uint)encoder.Measure(item)));
                        await encoder.WriteAsync(writer, item, cancellationToken).ConfigureAwait(false);
                        if (undefined)
                        {
                            writer.WriteTagAndLength(DicomTag.ItemDelimitation, 0);
                        }
                    }

                    if (sequence.UndefinedLength)
                    {
                        writer.WriteTagAndLength(DicomTag.SequenceDelimitation, 0);
                    }

                    break;
                }

                case DicomFragmentSequence fragments:
                    WriteHeader(writer, element.Tag, fragments.VR, UndefinedLength);
                    foreach (var fragment in fragments.Items)
                    {
                        writer.WriteTagAndLength(DicomTag.Item, checked((uint)Even(fragment.Length)));
                        if (fragment.Bulk is { } bulk)
                        {
                            await writer.CopyBulkAsync(bulk, cancellationToken).ConfigureAwait(false);
                        }
                        else
                        {
                            await writer.WriteValueAsync(fragment.Value, cancellationToken).ConfigureAwait(false);
                        }

                        PadIfOdd(writer, fragment.Length, 0);
                    }

                    writer.WriteTagAndLength(DicomTag.SequenceDelimitation, 0);
                    break;
                case DicomValueElement value:
                    WriteHeader(writer, element.Tag, WireVR(value), checked((uint)Even(value.Length)));
                    if (overrides is not null && overrides.TryGetValue(value, out var replacement))
                    {
                        writer.WriteBytes(replacement);
                    }
                    else if (value.Bulk is { } reference)
                    {
                        await writer.CopyBulkAsync(reference, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        await writer.WriteValueAsync(value.Value, cancellationToken).ConfigureAwait(false);
                    }

                    PadIfOdd(writer, value.Length, DicomVRInfo.PaddingByte(value.VR));
                    break;
            }

            await writer.FlushIfFullAsync(cancellationToken).ConfigureAwait(false);
        }

        private static long Even(long length) => length + (length & 1);

        private static void PadIfOdd(ElementWriter writer, long length, byte padding)
        {
            if ((length & 1) != 0)
            {
                writer.WriteBytes([padding]);
            }
        }

        private static bool ItemUndefined(DicomSequence sequence, int index) =>
            index >= sequence.ItemUndefinedLength.Count || sequence.ItemUndefinedLength[index];

        private DicomVR SequenceVR(DicomSequence sequence) => _explicit && sequence.SourceVR == DicomVR.UN ? DicomVR.UN : DicomVR.SQ;

        private DatasetEncoder ContentEncoder(DicomSequence sequence) => SequenceVR(sequence) == DicomVR.UN ? ImplicitContent : this;

        /// <summary>
        /// The VR written: the source's UN when the reader reinterpreted it, and UN for a value too long for a
        /// 16-bit length field (PS3.5 6.2.2, note 4).
        /// </summary>
        private DicomVR WireVR(DicomValueElement value)
        {
            var vr = value.VR == DicomVR.None || value.SourceVR == DicomVR.UN ? DicomVR.UN : value.VR;
            return _explicit && !DicomVRInfo.HasLongLength(vr) && Even(value.Length) > 0xFFFF ? DicomVR.UN : vr;
        }

        private int HeaderLength(DicomVR vr) => !_explicit ? 8 : DicomVRInfo.HasLongLength(vr) ? 12 : 8;

        private void WriteHeader(ElementWriter writer, DicomTag tag, DicomVR vr, uint length)
        {
            Span<byte> header = stackalloc byte[12];
            BinaryPrimitives.WriteUInt16LittleEndian(header, tag.Group);
            BinaryPrimitives.WriteUInt16LittleEndian(header[2..], tag.Element);
            if (!_explicit)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(header[4..], length);
                writer.WriteBytes(header[..8]);
                return;
            }

            header[4] = (byte)((ushort)vr >> 8);
            header[5] = (byte)vr;
            if (DicomVRInfo.HasLongLength(vr))
            {
                header[6] = 0;
                header[7] = 0;
                BinaryPrimitives.WriteUInt32LittleEndian(header[8..], length);
                writer.WriteBytes(header);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(header[6..], checked((ushort)length));
                writer.WriteBytes(header[..8]);
            }
        }
    }

    /// <summary>
    /// A DICOMDIR's records point at each other by file offset (PS3.10 8.5; "up" in dcmdump). When the meta header or the
    /// encoding changes size the offsets must follow, or the directory silently breaks: map each record's old offset to
    /// its new one and rewrite the offset values.
    /// </summary>
    private static class DirectoryOffsets
    {
        private static readonly DicomTag[] RecordOffsets = [DicomTags.OffsetOfTheNextDirectoryRecord, DicomTags.OffsetOfReferencedLowerLevelDirectoryEntity];

        public static Dictionary<DicomElement, byte[]>? Remap(DicomDataset dataset, DatasetEncoder encoder, long datasetStart)
        {
            if (dataset.GetSequence(DicomTags.DirectoryRecordSequence) is not { } records)
            {
                return null;
            }

            var position = datasetStart;
            foreach (var element in dataset)
            {
                if (element == records)
                {
                    break;
                }

                if (!element.Tag.IsGroupLength)
                {
                    position += encoder.MeasureElement(element);
                }
                else if (encoder.KeepGroupLengths)
                {
                    position += 12;
                }
            }

            // Element header, then each item: its 8-byte header, content, and delimiter if undefined length.
            position += encoder.MeasureElement(records) - MeasureContent(records, encoder) - (records.UndefinedLength ? 8 : 0);
            var map = new Dictionary<long, long>();
            for (var i = 0; i < records.Items.Count; i++)
            {
                var item = records.Items[i];
                if (item.SourceOffset >= 0)
                {
                    map[item.SourceOffset] = position;
                }

                var undefined = i >= records.ItemUndefinedLength.Count || records.ItemUndefinedLength[i];
                position += 8 + encoder.Measure(item) + (undefined ? 8 : 0);
            }

            var overrides = new Dictionary<DicomElement, byte[]>(ReferenceEqualityComparer.Instance);
            Patch(dataset, [DicomTags.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, DicomTags.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity], map, overrides);
            foreach (var item in records.Items)
            {
                Patch(item, RecordOffsets, map, overrides);
            }

            return overrides;
        }

        private static long MeasureContent(DicomSequence records, DatasetEncoder encoder)
        {
            long content = 0;
            for (var i = 0; i < records.Items.Count; i++)
            {
                var undefined = i >= records.ItemUndefinedLength.Count || records.ItemUndefinedLength[i];
                content += 8 + encoder.Measure(records.Items[i]) + (undefined ? 8 : 0);
            }

            return content;
        }

        private static void Patch(DicomDataset dataset, DicomTag[] tags, Dictionary<long, long> map, Dictionary<DicomElement, byte[]> overrides)
        {
            foreach (var tag in tags)
            {
                if (dataset[tag] is DicomValueElement { Length: 4, IsBulk: false } value)
                {
                    var old = BinaryPrimitives.ReadUInt32LittleEndian(value.Span);
                    if (old != 0 && map.TryGetValue(old, out var updated))
                    {
                        var bytes = new byte[4];
                        BinaryPrimitives.WriteUInt32LittleEndian(bytes, checked((uint)updated));
                        overrides[value] = bytes;
                    }
                }
            }
        }
    }

    /// <summary>A pooled output buffer with bulk copies from the source stream.</summary>
    private sealed class ElementWriter(Stream output, Stream? bulkSource) : IAsyncDisposable
    {
        private const int Size = 64 * 1024;
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(Size);
        private int _count;

        public void WriteBytes(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                if (_count == _buffer.Length)
                {
                    FlushSync();
                }

                var n = Math.Min(bytes.Length, _buffer.Length - _count);
                bytes[..n].CopyTo(_buffer.AsSpan(_count));
                _count += n;
                bytes = bytes[n..];
            }
        }

        /// <summary>Small values go through the buffer; large ones are written straight to the output.</summary>
        public async ValueTask WriteValueAsync(ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
        {
            if (value.Length <= _buffer.Length - _count)
            {
                WriteBytes(value.Span);
                return;
            }

            await FlushAsync(cancellationToken).ConfigureAwait(false);
            await output.WriteAsync(value, cancellationToken).ConfigureAwait(false);
        }

        public void WriteTagAndLength(DicomTag tag, uint length)
        {
            Span<byte> header = stackalloc byte[8];
            BinaryPrimitives.WriteUInt16LittleEndian(header, tag.Group);
            BinaryPrimitives.WriteUInt16LittleEndian(header[2..], tag.Element);
            BinaryPrimitives.WriteUInt32LittleEndian(header[4..], length);
            WriteBytes(header);
        }

        public async ValueTask FlushIfFullAsync(CancellationToken cancellationToken)
        {
            if (_count >= Size / 2)
            {
                await FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        public async ValueTask FlushAsync(CancellationToken cancellationToken)
        {
            if (_count > 0)
            {
                await output.WriteAsync(_buffer.AsMemory(0, _count), cancellationToken).ConfigureAwait(false);
                _count = 0;
            }
        }

        public async ValueTask CopyBulkAsync(DicomBulkReference bulk, CancellationToken cancellationToken)
        {
            if (bulkSource is null)
            {
                throw new InvalidOperationException("A value was left in the source as a bulk reference, but no source stream was given to the writer.");
            }

            await FlushAsync(cancellationToken).ConfigureAwait(false);
            bulkSource.Position = bulk.Offset;
            var remaining = bulk.Length;
            while (remaining > 0)
            {
                var want = (int)Math.Min(remaining, _buffer.Length);
                want -= want % bulk.SwapUnit;
                if (want == 0)
                {
                    want = (int)remaining;
                }

                var read = await bulkSource.ReadAtLeastAsync(_buffer.AsMemory(0, want), want, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                if (read < want)
                {
                    throw new EndOfStreamException($"The source ended inside a bulk value at offset {bulk.Offset}.");
                }

                if (bulk.SwapUnit > 1)
                {
                    for (var i = 0; i + bulk.SwapUnit <= read; i += bulk.SwapUnit)
                    {
                        _buffer.AsSpan(i, bulk.SwapUnit).Reverse();
                    }
                }

                await output.WriteAsync(_buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                remaining -= read;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await FlushAsync(CancellationToken.None).ConfigureAwait(false);
            var buffer = Interlocked.Exchange(ref _buffer, []);
            if (buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void FlushSync()
        {
            // Only reached when a single header or group-length run overflows 64 KiB of headers between
            // element boundaries, which the per-element flush makes practically impossible.
            output.Write(_buffer, 0, _count);
            _count = 0;
        }
    }
}
