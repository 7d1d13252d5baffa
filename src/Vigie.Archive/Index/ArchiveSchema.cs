using Vigie.Core.Data;

namespace Vigie.Archive.Index;

/// <summary>
/// The index tables. No column holds a plaintext identifier: *_key/*_uid/term columns are 16-byte keyed hashes,
/// attributes/reason/details/source are sealed (AES-256-GCM), object ids are keyed hashes. Times are Unix milliseconds.
/// </summary>
internal sealed class ArchiveSchema : ISchemaProvider
{
    public const string Module = "archive";

    public IEnumerable<SchemaMigration> Migrations { get; } =
    [
        new(Module, 1, "archive index: hierarchy, versions, objects, terms, quarantine, deletions",
            """
            CREATE TABLE archive_patients (
              id INTEGER PRIMARY KEY,
              patient_key BLOB NOT NULL UNIQUE,
              attributes BLOB NOT NULL,
              attributes_mac BLOB NOT NULL,
              created_at INTEGER NOT NULL,
              updated_at INTEGER NOT NULL);
            CREATE TABLE archive_studies (
              id INTEGER PRIMARY KEY,
              patient_id INTEGER NOT NULL REFERENCES archive_patients (id),
              study_uid BLOB NOT NULL UNIQUE,
              attributes BLOB NOT NULL,
              attributes_mac BLOB NOT NULL,
              created_at INTEGER NOT NULL,
              updated_at INTEGER NOT NULL);
            CREATE INDEX archive_studies_patient ON archive_studies (patient_id);
            CREATE TABLE archive_series (
              id INTEGER PRIMARY KEY,
              study_id INTEGER NOT NULL REFERENCES archive_studies (id),
              series_uid BLOB NOT NULL UNIQUE,
              attributes BLOB NOT NULL,
              attributes_mac BLOB NOT NULL,
              created_at INTEGER NOT NULL,
              updated_at INTEGER NOT NULL);
            CREATE INDEX archive_series_study ON archive_series (study_id);
            CREATE TABLE archive_instances (
              id INTEGER PRIMARY KEY,
              series_id INTEGER NOT NULL REFERENCES archive_series (id),
              sop_uid BLOB NOT NULL UNIQUE,
              current_version INTEGER NOT NULL,
              attributes BLOB NOT NULL,
              attributes_mac BLOB NOT NULL,
              created_at INTEGER NOT NULL,
              updated_at INTEGER NOT NULL);
            CREATE INDEX archive_instances_series ON archive_instances (series_id);
            CREATE TABLE archive_versions (
              instance_id INTEGER NOT NULL REFERENCES archive_instances (id),
              version INTEGER NOT NULL,
              object_id BLOB NOT NULL,
              length INTEGER NOT NULL,
              stored_at INTEGER NOT NULL,
              superseded_at INTEGER NULL,
              source BLOB NULL,
              PRIMARY KEY (instance_id, version)) WITHOUT ROWID;
            CREATE INDEX archive_versions_object ON archive_versions (object_id);
            CREATE INDEX archive_versions_superseded ON archive_versions (superseded_at) WHERE superseded_at IS NOT NULL;
            CREATE TABLE archive_objects (
              object_id BLOB PRIMARY KEY,
              length INTEGER NOT NULL,
              created_at INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE archive_terms (
              term BLOB NOT NULL,
              level INTEGER NOT NULL,
              row_id INTEGER NOT NULL,
              PRIMARY KEY (term, level, row_id)) WITHOUT ROWID;
            CREATE INDEX archive_terms_row ON archive_terms (level, row_id);
            CREATE TABLE archive_quarantine (
              id INTEGER PRIMARY KEY,
              quarantine_id TEXT NOT NULL UNIQUE,
              object_id BLOB NOT NULL,
              length INTEGER NOT NULL,
              reason BLOB NOT NULL,
              details BLOB NULL,
              quarantined_at INTEGER NOT NULL);
            CREATE INDEX archive_quarantine_object ON archive_quarantine (object_id);
            CREATE TABLE archive_deletions (
              kind TEXT NOT NULL,
              name TEXT NOT NULL,
              delete_after INTEGER NOT NULL,
              PRIMARY KEY (kind, name)) WITHOUT ROWID;
            """,
            """
            CREATE TABLE archive_patients (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              patient_key BYTEA NOT NULL UNIQUE,
              attributes BYTEA NOT NULL,
              attributes_mac BYTEA NOT NULL,
              created_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL);
            CREATE TABLE archive_studies (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              patient_id BIGINT NOT NULL REFERENCES archive_patients (id),
              study_uid BYTEA NOT NULL UNIQUE,
              attributes BYTEA NOT NULL,
              attributes_mac BYTEA NOT NULL,
              created_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL);
            CREATE INDEX archive_studies_patient ON archive_studies (patient_id);
            CREATE TABLE archive_series (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              study_id BIGINT NOT NULL REFERENCES archive_studies (id),
              series_uid BYTEA NOT NULL UNIQUE,
              attributes BYTEA NOT NULL,
              attributes_mac BYTEA NOT NULL,
              created_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL);
            CREATE INDEX archive_series_study ON archive_series (study_id);
            CREATE TABLE archive_instances (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              series_id BIGINT NOT NULL REFERENCES archive_series (id),
              sop_uid BYTEA NOT NULL UNIQUE,
              current_version INTEGER NOT NULL,
              attributes BYTEA NOT NULL,
              attributes_mac BYTEA NOT NULL,
              created_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL);
            CREATE INDEX archive_instances_series ON archive_instances (series_id);
            CREATE TABLE archive_versions (
              instance_id BIGINT NOT NULL REFERENCES archive_instances (id),
              version INTEGER NOT NULL,
              object_id BYTEA NOT NULL,
              length BIGINT NOT NULL,
              stored_at BIGINT NOT NULL,
              superseded_at BIGINT NULL,
              source BYTEA NULL,
              PRIMARY KEY (instance_id, version));
            CREATE INDEX archive_versions_object ON archive_versions (object_id);
            CREATE INDEX archive_versions_superseded ON archive_versions (superseded_at) WHERE superseded_at IS NOT NULL;
            CREATE TABLE archive_objects (
              object_id BYTEA PRIMARY KEY,
              length BIGINT NOT NULL,
              created_at BIGINT NOT NULL);
            CREATE TABLE archive_terms (
              term BYTEA NOT NULL,
              level SMALLINT NOT NULL,
              row_id BIGINT NOT NULL,
              PRIMARY KEY (term, level, row_id));
            CREATE INDEX archive_terms_row ON archive_terms (level, row_id);
            CREATE TABLE archive_quarantine (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              quarantine_id TEXT NOT NULL UNIQUE,
              object_id BYTEA NOT NULL,
              length BIGINT NOT NULL,
              reason BYTEA NOT NULL,
              details BYTEA NULL,
              quarantined_at BIGINT NOT NULL);
            CREATE INDEX archive_quarantine_object ON archive_quarantine (object_id);
            CREATE TABLE archive_deletions (
              kind TEXT NOT NULL,
              name TEXT NOT NULL,
              delete_after BIGINT NOT NULL,
              PRIMARY KEY (kind, name));
            """),
        new(Module, 2, "archive objects by filing time, where recovery after a power cut starts looking",
            "CREATE INDEX archive_objects_created ON archive_objects (created_at);",
            "CREATE INDEX archive_objects_created ON archive_objects (created_at);"),
        new(Module, 3, "where recovery must start looking after the clock stepped back",
            "CREATE TABLE archive_recovery_floor (id INTEGER PRIMARY KEY CHECK (id = 1), scan_from INTEGER NOT NULL);",
            "CREATE TABLE archive_recovery_floor (id SMALLINT PRIMARY KEY CHECK (id = 1), scan_from BIGINT NOT NULL);"),
        new(Module, 4, "which archive (data folder) this index belongs to",
            "CREATE TABLE archive_identity (id INTEGER PRIMARY KEY CHECK (id = 1), archive_id TEXT NOT NULL);",
            "CREATE TABLE archive_identity (id SMALLINT PRIMARY KEY CHECK (id = 1), archive_id TEXT NOT NULL);"),
        new(Module, 5, "when every row's sealed attributes were bound to its parent (and an instance's to its current version)",
            "CREATE TABLE archive_seal_binding (id INTEGER PRIMARY KEY CHECK (id = 1), bound_at INTEGER NOT NULL);",
            "CREATE TABLE archive_seal_binding (id SMALLINT PRIMARY KEY CHECK (id = 1), bound_at BIGINT NOT NULL);"),
        new(Module, 6, "when every quarantined object's data key was re-wrapped for quarantine",
            "CREATE TABLE archive_quarantine_binding (id INTEGER PRIMARY KEY CHECK (id = 1), bound_at INTEGER NOT NULL);",
            "CREATE TABLE archive_quarantine_binding (id SMALLINT PRIMARY KEY CHECK (id = 1), bound_at BIGINT NOT NULL);"),
    ];
}
