namespace Vigie.Inspection.Dicom;

/// <summary>
/// A big-endian value as a reader decodes it: each unit (2 bytes for OW, 4 for OF or OL, 8 for OD or OV) reversed.
/// Large values are kept as ranges of the file, in their wire order; what a viewer or a PACS that re-encodes the object
/// sees is the swapped bytes, so that is what is checked.
/// </summary>
internal sealed class SwappedContentSource(ContentSource raw, int unit) : ContentSource
{
    public override long Length => raw.Length;

    public override int ReadAt(long offset, Span<byte> destination)
    {
        if (offset >= Length || destination.IsEmpty)
        {
            return 0;
        }

        // Whole units around the range asked for, swapped, then the part asked for copied out.
        var start = offset - (offset % unit);
        var end = Math.Min(Length, offset + destination.Length);
        var span = (int)(end - start + unit - 1) / unit * unit;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(span);
        try
        {
            var read = raw.ReadAt(start, buffer.AsSpan(0, span));
            for (var i = 0; i + unit <= read; i += unit)
            {
                buffer.AsSpan(i, unit).Reverse();
            }

            var available = (int)Math.Max(0, Math.Min(read - (offset - start), end - offset));
            buffer.AsSpan((int)(offset - start), available).CopyTo(destination);
            return available;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
