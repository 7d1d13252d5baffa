using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Data;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// Group commit for the ingest path. Concurrent objects (several associations, an asynchronous window) that are ready
/// at the same moment share one database transaction and so one fsync of the log: each object's index rows and outbox
/// events run inside a savepoint (a failure undoes only that object), then all their audit records are appended in one
/// go and the transaction commits. Leader and followers: whoever finds no commit running becomes the leader and commits,
/// on its own thread, everything queued; the others wait for it. A lone association therefore commits directly, with no
/// hand-off to another thread (each of which costs a wake-up, expensive on virtual machines).
/// </summary>
public sealed class IngestCommitter
{
    private const int MaxBatch = 128;

    private static readonly Meter Meter = new("Vigie.Gateway.Commit");
    private static readonly Histogram<int> BatchSize = Meter.CreateHistogram<int>("vigie.gateway.commit.batch", description: "Objects per index transaction");

    private readonly IVigieDatabase _database;
    private readonly IAuditLog _audit;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<Pending> _queue = new();
    private int _leader;

    public IngestCommitter(IVigieDatabase database, IAuditLog audit, ILogger<IngestCommitter> logger)
    {
        _database = database;
        _audit = audit;
        _logger = logger;
    }

    /// <summary>Runs <paramref name="write"/> in the next shared transaction with <paramref name="audit"/>; completes once committed.</summary>
    public async Task<T> CommitAsync<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, IReadOnlyList<AuditRecord> audit,
        CancellationToken cancellationToken)
    {
        var pending = new Pending<T>(write, audit);
        _queue.Enqueue(pending);

        // A follower fails to lead only while a leader holds the role; that leader checks the queue after letting go,
        // so an object queued at any moment is always committed by someone.
        while (Interlocked.CompareExchange(ref _leader, 1, 0) == 0)
        {
            try
            {
                var batch = new List<Pending>(MaxBatch);
                while (batch.Count < MaxBatch && _queue.TryDequeue(out var next))
                {
                    batch.Add(next);
                }

                if (batch.Count > 0)
                {
                    // A commit already begun finishes even if its leader's caller gave up: followers depend on it.
                    await CommitBatchAsync(batch, CancellationToken.None).ConfigureAwait(false);
                }
            }
            finally
            {
                Volatile.Write(ref _leader, 0);
            }

            if (_queue.IsEmpty)
            {
                break;
            }
        }

        return await pending.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task CommitBatchAsync(List<Pending> batch, CancellationToken cancellationToken)
    {
        BatchSize.Record(batch.Count);
        var committed = new List<Pending>(batch.Count);
        try
        {
            await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < batch.Count; i++)
            {
                var savepoint = $"ingest_{i}";
                await ExecuteAsync(connection, transaction, $"SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                try
                {
                    await batch[i].RunAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                    await ExecuteAsync(connection, transaction, $"RELEASE SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    committed.Add(batch[i]);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    await ExecuteAsync(connection, transaction, $"ROLLBACK TO SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    await ExecuteAsync(connection, transaction, $"RELEASE SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    batch[i].Fail(e);
                }
            }

            var records = committed.SelectMany(p => p.Audit).ToList();
            if (records.Count > 0)
            {
                await _audit.AppendAsync(records, connection, transaction, cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            _audit.NotifyCommitted(records.Count);
            foreach (var pending in committed)
            {
                pending.Complete();
            }
        }
        catch (Exception e)
        {
            _logger.LogError(e, "An ingest transaction of {Count} objects failed", batch.Count);
            foreach (var pending in batch)
            {
                pending.Fail(e);
            }
        }
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand(transaction, sql);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private abstract class Pending(IReadOnlyList<AuditRecord> audit)
    {
        public IReadOnlyList<AuditRecord> Audit { get; } = audit;

        public abstract ValueTask RunAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken);

        public abstract void Complete();

        public abstract void Fail(Exception exception);
    }

    private sealed class Pending<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, IReadOnlyList<AuditRecord> audit) : Pending(audit)
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public Task<T> Task => _completion.Task;

        public override async ValueTask RunAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken) =>
            _result = await write(connection, transaction, cancellationToken).ConfigureAwait(false);

        public override void Complete() => _completion.TrySetResult(_result!);

        public override void Fail(Exception exception) => _completion.TrySetException(exception);
    }
}
