using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using Vigie.Archive.IO;
using Vigie.Archive.Keys;

namespace Vigie.Archive.Storage;

/// <summary>
/// Reads one object. Opening checks the header, unwraps the data key, and authenticates the trailer (so truncation,
/// extension and swapped files are caught before any byte is returned). Reads decrypt only the segments they touch and
/// authenticate each one; reading the whole object in order also checks the content's SHA-256. Concurrent reads are
/// safe (they take turns on the one segment cache); <see cref="Read"/> serves synchronous random-access consumers such
/// as an inspection <c>ContentSource</c>.
/// </summary>
public sealed class ArchiveObjectReader : IAsyncDisposable, IDisposable
{
    private const int ReadAheadBytes = 256 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly ObjectHeader _header;
    private readonly AesGcm _gcm;
    private readonly uint _segments;
    private readonly long _dataEnd;
    private readonly byte[] _cipher;
    private readonly byte[] _plain;
    private readonly byte[] _sha256;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private long _cipherFirst = -1;
    private int _cipherCount;
    private long _plainSegment = -1;
    private int _plainLength;
    private uint _nextHashed;
    private bool _hashBroken;
    private bool _disposed;
    private bool _releasePages;

    // The first header byte outside the fields that is not zero, or -1: read at open, reported by VerifyAsync only.
    private readonly int _strayHeaderByte;

    private ArchiveObjectReader(SafeFileHandle handle, ObjectHeader header, byte[] dataKey, Guid keyId, uint segments, long length,
        byte[] sha256, ObjectId id, string location, int strayHeaderByte)
    {
        _handle = handle;
        _strayHeaderByte = strayHeaderByte;
        _header = header;
        _gcm = new AesGcm(dataKey, ObjectFormat.TagSize);
        _segments = segments;
        Length = length;
        var lastPlain = length - (long)(segments - 1) * header.SegmentSize;
        _dataEnd = ObjectFormat.SegmentOffset(segments - 1, header.SegmentSize) + lastPlain + ObjectFormat.TagSize;
        _sha256 = sha256;
        Id = id;
        KeyId = keyId;
        Location = location;
        var segmentCipher = header.SegmentSize + ObjectFormat.TagSize;
        // Read ahead up to 256 KiB (at least one segment), so sequential reads take few system calls.
        var window = (int)Math.Clamp(Math.Min(ReadAheadBytes / segmentCipher, segments), 1, int.MaxValue);
        _cipher = ArrayPool<byte>.Shared.Rent(segmentCipher * window);
        _plain = ArrayPool<byte>.Shared.Rent(header.SegmentSize);
    }

    /// <summary>The object id its content hashes to (for a spool, the id it will get).</summary>
    public ObjectId Id { get; }

    /// <summary>Plaintext length, from the authenticated trailer.</summary>
    public long Length { get; }

    /// <summary>
    /// Drops the file's pages from the page cache when this reader is disposed: for passes over the whole archive (scrub,
    /// rescan), which read each object once and would otherwise push the index out of memory.
    /// </summary>
    public void ReleasePagesWhenDone() => _releasePages = true;

    public int SegmentSize => _header.SegmentSize;

    public int SegmentCount => (int)Math.Min(_segments, int.MaxValue);

    /// <summary>The key-encryption key whose slot opened the data key.</summary>
    public Guid KeyId { get; }

    /// <summary>Names the object in errors: its id or quarantine id.</summary>
    public string Location { get; }

    internal ReadOnlySpan<byte> ContentSha256 => _sha256;

    /// <summary>
    /// Refuses what no object file can be, before opening it: opening a FIFO waits for a writer for ever (a scrub, a
    /// rescan, a retrieve hung on one), and a symbolic link makes the archive depend on a file outside it that someone
    /// else may change. An object file is never empty, and a FIFO or a device has no length.
    /// </summary>
    internal static void RefuseNonObjectFile(string path, string location)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            return;
        }

        if (info.LinkTarget is not null)
        {
            throw new ObjectFormatException(ObjectProblem.NotOurFormat, "a symbolic link, not an object file", location);
        }

        if (info.Length == 0)
        {
            throw new ObjectFormatException(ObjectProblem.Truncated, "an empty file (or not a regular file)", location);
        }
    }

    /// <param name="knownLength">
    /// Where the object ends when the file is longer: a landing slot is written full of zeros beforehand and keeps its
    /// landing record in its last page. Null: the object is the whole file.
    /// </param>
    /// <param name="purpose">What the data key must be wrapped for: an archive read never opens a quarantined object.</param>
    internal static async ValueTask<ArchiveObjectReader> OpenAsync(string path, ObjectId? expectedId, ArchiveKeyService keys, string location,
        long maxLength, long? knownLength, CancellationToken cancellationToken, KeyPurpose purpose = KeyPurpose.Archive)
    {
        SafeFileHandle handle;
        try
        {
            RefuseNonObjectFile(path, location);
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (UnauthorizedAccessException e)
        {
            // Permissions changed under the archive (ransomware, a careless chmod): named, so a scrub reports it and goes on.
            throw new ObjectFormatException(ObjectProblem.Unreadable, "the file cannot be read (permission denied)", location, inner: e);
        }
        catch (FileNotFoundException e)
        {
            throw new ObjectFormatException(ObjectProblem.NotFound, "no such object file", location, inner: e);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new ObjectFormatException(ObjectProblem.NotFound, "no such object file", location, inner: e);
        }

        byte[]? dataKey = null;
        try
        {
            await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
            var fileLength = RandomAccess.GetLength(handle);
            if (knownLength is { } known)
            {
                if (known > fileLength)
                {
                    throw new ObjectFormatException(ObjectProblem.Truncated, $"the object ends at {known} bytes, the file has {fileLength}", location);
                }

                fileLength = known;
            }

            var headerBytes = new byte[(int)Math.Min(ObjectFormat.HeaderSize, fileLength)];
            await ReadExactlyAsync(handle, headerBytes, 0, location, cancellationToken).ConfigureAwait(false);
            var header = ObjectFormat.ParseHeader(headerBytes, location);
            var (key, slot, _) = await DataKeys.OpenAsync(header, keys.KeyEncryptionKeys, location, purpose, cancellationToken).ConfigureAwait(false);
            dataKey = key;

            var layout = ObjectFormat.LayoutFor(fileLength, header.SegmentSize)
                         ?? throw new ObjectFormatException(ObjectProblem.Truncated,
                             $"a {fileLength}-byte file fits no segment layout of segment size {header.SegmentSize}", location, offset: fileLength);
            if (layout.Length > maxLength)
            {
                throw new ObjectFormatException(ObjectProblem.TooLarge, $"{layout.Length} bytes exceed the {maxLength}-byte limit", location);
            }

            var trailer = new byte[ObjectFormat.TrailerSize];
            var trailerOffset = fileLength - ObjectFormat.TrailerSize;
            await ReadExactlyAsync(handle, trailer, trailerOffset, location, cancellationToken).ConfigureAwait(false);
            var plain = new byte[ObjectFormat.TrailerPlainSize];
            Span<byte> nonce = stackalloc byte[ObjectFormat.NonceSize];
            ObjectFormat.TrailerNonce(nonce, header.NoncePrefix);
            using (var gcm = new AesGcm(key, ObjectFormat.TagSize))
            {
                try
                {
                    gcm.Decrypt(nonce, trailer.AsSpan(0, ObjectFormat.TrailerPlainSize), trailer.AsSpan(ObjectFormat.TrailerPlainSize), plain, header.Prefix);
                }
                catch (AuthenticationTagMismatchException e)
                {
                    throw new ObjectFormatException(ObjectProblem.TrailerAuthenticationFailed,
                        "the sealed trailer does not authenticate (the file was altered, cut or extended)", location, offset: trailerOffset, inner: e);
                }
            }

            var length = BinaryPrimitives.ReadInt64BigEndian(plain);
            var segments = BinaryPrimitives.ReadUInt32BigEndian(plain.AsSpan(8));
            if (length != layout.Length || segments != layout.Segments)
            {
                throw new ObjectFormatException(ObjectProblem.LengthMismatch,
                    $"the trailer says {length} bytes in {segments} segments, the file holds {layout.Length} in {layout.Segments}", location, offset: trailerOffset);
            }

            var sha256 = plain.AsSpan(16, 32).ToArray();
            var id = keys.NameObject(sha256);
            if (expectedId is { } expected && expected != id)
            {
                throw new ObjectFormatException(ObjectProblem.IdMismatch,
                    $"the content is object {id}, not {expected} (files swapped or renamed)", location);
            }

            return new ArchiveObjectReader(handle, header, key, header.Slots[slot].KeyId, segments, length, sha256, id, location,
                ObjectFormat.FirstStrayHeaderByte(headerBytes));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        finally
        {
            if (dataKey is not null)
            {
                CryptographicOperations.ZeroMemory(dataKey);
            }
        }
    }

    /// <summary>Reads plaintext at <paramref name="position"/>, decrypting only the segments it touches. Returns 0 at the end.</summary>
    public async ValueTask<int> ReadAsync(long position, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var total = 0;
            while (buffer.Length > 0 && position < Length)
            {
                var segment = (uint)(position / _header.SegmentSize);
                if (_plainSegment != segment)
                {
                    if (NeedsCiphertext(segment, out var offset, out var bytes, out var count))
                    {
                        await ReadExactlyAsync(_handle, _cipher.AsMemory(0, bytes), offset, Location, cancellationToken).ConfigureAwait(false);
                        Loaded(segment, count);
                    }

                    Decrypt(segment, null);
                }

                var copied = CopyOut(segment, position, buffer.Span);
                buffer = buffer[copied..];
                position += copied;
                total += copied;
            }

            return total;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The synchronous form of <see cref="ReadAsync"/>, for random-access consumers whose contract is synchronous.</summary>
    public int Read(long position, Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        _gate.Wait();
        try
        {
            var total = 0;
            while (buffer.Length > 0 && position < Length)
            {
                var segment = (uint)(position / _header.SegmentSize);
                if (_plainSegment != segment)
                {
                    if (NeedsCiphertext(segment, out var offset, out var bytes, out var count))
                    {
                        ReadExactly(_handle, _cipher.AsSpan(0, bytes), offset, Location);
                        Loaded(segment, count);
                    }

                    Decrypt(segment, null);
                }

                var copied = CopyOut(segment, position, buffer);
                buffer = buffer[copied..];
                position += copied;
                total += copied;
            }

            return total;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// A read-only, seekable stream over the plaintext; it does not own the reader. Read from start to end without seeking,
    /// it also checks the content's SHA-256 at the end and throws <see cref="ObjectFormatException"/> on mismatch.
    /// </summary>
    public Stream OpenStream() => new ObjectReadStream(this);

    /// <summary>Decrypts and authenticates every segment and checks the content hash. Used by scrub.</summary>
    public async ValueTask VerifyAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_strayHeaderByte >= 0)
            {
                throw new ObjectFormatException(ObjectProblem.InvalidHeader, "a header byte outside its fields is not zero (the file was altered)", Location,
                    offset: _strayHeaderByte);
            }

            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (uint i = 0; i < _segments; i++)
            {
                if (NeedsCiphertext(i, out var offset, out var bytes, out var count))
                {
                    await ReadExactlyAsync(_handle, _cipher.AsMemory(0, bytes), offset, Location, cancellationToken).ConfigureAwait(false);
                    Loaded(i, count);
                }

                Decrypt(i, hash);
            }

            Span<byte> digest = stackalloc byte[32];
            hash.GetHashAndReset(digest);
            if (!CryptographicOperations.FixedTimeEquals(digest, _sha256))
            {
                throw new ObjectFormatException(ObjectProblem.ContentHashMismatch, "the content does not hash to the trailer's SHA-256", Location);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Whether segment <paramref name="segment"/> must be read, and if so the read-ahead window starting at it.</summary>
    private bool NeedsCiphertext(uint segment, out long offset, out int bytes, out int count)
    {
        var segmentCipher = _header.SegmentSize + ObjectFormat.TagSize;
        offset = 0;
        bytes = 0;
        count = 0;
        if (segment >= _cipherFirst && segment < _cipherFirst + _cipherCount)
        {
            return false;
        }

        count = (int)Math.Min(_cipher.Length / segmentCipher, _segments - segment);
        offset = ObjectFormat.SegmentOffset(segment, _header.SegmentSize);
        bytes = (int)Math.Min((long)count * segmentCipher, _dataEnd - offset);
        _cipherFirst = -1;
        _cipherCount = 0;
        return true;
    }

    private void Loaded(uint segment, int count)
    {
        _cipherFirst = segment;
        _cipherCount = count;
    }

    /// <summary>Authenticates and decrypts a segment from the read-ahead window into the plaintext cache.</summary>
    private void Decrypt(uint segment, IncrementalHash? verifyHash)
    {
        var segmentCipher = _header.SegmentSize + ObjectFormat.TagSize;
        var last = segment == _segments - 1;
        var start = (int)(segment - _cipherFirst) * segmentCipher;
        var plainLength = last ? (int)(Length - (long)segment * _header.SegmentSize) : _header.SegmentSize;
        Span<byte> nonce = stackalloc byte[ObjectFormat.NonceSize];
        ObjectFormat.SegmentNonce(nonce, _header.NoncePrefix, segment, last);
        _plainSegment = -1;
        try
        {
            _gcm.Decrypt(nonce, _cipher.AsSpan(start, plainLength), _cipher.AsSpan(start + plainLength, ObjectFormat.TagSize),
                _plain.AsSpan(0, plainLength), _header.Prefix);
        }
        catch (AuthenticationTagMismatchException e)
        {
            ArchiveTelemetry.IntegrityFailures.Add(1);
            throw new ObjectFormatException(ObjectProblem.SegmentAuthenticationFailed,
                "a segment does not authenticate (altered, reordered, or from another object)", Location, segment,
                ObjectFormat.SegmentOffset(segment, _header.SegmentSize), e);
        }

        _plainSegment = segment;
        _plainLength = plainLength;
        if (verifyHash is not null)
        {
            verifyHash.AppendData(_plain, 0, plainLength);
        }
        else
        {
            TrackHash(segment);
        }
    }

    private int CopyOut(uint segment, long position, Span<byte> destination)
    {
        var within = (int)(position - (long)segment * _header.SegmentSize);
        var count = Math.Min(destination.Length, _plainLength - within);
        _plain.AsSpan(within, count).CopyTo(destination);
        return count;
    }

    private void TrackHash(uint segment)
    {
        if (_hashBroken)
        {
            return;
        }

        if (segment != _nextHashed)
        {
            _hashBroken = true;
            return;
        }

        _hash.AppendData(_plain, 0, _plainLength);
        _nextHashed++;
        if (_nextHashed == _segments)
        {
            Span<byte> digest = stackalloc byte[32];
            _hash.GetHashAndReset(digest);
            _hashBroken = true;
            if (!CryptographicOperations.FixedTimeEquals(digest, _sha256))
            {
                ArchiveTelemetry.IntegrityFailures.Add(1);
                throw new ObjectFormatException(ObjectProblem.ContentHashMismatch, "the content does not hash to the trailer's SHA-256", Location);
            }
        }
    }

    internal void StopHashing() => _hashBroken = true;

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string location)
    {
        while (buffer.Length > 0)
        {
            var read = RandomAccess.Read(handle, buffer, offset);
            if (read == 0)
            {
                throw new ObjectFormatException(ObjectProblem.Truncated, "the file ended early", location, offset: offset);
            }

            buffer = buffer[read..];
            offset += read;
        }
    }

    private static async ValueTask ReadExactlyAsync(SafeFileHandle handle, Memory<byte> buffer, long offset, string location,
        CancellationToken cancellationToken)
    {
        while (buffer.Length > 0)
        {
            var read = await RandomAccess.ReadAsync(handle, buffer, offset, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                throw new ObjectFormatException(ObjectProblem.Truncated, "the file ended early", location, offset: offset);
            }

            buffer = buffer[read..];
            offset += read;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _gate.Wait();
        if (_releasePages)
        {
            FileSync.ReleasePages(_handle);
        }

        _handle.Dispose();
        _gcm.Dispose();
        _hash.Dispose();
        _gate.Dispose();
        CryptographicOperations.ZeroMemory(_plain);
        ArrayPool<byte>.Shared.Return(_plain);
        ArrayPool<byte>.Shared.Return(_cipher);
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>The plaintext of an object as a read-only seekable stream over a reader it does not own.</summary>
internal sealed class ObjectReadStream(ArchiveObjectReader reader) : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => reader.Length;

    public override long Position
    {
        get => _position;
        set => Seek(value, SeekOrigin.Begin);
    }

    public override int Read(byte[] buffer, int offset, int count) =>
        ReadAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await reader.ReadAsync(_position, buffer, cancellationToken).ConfigureAwait(false);
        _position += read;
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin)
    {
        var target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => reader.Length + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        ArgumentOutOfRangeException.ThrowIfNegative(target, nameof(offset));
        if (target != _position)
        {
            reader.StopHashing();
        }

        _position = target;
        return _position;
    }

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

}
