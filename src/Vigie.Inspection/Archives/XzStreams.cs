using System.Buffers.Binary;
using SharpCompress.Compressors.Xz;

namespace Vigie.Inspection.Archives;

/// <summary>
/// An .xz file may hold several streams one after the other (xz --concatenate, parallel compressors), each followed by
/// optional zero padding; xz and tar read them all, while one decoder stops at the end of the first. The boundaries are
/// found from the end, footer then index (as `xz --list` does), and the streams decoded one after the other.
/// </summary>
internal static class XzStreams
{
    /// <summary>
    /// The streams' (offset, length) in file order, or null when the layout cannot be walked, with the reason in
    /// <paramref name="problem"/>: the caller then reads the first stream only, and says so.
    /// </summary>
    public static IReadOnlyList<(long Offset, long Length)>? Split(ContentSource content, int maxStreams, out string? problem)
    {
        var streams = Walk(content, maxStreams, out problem);
        if (streams is null)
        {
            problem ??= "its streams cannot be told apart from its end (a broken footer or index, or bytes after the last stream)";
        }

        return streams;
    }

    private static List<(long Offset, long Length)>? Walk(ContentSource content, int maxStreams, out string? problem)
    {
        problem = null;
        var streams = new List<(long Offset, long Length)>();
        var end = content.Length;
        Span<byte> word = stackalloc byte[12];
        Span<byte> magic = stackalloc byte[6];
        while (end > 0)
        {
            // Stream padding: zero bytes, four at a time.
            while (end >= 4 && content.ReadAt(end - 4, word[..4]) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(word) == 0)
            {
                end -= 4;
            }

            if (streams.Count >= maxStreams)
            {
                problem = $"it holds more than {maxStreams} streams";
                return null;
            }

            if (end < 24 || content.ReadAt(end - 12, word) != 12 || word[10] != (byte)'Y' || word[11] != (byte)'Z')
            {
                return null;
            }

            var indexSize = ((long)BinaryPrimitives.ReadUInt32LittleEndian(word[4..]) + 1) * 4;
            var indexStart = end - 12 - indexSize;
            if (indexStart < 12 || ReadIndexBlocks(content, indexStart, indexSize) is not { } blocks || indexStart - blocks - 12 < 0)
            {
                return null;
            }

            var start = indexStart - blocks - 12;
            if (content.ReadAt(start, magic) != 6 || !magic.SequenceEqual((ReadOnlySpan<byte>)[0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00]))
            {
                return null;
            }

            streams.Add((start, end - start));
            end = start;
        }

        streams.Reverse();
        return streams;
    }

    /// <summary>The size of the stream's blocks, from its index: each record's unpadded size rounded up to four.</summary>
    private static long? ReadIndexBlocks(ContentSource content, long offset, long size)
    {
        if (size > 16 * 1024 * 1024)
        {
            return null;
        }

        var index = new byte[size];
        if (content.ReadAt(offset, index) != size || index[0] != 0)
        {
            return null;
        }

        var position = 1;
        if (!TryVarint(index, ref position, out var records) || records > (ulong)size)
        {
            return null;
        }

        long total = 0;
        for (ulong i = 0; i < records; i++)
        {
            if (!TryVarint(index, ref position, out var unpadded) || !TryVarint(index, ref position, out _) || unpadded > long.MaxValue / 2)
            {
                return null;
            }

            total += ((long)unpadded + 3) & ~3L;
        }

        return total;
    }

    private static bool TryVarint(byte[] buffer, ref int position, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 63 && position < buffer.Length; shift += 7)
        {
            var b = buffer[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The streams decoded one after the other, as one.</summary>
    public static Stream Open(ContentSource content, IReadOnlyList<(long Offset, long Length)> streams) => new Chain(content, streams);

    private sealed class Chain(ContentSource content, IReadOnlyList<(long Offset, long Length)> streams) : Vigie.Dicom.IO.ForwardOnlyStream
    {
        private int _next;
        private Stream? _raw;
        private Stream? _current;

        public override int Read(Span<byte> buffer)
        {
            while (true)
            {
                if (_current is null)
                {
                    if (_next >= streams.Count)
                    {
                        return 0;
                    }

                    var (start, length) = streams[_next++];
                    _raw = content.OpenStream(start, length);
                    _current = new XZStream(_raw);
                }

                var read = _current.Read(buffer);
                if (read > 0 || buffer.IsEmpty)
                {
                    return read;
                }

                _current.Dispose();
                _raw!.Dispose();
                _current = null;
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _current?.Dispose();
                _raw?.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
