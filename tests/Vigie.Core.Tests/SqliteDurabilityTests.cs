using System.Data.Common;
using Microsoft.Data.Sqlite;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Core.Tests;

/// <summary>
/// Deferred commits (the ingest index, rebuilt from the archive after a power cut) skip the log's sync; every other
/// write, and every statement on a connection a deferred writer gave back, is synced as before.
/// </summary>
public sealed class SqliteDurabilityTests
{
    [Fact]
    public async Task A_deferred_transaction_skips_the_sync_and_the_connection_is_synced_again_for_everyone_else()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory("vigie-durability");
        var database = new SqliteDatabase(dir.Combine("index.db"), TimeSpan.FromSeconds(5));
        await using (var connection = await database.OpenConnectionAsync(ct))
        {
            await using var create = connection.CreateCommand(null, "CREATE TABLE t (x INTEGER NOT NULL)");
            await create.ExecuteNonQueryAsync(ct);
            Assert.Equal(2, await SynchronousAsync(connection, null));

            await using (var deferred = await database.BeginWriteAsync(connection, CommitDurability.Deferred, ct))
            {
                Assert.Equal(1, await SynchronousAsync(connection, deferred));
                await using var insert = connection.CreateCommand(deferred, "INSERT INTO t (x) VALUES (1)");
                await insert.ExecuteNonQueryAsync(ct);
                await deferred.CommitAsync(ct);
            }

            await using (var synced = await database.BeginWriteAsync(connection, ct))
            {
                Assert.Equal(2, await SynchronousAsync(connection, synced));
                await synced.CommitAsync(ct);
            }

            await using (var deferred = await database.BeginWriteAsync(connection, CommitDurability.Deferred, ct))
            {
                await deferred.CommitAsync(ct);
            }
        }

        // The pool hands the same handle back: it is synced again before anyone else writes on it.
        await using (var connection = await database.OpenConnectionAsync(ct))
        {
            Assert.Equal(2, await SynchronousAsync(connection, null));
        }

        await database.SyncAsync(ct);

        // The last connection to close checkpoints and removes the log; with none, there is nothing left to sync.
        SqliteConnection.ClearAllPools();
        Assert.False(File.Exists(dir.Combine("index.db-wal")));
        await database.SyncAsync(ct);
    }

    private static async Task<long> SynchronousAsync(DbConnection connection, DbTransaction? transaction)
    {
        await using var command = connection.CreateCommand(transaction, "PRAGMA synchronous");
        return (long)(await command.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
    }
}
