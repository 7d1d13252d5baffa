using Vigie.Archive.Storage;

namespace Vigie.Gateway.Ingest;

/// <summary>One object being received: bytes go straight into the encrypted spool; completion inspects and decides.</summary>
public sealed class IngestSession : IAsyncDisposable
{
    private readonly IngestPipeline _pipeline;
    private readonly SpoolWriter _spool;
    private readonly IngestSource _source;

    internal IngestSession(IngestPipeline pipeline, SpoolWriter spool, IngestSource source)
    {
        _pipeline = pipeline;
        _spool = spool;
        _source = source;
    }

    public long Length => _spool.Length;

    public ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => _spool.WriteAsync(data, cancellationToken);

    /// <summary>Inspects and stores or quarantines; <paramref name="expectedSopInstanceUid"/> is the one the C-STORE command announced.</summary>
    public Task<IngestResult> CompleteAsync(string? expectedSopInstanceUid, CancellationToken cancellationToken)
    {
        return _pipeline.CompleteAsync(_spool, _source, expectedSopInstanceUid, cancellationToken);
    }

    /// <summary>Abandons an object that never completed: nothing stays on disk.</summary>
    public ValueTask DisposeAsync() => _spool.DisposeAsync();
}
