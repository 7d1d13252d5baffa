using System.Buffers;
using Vigie.Archive.Storage;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// One object being received: bytes go straight into the encrypted spool, and (up to the in-memory limit, and while the
/// node's inspection memory allows) into a pooled plaintext copy that inspection reads, so the spool is never decrypted
/// back on the hot path.
/// </summary>
public sealed class IngestSession : IAsyncDisposable
{
    private readonly IngestPipeline _pipeline;
    private readonly SpoolWriter _spool;
    private readonly IngestSource _source;
    private byte[]? _plain;
    private int _plainLength;

    internal IngestSession(IngestPipeline pipeline, SpoolWriter spool, IngestSource source)
    {
        _pipeline = pipeline;
        _spool = spool;
        _source = source;
        _plain = RentCopy(InitialCopy);
        if (_plain is null)
        {
            CountReadBack("memory");
        }
    }

    private const int InitialCopy = 1024 * 1024;

    public long Length => _spool.Length;

    /// <summary>The patient reference and the study and patient objects of an object whose store failed once its header was read.</summary>
    internal (string? PatientRef, List<Vigie.Audit.Model.AuditObject> Objects) About { get; private set; } = (null, []);

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await _spool.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        if (_plain is null)
        {
            return;
        }

        var needed = (long)_plainLength + data.Length;
        if (needed > _pipeline.InMemoryLimit)
        {
            // Too large to keep: inspection will read it back from the spool by ranges.
            ReturnPlain();
            CountReadBack("size");
            return;
        }

        if (needed > _plain.Length)
        {
            // The old copy is released only once the new one holds it, so both count while it moves.
            if (RentCopy((int)Math.Min(_pipeline.InMemoryLimit, Math.Max(needed, (long)_plain.Length * 2))) is not { } bigger)
            {
                ReturnPlain();
                CountReadBack("memory");
                return;
            }

            _plain.AsSpan(0, _plainLength).CopyTo(bigger);
            ReturnCleared(_plain, _plainLength);
            _pipeline.Memory.Release(_plain.Length);
            _plain = bigger;
        }

        data.Span.CopyTo(_plain.AsSpan(_plainLength));
        _plainLength += data.Length;
    }

    /// <summary>Inspects and stores or quarantines; <paramref name="expectedSopInstanceUid"/> is the one the C-STORE command announced.</summary>
    public async Task<IngestResult> CompleteAsync(string? expectedSopInstanceUid, CancellationToken cancellationToken)
    {
        Vigie.Dicom.DicomDataset? read = null;
        try
        {
            // Not "_plain is null ? null : ...": that null converts through byte[] to an empty Memory, which is not null, and
            // every object past the in-memory limit was inspected and read as 0 bytes (refused C000 "too short").
            ReadOnlyMemory<byte>? plaintext = null;
            if (_plain is not null)
            {
                plaintext = _plain.AsMemory(0, _plainLength);
            }

            return await _pipeline.CompleteAsync(_spool, _source, expectedSopInstanceUid, plaintext, cancellationToken, dataset => read = dataset)
                .ConfigureAwait(false);
        }
        catch when (read is not null)
        {
            // The header was read before the store failed (the index commit, most often): its audit entry names the
            // patient and study, computed only now that they are needed.
            About = _pipeline.About(read);
            throw;
        }
        finally
        {
            ReturnPlain();
        }
    }

    /// <summary>Abandons an object that never completed: nothing stays on disk.</summary>
    public async ValueTask DisposeAsync()
    {
        ReturnPlain();
        await _spool.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>A pooled buffer of at least <paramref name="size"/> bytes, counted in the node's inspection memory; null past it.</summary>
    private byte[]? RentCopy(int size)
    {
        if (!_pipeline.Memory.TryReserve(size))
        {
            return null;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(size);
        _pipeline.Memory.Add(buffer.Length - size);
        return buffer;
    }

    private static void CountReadBack(string reason) => IngestPipeline.ReadBack.Add(1, new KeyValuePair<string, object?>("reason", reason));

    private void ReturnPlain()
    {
        if (_plain is { } plain)
        {
            _plain = null;
            ReturnCleared(plain, _plainLength);
            _pipeline.Memory.Release(plain.Length);
        }
    }

    /// <summary>
    /// Health data does not linger in the shared pool. Only the bytes written are cleared: the rest of a pooled buffer
    /// holds nothing of this object (and clearing all of it cost a 1 MiB memset per object).
    /// </summary>
    private static void ReturnCleared(byte[] buffer, int written)
    {
        buffer.AsSpan(0, written).Clear();
        ArrayPool<byte>.Shared.Return(buffer);
    }
}
