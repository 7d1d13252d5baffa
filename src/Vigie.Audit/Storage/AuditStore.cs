using System.Buffers;
using System.Buffers.Binary;
using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using SQLitePCL;
using Vigie.Audit.Merkle;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Verification;
using Vigie.Core.Data;

namespace Vigie.Audit.Storage;

/// <summary>The tree size, right frontier and last leaf hash, kept in one row that serialises appenders.</summary>
internal sealed record AuditState(long TreeSize, byte[] Frontier, byte[] LastLeaf);

/// <summary>
/// SQL for the audit tables, on SQLite and PostgreSQL. Appends assign sequence numbers under the state row lock
/// (FOR UPDATE on PostgreSQL, the BEGIN IMMEDIATE write lock on SQLite), so entries commit in sequence order.
/// </summary>
internal sealed class AuditStore(IVigieDatabase database, ILogger<AuditStore>? logger = null)
{
    /// <summary>Subtree nodes are stored every this many levels; the levels between are folded from at most 2^(stride-1) stored hashes.</summary>
    public const int NodeStride = 4;

    public const string EntryColumns =
        "seq, time_ms, event_id, event_types, action, outcome, user_id, participants, purpose, patient_ref, source_id, seal_key_id, sealed, prev_hash, leaf_hash";

    public IVigieDatabase Database => database;

    private bool IsPostgres => database.Provider == DatabaseProvider.Postgres;

    public async ValueTask<AuditState> ReadStateAsync(DbConnection connection, DbTransaction? transaction, bool forUpdate, CancellationToken cancellationToken)
    {
        var sql = "SELECT tree_size, frontier, last_leaf FROM audit_state WHERE id = 1" + (forUpdate && IsPostgres ? " FOR UPDATE" : "");
        await using var command = connection.Statement(transaction, sql);
        await using var reader = await command.Command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            throw new AuditIntegrityException("The audit_state row is missing: the audit schema was not migrated, or the row was deleted.");
        }

        return new AuditState(reader.GetInt64(0), reader.GetFieldValue<byte[]>(1), reader.GetFieldValue<byte[]>(2));
    }

    /// <summary>
    /// A larger SQLite page cache for the connections the audit trail writes or verifies with: scattered patient-run
    /// index inserts otherwise miss the 2 MiB default cache and read pages back from the OS.
    /// </summary>
    public async ValueTask TuneWriterConnectionAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        if (!IsPostgres)
        {
            await using var command = connection.CreateCommand(null, "PRAGMA cache_size = -16384");
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask<AuditState> ReadStateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await ReadStateAsync(connection, null, false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Appends rows inside the caller's write transaction: assigns sequence numbers, chains and hashes them, stores
    /// the completed subtree nodes and the new state. Returns the first sequence number.
    /// </summary>
    public ValueTask<long> AppendAsync(IReadOnlyList<EntryRow> rows, DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken) =>
        AppendAsync(rows, null, connection, transaction, cancellationToken);

    /// <summary>
    /// As above, taking the rows in chunks of <see cref="AppendChunk"/> as they become ready: before it touches the rows up
    /// to an end index, it awaits <paramref name="ready"/>(end). Rows can so be built on other cores while the first ones
    /// are chained and inserted.
    /// </summary>
    public async ValueTask<long> AppendAsync(IReadOnlyList<EntryRow> rows, Func<int, Task>? ready, DbConnection connection, DbTransaction transaction,
        CancellationToken cancellationToken)
    {
        var state = await ReadStateAsync(connection, transaction, forUpdate: true, cancellationToken).ConfigureAwait(false);
        var frontier = MerkleFrontier.TryParse(state.TreeSize, state.Frontier)
            ?? await RebuildFrontierAsync(state.TreeSize, cancellationToken).ConfigureAwait(false);
        if (state.LastLeaf.Length != MerkleHash.Size)
        {
            throw new AuditIntegrityException("The audit_state row holds a malformed last leaf hash.");
        }

        var first = state.TreeSize;
        var previous = state.LastLeaf;
        var nodes = new List<(int Level, long Index, byte[] Hash)>(rows.Count / 8 + 4);
        var runs = new List<(long Seq, string? PatientRef)>();
        var minuteRuns = new List<(long Seq, long Minute)>();
        var (hasLast, lastPatient, lastMinute, lastLeaf) = first == 0
            ? (false, null, 0, null)
            : await ReadLastAsync(first - 1, connection, transaction, cancellationToken).ConfigureAwait(false);
        if (lastLeaf is not null && !lastLeaf.AsSpan().SequenceEqual(previous))
        {
            // The state row's copy was altered: chained to it, the next entry would look tampered with and the altered
            // row would go unnoticed. The entry's own hash is what its successor must carry.
            logger?.LogCritical("The audit_state row's last leaf hash differs from entry {Seq}'s: the row was altered; the next entries chain to the entry", first - 1);
            previous = lastLeaf;
        }
        var scratch = new ArrayBufferWriter<byte>(512);
        using var sqlite = IsPostgres ? null : new SqliteEntryInserter(connection);
        for (var start = 0; start < rows.Count; start += AppendChunk)
        {
            var end = Math.Min(rows.Count, start + AppendChunk);
            if (ready is not null)
            {
                await ready(end).ConfigureAwait(false);
            }

            for (var i = start; i < end; i++)
            {
                var row = rows[i];
                row.Seq = frontier.Size;
                row.PrevHash = previous;
                var leaf = new byte[MerkleHash.Size];
                row.ComputeLeafHash(scratch, leaf);
                row.LeafHash = leaf;
                frontier.Append(leaf, (level, index, hash) =>
                {
                    if (level % NodeStride == 0)
                    {
                        nodes.Add((level, index, hash));
                    }
                });
                previous = leaf;
                var minute = Minute(row.TimeMs);
                if (!hasLast || !string.Equals(row.PatientRef, lastPatient, StringComparison.Ordinal))
                {
                    runs.Add((row.Seq, row.PatientRef));
                }

                if (!hasLast || minute != lastMinute)
                {
                    minuteRuns.Add((row.Seq, minute));
                }

                (hasLast, lastPatient, lastMinute) = (true, row.PatientRef, minute);

                sqlite?.Insert(row);
            }
        }

        if (sqlite is not null)
        {
            sqlite.InsertNodes(nodes);
            sqlite.InsertRuns(RunIndex.Patient, runs, BindText);
            sqlite.InsertRuns(RunIndex.Minute, minuteRuns, (run, column, minute) => raw.sqlite3_bind_int64(run, column, minute));
        }
        else
        {
            await InsertPostgresAsync(rows, nodes, runs, minuteRuns, connection, transaction, cancellationToken).ConfigureAwait(false);
        }

        await using var update = connection.Statement(transaction,
                "UPDATE audit_state SET tree_size = @s, frontier = @f, last_leaf = @l WHERE id = 1 AND tree_size = @old")
            .With("@s", frontier.Size).With("@f", frontier.Serialize()).With("@l", previous).With("@old", first);
        if (await update.Command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) != 1)
        {
            throw new AuditIntegrityException("The audit_state row changed under the append lock.");
        }

        return first;
    }

    /// <summary>
    /// A frontier that does not parse was written into the state row: rebuilt from the stored node and leaf hashes, as the
    /// last leaf is taken from the entry, so that appends, and with them stores, go on (availability first). Before
    /// 2026-12-08 every append failed, and the node refused every association.
    /// </summary>
    private async ValueTask<MerkleFrontier> RebuildFrontierAsync(long size, CancellationToken cancellationToken)
    {
        logger?.LogCritical("The audit_state row's Merkle frontier does not fit tree size {Size}: the row was altered; it is rebuilt from the stored hashes", size);
        var ranges = new List<(long Start, long End)>();
        var start = 0L;
        for (var bit = 62; bit >= 0; bit--)
        {
            if ((size & (1L << bit)) != 0)
            {
                ranges.Add((start, start + (1L << bit)));
                start += 1L << bit;
            }
        }

        // On a connection of its own: the append's holds the write lock, and committed hashes below the size do not change.
        return MerkleFrontier.FromRoots(size, await RangeHashesAsync(ranges, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>
    /// Nodes and runs are the appender's to write at sequence numbers past the log's end: a row planted there beforehand
    /// (its key taken) is replaced, instead of failing every append, and with it every store, until someone finds it.
    /// </summary>
    private const string NodeConflict = "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash";

    /// <summary>Milliseconds per minute of the time index (<see cref="RunIndex.Minute"/>).</summary>
    public const long MinuteMs = 60_000;

    /// <summary>The minute of the time index: SQL's integer division truncates the same way on both providers.</summary>
    public static long Minute(long timeMs) => timeMs / MinuteMs;

    /// <summary>Rows chained and inserted between two waits for more rows.</summary>
    public const int AppendChunk = 256;

    /// <summary>
    /// Inserts rows straight through SQLite's own API on the transaction's connection: one statement prepared per
    /// append, values bound in place. Microsoft.Data.Sqlite's command layer (a data reader, parameter type inference
    /// and a statement enumerator per row) cost more than SQLite's insert itself.
    /// </summary>
    private sealed class SqliteEntryInserter : IDisposable
    {
        private readonly sqlite3 _db;
        private readonly sqlite3_stmt _insert;

        public SqliteEntryInserter(DbConnection connection)
        {
            _db = ((SqliteConnection)connection).Handle ?? throw new InvalidOperationException("The SQLite connection is not open.");
            _insert = Prepare(_db, $"INSERT INTO audit_entry ({EntryColumns}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        }

        public void Insert(EntryRow row)
        {
            if (row.Prepared is { } prepared)
            {
                InsertPrepared(row, prepared);
                return;
            }

            raw.sqlite3_bind_int64(_insert, 1, row.Seq);
            raw.sqlite3_bind_int64(_insert, 2, row.TimeMs);
            raw.sqlite3_bind_text(_insert, 3, row.EventId);
            raw.sqlite3_bind_text(_insert, 4, row.EventTypes);
            raw.sqlite3_bind_text(_insert, 5, row.Action);
            raw.sqlite3_bind_int64(_insert, 6, row.Outcome);
            raw.sqlite3_bind_text(_insert, 7, row.UserId);
            raw.sqlite3_bind_text(_insert, 8, row.Participants);
            BindText(_insert, 9, row.Purpose);
            BindText(_insert, 10, row.PatientRef);
            raw.sqlite3_bind_text(_insert, 11, row.SourceId);
            BindText(_insert, 12, row.SealKeyId);
            BindBlob(_insert, 13, row.Sealed);
            raw.sqlite3_bind_blob(_insert, 14, row.PrevHash);
            raw.sqlite3_bind_blob(_insert, 15, row.LeafHash);
            Step(_db, _insert);
        }

        /// <summary>
        /// Binds the text columns straight from the UTF-8 the row's canonical bytes already hold (built on another
        /// core), instead of encoding each string again on the one thread that inserts.
        /// </summary>
        private void InsertPrepared(EntryRow row, byte[] prepared)
        {
            // 0x00, marker, seq, time; then event_id, event_types, action; outcome; then six text columns.
            var offset = 1 + 4 + 8 + 8;
            raw.sqlite3_bind_int64(_insert, 1, row.Seq);
            raw.sqlite3_bind_int64(_insert, 2, row.TimeMs);
            BindField(prepared, ref offset, 3);
            BindField(prepared, ref offset, 4);
            BindField(prepared, ref offset, 5);
            offset += 8;
            raw.sqlite3_bind_int64(_insert, 6, row.Outcome);
            for (var column = 7; column <= 12; column++)
            {
                BindField(prepared, ref offset, column);
            }

            BindBlob(_insert, 13, row.Sealed);
            raw.sqlite3_bind_blob(_insert, 14, row.PrevHash);
            raw.sqlite3_bind_blob(_insert, 15, row.LeafHash);
            Step(_db, _insert);
        }

        private void BindField(byte[] prepared, ref int offset, int column)
        {
            if (prepared[offset] == 0)
            {
                raw.sqlite3_bind_null(_insert, column);
                offset += 1;
                return;
            }

            var length = BinaryPrimitives.ReadInt32BigEndian(prepared.AsSpan(offset + 1));
            raw.sqlite3_bind_text(_insert, column, prepared.AsSpan(offset + 5, length));
            offset += 5 + length;
        }

        public void InsertNodes(List<(int Level, long Index, byte[] Hash)> nodes)
        {
            if (nodes.Count == 0)
            {
                return;
            }

            using var node = Prepare(_db, $"INSERT INTO audit_node (level, idx, hash) VALUES (?, ?, ?) {NodeConflict}");
            foreach (var (level, index, hash) in nodes)
            {
                raw.sqlite3_bind_int(node, 1, level);
                raw.sqlite3_bind_int64(node, 2, index);
                raw.sqlite3_bind_blob(node, 3, hash);
                Step(_db, node);
            }
        }

        public void InsertRuns<T>(RunIndex index, List<(long Seq, T Value)> runs, Action<sqlite3_stmt, int, T> bind)
        {
            if (runs.Count == 0)
            {
                return;
            }

            using var run = Prepare(_db, $"INSERT INTO {index.Table} (seq, {index.Column}) VALUES (?, ?) {index.Conflict}");
            foreach (var (seq, value) in runs)
            {
                raw.sqlite3_bind_int64(run, 1, seq);
                bind(run, 2, value);
                Step(_db, run);
            }
        }

        public void Dispose() => _insert.Dispose();
    }

    private static sqlite3_stmt Prepare(sqlite3 db, string sql)
    {
        if (raw.sqlite3_prepare_v2(db, sql, out var statement) != raw.SQLITE_OK)
        {
            throw new SqliteException(raw.sqlite3_errmsg(db).utf8_to_string(), raw.sqlite3_errcode(db));
        }

        return statement;
    }

    private static void Step(sqlite3 db, sqlite3_stmt statement)
    {
        var rc = raw.sqlite3_step(statement);
        raw.sqlite3_reset(statement);
        if (rc != raw.SQLITE_DONE)
        {
            throw new SqliteException(raw.sqlite3_errmsg(db).utf8_to_string(), rc);
        }
    }

    private static void BindText(sqlite3_stmt statement, int index, string? value)
    {
        if (value is null)
        {
            raw.sqlite3_bind_null(statement, index);
        }
        else
        {
            raw.sqlite3_bind_text(statement, index, value);
        }
    }

    private static void BindBlob(sqlite3_stmt statement, int index, byte[]? value)
    {
        if (value is null)
        {
            raw.sqlite3_bind_null(statement, index);
        }
        else
        {
            raw.sqlite3_bind_blob(statement, index, value);
        }
    }

    // One round trip per table: arrays bound as parameters and expanded with unnest.
    private static async ValueTask InsertPostgresAsync(IReadOnlyList<EntryRow> rows, List<(int Level, long Index, byte[] Hash)> nodes,
        List<(long Seq, string? PatientRef)> runs, List<(long Seq, long Minute)> minuteRuns, DbConnection connection, DbTransaction transaction,
        CancellationToken cancellationToken)
    {
        var n = rows.Count;
        var seq = new long[n];
        var time = new long[n];
        var eventId = new string[n];
        var eventTypes = new string[n];
        var action = new string[n];
        var outcome = new long[n];
        var userId = new string[n];
        var participants = new string[n];
        var purpose = new string?[n];
        var patientRef = new string?[n];
        var sourceId = new string[n];
        var sealKeyId = new string?[n];
        var sealedBytes = new byte[]?[n];
        var prev = new byte[n][];
        var leaf = new byte[n][];
        for (var i = 0; i < n; i++)
        {
            var r = rows[i];
            seq[i] = r.Seq;
            time[i] = r.TimeMs;
            eventId[i] = r.EventId;
            eventTypes[i] = r.EventTypes;
            action[i] = r.Action;
            outcome[i] = r.Outcome;
            userId[i] = r.UserId;
            participants[i] = r.Participants;
            purpose[i] = r.Purpose;
            patientRef[i] = r.PatientRef;
            sourceId[i] = r.SourceId;
            sealKeyId[i] = r.SealKeyId;
            sealedBytes[i] = r.Sealed;
            prev[i] = r.PrevHash;
            leaf[i] = r.LeafHash;
        }

        await using (var insert = connection.CreateCommand(transaction, $"""
                INSERT INTO audit_entry ({EntryColumns})
                SELECT * FROM unnest(@a0::bigint[], @a1::bigint[], @a2::text[], @a3::text[], @a4::text[], @a5::bigint[], @a6::text[], @a7::text[],
                                     @a8::text[], @a9::text[], @a10::text[], @a11::text[], @a12::bytea[], @a13::bytea[], @a14::bytea[])
                """)
            .With("@a0", seq).With("@a1", time).With("@a2", eventId).With("@a3", eventTypes).With("@a4", action).With("@a5", outcome)
            .With("@a6", userId).With("@a7", participants).With("@a8", purpose).With("@a9", patientRef).With("@a10", sourceId)
            .With("@a11", sealKeyId).With("@a12", sealedBytes).With("@a13", prev).With("@a14", leaf))
        {
            await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        if (nodes.Count > 0)
        {
            await using var node = connection.CreateCommand(transaction,
                    $"INSERT INTO audit_node (level, idx, hash) SELECT * FROM unnest(@l::integer[], @i::bigint[], @h::bytea[]) {NodeConflict}")
                .With("@l", nodes.Select(x => x.Level).ToArray())
                .With("@i", nodes.Select(x => x.Index).ToArray())
                .With("@h", nodes.Select(x => x.Hash).ToArray());
            await node.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await InsertRunsPostgresAsync(RunIndex.Patient, "text", runs, connection, transaction, cancellationToken).ConfigureAwait(false);
        await InsertRunsPostgresAsync(RunIndex.Minute, "bigint", minuteRuns, connection, transaction, cancellationToken).ConfigureAwait(false);
    }

    private static async ValueTask InsertRunsPostgresAsync<T>(RunIndex index, string type, List<(long Seq, T Value)> runs, DbConnection connection,
        DbTransaction transaction, CancellationToken cancellationToken)
    {
        if (runs.Count == 0)
        {
            return;
        }

        await using var run = connection.CreateCommand(transaction,
                $"INSERT INTO {index.Table} (seq, {index.Column}) SELECT * FROM unnest(@s::bigint[], @v::{type}[]) {index.Conflict}")
            .With("@s", runs.Select(x => x.Seq).ToArray())
            .With("@v", runs.Select(x => x.Value).ToArray());
        await run.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Rebuilds every run index from the entries, in one write transaction that holds the state row as appends do, so
    /// no append interleaves. Returns the runs written.
    /// </summary>
    public async ValueTask<long> RebuildRunIndexesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await ReadStateAsync(connection, transaction, forUpdate: true, cancellationToken).ConfigureAwait(false);
        var differs = database.Provider == DatabaseProvider.Postgres ? "IS DISTINCT FROM" : "IS NOT";
        long runs = 0;
        foreach (var index in RunIndex.All)
        {
            await using (var clear = connection.CreateCommand(transaction, $"DELETE FROM {index.Table}"))
            {
                await clear.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await using var fill = connection.CreateCommand(transaction,
                $"INSERT INTO {index.Table} (seq, {index.Column}) SELECT seq, v FROM (SELECT seq, {index.EntryValue} AS v, "
                + $"LAG({index.EntryValue}) OVER (ORDER BY seq) AS prev, LAG(seq) OVER (ORDER BY seq) AS prev_seq FROM audit_entry) t "
                + $"WHERE prev_seq IS NULL OR prev {differs} v");
            runs += await fill.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return runs;
    }

    /// <summary>
    /// Where the run indexes (<see cref="RunIndex.All"/>) disagree with the entries: an entry whose value differs from
    /// the entry before it (or the first entry) without a run starting there, and a run with no entry or another value.
    /// The entries and each run table are streamed in sequence order and merged in one pass (a window query over the
    /// log buffered all of it). Entries appended while this runs are left out.
    /// </summary>
    public async ValueTask<List<(AuditProblemKind Kind, long Seq, string Problem)>> FindRunProblemsAsync(int max, CancellationToken cancellationToken)
    {
        long bound;
        await using (var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        {
            await using var last = connection.CreateCommand(null, "SELECT MAX(seq) FROM audit_entry");
            bound = await last.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is { } value and not DBNull
                ? Convert.ToInt64(value, CultureInfo.InvariantCulture)
                : -1;
        }

        // One connection per stream: PostgreSQL reads one result at a time per connection.
        var connections = new List<DbConnection>();
        try
        {
            for (var i = 0; i <= RunIndex.All.Count; i++)
            {
                connections.Add(await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false));
            }

            // Values are compared as bytes: text as its UTF-8, a minute as its decimal digits, the same on both sides.
            var entrySql = $"SELECT seq, {string.Join(", ", RunIndex.All.Select(r => AsBytes(r.EntryValue)))} FROM audit_entry WHERE seq <= @b ORDER BY seq";
            var found = await Task.Run(() =>
            {
                var runs = new List<RowStream>();
                using var entries = OpenRows(connections[0], entrySql, bound);
                try
                {
                    for (var i = 0; i < RunIndex.All.Count; i++)
                    {
                        var index = RunIndex.All[i];
                        runs.Add(OpenRows(connections[i + 1], $"SELECT seq, {AsBytes(index.Column)} FROM {index.Table} WHERE seq <= @b ORDER BY seq", bound));
                    }

                    return MergeRuns(entries, runs, max, cancellationToken);
                }
                finally
                {
                    runs.ForEach(r => r.Dispose());
                }
            }, cancellationToken).ConfigureAwait(false);
            // Runs past the last entry read: those of entries appended since have their entry, planted ones have none.
            foreach (var index in RunIndex.All)
            {
                await using var beyond = connections[0].CreateCommand(null,
                        $"SELECT r.seq FROM {index.Table} r WHERE r.seq > @b AND NOT EXISTS (SELECT 1 FROM audit_entry e WHERE e.seq = r.seq) ORDER BY r.seq LIMIT @m")
                    .With("@b", bound).With("@m", max);
                await using var reader = await beyond.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (found.Count < max && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    found.Add((index.Kind, reader.GetInt64(0), index.Orphan));
                }
            }

            return found;
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private string AsBytes(string expression) => IsPostgres ? $"convert_to(CAST({expression} AS TEXT), 'UTF8')" : expression;

    private RowStream OpenRows(DbConnection connection, string sql, long bound) =>
        IsPostgres ? new ReaderRows(connection, sql, bound) : new SqliteRows(connection, sql, bound);

    private static List<(AuditProblemKind Kind, long Seq, string Problem)> MergeRuns(RowStream entries, List<RowStream> runs, int max,
        CancellationToken cancellationToken)
    {
        var found = new List<(AuditProblemKind Kind, long Seq, string Problem)>();
        var cursors = runs.Select((r, i) => new RunCursor(RunIndex.All[i], r, 1 + i)).ToList();
        var first = true;
        var read = 0L;
        while (found.Count < max && entries.Next())
        {
            if ((++read & 0xFFFF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            foreach (var cursor in cursors)
            {
                cursor.Check(entries, first, found);
            }

            first = false;
        }

        foreach (var cursor in cursors)
        {
            cursor.Finish(found, max);
        }

        return found.Count > max ? found[..max] : found;
    }

    /// <summary>One run table walked alongside the entries, with the value of the entry before.</summary>
    private sealed class RunCursor(RunIndex index, RowStream runs, int entryColumn)
    {
        private readonly ArrayBufferWriter<byte> _previous = new(128);
        private bool _previousNull;
        private bool _hasRun = runs.Next();

        public void Check(RowStream entries, bool first, List<(AuditProblemKind Kind, long Seq, string Problem)> found)
        {
            var seq = entries.Seq;
            var isNull = entries.IsNull(entryColumn);
            var value = isNull ? default : entries.Bytes(entryColumn);
            var starts = first || isNull != _previousNull || (!isNull && !value.SequenceEqual(_previous.WrittenSpan));
            if (starts)
            {
                _previous.ResetWrittenCount();
                _previous.Write(value);
                _previousNull = isNull;
            }

            while (_hasRun && runs.Seq < seq)
            {
                found.Add((index.Kind, runs.Seq, index.Orphan));
                _hasRun = runs.Next();
            }

            if (_hasRun && runs.Seq == seq)
            {
                // A run where the value does not change is harmless (it only splits a run); one naming another value is not.
                var runNull = runs.IsNull(1);
                if (runNull != isNull || (!isNull && !runs.Bytes(1).SequenceEqual(_previous.WrittenSpan)))
                {
                    found.Add((index.Kind, seq, index.Other));
                }

                _hasRun = runs.Next();
            }
            else if (starts)
            {
                found.Add((index.Kind, seq, index.Missing));
            }
        }

        public void Finish(List<(AuditProblemKind Kind, long Seq, string Problem)> found, int max)
        {
            while (found.Count < max && _hasRun)
            {
                found.Add((index.Kind, runs.Seq, index.Orphan));
                _hasRun = runs.Next();
            }
        }
    }

    /// <summary>Rows of (seq, values...) read in order, values as bytes.</summary>
    private abstract class RowStream : IDisposable
    {
        public abstract long Seq { get; }

        public abstract bool Next();

        public abstract bool IsNull(int column);

        public abstract ReadOnlySpan<byte> Bytes(int column);

        public abstract void Dispose();
    }

    /// <summary>
    /// Through SQLite's own API, the bytes compared in place: reading a million patient references as .NET strings
    /// took longer than the rest of the check.
    /// </summary>
    private sealed class SqliteRows : RowStream
    {
        private readonly sqlite3 _db;
        private readonly sqlite3_stmt _statement;

        public SqliteRows(DbConnection connection, string sql, long bound)
        {
            _db = ((SqliteConnection)connection).Handle ?? throw new InvalidOperationException("The SQLite connection is not open.");
            _statement = Prepare(_db, sql.Replace("@b", "?", StringComparison.Ordinal));
            raw.sqlite3_bind_int64(_statement, 1, bound);
        }

        public override long Seq => raw.sqlite3_column_int64(_statement, 0);

        public override bool Next()
        {
            var rc = raw.sqlite3_step(_statement);
            return rc switch
            {
                raw.SQLITE_ROW => true,
                raw.SQLITE_DONE => false,
                _ => throw new SqliteException(raw.sqlite3_errmsg(_db).utf8_to_string(), rc),
            };
        }

        public override bool IsNull(int column) => raw.sqlite3_column_type(_statement, column) == raw.SQLITE_NULL;

        public override ReadOnlySpan<byte> Bytes(int column) => raw.sqlite3_column_blob(_statement, column);

        public override void Dispose() => _statement.Dispose();
    }

    /// <summary>Through ADO.NET, synchronously: the merge runs on a thread of its own.</summary>
    private sealed class ReaderRows : RowStream
    {
        private readonly DbCommand _command;
        private readonly DbDataReader _reader;

        public ReaderRows(DbConnection connection, string sql, long bound)
        {
            _command = connection.CreateCommand(null, sql).With("@b", bound);
            _reader = _command.ExecuteReader();
        }

        public override long Seq => _reader.GetInt64(0);

        public override bool Next() => _reader.Read();

        public override bool IsNull(int column) => _reader.IsDBNull(column);

        public override ReadOnlySpan<byte> Bytes(int column) => _reader.GetFieldValue<byte[]>(column);

        public override void Dispose()
        {
            _reader.Dispose();
            _command.Dispose();
        }
    }

    /// <summary>
    /// The patient and minute of entry <paramref name="seq"/>, where the runs continue from; HasEntry is false when there
    /// is no such entry (a damaged log: the next runs start afresh).
    /// </summary>
    private static async ValueTask<(bool HasEntry, string? PatientRef, long Minute, byte[]? LeafHash)> ReadLastAsync(long seq, DbConnection connection,
        DbTransaction transaction, CancellationToken cancellationToken)
    {
        await using var command = connection.Statement(transaction, "SELECT patient_ref, time_ms, leaf_hash FROM audit_entry WHERE seq = @s").With("@s", seq);
        await using var reader = await command.Command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return (false, null, 0, null);
        }

        var leaf = reader.IsDBNull(2) ? null : reader.GetFieldValue<byte[]>(2);
        return (true, reader.IsDBNull(0) ? null : reader.GetString(0), Minute(reader.GetInt64(1)), leaf is { Length: MerkleHash.Size } ? leaf : null);
    }

    public static EntryRow ReadEntry(DbDataReader reader) => new()
    {
        Seq = reader.GetInt64(0),
        TimeMs = reader.GetInt64(1),
        EventId = reader.GetString(2),
        EventTypes = reader.GetString(3),
        Action = reader.GetString(4),
        Outcome = reader.GetInt64(5),
        UserId = reader.GetString(6),
        Participants = reader.GetString(7),
        Purpose = reader.IsDBNull(8) ? null : reader.GetString(8),
        PatientRef = reader.IsDBNull(9) ? null : reader.GetString(9),
        SourceId = reader.GetString(10),
        SealKeyId = reader.IsDBNull(11) ? null : reader.GetString(11),
        Sealed = reader.IsDBNull(12) ? null : reader.GetFieldValue<byte[]>(12),
        PrevHash = reader.GetFieldValue<byte[]>(13),
        LeafHash = reader.GetFieldValue<byte[]>(14),
    };

    /// <summary>Entries with sequence numbers from <paramref name="fromSeq"/>, in order, at most <paramref name="max"/>.</summary>
    public async ValueTask<List<EntryRow>> ReadEntriesAsync(long fromSeq, int max, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, $"SELECT {EntryColumns} FROM audit_entry WHERE seq >= @f ORDER BY seq LIMIT @m")
            .With("@f", fromSeq).With("@m", max);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<EntryRow>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(ReadEntry(reader));
        }

        return rows;
    }

    public async ValueTask<EntryRow?> ReadEntryAsync(long seq, CancellationToken cancellationToken)
    {
        var rows = await ReadEntriesAsync(seq, 1, cancellationToken).ConfigureAwait(false);
        return rows.Count == 1 && rows[0].Seq == seq ? rows[0] : null;
    }

    /// <summary>
    /// Reads up to <paramref name="limit"/> rows with <paramref name="from"/> &lt;= seq &lt; <paramref name="to"/> for
    /// verification: per row the sequence number, the 0x00-prefixed canonical bytes rebuilt from the columns, and
    /// the stored previous and leaf hashes, all copied into one pooled buffer (no allocation per row). On SQLite the
    /// columns come packed in one value (<see cref="SqlitePackedRowSql"/>); on PostgreSQL text columns are read
    /// as their UTF-8 bytes and assembled here.
    /// </summary>
    public async ValueTask<CanonicalChunk> ReadCanonicalChunkAsync(long from, long to, int limit, CancellationToken cancellationToken)
    {
        string[] text = ["event_id", "event_types", "action", "user_id", "participants", "purpose", "patient_ref", "source_id", "seal_key_id"];
        var sql = IsPostgres
            ? $"SELECT seq, prev_hash, leaf_hash, time_ms, outcome, sealed, {string.Join(", ", text.Select(c => $"convert_to({c}, 'UTF8')"))} FROM audit_entry WHERE seq >= @a AND seq < @b ORDER BY seq LIMIT @l"
            : $"SELECT seq, {SqlitePackedRowSql} FROM audit_entry WHERE seq >= @a AND seq < @b ORDER BY seq LIMIT @l";
        var chunk = new CanonicalChunk();
        try
        {
            await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var command = connection.CreateCommand(null, sql).With("@a", from).With("@b", to).With("@l", limit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            var values = new byte[]?[text.Length];
            var scratch = IsPostgres ? new ArrayBufferWriter<byte>(1024) : null;
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    var seq = reader.GetInt64(0);
                    if (scratch is null)
                    {
                        var packed = reader.GetFieldValue<byte[]>(1);
                        chunk.Rows.Add(chunk.AppendPacked(seq, packed, PackedColumns.Length));
                        continue;
                    }

                    var prev = chunk.Copy(reader, 1);
                    var leaf = chunk.Copy(reader, 2);
                    (int Offset, int Length) canonical;
                    {
                        for (var i = 0; i < values.Length; i++)
                        {
                            values[i] = reader.IsDBNull(6 + i) ? null : reader.GetFieldValue<byte[]>(6 + i);
                        }

                        EntryRow.WritePrefixedCanonical(scratch, seq, reader.GetInt64(3), values, reader.GetInt64(4),
                            reader.IsDBNull(5) ? null : reader.GetFieldValue<byte[]>(5), reader.IsDBNull(1) ? null : reader.GetFieldValue<byte[]>(1));
                        canonical = chunk.Append(scratch.WrittenSpan);
                    }

                    chunk.Rows.Add(new CanonicalRow(seq, canonical.Offset, canonical.Length, prev.Offset, prev.Length, leaf.Offset, leaf.Length, null));
                }
                catch (Exception ex) when (ex is InvalidCastException or FormatException or OverflowException or InvalidOperationException)
                {
                    long? seq = reader.IsDBNull(0) ? null : Convert.ToInt64(reader.GetValue(0), CultureInfo.InvariantCulture);
                    chunk.Rows.Add(new CanonicalRow(seq ?? long.MinValue, 0, -1, 0, 0, 0, 0, "a column has the wrong type (" + ex.GetType().Name + ")"));
                }
            }

            return chunk;
        }
        catch
        {
            chunk.Dispose();
            throw;
        }
    }

    private static readonly string[] PackedColumns =
        ["event_id", "event_types", "action", "user_id", "participants", "purpose", "patient_ref", "source_id", "seal_key_id", "sealed", "prev_hash", "leaf_hash"];

    /// <summary>
    /// For verification on SQLite, a whole row in one value: a header of seq, time_ms and outcome (16 hex digits each)
    /// and the byte length of each column (8 hex digits, ffffffff for null), turned to bytes by unhex, followed by the
    /// columns' stored bytes. Reading one value per row instead of fifteen is what makes verifying a large log fast;
    /// the canonical bytes are then assembled in C# by the same <see cref="EntryRow"/> rules.
    /// </summary>
    internal static readonly string SqlitePackedRowSql =
        "CAST(concat(unhex(printf('" + string.Concat(Enumerable.Repeat("%016x", 3)) + string.Concat(Enumerable.Repeat("%08x", PackedColumns.Length)) + "', seq, time_ms, outcome, "
        + string.Join(", ", PackedColumns.Select(c => $"ifnull(length(CAST({c} AS BLOB)), 4294967295)")) + ")), "
        + string.Join(", ", PackedColumns.Select(c => $"CAST({c} AS BLOB)")) + ") AS BLOB)";

    /// <summary>
    /// Entries stored at or beyond the append state's tree size (none, in a log appended only through it), and the
    /// state's size: one statement, so that an append between two readings does not count.
    /// </summary>
    public async ValueTask<(long Count, long? First, long StateSize)> FindEntriesBeyondStateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null,
            "SELECT COUNT(e.seq), MIN(e.seq), s.tree_size FROM audit_state s LEFT JOIN audit_entry e ON e.seq >= s.tree_size WHERE s.id = 1 GROUP BY s.tree_size");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return (0, null, 0); // No state row: reported from the state's own reading.
        }

        return (reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetInt64(1), reader.GetInt64(2));
    }

    /// <summary>Smallest and largest sequence numbers and the row count (null when the log is empty).</summary>
    public async ValueTask<(long Min, long Max, long Count)?> SequenceBoundsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT MIN(seq), MAX(seq), COUNT(*) FROM audit_entry");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false) || reader.IsDBNull(0))
        {
            return null;
        }

        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    /// <summary>Stored subtree nodes in the order an incremental rebuild completes them.</summary>
    public async IAsyncEnumerable<(int Level, long Index, byte[] Hash)> StreamNodesAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT level, idx, hash FROM audit_node ORDER BY ((idx + 1) << level), level");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return (Convert.ToInt32(reader.GetValue(0), CultureInfo.InvariantCulture), reader.GetInt64(1), reader.GetFieldValue<byte[]>(2));
        }
    }

    /// <summary>The hash of each range of leaves (a proof's nodes), from stored nodes and leaf hashes.</summary>
    public async ValueTask<List<byte[]>> RangeHashesAsync(List<(long Start, long End)> ranges, CancellationToken cancellationToken)
    {
        var parts = ranges.Select(r => MerkleProofs.Decompose(r.Start, r.End)).ToList();
        var all = parts.SelectMany(p => p).ToList();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var hashes = await GetSubtreeHashesAsync(connection, all, cancellationToken).ConfigureAwait(false);
        var result = new List<byte[]>(ranges.Count);
        var offset = 0;
        foreach (var p in parts)
        {
            result.Add(MerkleProofs.FoldRange(hashes.AsSpan(offset, p.Count).ToArray()));
            offset += p.Count;
        }

        return result;
    }

    /// <summary>Hashes of perfect subtrees, from stored nodes and leaf hashes only (never rehashing entries).</summary>
    public async ValueTask<byte[][]> GetSubtreeHashesAsync(DbConnection connection, IReadOnlyList<Subtree> subtrees, CancellationToken cancellationToken)
    {
        var result = new byte[subtrees.Count][];
        for (var s = 0; s < subtrees.Count; s++)
        {
            var subtree = subtrees[s];
            var baseLevel = subtree.Level - subtree.Level % NodeStride;
            var span = subtree.Level - baseLevel;
            var first = subtree.Index << span;
            var count = 1L << span;
            var hashes = baseLevel == 0
                ? await ReadHashesAsync(connection, "SELECT seq, leaf_hash FROM audit_entry WHERE seq >= @a AND seq < @b ORDER BY seq", first, count, null, cancellationToken).ConfigureAwait(false)
                : await ReadHashesAsync(connection, "SELECT idx, hash FROM audit_node WHERE level = @l AND idx >= @a AND idx < @b ORDER BY idx", first, count, baseLevel, cancellationToken).ConfigureAwait(false);
            if (hashes.Count != count)
            {
                throw new AuditIntegrityException($"Stored hashes are missing under subtree (level {subtree.Level}, index {subtree.Index}); run verification.");
            }

            while (hashes.Count > 1)
            {
                var next = new List<byte[]>(hashes.Count / 2);
                for (var i = 0; i < hashes.Count; i += 2)
                {
                    next.Add(MerkleHash.Node(hashes[i], hashes[i + 1]));
                }

                hashes = next;
            }

            result[s] = hashes[0];
        }

        return result;
    }

    private static async ValueTask<List<byte[]>> ReadHashesAsync(DbConnection connection, string sql, long first, long count, int? level, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand(null, sql).With("@a", first).With("@b", first + count);
        if (level is not null)
        {
            command.With("@l", level.Value);
        }

        var hashes = new List<byte[]>((int)count);
        var expected = first;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (reader.GetInt64(0) != expected++)
            {
                throw new AuditIntegrityException("Stored hashes have a gap; run verification.");
            }

            var hash = reader.GetFieldValue<byte[]>(1);
            if (hash.Length != MerkleHash.Size)
            {
                throw new AuditIntegrityException("A stored hash has the wrong length; run verification.");
            }

            hashes.Add(hash);
        }

        return hashes;
    }

    public async ValueTask<bool> InsertTreeHeadAsync(SignedTreeHead head, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        // Synced, with every commit before it (SQLite: a synced commit syncs the write-ahead log; PostgreSQL: on even where
        // the server or role lowered synchronous_commit): the node's record of its last head is written only after this.
        await using var transaction = await database.BeginWriteAsync(connection, CommitDurability.Synced, cancellationToken).ConfigureAwait(false);
        if (IsPostgres)
        {
            await using var synced = connection.CreateCommand(transaction, "SET LOCAL synchronous_commit = on");
            await synced.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var command = connection.CreateCommand(transaction, """
                INSERT INTO audit_tree_head (tree_size, time_ms, root_hash, key_id, public_key, signature)
                VALUES (@s, @t, @r, @k, @p, @g) ON CONFLICT (tree_size) DO NOTHING
                """)
            .With("@s", head.TreeSize).With("@t", head.Timestamp.ToUnixTimeMilliseconds()).With("@r", head.RootHash)
            .With("@k", head.KeyId).With("@p", head.PublicKey).With("@g", head.Signature);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows == 1;
    }

    private const string HeadColumns = "tree_size, time_ms, root_hash, key_id, public_key, signature";

    private static SignedTreeHead ReadHead(DbDataReader reader) => new(
        reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetFieldValue<byte[]>(2),
        reader.GetString(3), reader.GetFieldValue<byte[]>(4), reader.GetFieldValue<byte[]>(5));

    /// <summary>
    /// The log's size, the latest head's size and time, and the time of the first entry past it (null when every entry
    /// is under a head): three small indexed reads, for /health and verify.
    /// </summary>
    public async ValueTask<UnsignedTail> ReadUnsignedTailAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        long size;
        await using (var command = connection.CreateCommand(null, "SELECT tree_size FROM audit_state WHERE id = 1"))
        {
            size = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long s ? s : 0;
        }

        var (signed, headMs) = (0L, (long?)null);
        await using (var command = connection.CreateCommand(null, "SELECT tree_size, time_ms FROM audit_tree_head ORDER BY tree_size DESC LIMIT 1"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                (signed, headMs) = (reader.GetInt64(0), reader.GetInt64(1));
            }
        }

        if (size <= signed)
        {
            return new UnsignedTail(size, signed, headMs, null);
        }

        await using var first = connection.CreateCommand(null, "SELECT time_ms FROM audit_entry WHERE seq = @s").With("@s", signed);
        return new UnsignedTail(size, signed, headMs, await first.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long ms ? ms : null);
    }

    /// <summary>The latest head, the head of a given size, or the first head that covers a sequence number.</summary>
    public async ValueTask<SignedTreeHead?> FindTreeHeadAsync(TreeHeadLookup lookup, long value, CancellationToken cancellationToken)
    {
        var sql = lookup switch
        {
            TreeHeadLookup.Latest => $"SELECT {HeadColumns} FROM audit_tree_head ORDER BY tree_size DESC LIMIT 1",
            TreeHeadLookup.ExactSize => $"SELECT {HeadColumns} FROM audit_tree_head WHERE tree_size = @v",
            TreeHeadLookup.FirstCovering => $"SELECT {HeadColumns} FROM audit_tree_head WHERE tree_size > @v ORDER BY tree_size LIMIT 1",
            _ => throw new ArgumentOutOfRangeException(nameof(lookup)),
        };
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, sql).With("@v", value);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? ReadHead(reader) : null;
    }

    public async IAsyncEnumerable<(SignedTreeHead? Head, string? Error)> StreamTreeHeadsAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, $"SELECT {HeadColumns} FROM audit_tree_head ORDER BY tree_size");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            SignedTreeHead? head = null;
            string? error = null;
            try
            {
                head = ReadHead(reader);
            }
            catch (Exception ex) when (ex is InvalidCastException or FormatException or OverflowException or InvalidOperationException)
            {
                error = "a tree head row is unreadable (" + ex.GetType().Name + ")";
            }

            yield return (head, error);
        }
    }

    private static readonly string QualifiedEntryColumns = string.Join(", ", EntryColumns.Split(", ").Select(c => "e." + c));

    private const string PatientRunsJoin = """
        audit_patient_run r JOIN audit_entry e ON e.seq >= r.seq
          AND e.seq < COALESCE((SELECT MIN(n.seq) FROM audit_patient_run n WHERE n.seq > r.seq), 9223372036854775807)
        """;

    private const string MinuteRunsInPeriod = "FROM audit_minute_run m WHERE m.minute >= @fm AND m.minute <= @tm";

    private const string MinuteRunsLowerBound = $"e.seq >= COALESCE((SELECT MIN(m.seq) {MinuteRunsInPeriod}), 9223372036854775807)";

    private const string MinuteRunsUpperBound =
        $"e.seq < COALESCE((SELECT MIN(n.seq) FROM audit_minute_run n WHERE n.seq > (SELECT MAX(m.seq) {MinuteRunsInPeriod})), 9223372036854775807)";

    public async ValueTask<(List<EntryRow> Rows, bool More)> QueryAsync(AuditQuery query, int limit, CancellationToken cancellationToken)
    {
        var where = new List<string>();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "");
        var patients = (query.PatientRefs ?? []).Concat(query.PatientRef is { } one ? [one] : []).Distinct(StringComparer.Ordinal).ToList();
        if (patients.Count > 0)
        {
            // The runs give where each of the patient's bursts starts; each ends where the next run (any patient) starts.
            var names = string.Join(", ", patients.Select((_, i) => $"@p{i}"));
            where.Add($"r.patient_ref IN ({names})");
            where.Add($"e.patient_ref IN ({names})");
            for (var i = 0; i < patients.Count; i++)
            {
                command.With($"@p{i}", patients[i]);
            }
        }

        if (query.UserId is not null)
        {
            // The requesting user or AE title, or a participant's AlternativeUserID (the DICOM user authenticated behind an
            // AE title), found as its stored JSON member: until 2026-12-07 that user's activity could not be found by name.
            where.Add(IsPostgres ? "(e.user_id = @u OR strpos(e.participants, @alt) > 0)" : "(e.user_id = @u OR instr(e.participants, @alt) > 0)");
            command.With("@u", query.UserId).With("@alt", AuditJson.AlternativeUserMember(query.UserId));
        }

        if (query.From is not null)
        {
            where.Add("e.time_ms >= @from");
            command.With("@from", query.From.Value.ToUnixTimeMilliseconds());
        }

        if (query.To is not null)
        {
            where.Add("e.time_ms < @to");
            command.With("@to", query.To.Value.ToUnixTimeMilliseconds());
        }

        if (query.From is not null || query.To is not null)
        {
            // The time index bounds the sequence numbers that can hold the period; each entry's own time then decides.
            where.Add(MinuteRunsLowerBound);
            where.Add(MinuteRunsUpperBound);
            command.With("@fm", query.From is { } from ? Minute(from.ToUnixTimeMilliseconds()) : long.MinValue)
                .With("@tm", query.To is { } to ? Minute(to.ToUnixTimeMilliseconds()) : long.MaxValue);
        }

        if (query.EventId is not null)
        {
            // Tokens are "alias|code" or "system|code|display": the code sits between two bars once the value is wrapped in bars.
            where.Add(@"('|' || e.event_id || '|') LIKE @eid ESCAPE '\'");
            command.With("@eid", "%|" + EscapeLike(query.EventId) + "|%");
        }

        if (query.EventType is not null)
        {
            where.Add(@"('|' || replace(e.event_types, @newline, '|') || '|') LIKE @etype ESCAPE '\'");
            command.With("@etype", "%|" + EscapeLike(query.EventType) + "|%").With("@newline", "\n");
        }

        if (query.Outcome is not null)
        {
            where.Add("e.outcome = @o");
            command.With("@o", (long)query.Outcome.Value);
        }

        if (query.Cursor is not null)
        {
            where.Add(query.Ascending ? "e.seq > @c" : "e.seq < @c");
            command.With("@c", query.Cursor.Value);
        }

        var sql = new StringBuilder($"SELECT {QualifiedEntryColumns} FROM ").Append(patients.Count == 0 ? "audit_entry e" : PatientRunsJoin);
        if (where.Count > 0)
        {
            sql.Append(" WHERE ").AppendJoin(" AND ", where);
        }

        sql.Append(query.Ascending ? " ORDER BY e.seq" : " ORDER BY e.seq DESC").Append(" LIMIT @limit");
        command.With("@limit", limit + 1);
        command.CommandText = sql.ToString();
        var rows = new List<EntryRow>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(ReadEntry(reader));
        }

        var more = rows.Count > limit;
        if (more)
        {
            rows.RemoveAt(rows.Count - 1);
        }

        return (rows, more);
    }

    private static string EscapeLike(string value) => value.Replace(@"\", @"\\", StringComparison.Ordinal)
        .Replace("%", @"\%", StringComparison.Ordinal).Replace("_", @"\_", StringComparison.Ordinal);

    public async ValueTask<(long NextSeq, int Attempts)?> ReadCursorAsync(string sink, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT next_seq, attempts FROM audit_cursor WHERE sink = @s").With("@s", sink);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? (reader.GetInt64(0), Convert.ToInt32(reader.GetValue(1), CultureInfo.InvariantCulture))
            : null;
    }

    /// <summary>A sink's cursor with its failures: consecutive failed attempts, when it last moved or failed, and why.</summary>
    public async ValueTask<(long NextSeq, int Attempts, long UpdatedMs, string? LastError)?> ReadCursorStatusAsync(string sink, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT next_seq, attempts, updated_ms, last_error FROM audit_cursor WHERE sink = @s").With("@s", sink);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? (reader.GetInt64(0), Convert.ToInt32(reader.GetValue(1), CultureInfo.InvariantCulture), Convert.ToInt64(reader.GetValue(2), CultureInfo.InvariantCulture),
                reader.IsDBNull(3) ? null : reader.GetString(3))
            : null;
    }

    /// <summary>The cursors whose name starts with <paramref name="prefix"/>, whoever configured them.</summary>
    public async ValueTask<IReadOnlyList<string>> ListCursorsAsync(string prefix, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT sink FROM audit_cursor ORDER BY sink");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var names = new List<string>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (reader.GetString(0) is var name && name.StartsWith(prefix, StringComparison.Ordinal))
            {
                names.Add(name);
            }
        }

        return names;
    }

    /// <summary>Records what a sink's collector refused for good; recording it again only updates when and why.</summary>
    public async ValueTask SetAsideAsync(string sink, IReadOnlyCollection<SetAsideItem> items, CancellationToken cancellationToken)
    {
        if (items.Count == 0)
        {
            return;
        }

        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var item in items)
        {
            await using var command = connection.CreateCommand(transaction, """
                    INSERT INTO audit_set_aside (sink, kind, seq, refused_ms, reason) VALUES (@s, @k, @q, @t, @r)
                    ON CONFLICT (sink, kind, seq) DO UPDATE SET refused_ms = excluded.refused_ms, reason = excluded.reason
                    """)
                .With("@s", sink).With("@k", KindName(item.Kind)).With("@q", item.Seq).With("@t", item.RefusedMs).With("@r", item.Reason);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A sink's set-aside items in log order, entries first, at most <paramref name="limit"/>.</summary>
    public async ValueTask<List<SetAsideItem>> ReadSetAsideAsync(string sink, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT kind, seq, refused_ms, reason FROM audit_set_aside WHERE sink = @s ORDER BY kind, seq LIMIT @l")
            .With("@s", sink).With("@l", limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var items = new List<SetAsideItem>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var kind = reader.GetString(0) switch
            {
                "entry" => SetAsideKind.Entry,
                "tree-head" => SetAsideKind.TreeHead,
                var other => throw new AuditIntegrityException($"Unknown set-aside kind '{other}' for sink {sink}."),
            };
            items.Add(new SetAsideItem(kind, reader.GetInt64(1), Convert.ToInt64(reader.GetValue(2), CultureInfo.InvariantCulture), reader.GetString(3)));
        }

        return items;
    }

    /// <summary>How many items a sink has set aside.</summary>
    public async ValueTask<long> CountSetAsideAsync(string sink, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM audit_set_aside WHERE sink = @s").With("@s", sink);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
    }

    /// <summary>Forgets an item once its collector has taken it.</summary>
    public async ValueTask ClearSetAsideAsync(string sink, SetAsideKind kind, long seq, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, "DELETE FROM audit_set_aside WHERE sink = @s AND kind = @k AND seq = @q")
            .With("@s", sink).With("@k", KindName(kind)).With("@q", seq);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How a set-aside kind is stored, and shown to operators.</summary>
    internal static string KindName(SetAsideKind kind) => kind switch
    {
        SetAsideKind.Entry => "entry",
        SetAsideKind.TreeHead => "tree-head",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>Moves a sink's cursor. It never goes backwards, so a stale worker cannot replay what another already sent.</summary>
    public async ValueTask SaveCursorAsync(string sink, long nextSeq, int attempts, string? error, long nowMs, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, """
                INSERT INTO audit_cursor (sink, next_seq, updated_ms, attempts, last_error) VALUES (@s, @n, @t, @a, @e)
                ON CONFLICT (sink) DO UPDATE SET next_seq = CASE WHEN excluded.next_seq > audit_cursor.next_seq THEN excluded.next_seq ELSE audit_cursor.next_seq END,
                  updated_ms = excluded.updated_ms, attempts = excluded.attempts, last_error = excluded.last_error
                """)
            .With("@s", sink).With("@n", nextSeq).With("@t", nowMs).With("@a", attempts).With("@e", error);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>What an export sink's collector refused for good: an entry (by sequence) or a signed tree head (by size).</summary>
internal enum SetAsideKind
{
    Entry,
    TreeHead,
}

/// <summary>One refused item, when and why (the collector's status only, never content).</summary>
internal readonly record struct SetAsideItem(SetAsideKind Kind, long Seq, long RefusedMs, string Reason);

/// <summary>The log's size, the latest head's size and time (ms), and the time of the first entry it does not cover.</summary>
internal readonly record struct UnsignedTail(long TreeSize, long SignedSize, long? HeadMs, long? FirstUnsignedMs);

internal enum TreeHeadLookup
{
    Latest,
    ExactSize,
    FirstCovering,
}

/// <summary>One verified row inside a <see cref="CanonicalChunk"/> buffer. Length -1 means unreadable.</summary>
internal readonly record struct CanonicalRow(long Seq, int Offset, int Length, int PrevOffset, int PrevLength, int LeafOffset, int LeafLength, string? Error);

/// <summary>Rows read for verification, their bytes in one buffer rented from the shared pool.</summary>
internal sealed class CanonicalChunk : IDisposable
{
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
    private int _used;

    public List<CanonicalRow> Rows { get; } = [];

    public ReadOnlySpan<byte> Span(int offset, int length) => _buffer.AsSpan(offset, length);

    public (int Offset, int Length) Append(ReadOnlySpan<byte> bytes)
    {
        Ensure(bytes.Length);
        bytes.CopyTo(_buffer.AsSpan(_used));
        var at = _used;
        _used += bytes.Length;
        return (at, bytes.Length);
    }

    /// <summary>
    /// Unpacks a row read with <see cref="AuditStore.SqlitePackedRowSql"/> and writes its 0x00-prefixed canonical
    /// bytes (the layout of <see cref="EntryRow.WriteCanonical"/>), keeping its previous and leaf hashes.
    /// </summary>
    public CanonicalRow AppendPacked(long seq, byte[] packed, int columns)
    {
        var header = 48 + 8 * columns;
        if (packed.Length < header / 2)
        {
            return new CanonicalRow(seq, 0, -1, 0, 0, 0, 0, "the row could not be packed for verification");
        }

        var span = packed.AsSpan();
        var storedSeq = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(span);
        var time = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(span[8..]);
        var outcome = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(span[16..]);
        Span<int> lengths = stackalloc int[columns];
        var data = 24 + 4 * columns;
        var total = data;
        for (var i = 0; i < columns; i++)
        {
            var length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(span[(24 + 4 * i)..]);
            lengths[i] = length == uint.MaxValue ? -1 : (int)Math.Min(length, int.MaxValue);
            total += Math.Max(0, lengths[i]);
        }

        if (total != packed.Length || storedSeq != seq)
        {
            return new CanonicalRow(seq, 0, -1, 0, 0, 0, 0, "the row's columns could not be read back consistently");
        }

        Ensure(packed.Length + 64);
        var start = _used;
        Put(0x00);
        Put(EntryRow.Magic);
        PutInt64(seq);
        PutInt64(time);
        var offset = data;
        var prevAt = 0;
        var prevLength = 0;
        var leafAt = 0;
        var leafLength = 0;
        for (var i = 0; i < columns; i++)
        {
            var length = lengths[i];
            var value = length < 0 ? ReadOnlySpan<byte>.Empty : span.Slice(offset, length);
            offset += Math.Max(0, length);
            switch (i)
            {
                case 11: // leaf_hash: stored, not part of the canonical bytes
                    leafAt = _used;
                    leafLength = value.Length;
                    Put(value);
                    continue;
                case 3: // outcome sits between action and user_id
                    PutInt64(outcome);
                    break;
            }

            if (length < 0)
            {
                Put(0x00);
                continue;
            }

            Put(0x01);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_used), length);
            _used += 4;
            if (i == 10)
            {
                prevAt = _used;
                prevLength = length;
            }

            Put(value);
        }

        return new CanonicalRow(seq, start, leafAt - start, prevAt, prevLength, leafAt, leafLength, null);
    }

    private void Put(byte value) => _buffer[_used++] = value;

    private void Put(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_buffer.AsSpan(_used));
        _used += value.Length;
    }

    private void PutInt64(long value)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(_buffer.AsSpan(_used), value);
        _used += 8;
    }

    /// <summary>Copies a blob column into the buffer (null reads as empty).</summary>
    public (int Offset, int Length) Copy(DbDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? (_used, 0) : Append(reader.GetFieldValue<byte[]>(ordinal));

    private void Ensure(int more)
    {
        if (_used + more <= _buffer.Length)
        {
            return;
        }

        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _used + more));
        _buffer.AsSpan(0, _used).CopyTo(bigger);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = bigger;
    }

    public void Dispose()
    {
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }
    }
}
