using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Web.Tests;

/// <summary>
/// Regression: with torn pages in the SQLite index, stores and the audit signer failed with "database disk image is
/// malformed" while /health said `database: Healthy ("Sqlite reachable")`, since `SELECT 1` reads no table page.
/// </summary>
public sealed class DatabaseDamageHealthTests
{
    [Fact]
    public async Task Regression_health_said_database_reachable_while_sqlite_reported_the_index_malformed()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-damage");
        var path = folder.Combine("index.db");
        var database = new SqliteDatabase(path, TimeSpan.FromSeconds(5));
        await using (var connection = await database.OpenConnectionAsync(ct))
        await using (var command = connection.CreateCommand(null,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL); "
            + "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT i, hex(randomblob(250)) FROM n"))
        {
            await command.ExecuteNonQueryAsync(ct);
        }

        var check = new DatabaseHealthCheck(database);
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext(), ct)).Status);

        SqliteConnection.ClearAllPools();
        await using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            var pages = file.Length / 4096;
            foreach (var page in new[] { pages / 2, pages / 2 + 1, pages - 2 })
            {
                file.Position = page * 4096;
                await file.WriteAsync(System.Security.Cryptography.RandomNumberGenerator.GetBytes(64), ct);
            }
        }

        // What a store or the signer meets at run time: the table's torn pages.
        await using (var connection = await database.OpenConnectionAsync(ct))
        await using (var command = connection.CreateCommand(null, "SELECT sum(length(v)) FROM t"))
        {
            var error = await Assert.ThrowsAsync<SqliteException>(() => command.ExecuteScalarAsync(ct));
            Assert.Equal(11, error.SqliteErrorCode & 0xff);
        }

        var health = await check.CheckHealthAsync(new HealthCheckContext(), ct);
        Assert.Equal(HealthStatus.Unhealthy, health.Status);
        Assert.Contains($"the index {path} is damaged (SQLite: ", health.Description, StringComparison.Ordinal);
        Assert.Contains("Restore it from a consistent backup", health.Description, StringComparison.Ordinal);
    }
}
