using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vigie.Inspection.Engine;

internal enum ExtractionStatus
{
    Complete,

    /// <summary>The inner object grew beyond <see cref="InspectionLimits.MaxInnerSize"/>.</summary>
    InnerSizeLimit,

    /// <summary>The inspection-wide extraction budget ran out (the engine reported it).</summary>
    BudgetExhausted,

    /// <summary>Output outgrew input by more than <see cref="InspectionLimits.MaxCompressionRatio"/>.</summary>
    RatioExceeded,

    /// <summary>The decoder rejected the data (corrupt, truncated, unsupported).</summary>
    Failed,
}

internal sealed record ExtractionResult(ContentSource? Content, ExtractionStatus Status, long Produced, string? Error = null)
{
    public bool IsComplete => Status == ExtractionStatus.Complete && Content is not null;
}

/// <summary>
/// Drains a decoding stream into an inner object under every limit at once: inner size, the inspection's
/// extraction budget, and the compression ratio (checked as bytes arrive, never from declared sizes alone).
/// Small results stay in memory; larger ones spill to a temporary file deleted when the object is disposed.
/// </summary>
internal static class Extraction
{
    private const int ChunkSize = 64 * 1024;

    public static async ValueTask<ExtractionResult> ExtractAsync(InspectionContext context, Stream decoded, long compressedSize,
        CancellationToken cancellationToken, long? maxSize = null)
    {
        var limits = context.Limits;
        var cap = Math.Min(limits.MaxInnerSize, maxSize ?? long.MaxValue);
        var ratioLimit = compressedSize > 0
            ? Math.Max(limits.RatioCheckFloor, (long)Math.Min(compressedSize * limits.MaxCompressionRatio, long.MaxValue / 2))
            : long.MaxValue;
        var buffer = new SpillBuffer(context);
        var chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
        var produced = 0L;
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int read;
                try
                {
                    read = await decoded.ReadAsync(chunk.AsMemory(0, ChunkSize), cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (IsDecoderFailure(ex))
                {
                    buffer.Dispose();
                    return new ExtractionResult(null, ExtractionStatus.Failed, produced, $"{ex.GetType().Name}: {ex.Message}");
                }

                if (read == 0)
                {
                    break;
                }

                if (produced + read > ratioLimit)
                {
                    buffer.Dispose();
                    return new ExtractionResult(null, ExtractionStatus.RatioExceeded, produced + read);
                }

                if (produced + read > cap)
                {
                    buffer.Dispose();
                    return new ExtractionResult(null, ExtractionStatus.InnerSizeLimit, produced + read);
                }

                if (!context.TryChargeExtraction(read))
                {
                    buffer.Dispose();
                    return new ExtractionResult(null, ExtractionStatus.BudgetExhausted, produced + read);
                }

                await buffer.WriteAsync(chunk.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                produced += read;
            }

            return new ExtractionResult(buffer.Detach(), ExtractionStatus.Complete, produced);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    /// <summary>Exceptions a decoder throws on bad input (as opposed to cancellation or bugs of ours).</summary>
    public static bool IsDecoderFailure(Exception ex) => ex is InvalidDataException or IOException or NotSupportedException
        or SharpCompress.Common.SharpCompressException or ArgumentException or InvalidOperationException or IndexOutOfRangeException
        or FormatException or OverflowException or EndOfStreamException;
}

/// <summary>Growable output that stays in memory up to the threshold (and the inspection's memory budget), then moves to a temporary file.</summary>
internal sealed class SpillBuffer : IDisposable
{
    private readonly InspectionContext _context;
    private readonly InspectionSession? _session;
    private byte[] _memory = [];
    private long _reserved;
    private int _length;
    private SpillFile? _file;
    private long _fileLength;

    public SpillBuffer(InspectionContext context)
    {
        _context = context;
        _session = (context as EngineContext)?.Session;
    }

    public long Length => _file is null ? _length : _fileLength;

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (_file is null && !TryGrowMemory(_length + data.Length))
        {
            _file = SpillFile.Create(_context.Limits.SpillDirectory);
            await _file.WriteAsync(_memory.AsMemory(0, _length), 0, cancellationToken).ConfigureAwait(false);
            _fileLength = _length;
            ReleaseMemory();
        }

        if (_file is not null)
        {
            await _file.WriteAsync(data, _fileLength, cancellationToken).ConfigureAwait(false);
            _fileLength += data.Length;
            return;
        }

        data.Span.CopyTo(_memory.AsSpan(_length));
        _length += data.Length;
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        if (_file is null && !TryGrowMemory(_length + data.Length))
        {
            _file = SpillFile.Create(_context.Limits.SpillDirectory);
            _file.Write(_memory.AsSpan(0, _length), 0);
            _fileLength = _length;
            ReleaseMemory();
        }

        if (_file is not null)
        {
            _file.Write(data, _fileLength);
            _fileLength += data.Length;
            return;
        }

        data.CopyTo(_memory.AsSpan(_length));
        _length += data.Length;
    }

    private bool TryGrowMemory(long needed)
    {
        if (needed <= _memory.Length)
        {
            return true;
        }

        if (needed > _context.Limits.InMemoryThreshold)
        {
            return false;
        }

        var capacity = (int)Math.Min(_context.Limits.InMemoryThreshold, Math.Max(needed, Math.Max(4096, (long)_memory.Length * 2)));
        var extra = capacity - _memory.Length;
        if (_session is not null && !_session.TryReserveMemory(extra))
        {
            return false;
        }

        _reserved += extra;
        Array.Resize(ref _memory, capacity);
        return true;
    }

    private void ReleaseMemory()
    {
        _session?.ReleaseMemory(_reserved);
        _reserved = 0;
        _memory = [];
        _length = 0;
    }

    /// <summary>Hands the bytes over as a content source that owns them (and the spill file, if any).</summary>
    public ContentSource Detach()
    {
        ContentSource result;
        if (_file is not null)
        {
            result = new SpillContentSource(_file, _fileLength);
            _file = null;
        }
        else
        {
            result = new BufferContentSource(_memory.AsMemory(0, _length), _session, _reserved);
            _reserved = 0;
            _memory = [];
        }

        return result;
    }

    public void Dispose()
    {
        ReleaseMemory();
        _file?.Dispose();
        _file = null;
    }
}

/// <summary>
/// A temporary file opened for read and write, removed when closed, readable by its owner only, and encrypted with
/// AES-256 in counter mode under a key that exists only in this process: inner objects of patient documents never
/// rest in clear on disk, even if the process dies before the file is removed.
/// </summary>
internal sealed class SpillFile : IDisposable
{
    private const int BlocksPerStep = 4096;

    private readonly FileStream _stream;
    private readonly Aes _aes;
    private readonly ulong _nonce;

    private SpillFile(FileStream stream, string path)
    {
        _stream = stream;
        Path = path;
        _aes = Aes.Create();
        _aes.KeySize = 256;
        _aes.GenerateKey();
        _nonce = BinaryPrimitives.ReadUInt64LittleEndian(RandomNumberGenerator.GetBytes(8));
    }

    public string Path { get; }

    public static SpillFile Create(string? directory)
    {
        var dir = string.IsNullOrEmpty(directory) ? System.IO.Path.GetTempPath() : directory;
        var path = System.IO.Path.Combine(dir, "vigie-spill-" + Guid.NewGuid().ToString("N"));
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,
            Options = FileOptions.DeleteOnClose | FileOptions.RandomAccess,
            BufferSize = 0,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        return new SpillFile(new FileStream(path, options), path);
    }

    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(data.Length, 1 << 20));
        try
        {
            for (var done = 0; done < data.Length;)
            {
                var count = Math.Min(buffer.Length, data.Length - done);
                data.Slice(done, count).CopyTo(buffer);
                Transform(buffer.AsSpan(0, count), offset + done);
                RandomAccess.Write(_stream.SafeFileHandle, buffer.AsSpan(0, count), offset + done);
                done += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, long offset, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(data.Length, 1 << 20));
        try
        {
            for (var done = 0; done < data.Length;)
            {
                var count = Math.Min(buffer.Length, data.Length - done);
                data.Slice(done, count).CopyTo(buffer);
                Transform(buffer.AsSpan(0, count), offset + done);
                await RandomAccess.WriteAsync(_stream.SafeFileHandle, buffer.AsMemory(0, count), offset + done, cancellationToken).ConfigureAwait(false);
                done += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public int Read(Span<byte> destination, long offset)
    {
        var total = 0;
        while (total < destination.Length)
        {
            var read = RandomAccess.Read(_stream.SafeFileHandle, destination[total..], offset + total);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        Transform(destination[..total], offset);
        return total;
    }

    /// <summary>XORs data at a file offset with the AES-CTR key stream (nonce, then the 16-byte block index).</summary>
    private void Transform(Span<byte> data, long offset)
    {
        var counters = ArrayPool<byte>.Shared.Rent(BlocksPerStep * 16);
        var stream = ArrayPool<byte>.Shared.Rent(BlocksPerStep * 16);
        try
        {
            var position = 0;
            while (position < data.Length)
            {
                var absolute = offset + position;
                var block = absolute / 16;
                var skip = (int)(absolute % 16);
                var blocks = (int)Math.Min(BlocksPerStep, (skip + data.Length - position + 15) / 16);
                for (var i = 0; i < blocks; i++)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(counters.AsSpan(i * 16), _nonce);
                    BinaryPrimitives.WriteInt64BigEndian(counters.AsSpan(i * 16 + 8), block + i);
                }

                _aes.EncryptEcb(counters.AsSpan(0, blocks * 16), stream.AsSpan(0, blocks * 16), PaddingMode.None);
                var count = Math.Min(blocks * 16 - skip, data.Length - position);
                var target = data.Slice(position, count);
                var key = stream.AsSpan(skip, count);
                for (var i = 0; i < count; i++)
                {
                    target[i] ^= key[i];
                }

                position += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(counters);
            ArrayPool<byte>.Shared.Return(stream);
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _aes.Dispose();
    }
}

internal sealed class SpillContentSource(SpillFile file, long length) : ContentSource
{
    public override long Length => length;

    public override int ReadAt(long offset, Span<byte> destination)
    {
        if (offset >= length)
        {
            return 0;
        }

        return file.Read(destination[..(int)Math.Min(destination.Length, length - offset)], offset);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            file.Dispose();
        }
    }
}

/// <summary>Extracted bytes in memory, whose reservation against the inspection's memory budget ends with it.</summary>
internal sealed class BufferContentSource(ReadOnlyMemory<byte> bytes, InspectionSession? session, long reserved) : ContentSource
{
    private long _reserved = reserved;

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

    protected override void Dispose(bool disposing)
    {
        var reserved = Interlocked.Exchange(ref _reserved, 0);
        if (reserved > 0)
        {
            session?.ReleaseMemory(reserved);
        }
    }
}
