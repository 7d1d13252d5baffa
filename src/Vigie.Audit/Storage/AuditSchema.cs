using Vigie.Core.Data;

namespace Vigie.Audit.Storage;

/// <summary>The audit tables, in the shared Vigie database.</summary>
internal sealed class AuditSchema : ISchemaProvider
{
    public IEnumerable<SchemaMigration> Migrations { get; } =
    [
        new("audit", 1, "audit log, Merkle nodes, tree heads, export cursors",
            """
            CREATE TABLE audit_entry (
              seq INTEGER PRIMARY KEY,
              time_ms INTEGER NOT NULL,
              event_id TEXT NOT NULL,
              event_types TEXT NOT NULL,
              action TEXT NOT NULL,
              outcome INTEGER NOT NULL,
              user_id TEXT NOT NULL,
              participants TEXT NOT NULL,
              purpose TEXT NULL,
              patient_ref TEXT NULL,
              source_id TEXT NOT NULL,
              seal_key_id TEXT NULL,
              sealed BLOB NULL,
              prev_hash BLOB NOT NULL,
              leaf_hash BLOB NOT NULL);
            CREATE INDEX audit_entry_patient ON audit_entry (patient_ref, seq) WHERE patient_ref IS NOT NULL;
            CREATE INDEX audit_entry_user ON audit_entry (user_id, seq);
            CREATE INDEX audit_entry_time ON audit_entry (time_ms);
            CREATE TABLE audit_node (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
            CREATE TABLE audit_state (id INTEGER PRIMARY KEY CHECK (id = 1), tree_size INTEGER NOT NULL, frontier BLOB NOT NULL, last_leaf BLOB NOT NULL);
            INSERT INTO audit_state (id, tree_size, frontier, last_leaf) VALUES (1, 0, x'', zeroblob(32));
            CREATE TABLE audit_tree_head (
              tree_size INTEGER PRIMARY KEY,
              time_ms INTEGER NOT NULL,
              root_hash BLOB NOT NULL,
              key_id TEXT NOT NULL,
              public_key BLOB NOT NULL,
              signature BLOB NOT NULL);
            CREATE TABLE audit_cursor (
              sink TEXT PRIMARY KEY,
              next_seq INTEGER NOT NULL,
              updated_ms INTEGER NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0,
              last_error TEXT NULL);
            """,
            """
            CREATE TABLE audit_entry (
              seq BIGINT PRIMARY KEY,
              time_ms BIGINT NOT NULL,
              event_id TEXT NOT NULL,
              event_types TEXT NOT NULL,
              action TEXT NOT NULL,
              outcome BIGINT NOT NULL,
              user_id TEXT NOT NULL,
              participants TEXT NOT NULL,
              purpose TEXT NULL,
              patient_ref TEXT NULL,
              source_id TEXT NOT NULL,
              seal_key_id TEXT NULL,
              sealed BYTEA NULL,
              prev_hash BYTEA NOT NULL,
              leaf_hash BYTEA NOT NULL);
            CREATE INDEX audit_entry_patient ON audit_entry (patient_ref, seq) WHERE patient_ref IS NOT NULL;
            CREATE INDEX audit_entry_user ON audit_entry (user_id, seq);
            CREATE INDEX audit_entry_time ON audit_entry (time_ms);
            CREATE TABLE audit_node (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (level, idx));
            CREATE TABLE audit_state (id INTEGER PRIMARY KEY CHECK (id = 1), tree_size BIGINT NOT NULL, frontier BYTEA NOT NULL, last_leaf BYTEA NOT NULL);
            INSERT INTO audit_state (id, tree_size, frontier, last_leaf) VALUES (1, 0, '\x'::bytea, decode(repeat('00', 32), 'hex'));
            CREATE TABLE audit_tree_head (
              tree_size BIGINT PRIMARY KEY,
              time_ms BIGINT NOT NULL,
              root_hash BYTEA NOT NULL,
              key_id TEXT NOT NULL,
              public_key BYTEA NOT NULL,
              signature BYTEA NOT NULL);
            CREATE TABLE audit_cursor (
              sink TEXT PRIMARY KEY,
              next_seq BIGINT NOT NULL,
              updated_ms BIGINT NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0,
              last_error TEXT NULL);
            """),
        // Entries come in bursts for one patient (a study's images, a viewing session). Indexing every entry by patient
        // cost a third of the append rate; a row where the patient changes from the entry before is enough to find
        // them all. Every entry belongs to exactly one run: from its start to the next run's start, whatever its patient.
        new("audit", 2, "sparse patient index: one row per run of entries for the same patient",
            """
            CREATE TABLE audit_patient_run (seq INTEGER PRIMARY KEY, patient_ref TEXT NULL);
            INSERT INTO audit_patient_run (seq, patient_ref)
              SELECT seq, patient_ref FROM (
                SELECT seq, patient_ref, LAG(patient_ref) OVER (ORDER BY seq) AS prev, LAG(seq) OVER (ORDER BY seq) AS prev_seq FROM audit_entry)
              WHERE prev_seq IS NULL OR prev IS NOT patient_ref;
            CREATE INDEX audit_patient_run_patient ON audit_patient_run (patient_ref, seq) WHERE patient_ref IS NOT NULL;
            DROP INDEX audit_entry_patient;
            """,
            """
            CREATE TABLE audit_patient_run (seq BIGINT PRIMARY KEY, patient_ref TEXT NULL);
            INSERT INTO audit_patient_run (seq, patient_ref)
              SELECT seq, patient_ref FROM (
                SELECT seq, patient_ref, LAG(patient_ref) OVER (ORDER BY seq) AS prev, LAG(seq) OVER (ORDER BY seq) AS prev_seq FROM audit_entry) t
              WHERE prev_seq IS NULL OR prev IS DISTINCT FROM patient_ref;
            CREATE INDEX audit_patient_run_patient ON audit_patient_run (patient_ref, seq) WHERE patient_ref IS NOT NULL;
            DROP INDEX audit_entry_patient;
            """),
        // The log is written in time order, give or take a clock: a row where the minute changes from the entry before
        // finds a time range as the per-entry index did, without an index insert per entry. An entry whose clock is
        // off only starts a run of its own.
        new("audit", 3, "sparse time index: one row per run of entries in the same minute",
            """
            CREATE TABLE audit_minute_run (seq INTEGER PRIMARY KEY, minute INTEGER NOT NULL);
            INSERT INTO audit_minute_run (seq, minute)
              SELECT seq, minute FROM (
                SELECT seq, time_ms / 60000 AS minute, LAG(time_ms / 60000) OVER (ORDER BY seq) AS prev, LAG(seq) OVER (ORDER BY seq) AS prev_seq FROM audit_entry)
              WHERE prev_seq IS NULL OR prev <> minute;
            CREATE INDEX audit_minute_run_minute ON audit_minute_run (minute, seq);
            DROP INDEX audit_entry_time;
            """,
            """
            CREATE TABLE audit_minute_run (seq BIGINT PRIMARY KEY, minute BIGINT NOT NULL);
            INSERT INTO audit_minute_run (seq, minute)
              SELECT seq, minute FROM (
                SELECT seq, time_ms / 60000 AS minute, LAG(time_ms / 60000) OVER (ORDER BY seq) AS prev, LAG(seq) OVER (ORDER BY seq) AS prev_seq FROM audit_entry) t
              WHERE prev_seq IS NULL OR prev <> minute;
            CREATE INDEX audit_minute_run_minute ON audit_minute_run (minute, seq);
            DROP INDEX audit_entry_time;
            """),
        // A collector that refuses one event for good (a FHIR server's validation, say) must not hold back every event
        // after it: what it refuses is set aside here, per sink, until an operator resends it.
        new("audit", 4, "entries and tree heads an export sink refused, set aside for resending",
            """
            CREATE TABLE audit_set_aside (
              sink TEXT NOT NULL,
              kind TEXT NOT NULL,
              seq INTEGER NOT NULL,
              refused_ms INTEGER NOT NULL,
              reason TEXT NOT NULL,
              PRIMARY KEY (sink, kind, seq));
            """,
            """
            CREATE TABLE audit_set_aside (
              sink TEXT NOT NULL,
              kind TEXT NOT NULL,
              seq BIGINT NOT NULL,
              refused_ms BIGINT NOT NULL,
              reason TEXT NOT NULL,
              PRIMARY KEY (sink, kind, seq));
            """),
    ];
}
