using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics;
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
/// hand-off to another thread (each of which costs a wake-up, expensive on virtual machines). The rows of an object
/// are written while its file is still being synced, and the transaction commits once every file of the batch is.
/// </summary>
public sealed class IngestCommitter : IAsyncDisposable
{
    private const int MaxBatch = 128;

    private static readonly Meter Meter = new("Vigie.Gateway.Commit");
    private static readonly Histogram<int> BatchSize = Meter.CreateHistogram<int>("vigie.gateway.commit.batch", description: "Objects per index transaction");

    // Where an index transaction's time goes: its writes (index rows, outbox, audit), the wait for the objects' sync
    // that runs meanwhile, and the commit (the database's own flush). A slow disk shows in the last two.
    private static readonly Histogram<double> WriteDuration = Meter.CreateHistogram<double>("vigie.gateway.commit.write", "ms",
        "Index rows, outbox events and audit entries of one transaction");
    private static readonly Histogram<double> SyncWait = Meter.CreateHistogram<double>("vigie.gateway.commit.sync_wait", "ms",
        "Wait, after the writes, for the transaction's objects to be durable");
    private static readonly Histogram<double> CommitDuration = Meter.CreateHistogram<double>("vigie.gateway.commit.flush", "ms",
        "The database commit of one transaction");

    private readonly IVigieDatabase _database;
    private readonly IAuditLog _audit;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<Pending> _queue = new();
    private int _leader;

    /// <summary>The leader's connection, kept across batches with its statements prepared; only the leader touches it.</summary>
    private DbConnection? _connection;

    public IngestCommitter(IVigieDatabase database, IAuditLog audit, ILogger<IngestCommitter> logger)
    {
        _database = database;
        _audit = audit;
        _logger = logger;
    }

    /// <summary>Runs <paramref name="write"/> in the next shared transaction with <paramref name="audit"/>; completes once committed.</summary>
    public Task<T> CommitAsync<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, IReadOnlyList<AuditRecord> audit,
        CancellationToken cancellationToken) =>
        CommitAsync(write, _ => audit, Task.CompletedTask, cancellationToken);

    /// <summary>
    /// Runs <paramref name="write"/> in the next shared transaction, with the audit records its result calls for, and
    /// commits only once <paramref name="durable"/> has completed: the rows are written while the object is still being
    /// synced, but never made visible before it is on disk. If <paramref name="durable"/> fails, nothing of this object
    /// is committed and the others of the batch are committed without it.
    /// </summary>
    public async Task<T> CommitAsync<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, Func<T, IReadOnlyList<AuditRecord>> audit,
        Task durable, CancellationToken cancellationToken)
    {
        var pending = new Pending<T>(write, audit, durable);
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
        try
        {
            // Usually one round. An object whose sync failed is dropped and the round retried without it.
            while (batch.Count > 0)
            {
                batch = await TryCommitAsync(batch, cancellationToken).ConfigureAwait(false);
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

    /// <summary>One transaction over the batch. Returns the objects to retry: empty once committed.</summary>
    private async Task<List<Pending>> TryCommitAsync(List<Pending> batch, CancellationToken cancellationToken)
    {
        var connection = _connection;
        if (connection is null)
        {
            connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            connection.KeepStatements();
            _connection = connection;
        }

        try
        {
            return await TryCommitAsync(batch, connection, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            // A broken connection is not reused: the next batch opens a fresh one.
            _connection = null;
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task<List<Pending>> TryCommitAsync(List<Pending> batch, DbConnection connection, CancellationToken cancellationToken)
    {
        var written = new List<Pending>(batch.Count);
        await using var transaction = await _database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        var writing = Stopwatch.GetTimestamp();
        if (batch.Count == 1)
        {
            // A lone object needs no savepoint: if its write fails, the whole transaction is its own to roll back.
            try
            {
                await batch[0].RunAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                written.Add(batch[0]);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                batch[0].Fail(e);
                return [];
            }
        }
        else
        {
            for (var i = 0; i < batch.Count; i++)
            {
                var savepoint = $"ingest_{i}";
                await ExecuteAsync(connection, transaction, $"SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                try
                {
                    await batch[i].RunAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                    await ExecuteAsync(connection, transaction, $"RELEASE SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    written.Add(batch[i]);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    await ExecuteAsync(connection, transaction, $"ROLLBACK TO SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    await ExecuteAsync(connection, transaction, $"RELEASE SAVEPOINT {savepoint}", cancellationToken).ConfigureAwait(false);
                    batch[i].Fail(e);
                }
            }
        }

        var records = written.SelectMany(p => p.Audit).ToList();
        if (records.Count > 0)
        {
            await _audit.AppendAsync(records, connection, transaction, cancellationToken).ConfigureAwait(false);
        }

        var waiting = Stopwatch.GetTimestamp();
        WriteDuration.Record(Stopwatch.GetElapsedTime(writing, waiting).TotalMilliseconds);
        // Nothing becomes visible before its object is on disk.
        var unsynced = new List<Pending>();
        foreach (var pending in written)
        {
            try
            {
                await pending.Durable.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                pending.Fail(e);
                unsynced.Add(pending);
            }
        }

        if (unsynced.Count > 0)
        {
            await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            return written.Except(unsynced).ToList();
        }

        var committing = Stopwatch.GetTimestamp();
        SyncWait.Record(Stopwatch.GetElapsedTime(waiting, committing).TotalMilliseconds);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        CommitDuration.Record(Stopwatch.GetElapsedTime(committing).TotalMilliseconds);
        _audit.NotifyCommitted(records.Count);
        foreach (var pending in written)
        {
            pending.Complete();
        }

        return [];
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _connection, null) is { } connection)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.Statement(transaction, sql);
        await command.Command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private abstract class Pending(Task durable)
    {
        public Task Durable { get; } = durable;

        /// <summary>The audit records of this object, known once <see cref="RunAsync"/> has run.</summary>
        public abstract IReadOnlyList<AuditRecord> Audit { get; }

        public abstract ValueTask RunAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken);

        public abstract void Complete();

        public abstract void Fail(Exception exception);
    }

    private sealed class Pending<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, Func<T, IReadOnlyList<AuditRecord>> audit,
        Task durable) : Pending(durable)
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private IReadOnlyList<AuditRecord> _audit = [];

        public Task<T> Task => _completion.Task;

        public override IReadOnlyList<AuditRecord> Audit => _audit;

        public override async ValueTask RunAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
        {
            _result = await write(connection, transaction, cancellationToken).ConfigureAwait(false);
            _audit = audit(_result);
        }

        public override void Complete() => _completion.TrySetResult(_result!);

        public override void Fail(Exception exception) => _completion.TrySetException(exception);
    }
}
