using System.Text.Json;
using Microsoft.Data.Sqlite;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Commands;

/// <summary>`vigie audit` as a monitoring script reads it.</summary>
public sealed class AuditCommandsTests
{
    /// <summary>
    /// Bug (review 33, 04): `audit verify --json` left latest_verified_head out (instead of null) exactly when tampering was
    /// found, and counted every entry as unsigned when they were signed but failed to verify.
    /// </summary>
    [Fact]
    public async Task Regression_audit_verify_json_dropped_its_keys_when_tampering_was_found()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory("vigie-verify-json");
        var data = await DataFolders.FilledAsync(root, "data", 1, ct);
        var intact = await VigieProcess.RunAsync(["audit", "verify", "--json", "--data", data], cancellationToken: ct);
        Assert.True(intact.ExitCode == 0, intact.ToString());

        await using (var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(data, "index.db"), Pooling = false }.ToString()))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "UPDATE audit_entry SET outcome = outcome + 4 WHERE seq = 1";
            Assert.Equal(1, await command.ExecuteNonQueryAsync(ct));
        }

        var tampered = await VigieProcess.RunAsync(["audit", "verify", "--json", "--data", data], cancellationToken: ct);

        Assert.True(tampered.ExitCode == 1, tampered.ToString());
        var before = JsonDocument.Parse(intact.StandardOutput).RootElement;
        var after = JsonDocument.Parse(tampered.StandardOutput).RootElement;
        Assert.Equal(before.EnumerateObject().Select(p => p.Name), after.EnumerateObject().Select(p => p.Name));
        Assert.Equal(JsonValueKind.Null, after.GetProperty("latest_verified_head").ValueKind);
        // Signed, under heads that fail: not unsigned. Only the entry the first verify appended (after its answer) may be.
        var appended = after.GetProperty("tree_size").GetInt64() - before.GetProperty("tree_size").GetInt64();
        Assert.InRange(after.GetProperty("unsigned_entries").GetInt64(), 0, before.GetProperty("unsigned_entries").GetInt64() + appended);
        Assert.True(after.GetProperty("tree_size").GetInt64() > appended + 1, tampered.StandardOutput);
    }
}
