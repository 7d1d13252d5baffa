using System.Buffers;
using System.Buffers.Binary;

namespace Vigie.Inspection.Engine;

/// <summary>
/// Sequential little-endian reads over a <see cref="ContentSource"/> through a small pooled window, so parsers
/// never load a whole object. Reads past the end return zeros and set <see cref="Overrun"/>; callers check it
/// instead of trusting declared lengths.
/// </summary>
internal sealed class SourceReader : IDisposable
{
    private readonly ContentSource _source;
    private readonly long _end;
    private byte[] _buffer;
    private long _bufferStart;
    private int _bufferLength;

    public SourceReader(ContentSource source, long start = 0, long? end = null, int windowSize = 64 * 1024)
    {
        _source = source;
        _end = Math.Min(end ?? source.Length, source.Length);
        _buffer = ArrayPool<byte>.Shared.Rent(windowSize);
        Position = start;
    }

    public long Position { get; set; }

    public long End => _end;

    public long Remaining => Math.Max(0, _end - Position);

    /// <summary>Set once a read went past <see cref="End"/>.</summary>
    public bool Overrun { get; private set; }

    public bool AtEnd => Position >= _end;

    private ReadOnlySpan<byte> Window(int count)
    {
        if (Position < _bufferStart || Position + count > _bufferStart + _bufferLength)
        {
            if (count > _buffer.Length)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = ArrayPool<byte>.Shared.Rent(count);
            }

            _bufferStart = Position;
            var want = (int)Math.Min(_buffer.Length, Math.Max(0, _end - Position));
            _bufferLength = want <= 0 ? 0 : _source.ReadAt(Position, _buffer.AsSpan(0, want));
        }

        var offset = (int)(Position - _bufferStart);
        var available = Math.Max(0, Math.Min(count, _bufferLength - offset));
        return _buffer.AsSpan(offset, available);
    }

    /// <summary>Copies up to destination.Length bytes; returns how many were available.</summary>
    public int Read(Span<byte> destination)
    {
        var total = 0;
        while (total < destination.Length && Position < _end)
        {
            var chunk = Window(Math.Min(destination.Length - total, _buffer.Length));
            if (chunk.IsEmpty)
            {
                break;
            }

            chunk.CopyTo(destination[total..]);
            total += chunk.Length;
            Position += chunk.Length;
        }

        if (total < destination.Length)
        {
            Overrun = true;
            destination[total..].Clear();
        }

        return total;
    }

    public byte ReadByte()
    {
        var w = Window(1);
        if (w.IsEmpty)
        {
            Overrun = true;
            Position++;
            return 0;
        }

        Position++;
        return w[0];
    }

    public ushort ReadUInt16()
    {
        Span<byte> b = stackalloc byte[2];
        Read(b);
        return BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public uint ReadUInt32()
    {
        Span<byte> b = stackalloc byte[4];
        Read(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public ulong ReadUInt64()
    {
        Span<byte> b = stackalloc byte[8];
        Read(b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void Skip(long count)
    {
        Position += count;
        if (Position > _end)
        {
            Overrun = true;
        }
    }

    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, []);
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
