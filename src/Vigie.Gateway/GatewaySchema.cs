using Vigie.Core.Data;

namespace Vigie.Gateway;

/// <summary>The gateway's own tables, in the shared Vigie database.</summary>
internal sealed class GatewaySchema : ISchemaProvider
{
    public IEnumerable<SchemaMigration> Migrations { get; } =
    [
        new("gateway", 1, "configuration fingerprints per node, to audit what changed between starts",
            """
            CREATE TABLE gateway_configuration (node TEXT NOT NULL, setting TEXT NOT NULL, fingerprint BLOB NOT NULL, PRIMARY KEY (node, setting));
            """,
            """
            CREATE TABLE gateway_configuration (node TEXT NOT NULL, setting TEXT NOT NULL, fingerprint BYTEA NOT NULL, PRIMARY KEY (node, setting));
            """),
        new("gateway", 2, "archived objects a re-inspection found hostile: never forwarded nor retrieved",
            "CREATE TABLE gateway_withheld (object_id BLOB PRIMARY KEY, flagged_at INTEGER NOT NULL, rules TEXT NOT NULL);",
            "CREATE TABLE gateway_withheld (object_id BYTEA PRIMARY KEY, flagged_at BIGINT NOT NULL, rules TEXT NOT NULL);"),
        new("gateway", 3, "withheld objects per rules folder: a rescan with other rules releases nothing another folder flagged",
            """
            CREATE TABLE gateway_withheld_by_rules (object_id BLOB NOT NULL, source TEXT NOT NULL, flagged_at INTEGER NOT NULL, rules TEXT NOT NULL, PRIMARY KEY (object_id, source));
            INSERT INTO gateway_withheld_by_rules (object_id, source, flagged_at, rules) SELECT object_id, '', flagged_at, rules FROM gateway_withheld;
            DROP TABLE gateway_withheld;
            """,
            """
            CREATE TABLE gateway_withheld_by_rules (object_id BYTEA NOT NULL, source TEXT NOT NULL, flagged_at BIGINT NOT NULL, rules TEXT NOT NULL, PRIMARY KEY (object_id, source));
            INSERT INTO gateway_withheld_by_rules (object_id, source, flagged_at, rules) SELECT object_id, '', flagged_at, rules FROM gateway_withheld;
            DROP TABLE gateway_withheld;
            """),
    ];
}
