using System.Buffers;
using System.Security.Cryptography;
using Vigie.Archive.IO;

namespace Vigie.Archive.Storage;

/// <summary>
/// Streams content into an encrypted spool file as it arrives: each full segment is sealed and written, the plaintext is
/// hashed on the way, and nothing is held beyond one segment plus the write buffer. The last full segment is held back
/// until more data comes or <see cref="CompleteAsync"/> says it was the last. Disposing an uncompleted writer deletes
/// the spool. Not thread-safe: one writer per incoming object.
/// </summary>
public sealed class SpoolWriter : IAsyncDisposable
{
    private readonly FileObjectStore _store;
    private readonly FileStream _file;
    private readonly byte[] _prefix;
    private readonly AesGcm _gcm;
    private readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly int _segmentSize;
    private readonly long _maxBytes;
    private readonly long _slotBytes;
    private readonly byte[] _plain;
    private readonly byte[] _out;
    private int _plainCount;
    private int _outCount;
    private long _fileOffset;
    private uint _segment;
    private long _length;
    private bool _completed;
    private bool _disposed;

    internal SpoolWriter(FileObjectStore store, string path, FileStream file, byte[] header, byte[] dataKey, Guid keyId,
        int segmentSize, int bufferSegments, long maxBytes, long slotBytes)
    {
        _store = store;
        Path = path;
        _file = file;
        _prefix = header.AsSpan(0, ObjectFormat.PrefixSize).ToArray();
        _gcm = new AesGcm(dataKey, ObjectFormat.TagSize);
        KeyId = keyId;
        _segmentSize = segmentSize;
        _maxBytes = maxBytes;
        _slotBytes = slotBytes;
        _plain = ArrayPool<byte>.Shared.Rent(segmentSize);
        // A landing slot's last write is padded to a whole page (see CompleteAsync).
        _out = ArrayPool<byte>.Shared.Rent(Math.Max(header.Length, bufferSegments * (segmentSize + ObjectFormat.TagSize)) + ObjectFormat.TrailerSize
                                           + (slotBytes > 0 ? PageSize : 0));
        header.CopyTo(_out, 0);
        _outCount = header.Length;
        if (slotBytes > 0)
        {
            // Written now, not with the first segments: key rotation in another process then sees that this slot is taken
            // and under which key (an untaken slot is all zeros).
            RandomAccess.Write(file.SafeFileHandle, header, 0);
        }
    }

    private const int PageSize = 4096;

    /// <summary>Plaintext bytes written so far.</summary>
    public long Length => _length;

    /// <summary>The key-encryption key that wraps this object's data key.</summary>
    public Guid KeyId { get; }

    internal string Path { get; }

    private ReadOnlySpan<byte> NoncePrefix => _prefix.AsSpan(16, ObjectFormat.NoncePrefixSize);

    /// <summary>Appends plaintext (a P-DATA fragment, a buffer of a file...).</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("The spool is already complete.");
        }

        if (_length + data.Length > _maxBytes)
        {
            throw new ObjectFormatException(ObjectProblem.TooLarge, $"the object exceeds the {_maxBytes}-byte limit (Archive:MaxObjectBytes)", "spool");
        }

        while (!data.IsEmpty)
        {
            if (_plainCount == _segmentSize)
            {
                // More data follows, so the held-back segment was not the last.
                await SealAsync(_plain.AsMemory(0, _plainCount), last: false, cancellationToken).ConfigureAwait(false);
                _plainCount = 0;
            }

            if (_plainCount == 0 && data.Length > _segmentSize)
            {
                // A whole segment with more data after it: seal it straight from the caller's buffer.
                var whole = data[.._segmentSize];
                _sha.AppendData(whole.Span);
                _length += _segmentSize;
                await SealAsync(whole, last: false, cancellationToken).ConfigureAwait(false);
                data = data[_segmentSize..];
                continue;
            }

            var count = Math.Min(_segmentSize - _plainCount, data.Length);
            var slice = data.Span[..count];
            slice.CopyTo(_plain.AsSpan(_plainCount));
            _sha.AppendData(slice);
            _plainCount += count;
            _length += count;
            data = data[count..];
        }
    }

    /// <summary>
    /// Seals the last segment and the trailer, and writes what is still buffered: all of an object smaller than the
    /// write buffer (a CT image), whose writeback starts only now. The file stays open: the commit or the quarantine
    /// syncs it.
    /// </summary>
    public async ValueTask<SpooledObject> CompleteAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException("The spool is already complete.");
        }

        await SealAsync(_plain.AsMemory(0, _plainCount), last: true, cancellationToken).ConfigureAwait(false);
        var sha256 = new byte[32];
        _sha.GetHashAndReset(sha256);
        Span<byte> trailer = stackalloc byte[ObjectFormat.TrailerPlainSize];
        ObjectFormat.EncodeTrailer(trailer, _length, _segment, sha256);
        Span<byte> nonce = stackalloc byte[ObjectFormat.NonceSize];
        ObjectFormat.TrailerNonce(nonce, NoncePrefix);
        _gcm.Encrypt(nonce, trailer, _out.AsSpan(_outCount, ObjectFormat.TrailerPlainSize),
            _out.AsSpan(_outCount + ObjectFormat.TrailerPlainSize, ObjectFormat.TagSize), _prefix);
        _outCount += ObjectFormat.TrailerSize;
        var fileLength = _fileOffset + _outCount;
        if (_slotBytes > 0 && fileLength <= _slotBytes - LandingSlots.RecordSize && fileLength % PageSize != 0)
        {
            // Whole pages only: a partial one whose zeros were dropped from the cache would be read from disk first.
            var padding = (int)(PageSize - fileLength % PageSize);
            _out.AsSpan(_outCount, padding).Clear();
            _outCount += padding;
        }

        await FlushAsync(cancellationToken).ConfigureAwait(false);
        _completed = true;
        ArchiveTelemetry.BytesSpooled.Add(_length);

        var id = _store.Keys.NameObject(sha256);
        return new SpooledObject(_store, Path, id, _length, sha256, KeyId, _file, fileLength, _slotBytes);
    }

    /// <summary>A write-only stream over this writer, for code that copies from a stream.</summary>
    public Stream AsStream() => new SpoolWriteStream(this);

    private async ValueTask SealAsync(ReadOnlyMemory<byte> plain, bool last, CancellationToken cancellationToken)
    {
        if (_segment > ObjectFormat.MaxSegments - 1)
        {
            throw new ObjectFormatException(ObjectProblem.TooLarge, "the object has more segments than the format allows", "spool");
        }

        var needed = plain.Length + ObjectFormat.TagSize + (last ? ObjectFormat.TrailerSize : 0);
        if (_outCount + needed > _out.Length)
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        Span<byte> nonce = stackalloc byte[ObjectFormat.NonceSize];
        ObjectFormat.SegmentNonce(nonce, NoncePrefix, _segment, last);
        _gcm.Encrypt(nonce, plain.Span, _out.AsSpan(_outCount, plain.Length), _out.AsSpan(_outCount + plain.Length, ObjectFormat.TagSize), _prefix);
        _outCount += plain.Length + ObjectFormat.TagSize;
        _segment++;
    }

    private async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (_outCount == 0)
        {
            return;
        }

        // A write of a few sealed segments lands in the page cache in microseconds; the asynchronous form would cost a
        // thread-pool hop per flush (Linux file I/O is blocking underneath), which dominated ingest CPU. Durability comes
        // later, from the sync of the commit or the quarantine; writeback is only started here.
        cancellationToken.ThrowIfCancellationRequested();
        _store.NoteActivity();
        RandomAccess.Write(_file.SafeFileHandle, _out.AsSpan(0, _outCount), _fileOffset);
        if (_store.Durable)
        {
            FileSync.StartWriteback(_file.SafeFileHandle, _fileOffset, _outCount);
        }

        _fileOffset += _outCount;
        _outCount = 0;
        await ValueTask.CompletedTask.ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _gcm.Dispose();
        _sha.Dispose();
        CryptographicOperations.ZeroMemory(_plain);
        ArrayPool<byte>.Shared.Return(_plain);
        ArrayPool<byte>.Shared.Return(_out);
        if (!_completed)
        {
            await _file.DisposeAsync().ConfigureAwait(false);
            _store.DeleteSpoolFile(Path);
        }
    }
}

internal sealed class SpoolWriteStream(SpoolWriter writer) : Stream
{
    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => writer.Length;

    public override long Position
    {
        get => writer.Length;
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] buffer, int offset, int count) =>
        writer.WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        writer.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        writer.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
