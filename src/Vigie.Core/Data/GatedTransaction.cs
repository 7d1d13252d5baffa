using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;

namespace Vigie.Core.Data;

/// <summary>
/// One in-process gate per SQLite file, taken before BEGIN IMMEDIATE and given back when the transaction ends.
/// SQLite lets one writer in at a time and makes the others wait inside sqlite3_step, sleeping on the calling thread.
/// Those threads are thread-pool threads: with a few writers waiting, the pool had none left to run the continuation
/// that would let the lock holder finish (an ingest transaction waits for its object's sync while holding the
/// lock), and every association stalled for one to two seconds until the pool grew. Waiting here costs no thread.
/// </summary>
internal static class SqliteWriteGates
{
    private static readonly ConcurrentDictionary<string, SemaphoreSlim> Gates = new(StringComparer.Ordinal);

    public static SemaphoreSlim For(string path) => Gates.GetOrAdd(path, static _ => new SemaphoreSlim(1, 1));
}

/// <summary>
/// A write transaction that holds its file's <see cref="SqliteWriteGates">gate</see> until it commits, rolls back or
/// is disposed. Commands get the provider's own transaction through <see cref="DbCommandExtensions.CreateCommand"/>.
/// </summary>
internal sealed class GatedTransaction(DbTransaction inner, SemaphoreSlim gate) : DbTransaction
{
    private int _released;

    public DbTransaction Inner => inner;

    public override IsolationLevel IsolationLevel => inner.IsolationLevel;

    public override bool SupportsSavepoints => inner.SupportsSavepoints;

    protected override DbConnection? DbConnection => inner.Connection;

    public override void Commit()
    {
        try
        {
            inner.Commit();
        }
        finally
        {
            ReleaseGate();
        }
    }

    public override async Task CommitAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await inner.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ReleaseGate();
        }
    }

    public override void Rollback()
    {
        try
        {
            inner.Rollback();
        }
        finally
        {
            ReleaseGate();
        }
    }

    public override async Task RollbackAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await inner.RollbackAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ReleaseGate();
        }
    }

    public override void Save(string savepointName) => inner.Save(savepointName);

    public override void Rollback(string savepointName) => inner.Rollback(savepointName);

    public override void Release(string savepointName) => inner.Release(savepointName);

    public override async ValueTask DisposeAsync()
    {
        try
        {
            await inner.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            ReleaseGate();
        }

        Dispose(false);
        GC.SuppressFinalize(this);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                inner.Dispose();
            }
            finally
            {
                ReleaseGate();
            }
        }

        base.Dispose(disposing);
    }

    private void ReleaseGate()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            gate.Release();
        }
    }
}
