using System.Data.Common;
using System.Globalization;

namespace Vigie.Core.Data;

/// <summary>
/// Applies every registered module's migrations that the database has not seen yet, each in its own transaction.
/// On PostgreSQL an advisory lock serialises nodes that start together.
/// </summary>
public sealed class SchemaMigrator(IVigieDatabase database, IEnumerable<ISchemaProvider> providers)
{
    /// <summary>
    /// Whether the SQLite index is read through (<c>PRAGMA quick_check</c>, seconds per GB) before migrating: on for a
    /// start and the commands that walk the archive; a quick command (stats, audit show) reports damage as it meets it.
    /// </summary>
    public bool CheckIntegrity { get; set; } = true;

    private const long PostgresLockKey = 0x5649_4749_4553_4348; // "VIGIESCH"

    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        var migrations = providers.SelectMany(p => p.Migrations)
            .OrderBy(m => m.Module, StringComparer.Ordinal)
            .ThenBy(m => m.Version)
            .ToList();
        var duplicate = migrations.GroupBy(m => (m.Module, m.Version)).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"Migration {duplicate.Key.Module}/{duplicate.Key.Version} is registered twice.");
        }

        if (CheckIntegrity && database is SqliteDatabase sqlite)
        {
            // A start and the commands that walk the archive come here first: a damaged index stops them, named, with the remedy.
            await sqlite.EnsureIntactAsync(cancellationToken).ConfigureAwait(false);
        }

        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        if (database.Provider == DatabaseProvider.Postgres)
        {
            await ExecuteAsync(connection, null, $"SELECT pg_advisory_lock({PostgresLockKey})", cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await ExecuteAsync(connection, null,
                "CREATE TABLE IF NOT EXISTS vigie_schema (module TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (module, version))",
                cancellationToken).ConfigureAwait(false);

            var applied = new HashSet<(string, int)>();
            await using (var command = connection.CreateCommand())
            {
                command.CommandText = "SELECT module, version FROM vigie_schema";
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    applied.Add((reader.GetString(0), Convert.ToInt32(reader.GetValue(1), CultureInfo.InvariantCulture)));
                }
            }

            // A schema some newer Vigie migrated: this node would write rows that version does not expect (a node left
            // behind in a rolling upgrade of a shared PostgreSQL). It stops instead.
            var known = migrations.Select(m => (m.Module, m.Version)).ToHashSet();
            var modules = migrations.Select(m => m.Module).ToHashSet(StringComparer.Ordinal);
            if (applied.Where(a => modules.Contains(a.Item1) && !known.Contains(a)).OrderBy(a => a.Item1, StringComparer.Ordinal).ThenBy(a => a.Item2)
                    .FirstOrDefault() is { Item1: not null } newer)
            {
                var latest = migrations.Where(m => m.Module == newer.Item1).Max(m => m.Version);
                throw new InvalidOperationException(
                    $"The database holds {newer.Item1} schema version {newer.Item2}, which this version of Vigie does not know (it knows up to {latest}): "
                    + "a newer Vigie migrated it. Run that newer version on this node too.");
            }

            foreach (var migration in migrations.Where(m => !applied.Contains((m.Module, m.Version))))
            {
                await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
                // Read again under the write lock: another node starting at the same moment on the same SQLite file may
                // have applied it since (PostgreSQL nodes take an advisory lock for the whole run instead).
                await using (var check = connection.CreateCommand(transaction, "SELECT COUNT(*) FROM vigie_schema WHERE module = @m AND version = @v")
                                 .With("@m", migration.Module).With("@v", migration.Version))
                {
                    if (Convert.ToInt64(await check.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture) > 0)
                    {
                        await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                        continue;
                    }
                }

                await ExecuteAsync(connection, transaction, migration.SqlFor(database.Provider), cancellationToken).ConfigureAwait(false);
                await using (var record = connection.CreateCommand(transaction,
                                 "INSERT INTO vigie_schema (module, version, description, applied_at) VALUES (@m, @v, @d, @t)")
                             .With("@m", migration.Module).With("@v", migration.Version).With("@d", migration.Description)
                             .With("@t", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture)))
                {
                    await record.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (database.Provider == DatabaseProvider.Postgres)
            {
                await ExecuteAsync(connection, null, $"SELECT pg_advisory_unlock({PostgresLockKey})", CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private static async Task ExecuteAsync(DbConnection connection, DbTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand(transaction, sql);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
