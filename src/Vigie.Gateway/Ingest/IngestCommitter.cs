using System.Collections.Concurrent;
using System.Data;
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
/// at the same moment share one database transaction and so one commit (whose sync SQLite stores defer): each object's
/// index rows and outbox events run inside a savepoint (a failure undoes only that object), then all their audit
/// records are appended in one go and the transaction commits. Leader and followers: whoever finds no commit running becomes the leader and commits,
/// on its own thread, one batch of what is queued; the others wait for it. What queued meanwhile is handed to the
/// thread pool, so no leader's own answer waits for later batches. A lone association therefore commits directly, with
/// no hand-off to another thread (each of which costs a wake-up, expensive on virtual machines). The rows of an object
/// are written while its file is still being synced, and the transaction commits once every file of the batch is;
/// objects queued meanwhile whose files are already durable join it before it commits.
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
    private static readonly Histogram<int> LateJoins = Meter.CreateHistogram<int>("vigie.gateway.commit.late_joins",
        description: "Objects that joined a transaction while it waited for its objects' sync, already durable themselves");
    private static readonly Counter<long> LogSyncs = Meter.CreateCounter<long>("vigie.gateway.commit.log_syncs", "{sync}",
        "Syncs of the database log after a deferred commit that must not wait for the next synced one");
    private static readonly Histogram<double> CommitDuration = Meter.CreateHistogram<double>("vigie.gateway.commit.flush", "ms",
        "The database commit of one transaction");

    private readonly IVigieDatabase _database;
    private readonly IAuditLog _audit;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<Pending> _queue = new();
    private int _leader;

    /// <summary>The leader's connection, kept across batches with its statements prepared; only the leader touches it.</summary>
    private DbConnection? _connection;

    /// <summary>Set once the current batch's COMMIT is sent: a failure after it may have committed, so it is never retried.</summary>
    private bool _commitSent;

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
    public Task<T> CommitAsync<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, Func<T, IReadOnlyList<AuditRecord>> audit,
        Task durable, CancellationToken cancellationToken) =>
        CommitAsync(write, audit, durable, CommitDurability.Synced, cancellationToken);

    /// <summary>
    /// As above; with <see cref="CommitDurability.Deferred"/> the commit may return before the database has synced it, for
    /// rows that can be rebuilt from the durable archive after a power cut (see <see cref="ArchiveRecovery"/>). A batch
    /// is deferred only when all its objects are.
    /// </summary>
    public async Task<T> CommitAsync<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, Func<T, IReadOnlyList<AuditRecord>> audit,
        Task durable, CommitDurability durability, CancellationToken cancellationToken)
    {
        var pending = new Pending<T>(write, audit, durable, durability);
        _queue.Enqueue(pending);

        // A follower fails to lead only while a leader holds the role; that leader checks the queue after letting go,
        // so an object queued at any moment is always committed by someone. A leader commits one batch on its own
        // thread, then hands what queued meanwhile to the thread pool: its own answer does not wait for the next batch.
        if (await TryLeadOneBatchAsync().ConfigureAwait(false) && !_queue.IsEmpty)
        {
            _ = Task.Run(LeadUntilEmptyAsync, CancellationToken.None);
        }

        return await pending.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Commits one batch if no one else leads; false if someone does.</summary>
    private async Task<bool> TryLeadOneBatchAsync()
    {
        if (Interlocked.CompareExchange(ref _leader, 1, 0) != 0)
        {
            return false;
        }

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

        return true;
    }

    private async Task LeadUntilEmptyAsync()
    {
        while (await TryLeadOneBatchAsync().ConfigureAwait(false) && !_queue.IsEmpty)
        {
        }
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
        var conflicts = 0;
        while (batch.Count > 0)
        {
            var connection = _connection;
            var kept = connection is not null;
            if (connection is null)
            {
                connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
                connection.KeepStatements();
                _connection = connection;
            }

            _commitSent = false;
            try
            {
                return await TryCommitAsync(batch, connection, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (!_commitSent && IsConflict(e) && ++conflicts <= MaxConflictRetries)
            {
                // Another node's transaction and this one waited on each other (PostgreSQL ended this one): nothing of
                // it was committed, so it runs again. Answering A700 would have failed a store that only lost a race.
                _logger.LogWarning("An ingest transaction of {Count} objects met another node's ({Reason}); running it again", batch.Count,
                    ((DbException)e).SqlState);
                batch.RemoveAll(p => p.IsAnswered);
            }
            catch (Exception e) when (kept && !_commitSent && connection.State != ConnectionState.Open && e is not OperationCanceledException)
            {
                // The kept connection died while idle (the database restarted, a failover, a network cut) and this batch
                // found out: nothing of it was committed, so it runs again once on a fresh connection. Without this, the
                // first stores after every outage were answered A700.
                _logger.LogWarning("The index connection was lost ({Reason}); retrying the batch on a new connection", e.GetType().Name);
                _connection = null;
                await connection.DisposeAsync().ConfigureAwait(false);
                // Objects already answered (a joiner whose own write failed) are not written behind their sender's back.
                batch.RemoveAll(p => p.IsAnswered);
            }
            catch
            {
                // A broken connection is not reused: the next batch opens a fresh one.
                _connection = null;
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        return [];
    }

    private async Task<List<Pending>> TryCommitAsync(List<Pending> batch, DbConnection connection, CancellationToken cancellationToken)
    {
        var written = new List<Pending>(batch.Count);
        var durability = batch.TrueForAll(p => p.Durability == CommitDurability.Deferred) ? CommitDurability.Deferred : CommitDurability.Synced;
        await using var transaction = await _database.BeginWriteAsync(connection, durability, cancellationToken).ConfigureAwait(false);
        var writing = Stopwatch.GetTimestamp();
        if (batch.Count == 1)
        {
            // A lone object needs no savepoint: if its write fails, the whole transaction is its own to roll back.
            try
            {
                await batch[0].RunAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
                written.Add(batch[0]);
            }
            catch (Exception e) when (e is not OperationCanceledException && !IsConflict(e))
            {
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                batch[0].Fail(e);
                return [];
            }
        }
        else
        {
            foreach (var pending in batch)
            {
                if (await TryWriteInSavepointAsync(pending, connection, transaction, cancellationToken).ConfigureAwait(false))
                {
                    written.Add(pending);
                }
            }
        }

        // On PostgreSQL the audit append (audit_state FOR UPDATE) comes after every index row, late joiners' included:
        // holding it while a late joiner waited on a row another node's transaction held, which in turn waited for
        // audit_state, was a deadlock. SQLite has one writer at a time, and overlaps the append with the sync wait.
        var auditFirst = _database.Provider != DatabaseProvider.Postgres;
        var records = written.SelectMany(p => p.Audit).ToList();
        if (auditFirst && records.Count > 0)
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

        // Late joiners: objects queued during the wait whose files are already durable ride this commit instead of
        // waiting for a whole transaction of their own (with several associations, most of them are).
        var joined = new List<Pending>();
        while (written.Count + joined.Count < MaxBatch && _queue.TryPeek(out var next) && next.Durable.IsCompletedSuccessfully
               && (durability == CommitDurability.Synced || next.Durability == CommitDurability.Deferred) && _queue.TryDequeue(out next))
        {
            // Taken off the queue, a joiner belongs to this batch from now on: if the transaction fails it fails with
            // the others (or runs again with them), instead of waiting for an answer nobody would give.
            batch.Add(next);
            if (await TryWriteInSavepointAsync(next, connection, transaction, cancellationToken).ConfigureAwait(false))
            {
                joined.Add(next);
            }
        }

        if (joined.Count > 0)
        {
            var late = joined.SelectMany(p => p.Audit).ToList();
            if (auditFirst && late.Count > 0)
            {
                await _audit.AppendAsync(late, connection, transaction, cancellationToken).ConfigureAwait(false);
            }

            records.AddRange(late);
            written.AddRange(joined);
            LateJoins.Record(joined.Count);
        }

        if (!auditFirst && records.Count > 0)
        {
            await _audit.AppendAsync(records, connection, transaction, cancellationToken).ConfigureAwait(false);
        }

        var committing = Stopwatch.GetTimestamp();
        SyncWait.Record(Stopwatch.GetElapsedTime(waiting, committing).TotalMilliseconds);
        _commitSent = true;
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        CommitDuration.Record(Stopwatch.GetElapsedTime(committing).TotalMilliseconds);
        _audit.NotifyCommitted(records.Count);
        foreach (var pending in written)
        {
            pending.Complete();
        }

        return [];
    }

    /// <summary>
    /// Makes every commit so far durable, deferred ones included: for the rare deferred commit that
    /// <see cref="ArchiveRecovery"/> could not rebuild after a power cut.
    /// </summary>
    public ValueTask SyncLogAsync(CancellationToken cancellationToken)
    {
        LogSyncs.Add(1);
        return _database.SyncAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _connection, null) is { } connection)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Writes one object inside a savepoint, so that its failure undoes only its own rows.</summary>
    private async ValueTask<bool> TryWriteInSavepointAsync(Pending pending, DbConnection connection, DbTransaction transaction,
        CancellationToken cancellationToken)
    {
        // Each savepoint is released before the next one is made, so one name serves them all (and one set of kept statements).
        await ExecuteAsync(connection, transaction, "SAVEPOINT ingest", cancellationToken).ConfigureAwait(false);
        try
        {
            await pending.RunAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
            await ExecuteAsync(connection, transaction, "RELEASE SAVEPOINT ingest", cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException && !IsConflict(e))
        {
            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT ingest", cancellationToken).ConfigureAwait(false);
            await ExecuteAsync(connection, transaction, "RELEASE SAVEPOINT ingest", cancellationToken).ConfigureAwait(false);
            pending.Fail(e);
            return false;
        }
    }

    private const int MaxConflictRetries = 5;

    /// <summary>A deadlock or serialization failure: the database ended the transaction; it may run again as it was.</summary>
    private static bool IsConflict(Exception e) => e is DbException { SqlState: "40P01" or "40001" };

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.Statement(transaction, sql);
        await command.Command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private abstract class Pending(Task durable, CommitDurability durability)
    {
        public Task Durable { get; } = durable;

        public CommitDurability Durability { get; } = durability;

        /// <summary>The audit records of this object, known once <see cref="RunAsync"/> has run.</summary>
        public abstract IReadOnlyList<AuditRecord> Audit { get; }

        public abstract ValueTask RunAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken);

        public abstract void Complete();

        public abstract void Fail(Exception exception);

        /// <summary>Completed or failed: its caller has its answer.</summary>
        public abstract bool IsAnswered { get; }
    }

    private sealed class Pending<T>(Func<DbConnection, DbTransaction, CancellationToken, ValueTask<T>> write, Func<T, IReadOnlyList<AuditRecord>> audit,
        Task durable, CommitDurability durability) : Pending(durable, durability)
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

        public override bool IsAnswered => _completion.Task.IsCompleted;
    }
}
