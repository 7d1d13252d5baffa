using System.Data.Common;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Core.Tests;

/// <summary>
/// Regression: with four associations storing at once, every association sometimes stalled for one to two seconds.
/// Writers waiting for SQLite's write lock slept inside sqlite3_step on thread-pool threads, and the lock holder
/// (an ingest transaction waiting for its object's sync) had no thread left to finish on. Writers now queue on an
/// in-process gate that holds no thread.
/// </summary>
public sealed class SqliteWriteGateTests
{
    private static async Task<(TempDirectory Dir, SqliteDatabase Database)> CreateAsync(TimeSpan busyTimeout)
    {
        var dir = new TempDirectory("vigie-gate");
        var database = new SqliteDatabase(dir.Combine("index.db"), busyTimeout);
        await using var connection = await database.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var command = connection.CreateCommand(null, "CREATE TABLE t (x INTEGER NOT NULL)");
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        return (dir, database);
    }

    private static async Task InsertAsync(DbConnection connection, DbTransaction transaction, int x)
    {
        await using var command = connection.CreateCommand(transaction, "INSERT INTO t (x) VALUES (@x)").With("@x", x);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>A begin that the gate should grant at once: bounded, so a gate never given back fails the test instead of hanging it.</summary>
    private static Task<DbTransaction> Soon(ValueTask<DbTransaction> begin) =>
        begin.AsTask().WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

    private static async Task<long> CountAsync(SqliteDatabase database)
    {
        await using var connection = await database.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var command = connection.CreateCommand(null, "SELECT count(*) FROM t");
        return (long)(await command.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
    }

    [Fact]
    public async Task Writers_waiting_for_the_write_lock_stalled_every_association_because_they_slept_on_pool_threads()
    {
        var ct = TestContext.Current.CancellationToken;
        var (dir, database) = await CreateAsync(TimeSpan.FromSeconds(5));
        using var _ = dir;
        await using var first = await database.OpenConnectionAsync(ct);
        await using var second = await database.OpenConnectionAsync(ct);

        var holder = await database.BeginWriteAsync(first, ct);
        await InsertAsync(first, holder, 1);

        // Before the fix this call slept in SQLite's busy handler on the calling thread until the holder committed
        // (here: never, as the holder commits on this same thread afterwards) and failed after the busy timeout.
        var waiting = database.BeginWriteAsync(second, ct);
        Assert.False(waiting.IsCompleted);

        await holder.CommitAsync(ct);
        await using var next = await Soon(waiting);
        await InsertAsync(second, next, 2);
        await next.CommitAsync(ct);
        await holder.DisposeAsync();

        Assert.Equal(2, await CountAsync(database));
    }

    [Fact]
    public async Task The_gate_is_given_back_on_rollback_and_on_dispose_without_commit()
    {
        var ct = TestContext.Current.CancellationToken;
        var (dir, database) = await CreateAsync(TimeSpan.FromSeconds(5));
        using var _ = dir;
        await using var connection = await database.OpenConnectionAsync(ct);

        var rolledBack = await database.BeginWriteAsync(connection, ct);
        await InsertAsync(connection, rolledBack, 1);
        await rolledBack.RollbackAsync(ct);
        await rolledBack.DisposeAsync();

        await using (var abandoned = await Soon(database.BeginWriteAsync(connection, ct)))
        {
            await InsertAsync(connection, abandoned, 2);
        }

        await using (var committed = await Soon(database.BeginWriteAsync(connection, ct)))
        {
            await InsertAsync(connection, committed, 3);
            await committed.CommitAsync(ct);
        }

        Assert.Equal(1, await CountAsync(database));
    }

    [Fact]
    public async Task A_writer_held_past_the_busy_timeout_makes_the_next_one_fail_with_a_reason_not_hang()
    {
        var ct = TestContext.Current.CancellationToken;
        var (dir, database) = await CreateAsync(TimeSpan.FromMilliseconds(200));
        using var _ = dir;
        await using var first = await database.OpenConnectionAsync(ct);
        await using var second = await database.OpenConnectionAsync(ct);
        await using var holder = await database.BeginWriteAsync(first, ct);

        var e = await Assert.ThrowsAsync<TimeoutException>(() => database.BeginWriteAsync(second, ct).AsTask());
        Assert.Contains("Database:BusyTimeout", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Many_writers_that_await_inside_their_transaction_all_commit()
    {
        var ct = TestContext.Current.CancellationToken;
        var (dir, database) = await CreateAsync(TimeSpan.FromSeconds(30));
        using var _ = dir;

        var writers = Enumerable.Range(0, 32).Select(i => Task.Run(async () =>
        {
            await using var connection = await database.OpenConnectionAsync(ct);
            await using var transaction = await database.BeginWriteAsync(connection, ct);
            await InsertAsync(connection, transaction, i);
            // As an ingest transaction does while its object is synced: the holder needs a pool thread to go on.
            await Task.Delay(2, ct);
            await transaction.CommitAsync(ct);
        }, ct));
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60), ct);

        Assert.Equal(32, await CountAsync(database));
    }
}
