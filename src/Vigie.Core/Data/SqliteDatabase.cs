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
    private string? _damage;
    private long _corruptionChecked;

    public SqliteDatabase(string path, TimeSpan busyTimeout)
    {
        SqliteCorruptionLog.Install();
        ArgumentException.ThrowIfNullOrEmpty(path);
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        Path = System.IO.Path.GetFullPath(path);
        LastOpenedPath = Path;
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

    /// <summary>The index this process opened last: a command names it in an error met on it (a command opens one).</summary>
    public static string? LastOpenedPath { get; private set; }

    /// <summary>Why the index file is damaged (its integrity check's first findings), once seen by this process; else null.</summary>
    public string? Damage => Volatile.Read(ref _damage);

    /// <summary>
    /// Runs <c>PRAGMA quick_check</c> (every page and b-tree, not the index contents: 1.7–3.0 s for 300,000 instances cached, 24 s cold) and
    /// throws <see cref="IndexDamagedException"/>, naming the file, SQLite's findings and the remedy, on a damaged index.
    /// A copy of the data folder taken while the node ran tears pages; before 2026-12-07 serve started on it and
    /// acknowledged stores.
    /// </summary>
    public async Task EnsureIntactAsync(CancellationToken cancellationToken)
    {
        if (await CheckIntegrityAsync(cancellationToken).ConfigureAwait(false) is { } reason)
        {
            throw new IndexDamagedException(Path, reason, null);
        }
    }

    /// <summary>
    /// Null when the index passes <c>PRAGMA quick_check</c>, else SQLite's first findings (then kept in <see cref="Damage"/>).
    /// A damaged file never heals while the process runs, so a damage once seen is reported without checking again.
    /// </summary>
    public async Task<string?> CheckIntegrityAsync(CancellationToken cancellationToken)
    {
        if (Damage is { } known)
        {
            return known;
        }

        Interlocked.Exchange(ref _corruptionChecked, SqliteCorruptionLog.Reported);
        try
        {
            await using var connection = await OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA quick_check(3)";
            var findings = new List<string>();
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    findings.Add(reader.GetString(0).Replace("*** in database main ***", "", StringComparison.Ordinal).Trim().ReplaceLineEndings("; "));
                }
            }

            return findings is ["ok"] ? null : NoteDamage(string.Join("; ", findings));
        }
        catch (SqliteException e) when (IsDamage(e))
        {
            return NoteDamage(e.Message);
        }
    }

    /// <summary>
    /// Whether SQLite reported a damaged database file (in any database of this process) since this index was last
    /// checked: its error log is global, so the health check confirms with <see cref="CheckIntegrityAsync"/>.
    /// </summary>
    public bool CorruptionReportedSinceCheck => SqliteCorruptionLog.Reported != Interlocked.Read(ref _corruptionChecked);

    /// <summary>SQLITE_CORRUPT (11) or SQLITE_NOTADB (26), extended codes included: the file itself is damaged.</summary>
    public static bool IsDamage(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is IndexDamagedException || inner is SqliteException { SqliteErrorCode: var code } && (code & 0xff) is SqliteCorrupt or SqliteNotADatabase)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The one line a command prints for an error met on a damaged index: the file, SQLite's words, the remedy.</summary>
    public static string? DescribeDamage(Exception e, string? path)
    {
        if (!IsDamage(e))
        {
            return null;
        }

        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is IndexDamagedException damaged)
            {
                return damaged.Message;
            }
        }

        var sqlite = e as SqliteException ?? e.InnerException as SqliteException;
        return IndexDamagedException.Explain(path, sqlite?.Message ?? e.Message);
    }

    private string NoteDamage(string reason)
    {
        Interlocked.CompareExchange(ref _damage, reason.Length > 300 ? reason[..300] + "..." : reason, null);
        return Damage!;
    }

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
    internal const int SqliteCorrupt = 11;
    internal const int SqliteNotADatabase = 26;
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

/// <summary>
/// The index file is damaged (torn pages, not a database): the message names the file, SQLite's findings and the remedy,
/// restoring it from a consistent backup.
/// </summary>
public sealed class IndexDamagedException(string path, string reason, Exception? inner) : DbException(Explain(path, reason), inner)
{
    public string IndexPath { get; } = path;

    internal static string Explain(string? path, string reason) =>
        $"the index {path ?? "database"} is damaged (SQLite: {reason}): a copy of index.db taken while the node ran tears it, as can a disk fault. "
        + "Restore it from a consistent backup as docs/deploy.md says (Restoring the index from a backup: vigie audit verify, then vigie audit accept-restore), "
        + "or take the index of a stopped node";
}

/// <summary>
/// SQLite's error log, which reports every SQLITE_CORRUPT and SQLITE_NOTADB it meets wherever the statement came from:
/// counted, so that /health can turn Unhealthy on a damage met at run time rather than go on saying "reachable".
/// </summary>
internal static class SqliteCorruptionLog
{
    private static readonly SQLitePCL.strdelegate_log Callback = OnLog;
    private static int _installed;
    private static long _reported;

    public static long Reported => Interlocked.Read(ref _reported);

    public static void Install()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 1)
        {
            return;
        }

        // The provider must be set, and SQLite not yet initialised (it is at the first open): else SQLITE_MISUSE, and
        // the health check sees only what its own checks find.
        RuntimeHelpers.RunClassConstructor(typeof(SqliteConnection).TypeHandle);
        _ = SQLitePCL.raw.sqlite3_config_log(Callback, null);
    }

    private static void OnLog(object userData, int errorCode, string message)
    {
        if ((errorCode & 0xff) is SqliteDatabase.SqliteCorrupt or SqliteDatabase.SqliteNotADatabase)
        {
            Interlocked.Increment(ref _reported);
        }
    }
}
