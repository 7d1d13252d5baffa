using Xunit;
using Npgsql;
using Vigie.Core.Data;

namespace Vigie.Testing;

/// <summary>
/// Fresh databases for contract tests: a SQLite file in a temp folder, or a new database on the PostgreSQL
/// server that scripts/test.sh started (VIGIE_TEST_POSTGRES). Use <see cref="Providers"/> as MemberData so the
/// same test runs against both.
/// </summary>
public static class TestDatabases
{
    public static TheoryData<DatabaseProvider> Providers => new(DatabaseProvider.Sqlite, DatabaseProvider.Postgres);

    public static string? PostgresConnectionString => Environment.GetEnvironmentVariable("VIGIE_TEST_POSTGRES");

    public static async Task<TestDatabase> CreateAsync(DatabaseProvider provider, CancellationToken cancellationToken = default)
    {
        switch (provider)
        {
            case DatabaseProvider.Sqlite:
            {
                var dir = new TempDirectory("vigie-db");
                var database = new SqliteDatabase(dir.Combine("index.db"), TimeSpan.FromSeconds(30));
                return new TestDatabase(database, dir, null, null);
            }

            case DatabaseProvider.Postgres:
            {
                var admin = PostgresConnectionString;
                if (admin is null)
                {
                    const string message = "VIGIE_TEST_POSTGRES is not set; run scripts/test.sh, which starts PostgreSQL.";
                    if (Peers.Required)
                    {
                        Assert.Fail(message);
                    }

                    Assert.Skip(message);
                }

                var name = "vigie_t_" + Guid.NewGuid().ToString("N")[..16];
                await using (var connection = new NpgsqlConnection(admin))
                {
                    await connection.OpenAsync(cancellationToken);
                    await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
                    await command.ExecuteNonQueryAsync(cancellationToken);
                }

                var builder = new NpgsqlConnectionStringBuilder(admin) { Database = name };
                return new TestDatabase(new PostgresDatabase(builder.ConnectionString), null, admin, name);
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(provider), provider, null);
        }
    }
}

public sealed class TestDatabase(IVigieDatabase database, TempDirectory? directory, string? adminConnectionString, string? postgresName) : IAsyncDisposable
{
    public IVigieDatabase Database { get; } = database;

    public DatabaseProvider Provider => Database.Provider;

    /// <summary>For PostgreSQL, the connection string of this test's own database.</summary>
    public string? ConnectionString => adminConnectionString is null
        ? null
        : new NpgsqlConnectionStringBuilder(adminConnectionString) { Database = postgresName }.ConnectionString;

    /// <summary>For SQLite, the database file.</summary>
    public string? SqlitePath => (Database as SqliteDatabase)?.Path;

    public async ValueTask DisposeAsync()
    {
        if (Database is IAsyncDisposable disposable)
        {
            await disposable.DisposeAsync();
        }

        directory?.Dispose();
        if (adminConnectionString is not null && postgresName is not null)
        {
            NpgsqlConnection.ClearAllPools();
            await using var connection = new NpgsqlConnection(adminConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {postgresName} WITH (FORCE)", connection);
            await command.ExecuteNonQueryAsync();
        }
    }
}
