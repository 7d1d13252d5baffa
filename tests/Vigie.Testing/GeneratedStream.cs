namespace Vigie.Testing;

/// <summary>
/// A read-only, forward-only stream of <see cref="Length"/> bytes produced as it is read, so a test can send an object of
/// hundreds of megabytes while holding none of it. Subclasses fill the bytes at a position.
/// </summary>
public abstract class GeneratedStream : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Position
    {
        get => _position;
        set => throw new NotSupportedException();
    }

    /// <summary>Writes the bytes from <paramref name="position"/> into <paramref name="buffer"/> (never past the end); returns how many.</summary>
    protected abstract int Produce(long position, Span<byte> buffer);

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var written = 0;
        while (written < buffer.Length && _position < Length)
        {
            var count = Produce(_position, buffer[written..(int)Math.Min(buffer.Length, written + (Length - _position))]);
            written += count;
            _position += count;
        }

        return written;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer.AsSpan(offset, count)));

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
