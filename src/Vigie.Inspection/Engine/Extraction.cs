using System.Buffers;
using Microsoft.Win32.SafeHandles;

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
            await RandomAccess.WriteAsync(_file.Handle, _memory.AsMemory(0, _length), 0, cancellationToken).ConfigureAwait(false);
            _fileLength = _length;
            ReleaseMemory();
        }

        if (_file is not null)
        {
            await RandomAccess.WriteAsync(_file.Handle, data, _fileLength, cancellationToken).ConfigureAwait(false);
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
            RandomAccess.Write(_file.Handle, _memory.AsSpan(0, _length), 0);
            _fileLength = _length;
            ReleaseMemory();
        }

        if (_file is not null)
        {
            RandomAccess.Write(_file.Handle, data, _fileLength);
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

/// <summary>A temporary file opened for read and write, removed when closed (and unreadable by other users).</summary>
internal sealed class SpillFile : IDisposable
{
    private readonly FileStream _stream;

    private SpillFile(FileStream stream) => _stream = stream;

    public SafeFileHandle Handle => _stream.SafeFileHandle;

    public static SpillFile Create(string? directory)
    {
        var dir = string.IsNullOrEmpty(directory) ? Path.GetTempPath() : directory;
        var path = Path.Combine(dir, "vigie-spill-" + Guid.NewGuid().ToString("N"));
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

        return new SpillFile(new FileStream(path, options));
    }

    public void Dispose() => _stream.Dispose();
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

        var total = 0;
        var want = (int)Math.Min(destination.Length, length - offset);
        while (total < want)
        {
            var read = RandomAccess.Read(file.Handle, destination[total..want], offset + total);
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
