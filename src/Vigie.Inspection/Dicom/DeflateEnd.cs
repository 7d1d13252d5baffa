using System.IO.Compression;

namespace Vigie.Inspection.Dicom;

/// <summary>How a raw deflate stream ended, and where (in its source) when it did; what it inflated to (length, Adler-32).</summary>
internal readonly record struct DeflateEndResult(long? End, bool Corrupt, bool TooLarge, long Inflated = 0, uint Adler32 = 1);

/// <summary>
/// Finds where a raw deflate stream ends in its source, so that the bytes after it (which no decoder reads) can be
/// inspected. zlib takes input in chunks and does not say how much of the last one it used; fed one byte at a time it
/// takes exactly the bytes it needs, so the stream's last stretch is fed that way.
/// </summary>
internal static class DeflateEnd
{
    /// <summary>The last bytes of the source are fed one at a time on the first pass: the usual end, found in one pass.</summary>
    private const int ByteByByteTail = 16 * 1024;

    public static async ValueTask<DeflateEndResult> FindAsync(ContentSource content, long start, long maxInflated, CancellationToken cancellationToken)
    {
        var first = await InflateAsync(content, start, Math.Max(start, content.Length - ByteByByteTail), maxInflated, cancellationToken).ConfigureAwait(false);
        if (first.Result.End is not null || first.Result.Corrupt || first.Result.TooLarge || first.LastChunkStart is not { } chunk)
        {
            return first.Result;
        }

        // It ended inside a chunk fed whole: again, byte by byte from that chunk on.
        return (await InflateAsync(content, start, chunk, maxInflated, cancellationToken).ConfigureAwait(false)).Result;
    }

    /// <summary>
    /// Inflates the stream, discarding what it gives. End is null when the source ran out first (nothing follows) or the
    /// stream ended within a chunk fed whole (LastChunkStart says where that chunk began).
    /// </summary>
    private static async ValueTask<(DeflateEndResult Result, long? LastChunkStart)> InflateAsync(ContentSource content, long start, long byteByByteFrom,
        long maxInflated, CancellationToken cancellationToken)
    {
        await using var feed = new Feed(content, start, byteByByteFrom);
        await using var inflate = new DeflateStream(feed, CompressionMode.Decompress, leaveOpen: true);
        var buffer = new byte[64 * 1024];
        long inflated = 0;
        uint a = 1, b = 0;
        try
        {
            int read;
            while ((read = await inflate.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                // Adler-32 (RFC 1950): a writer that kept zlib's trailer left it after the stream.
                for (var i = 0; i < read;)
                {
                    var end = Math.Min(read, i + 5552);
                    for (; i < end; i++)
                    {
                        a += buffer[i];
                        b += a;
                    }

                    a %= 65521;
                    b %= 65521;
                }

                inflated += read;
                if (inflated > maxInflated)
                {
                    return (new DeflateEndResult(null, false, true), null);
                }
            }
        }
        catch (InvalidDataException)
        {
            return (new DeflateEndResult(null, true, false), null);
        }

        if (feed.Position >= content.Length)
        {
            // Everything was taken: a stream that ends with its source, or one cut short. Nothing follows it either way.
            return (new DeflateEndResult(null, false, false), null);
        }

        return feed.LastChunkWasWhole
            ? (new DeflateEndResult(null, false, false), feed.LastChunkStart)
            : (new DeflateEndResult(feed.Position, false, false, inflated, (b << 16) | a), null);
    }

    /// <summary>Hands out the source in chunks, then one byte per read from <c>byteByByteFrom</c> on; counts what it handed out.</summary>
    private sealed class Feed(ContentSource content, long start, long byteByByteFrom) : Stream
    {
        public override long Position { get; set; } = start;

        public long LastChunkStart { get; private set; } = start;

        public bool LastChunkWasWhole { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var remaining = content.Length - Position;
            if (remaining <= 0 || buffer.Length == 0)
            {
                return 0;
            }

            var whole = Position < byteByByteFrom;
            var size = (int)Math.Min(buffer.Length, whole ? Math.Min(remaining, byteByByteFrom - Position) : 1);
            var read = content.ReadAt(Position, buffer[..size]);
            LastChunkStart = Position;
            LastChunkWasWhole = whole && read > 1;
            Position += read;
            return read;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(Read(buffer.Span));
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
