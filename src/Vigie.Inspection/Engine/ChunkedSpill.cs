using System.Buffers;

namespace Vigie.Inspection.Engine;

/// <summary>
/// Bytes written once, in order, then read by ranges (the inflated data set of a deflated DICOM object). They are kept in
/// pooled 64 KiB chunks, under the large-object heap's threshold, each reserved against the inspection's memory budget
/// and so the node's; once a reservation fails or the in-memory threshold is passed, they move to an encrypted temporary
/// file. One array of the whole size was never made: 64 such objects inflating to 31 MiB each left the node with 2 GB of
/// fragmented large-object heap until 2026-12-07.
/// </summary>
internal sealed class ChunkedSpill : Stream
{
    internal const int ChunkSize = 64 * 1024;

    private readonly InspectionContext _context;
    private readonly InspectionSession? _session;
    private List<byte[]> _chunks = [];
    private long _reserved;
    private long _length;
    private SpillFile? _file;

    public ChunkedSpill(InspectionContext context)
    {
        _context = context;
        _session = (context as EngineContext)?.Session;
    }

    /// <summary>Whether the bytes went to a temporary file.</summary>
    public bool Spilled => _file is not null;

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => _length;

    public override long Position { get => _length; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_file is null && !TryKeep(buffer))
        {
            MoveToFile();
        }

        if (_file is not null)
        {
            _file.Write(buffer, _length);
            _length += buffer.Length;
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_file is null && !TryKeep(buffer.Span))
        {
            await MoveToFileAsync(cancellationToken).ConfigureAwait(false);
        }

        if (_file is not null)
        {
            await _file.WriteAsync(buffer, _length, cancellationToken).ConfigureAwait(false);
            _length += buffer.Length;
        }
    }

    /// <summary>Copies the bytes into chunks; false, having copied nothing, when memory for them cannot be had.</summary>
    private bool TryKeep(ReadOnlySpan<byte> data)
    {
        var capacity = (long)_chunks.Count * ChunkSize;
        var needed = _length + data.Length;
        if (needed > capacity)
        {
            if (needed > _context.Limits.InMemoryThreshold)
            {
                return false;
            }

            var more = (int)((needed - capacity + ChunkSize - 1) / ChunkSize);
            var bytes = (long)more * ChunkSize;
            if (_session is not null && !_session.TryReserveMemory(bytes))
            {
                return false;
            }

            _reserved += bytes;
            for (var i = 0; i < more; i++)
            {
                _chunks.Add(ArrayPool<byte>.Shared.Rent(ChunkSize));
            }
        }

        while (!data.IsEmpty)
        {
            var at = (int)(_length % ChunkSize);
            var n = Math.Min(ChunkSize - at, data.Length);
            data[..n].CopyTo(_chunks[(int)(_length / ChunkSize)].AsSpan(at));
            _length += n;
            data = data[n..];
        }

        return true;
    }

    private void MoveToFile()
    {
        _file = SpillFile.Create(_context.Limits.SpillDirectory);
        for (var i = 0; i < _chunks.Count && (long)i * ChunkSize < _length; i++)
        {
            _file.Write(_chunks[i].AsSpan(0, (int)Math.Min(ChunkSize, _length - (long)i * ChunkSize)), (long)i * ChunkSize);
        }

        ReleaseChunks();
    }

    private async ValueTask MoveToFileAsync(CancellationToken cancellationToken)
    {
        _file = SpillFile.Create(_context.Limits.SpillDirectory);
        for (var i = 0; i < _chunks.Count && (long)i * ChunkSize < _length; i++)
        {
            await _file.WriteAsync(_chunks[i].AsMemory(0, (int)Math.Min(ChunkSize, _length - (long)i * ChunkSize)), (long)i * ChunkSize, cancellationToken)
                .ConfigureAwait(false);
        }

        ReleaseChunks();
    }

    private void ReleaseChunks()
    {
        ChunkedContentSource.Return(_chunks, _length);
        _chunks = [];
        _session?.ReleaseMemory(_reserved);
        _reserved = 0;
    }

    /// <summary>Hands the bytes over as a content source that owns them (the chunks and their reservation, or the file).</summary>
    public ContentSource Detach()
    {
        ContentSource result;
        if (_file is not null)
        {
            result = new SpillContentSource(_file, _length);
            _file = null;
        }
        else
        {
            result = new ChunkedContentSource(_chunks, _length, _session, _reserved);
            _chunks = [];
            _reserved = 0;
        }

        _length = 0;
        return result;
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            ReleaseChunks();
            _file?.Dispose();
            _file = null;
        }

        base.Dispose(disposing);
    }
}

/// <summary>Bytes in pooled chunks of <see cref="ChunkedSpill.ChunkSize"/>, whose memory reservation ends with them.</summary>
internal sealed class ChunkedContentSource(List<byte[]> chunks, long length, InspectionSession? session, long reserved) : ContentSource
{
    private List<byte[]>? _chunks = chunks;
    private long _reserved = reserved;

    public override long Length => length;

    public override int ReadAt(long offset, Span<byte> destination)
    {
        var chunks = _chunks ?? throw new ObjectDisposedException(nameof(ChunkedContentSource));
        var total = 0;
        while (total < destination.Length && offset + total < length)
        {
            var at = offset + total;
            var within = (int)(at % ChunkedSpill.ChunkSize);
            var n = (int)Math.Min(Math.Min(ChunkedSpill.ChunkSize - within, destination.Length - total), length - at);
            chunks[(int)(at / ChunkedSpill.ChunkSize)].AsSpan(within, n).CopyTo(destination[total..]);
            total += n;
        }

        return total;
    }

    /// <summary>Health data does not linger in the shared pool: the bytes written are cleared first.</summary>
    internal static void Return(List<byte[]> chunks, long length)
    {
        for (var i = 0; i < chunks.Count; i++)
        {
            var used = (int)Math.Clamp(length - (long)i * ChunkedSpill.ChunkSize, 0, ChunkedSpill.ChunkSize);
            chunks[i].AsSpan(0, used).Clear();
            ArrayPool<byte>.Shared.Return(chunks[i]);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _chunks, null) is { } chunks)
        {
            Return(chunks, length);
        }

        var reserved = Interlocked.Exchange(ref _reserved, 0);
        if (reserved > 0)
        {
            session?.ReleaseMemory(reserved);
        }
    }
}
