using System.Data;
using System.Data.Common;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace Vigie.Core.Data;

/// <summary>
/// The embedded default. WAL with synchronous=FULL: a committed transaction survives a power cut, which is
/// what lets the gateway acknowledge a C-STORE only after its commit.
/// </summary>
public sealed class SqliteDatabase : IVigieDatabase
{
    private static readonly ConditionalWeakTable<SQLitePCL.sqlite3, object> Configured = new();
    private static readonly object Marker = new();

    private readonly string _connectionString;
    private readonly int _busyTimeoutMs;
    private readonly SemaphoreSlim _writeGate;

    public SqliteDatabase(string path, TimeSpan busyTimeout)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        Path = System.IO.Path.GetFullPath(path);
        _writeGate = SqliteWriteGates.For(Path);
        _busyTimeoutMs = (int)Math.Clamp(busyTimeout.TotalMilliseconds, 0, int.MaxValue);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = Math.Max(1, _busyTimeoutMs / 1000),
        }.ToString();
    }

    public string Path { get; }

    public DatabaseProvider Provider => DatabaseProvider.Sqlite;

    public async ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            // The pool hands back the same SQLite handle many times; its settings stay with it, so they are applied once
            // per handle rather than at every open (four statements parsed and run for each ingest commit otherwise).
            if (!Configured.TryGetValue(connection.Handle!, out _))
            {
                await using var command = connection.CreateCommand();
                // journal_mode is stored in the file; the others are per connection.
                command.CommandText =
                    $"PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout={_busyTimeoutMs};";
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                Configured.AddOrUpdate(connection.Handle!, Marker);
            }

            return connection;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        // Writers of this process queue on the gate without holding a thread; Microsoft.Data.Sqlite then issues
        // BEGIN IMMEDIATE, which waits up to busy_timeout only for writers of other processes.
        var sqlite = (SqliteConnection)connection;
        if (!await _writeGate.WaitAsync(TimeSpan.FromMilliseconds(_busyTimeoutMs), cancellationToken).ConfigureAwait(false))
        {
            throw new TimeoutException($"no write access to the SQLite index within {_busyTimeoutMs} ms (Database:BusyTimeout): another writer of this process holds it");
        }

        try
        {
            return new GatedTransaction(sqlite.BeginTransaction(IsolationLevel.Serializable, deferred: false), _writeGate);
        }
        catch
        {
            _writeGate.Release();
            throw;
        }
    }
}
