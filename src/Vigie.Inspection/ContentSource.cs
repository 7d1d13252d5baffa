using Microsoft.Win32.SafeHandles;

namespace Vigie.Inspection;

/// <summary>
/// Random-access, read-only bytes under inspection: a file (positional reads, never loaded whole), a slice of
/// another source, or a buffer in memory (small extracted entries). Thread-safe for concurrent reads.
/// </summary>
public abstract class ContentSource : IDisposable
{
    public abstract long Length { get; }

    /// <summary>The whole content when it already sits in memory; engines that need contiguous bytes use it.</summary>
    public virtual ReadOnlyMemory<byte>? Memory => null;

    /// <summary>
    /// The content's SHA-256 when its producer already computed it over these exact bytes (the archive spool hashes
    /// every object as it arrives), so that hash lists do not hash the whole content again. Slices do not carry it.
    /// </summary>
    public ReadOnlyMemory<byte>? KnownSha256 { get; private set; }

    /// <summary>Records the SHA-256 the caller computed over exactly these bytes; see <see cref="KnownSha256"/>.</summary>
    public ContentSource WithKnownSha256(ReadOnlyMemory<byte> sha256)
    {
        ArgumentOutOfRangeException.ThrowIfNotEqual(sha256.Length, 32, nameof(sha256));
        KnownSha256 = sha256;
        return this;
    }

    /// <summary>The file and offset this content lies in, when it is a plain range of a file (lets libyara map it instead of copying).</summary>
    internal virtual (SafeFileHandle Handle, long Offset)? FileRange => null;

    /// <summary>Reads up to <c>destination.Length</c> bytes at <paramref name="offset"/>; returns the count (0 at the end).</summary>
    public abstract int ReadAt(long offset, Span<byte> destination);

    public virtual ValueTask<int> ReadAtAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(ReadAt(offset, destination.Span));
    }

    /// <summary>A stream over [offset, offset+length) that does not own this source.</summary>
    public Stream OpenStream(long offset = 0, long? length = null) =>
        new ContentSourceStream(this, offset, length ?? Length - offset);

    public ContentSource Slice(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset + length, Length);
        return Memory is { } memory
            ? new MemoryContentSource(memory.Slice(checked((int)offset), checked((int)length)))
            : new SliceContentSource(this, offset, length);
    }

    /// <summary>Where <paramref name="part"/> lies in <paramref name="container"/>, when it is a slice of it (directly, or of the same memory).</summary>
    internal static bool TryLocate(ContentSource container, ContentSource part, out long offset)
    {
        offset = 0;
        if (part is SliceContentSource slice && ReferenceEquals(slice.Parent, container))
        {
            offset = slice.Start;
            return true;
        }

        if (container.Memory is { } whole && part.Memory is { } piece && whole.Span.Overlaps(piece.Span, out var elementOffset)
            && elementOffset >= 0 && elementOffset + piece.Length <= whole.Length)
        {
            offset = elementOffset;
            return true;
        }

        return false;
    }

    public static ContentSource FromMemory(ReadOnlyMemory<byte> bytes) => new MemoryContentSource(bytes);

    /// <summary>Opens a file for positional reads; the source owns the handle.</summary>
    public static ContentSource OpenFile(string path) => new FileContentSource(path);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
    }

    private sealed class MemoryContentSource(ReadOnlyMemory<byte> bytes) : ContentSource
    {
        public override long Length => bytes.Length;

        public override ReadOnlyMemory<byte>? Memory => bytes;

        public override int ReadAt(long offset, Span<byte> destination)
        {
            if (offset >= bytes.Length)
            {
                return 0;
            }

            var count = (int)Math.Min(destination.Length, bytes.Length - offset);
            bytes.Span.Slice((int)offset, count).CopyTo(destination);
            return count;
        }
    }

    private sealed class SliceContentSource(ContentSource parent, long start, long length) : ContentSource
    {
        public ContentSource Parent => parent;

        public long Start => start;

        public override long Length => length;

        internal override (SafeFileHandle Handle, long Offset)? FileRange =>
            parent.FileRange is { } range ? (range.Handle, range.Offset + start) : null;

        public override int ReadAt(long offset, Span<byte> destination)
        {
            if (offset >= length)
            {
                return 0;
            }

            var count = (int)Math.Min(destination.Length, length - offset);
            return parent.ReadAt(start + offset, destination[..count]);
        }
    }

    private sealed class FileContentSource : ContentSource
    {
        private readonly SafeFileHandle _handle;
        private readonly long _length;

        public FileContentSource(string path)
        {
            _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            _length = RandomAccess.GetLength(_handle);
        }

        public override long Length => _length;

        internal override (SafeFileHandle Handle, long Offset)? FileRange => (_handle, 0);

        public override int ReadAt(long offset, Span<byte> destination)
        {
            if (offset >= _length)
            {
                return 0;
            }

            var total = 0;
            while (total < destination.Length && offset + total < _length)
            {
                var read = RandomAccess.Read(_handle, destination[total..], offset + total);
                if (read == 0)
                {
                    break;
                }

                total += read;
            }

            return total;
        }

        public override async ValueTask<int> ReadAtAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            if (offset >= _length)
            {
                return 0;
            }

            var total = 0;
            while (total < destination.Length && offset + total < _length)
            {
                var read = await RandomAccess.ReadAsync(_handle, destination[total..], offset + total, cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                total += read;
            }

            return total;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _handle.Dispose();
            }
        }
    }

    private sealed class ContentSourceStream(ContentSource source, long start, long length) : Vigie.Dicom.IO.ReadOnlySeekableStream
    {
        public override long Length => length;

        public override int Read(Span<byte> buffer)
        {
            var remaining = length - Position;
            if (remaining <= 0)
            {
                return 0;
            }

            var read = source.ReadAt(start + Position, buffer[..(int)Math.Min(buffer.Length, remaining)]);
            Position += read;
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var remaining = length - Position;
            if (remaining <= 0)
            {
                return 0;
            }

            var read = await source.ReadAtAsync(start + Position, buffer[..(int)Math.Min(buffer.Length, remaining)], cancellationToken)
                .ConfigureAwait(false);
            Position += read;
            return read;
        }
    }
}
