using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Core.Tests;

/// <summary>
/// Statements kept on a long-lived connection (the ingest committer's): the same command comes back for the same SQL,
/// runs again with new parameters in later transactions, and survives a rollback; a connection that does not keep its
/// statements gets a fresh command each time.
/// </summary>
public sealed class KeptStatementTests
{
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_kept_statement_runs_again_with_new_parameters_across_transactions(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabases.CreateAsync(provider, ct);
        await using var connection = await db.Database.OpenConnectionAsync(ct);
        await using (var create = connection.CreateCommand(null, "CREATE TABLE kept (id BIGINT PRIMARY KEY, label TEXT NOT NULL)"))
        {
            await create.ExecuteNonQueryAsync(ct);
        }

        connection.KeepStatements();
        const string insert = "INSERT INTO kept (id, label) VALUES (@i, @l)";
        var commands = new HashSet<System.Data.Common.DbCommand>();
        for (var i = 0; i < 3; i++)
        {
            await using var transaction = await db.Database.BeginWriteAsync(connection, ct);
            await using (var statement = connection.Statement(transaction, insert).With("@i", (long)i).With("@l", $"row {i}"))
            {
                commands.Add(statement.Command);
                await statement.Command.ExecuteNonQueryAsync(ct);
            }

            if (i == 1)
            {
                await transaction.RollbackAsync(ct);
            }
            else
            {
                await transaction.CommitAsync(ct);
            }
        }

        Assert.Single(commands);
        await using var select = connection.Statement(null, "SELECT label FROM kept ORDER BY id");
        await using var reader = await select.Command.ExecuteReaderAsync(ct);
        var labels = new List<string>();
        while (await reader.ReadAsync(ct))
        {
            labels.Add(reader.GetString(0));
        }

        Assert.Equal(["row 0", "row 2"], labels);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_connection_that_does_not_keep_statements_runs_each_statement_afresh(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabases.CreateAsync(provider, ct);
        await using var connection = await db.Database.OpenConnectionAsync(ct);
        foreach (var value in new[] { 7L, 11L })
        {
            // The lease disposes its command; the next one starts with no parameters left over.
            await using var statement = connection.Statement(null, "SELECT @v").With("@v", value);
            Assert.Single(statement.Command.Parameters);
            Assert.Equal(value, Convert.ToInt64(await statement.Command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
