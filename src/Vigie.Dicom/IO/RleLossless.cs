using System.Buffers.Binary;
using System.Globalization;

namespace Vigie.Dicom.IO;

/// <summary>The geometry of native pixel data: what a decoder needs to lay out one frame.</summary>
public sealed record PixelLayout(int Rows, int Columns, int SamplesPerPixel, int BitsAllocated, int PlanarConfiguration, int Frames)
{
    public int BytesPerSample => BitsAllocated / 8;

    public long FrameLength => (long)Rows * Columns * SamplesPerPixel * BytesPerSample;

    public long TotalLength => FrameLength * Frames;

    /// <summary>The layout a data set declares, or a reason it cannot be decoded.</summary>
    public static PixelLayout Read(DicomDataset dataset)
    {
        var rows = Number(dataset, DicomTags.Rows, "Rows", 1, ushort.MaxValue);
        var columns = Number(dataset, DicomTags.Columns, "Columns", 1, ushort.MaxValue);
        var samples = Number(dataset, DicomTags.SamplesPerPixel, "Samples per Pixel", 1, 4);
        var bits = Number(dataset, DicomTags.BitsAllocated, "Bits Allocated", 8, 32);
        if (bits is not (8 or 16 or 32))
        {
            throw Invalid($"Bits Allocated {bits} cannot be RLE encoded (8, 16 or 32)");
        }

        var planar = samples > 1 && dataset.TryGetInt64(DicomTags.PlanarConfiguration, out var p) ? (int)p : 0;
        if (planar is not (0 or 1))
        {
            throw Invalid($"Planar Configuration {planar} is neither 0 nor 1");
        }

        var frames = 1;
        if (dataset.GetString(DicomTags.NumberOfFrames) is { } text && text.Trim().Length > 0)
        {
            if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out frames) || frames < 1)
            {
                throw Invalid($"Number of Frames \"{text.Trim()}\" is not a positive integer");
            }
        }

        return new PixelLayout(rows, columns, samples, bits, planar, frames);
    }

    internal static DicomParseException Invalid(string reason) => new(DicomErrorKind.InvalidPixelData, reason, -1, DicomTags.PixelData.ToString());

    private static int Number(DicomDataset dataset, DicomTag tag, string name, int min, int max)
    {
        if (!dataset.TryGetInt64(tag, out var value))
        {
            throw Invalid($"{name} {tag} is missing");
        }

        return value < min || value > max ? throw Invalid($"{name} {value} is outside {min}..{max}") : (int)value;
    }
}

/// <summary>
/// RLE Lossless (PS3.5 Annex G): per frame, a 64-byte header of segment offsets, then one PackBits segment per byte
/// plane (each sample's most significant byte first). The only compressed syntax simple enough to decode here; it lets
/// an object received in RLE reach a peer that takes only uncompressed syntaxes.
/// </summary>
public static class RleLossless
{
    private const int HeaderLength = 64;

    /// <summary>
    /// Decodes one frame into <paramref name="output"/> (<see cref="PixelLayout.FrameLength"/> bytes, little endian,
    /// interleaved or planar as the layout says). Never trusts the header: offsets are checked against the fragment,
    /// and a segment must fill its plane exactly (bytes past it are ignored, as encoders pad segments to even length).
    /// </summary>
    public static void DecodeFrame(ReadOnlySpan<byte> fragment, Span<byte> output, PixelLayout layout, int frame)
    {
        var segments = layout.SamplesPerPixel * layout.BytesPerSample;
        if (fragment.Length < HeaderLength)
        {
            throw Invalid(frame, $"its fragment is {fragment.Length} bytes, shorter than the 64-byte RLE header");
        }

        var declared = BinaryPrimitives.ReadUInt32LittleEndian(fragment);
        if (declared != segments)
        {
            throw Invalid(frame, $"the RLE header declares {declared} segments where {layout.SamplesPerPixel} samples of {layout.BitsAllocated} bits need {segments}");
        }

        var pixels = layout.Rows * layout.Columns;
        for (var segment = 0; segment < segments; segment++)
        {
            var start = BinaryPrimitives.ReadUInt32LittleEndian(fragment[(4 + segment * 4)..]);
            var end = segment + 1 < segments ? BinaryPrimitives.ReadUInt32LittleEndian(fragment[(8 + segment * 4)..]) : (uint)fragment.Length;
            if (start < HeaderLength || end > fragment.Length || start > end)
            {
                throw Invalid(frame, $"segment {segment + 1} spans bytes {start}..{end} of a {fragment.Length}-byte fragment");
            }

            var sample = segment / layout.BytesPerSample;
            var significance = segment % layout.BytesPerSample; // 0: most significant byte
            var byteInSample = layout.BytesPerSample - 1 - significance;
            // Where pixel p's byte of this plane goes, and the distance to the next pixel's.
            int first, stride;
            if (layout.PlanarConfiguration == 0)
            {
                first = sample * layout.BytesPerSample + byteInSample;
                stride = layout.SamplesPerPixel * layout.BytesPerSample;
            }
            else
            {
                first = sample * pixels * layout.BytesPerSample + byteInSample;
                stride = layout.BytesPerSample;
            }

            var decoded = DecodeSegment(fragment[(int)start..(int)end], output, first, stride, pixels);
            if (decoded < pixels)
            {
                throw Invalid(frame, $"segment {segment + 1} decodes to {decoded} bytes where the image needs {pixels}");
            }
        }
    }

    /// <summary>PackBits: a header byte n, then n+1 literal bytes (n in 0..127) or one byte repeated 1-n times (n in -127..-1).</summary>
    private static int DecodeSegment(ReadOnlySpan<byte> segment, Span<byte> output, int first, int stride, int pixels)
    {
        var written = 0;
        var position = first;
        var i = 0;
        while (written < pixels && i < segment.Length)
        {
            var header = (sbyte)segment[i++];
            if (header >= 0)
            {
                var count = Math.Min(header + 1, segment.Length - i);
                count = Math.Min(count, pixels - written);
                for (var k = 0; k < count; k++, position += stride)
                {
                    output[position] = segment[i + k];
                }

                i += header + 1;
                written += count;
            }
            else if (header != -128)
            {
                if (i >= segment.Length)
                {
                    break;
                }

                var value = segment[i++];
                var count = Math.Min(1 - header, pixels - written);
                for (var k = 0; k < count; k++, position += stride)
                {
                    output[position] = value;
                }

                written += count;
            }
        }

        return written;
    }

    private static DicomParseException Invalid(int frame, string reason) =>
        PixelLayout.Invalid($"RLE frame {frame + 1}: {reason}");
}

/// <summary>
/// The source as it is, followed by the decoded pixel data (from <see cref="Start"/>), decoded one frame at a time
/// as it is read: a converted data set's other large values and its new native pixel data both come from here, and
/// memory stays at one frame whatever the number of frames.
/// </summary>
internal sealed class DecodedPixelSource : ReadOnlySeekableStream
{
    private readonly Stream _source;
    private readonly IReadOnlyList<DicomFragment> _frames;
    private readonly PixelLayout _layout;
    private readonly long _decodedLength;
    private byte[]? _frame;
    private int _current = -1;

    public DecodedPixelSource(Stream source, IReadOnlyList<DicomFragment> frames, PixelLayout layout, long maxDecodedLength)
    {
        if (frames.Count != layout.Frames)
        {
            throw PixelLayout.Invalid($"{frames.Count} RLE fragments for {layout.Frames} frames (RLE puts each frame in one fragment)");
        }

        if (layout.TotalLength > maxDecodedLength || layout.FrameLength > MaxFrameLength)
        {
            throw new DicomParseException(DicomErrorKind.SizeLimitExceeded,
                $"the decoded pixel data would be {layout.TotalLength} bytes ({layout.FrameLength} per frame), over the limits ({maxDecodedLength} in all, {MaxFrameLength} per frame)",
                -1, DicomTags.PixelData.ToString());
        }

        _source = source;
        _frames = frames;
        _layout = layout;
        Start = source.Length;
        // Native values have even length: a single 8-bit frame of odd size gets a padding byte.
        _decodedLength = layout.TotalLength + (layout.TotalLength & 1);
    }

    /// <summary>Where the decoded pixel data begins.</summary>
    public long Start { get; }

    public long DecodedLength => _decodedLength;

    /// <summary>Decodes every frame once, so that a bad one is found before any byte of the data set is sent.</summary>
    public async Task VerifyAsync(CancellationToken cancellationToken)
    {
        for (var frame = 0; frame < _layout.Frames; frame++)
        {
            await DecodeAsync(frame, cancellationToken).ConfigureAwait(false);
        }
    }

    public override long Length => Start + _decodedLength;

    /// <summary>The writer reads its bulk values asynchronously; so does this stream, since decoding reads fragments from the archive.</summary>
    public override int Read(Span<byte> buffer) => throw new NotSupportedException("Decoded pixel data is read asynchronously.");

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var position = Position;
        if (position < Start)
        {
            _source.Position = position;
            var read = await _source.ReadAsync(buffer[..(int)Math.Min(buffer.Length, Start - position)], cancellationToken).ConfigureAwait(false);
            Position = position + read;
            return read;
        }

        var offset = position - Start;
        if (offset >= _decodedLength || buffer.Length == 0)
        {
            return 0;
        }

        var frame = (int)(offset / _layout.FrameLength);
        if (frame >= _layout.Frames)
        {
            buffer.Span[0] = 0; // the padding byte
            Position = position + 1;
            return 1;
        }

        var decoded = await DecodeAsync(frame, cancellationToken).ConfigureAwait(false);
        var within = (int)(offset - frame * _layout.FrameLength);
        var count = (int)Math.Min(buffer.Length, _layout.FrameLength - within);
        decoded.AsSpan(within, count).CopyTo(buffer.Span);
        Position = position + count;
        return count;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && _frame is not null)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(_frame);
            _frame = null;
        }

        base.Dispose(disposing);
    }

    /// <summary>The decoded frame (the one held, decoded first if another was).</summary>
    private async ValueTask<byte[]> DecodeAsync(int frame, CancellationToken cancellationToken)
    {
        _frame ??= System.Buffers.ArrayPool<byte>.Shared.Rent((int)_layout.FrameLength);
        if (frame == _current)
        {
            return _frame;
        }

        var fragment = _frames[frame];
        // PackBits grows incompressible data by one byte in 128 at worst: a larger fragment is not an RLE frame.
        var maxFragment = HeaderLengthLimit + _layout.FrameLength + _layout.FrameLength / 64;
        if (fragment.Length > maxFragment)
        {
            throw PixelLayout.Invalid($"RLE frame {frame + 1}: its fragment is {fragment.Length} bytes, more than a {_layout.FrameLength}-byte frame can take");
        }

        if (fragment.Bulk is not { } bulk)
        {
            RleLossless.DecodeFrame(fragment.Value.Span, _frame.AsSpan(0, (int)_layout.FrameLength), _layout, frame);
        }
        else
        {
            var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent((int)bulk.Length);
            try
            {
                _source.Position = bulk.Offset;
                await _source.ReadExactlyAsync(bytes.AsMemory(0, (int)bulk.Length), cancellationToken).ConfigureAwait(false);
                RleLossless.DecodeFrame(bytes.AsSpan(0, (int)bulk.Length), _frame.AsSpan(0, (int)_layout.FrameLength), _layout, frame);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
            }
        }

        _current = frame;
        return _frame;
    }

    private const int HeaderLengthLimit = 1024;

    /// <summary>One frame is held in memory, with its fragment: both stay well inside an array's limits.</summary>
    private const long MaxFrameLength = 1L << 30;
}
