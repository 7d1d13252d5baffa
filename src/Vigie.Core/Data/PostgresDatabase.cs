using System.Data;
using System.Data.Common;
using Npgsql;

namespace Vigie.Core.Data;

/// <summary>A shared PostgreSQL index: several Vigie nodes may point at the same database.</summary>
public sealed class PostgresDatabase : IVigieDatabase, IAsyncDisposable, IDisposable
{
    private readonly NpgsqlDataSource _dataSource;

    public PostgresDatabase(string connectionString)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionString);
        _dataSource = NpgsqlDataSource.Create(connectionString);
    }

    public DatabaseProvider Provider => DatabaseProvider.Postgres;

    public async ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) =>
        await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);

    public async ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);

    /// <summary>PostgreSQL commits every transaction synchronously: its own group commit already shares the flushes.</summary>
    public ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CommitDurability durability, CancellationToken cancellationToken) =>
        BeginWriteAsync(connection, cancellationToken);

    public ValueTask SyncAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    public void Dispose() => _dataSource.Dispose();
}
