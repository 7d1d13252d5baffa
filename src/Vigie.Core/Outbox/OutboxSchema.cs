using Vigie.Core.Data;

namespace Vigie.Core.Outbox;

internal sealed class OutboxSchema : ISchemaProvider
{
    public IEnumerable<SchemaMigration> Migrations { get; } =
    [
        new("core", 1, "outbox and leases",
            """
            CREATE TABLE outbox (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              topic TEXT NOT NULL,
              payload BLOB NOT NULL,
              created_at INTEGER NOT NULL,
              available_at INTEGER NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0,
              claimed_by TEXT NULL,
              claim_until INTEGER NULL,
              done_at INTEGER NULL,
              outcome TEXT NULL,
              last_error TEXT NULL);
            CREATE INDEX outbox_pending ON outbox (topic, available_at, id) WHERE done_at IS NULL;
            CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms INTEGER NOT NULL);
            """,
            """
            CREATE TABLE outbox (
              id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
              topic TEXT NOT NULL,
              payload BYTEA NOT NULL,
              created_at BIGINT NOT NULL,
              available_at BIGINT NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0,
              claimed_by TEXT NULL,
              claim_until BIGINT NULL,
              done_at BIGINT NULL,
              outcome TEXT NULL,
              last_error TEXT NULL);
            CREATE INDEX outbox_pending ON outbox (topic, available_at, id) WHERE done_at IS NULL;
            CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL);
            """),
        // Messages given up on stay until someone retries or dismisses them; the status of a queue counts them at every
        // health check, so they are indexed apart from the done ones, which pile up.
        new("core", 2, "index of messages given up on",
            "CREATE INDEX outbox_dead ON outbox (topic, id) WHERE outcome = 'dead';",
            "CREATE INDEX outbox_dead ON outbox (topic, id) WHERE outcome = 'dead';"),
        // Whom a message concerns (the destination of a forward): the status of a queue is read per subject, so an
        // administrator with two PACS sees which one is behind. Messages queued before stay without one.
        new("core", 3, "subject of a message",
            "ALTER TABLE outbox ADD COLUMN subject TEXT NULL;",
            "ALTER TABLE outbox ADD COLUMN subject TEXT NULL;"),
    ];
}
