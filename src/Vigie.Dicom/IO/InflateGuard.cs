namespace Vigie.Dicom.IO;

/// <summary>
/// Stands between a deflate stream and the parser: counts the compressed bytes the deflater took from its source and
/// the bytes it gave out, and stops it once it gives out more than <see cref="DicomReadOptions.MaxDeflateRatio"/> times
/// what it took (past a floor). A 486 KB file inflating to 500 MB was held in memory whole before the size limit.
/// </summary>
internal sealed class InflateGuard
{
    private readonly int _ratio;
    private readonly long _floor;
    private long _compressed;
    private long _inflated;

    private InflateGuard(int ratio, long floor)
    {
        _ratio = ratio;
        _floor = floor;
    }

    /// <summary>The source to give the deflate stream (counted), and a wrapper to build around that deflate stream (checked).</summary>
    public static (Stream Source, Func<Stream, Stream> Wrap) Create(Stream compressed, DicomReadOptions options)
    {
        var guard = new InflateGuard(options.MaxDeflateRatio, options.DeflateRatioFloor);
        return (new Counting(compressed, guard), inflate => new Checked(inflate, guard));
    }

    private void Check()
    {
        if (_inflated > _floor && _inflated > _ratio * Math.Max(1, _compressed))
        {
            throw new DeflateRatioException(_ratio, _compressed, _inflated);
        }
    }

    private sealed class Counting(Stream inner, InflateGuard guard) : ReadOnlyForwardStream(inner)
    {
        public override int Read(Span<byte> buffer)
        {
            var n = Inner.Read(buffer);
            guard._compressed += n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await Inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            guard._compressed += n;
            return n;
        }
    }

    private sealed class Checked(Stream inner, InflateGuard guard) : ReadOnlyForwardStream(inner)
    {
        public override int Read(Span<byte> buffer)
        {
            var n = Inner.Read(buffer);
            guard._inflated += n;
            guard.Check();
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await Inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            guard._inflated += n;
            guard.Check();
            return n;
        }
    }
}

internal sealed class DeflateRatioException(int ratio, long compressed, long inflated)
    : Exception($"{compressed} compressed bytes inflated to more than {inflated} bytes, over {ratio} times as many")
{
    public int Ratio { get; } = ratio;
}
