using System.Data;
using System.Data.Common;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace Vigie.Core.Data;

/// <summary>
/// The embedded default, in WAL mode. Transactions run with synchronous=FULL: a committed transaction survives a power
/// cut. Deferred ones run with synchronous=NORMAL: their commit is written to the WAL but not synced, so the next
/// synced commit (or a checkpoint, or <see cref="SyncAsync"/>) makes it durable together with everything before it.
/// </summary>
public sealed class SqliteDatabase : IVigieDatabase
{
    /// <summary>The synchronous level each SQLite handle was last set to; a handle is configured once, when first seen.</summary>
    private static readonly ConditionalWeakTable<SQLitePCL.sqlite3, HandleState> Configured = new();

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
            if (!Configured.TryGetValue(connection.Handle!, out var state))
            {
                await using var command = connection.CreateCommand();
                // journal_mode is stored in the file; the others are per connection.
                command.CommandText =
                    $"PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout={_busyTimeoutMs};";
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                Configured.AddOrUpdate(connection.Handle!, new HandleState());
            }
            else if (state.Deferred)
            {
                // A handle back from a deferred writer: autocommit statements on it must be durable again.
                SetSynchronous(connection, state, deferred: false);
            }

            return connection;
        }
        catch (SqliteException e) when (e.SqliteErrorCode is SqliteIoError or SqliteFull && FreeBytes() is { } free and < FullBelow)
        {
            // SQLite says "disk I/O error" when it cannot make its shared-memory file on a full file system, which
            // an operator reads as a failing disk: the start and every command said only that (until 2026-12-07).
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new IndexStorageFullException($"the file system holding {Path} is full ({free:N0} bytes free): free space there, then try again", e);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private const int SqliteIoError = 10;
    private const int SqliteFull = 13;

    /// <summary>Less than this free, an I/O error opening the index is taken for a full file system.</summary>
    private const long FullBelow = 1024 * 1024;

    private long? FreeBytes()
    {
        try
        {
            return new DriveInfo(System.IO.Path.GetDirectoryName(Path)!).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    public ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken) =>
        BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken);

    public async ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CommitDurability durability, CancellationToken cancellationToken)
    {
        // Writers of this process queue on the gate without holding a thread; Microsoft.Data.Sqlite then issues
        // BEGIN IMMEDIATE, which waits up to busy_timeout only for writers of other processes.
        var sqlite = (SqliteConnection)connection;
        if (!await _writeGate.WaitAsync(TimeSpan.FromMilliseconds(_busyTimeoutMs), cancellationToken).ConfigureAwait(false))
        {
            throw new TimeoutException($"no write access to the SQLite index within {_busyTimeoutMs} ms (Database:BusyTimeout): another writer holds it, of this process or of another that keeps the database locked");
        }

        try
        {
            // The level is a connection setting that SQLite reads at commit; it is switched only between transactions.
            var deferred = durability == CommitDurability.Deferred;
            if (Configured.TryGetValue(sqlite.Handle!, out var state) && state.Deferred != deferred)
            {
                SetSynchronous(sqlite, state, deferred);
            }

            return new GatedTransaction(sqlite.BeginTransaction(IsolationLevel.Serializable, deferred: false), _writeGate);
        }
        catch
        {
            _writeGate.Release();
            throw;
        }
    }

    /// <summary>
    /// Syncs the write-ahead log: every frame written so far, and so every commit, is then on disk. Checkpointed pages
    /// need nothing more, since SQLite syncs the database file when a checkpoint completes and only then reuses the log.
    /// </summary>
    public async ValueTask SyncAsync(CancellationToken cancellationToken)
    {
        var wal = Path + "-wal";
        try
        {
            await using var file = new FileStream(wal, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            await Task.Run(() => file.Flush(flushToDisk: true), cancellationToken).ConfigureAwait(false);
        }
        catch (FileNotFoundException)
        {
            // No log: the last connection closed it after a full checkpoint, which synced the database file.
        }
    }

    private static void SetSynchronous(DbConnection connection, HandleState state, bool deferred)
    {
        using var command = connection.CreateCommand();
        command.CommandText = deferred ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL";
        command.ExecuteNonQuery();
        state.Deferred = deferred;
    }

    private sealed class HandleState
    {
        public bool Deferred { get; set; }
    }
}

/// <summary>The index cannot be opened because its file system is full; the message says so, with the space left.</summary>
public sealed class IndexStorageFullException(string message, Exception inner) : DbException(message, inner);
