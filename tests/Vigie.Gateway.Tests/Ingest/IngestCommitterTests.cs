using System.Data.Common;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Gateway.Ingest;

namespace Vigie.Gateway.Tests.Ingest;

/// <summary>
/// The index transaction is written while objects are synced and commits only once they are durable: an object whose
/// sync fails leaves no row and no audit entry, and the others of the same batch still commit.
/// </summary>
public sealed class IngestCommitterTests : IAsyncDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("vigie-committer-").FullName;
    private readonly ServiceProvider _services;

    public IngestCommitterTests()
    {
        var services = new ServiceCollection();
        services.AddSingleton<ILoggerFactory>(NullLoggerFactory.Instance);
        services.AddSingleton(typeof(ILogger<>), typeof(NullLogger<>));
        services.AddVigieCore();
        services.Configure<DatabaseOptions>(o => o.SqlitePath = Path.Combine(_folder, "index.db"));
        services.AddAudit();
        services.Configure<AuditOptions>(o =>
        {
            o.SigningKeyPath = Path.Combine(_folder, "keys", "audit.pem");
            o.SourceId = "TEST";
        });
        services.AddSingleton<IngestCommitter>();
        _services = services.BuildServiceProvider();
    }

    [Fact]
    public async Task Object_whose_sync_fails_commits_nothing_while_the_rest_of_its_batch_commits()
    {
        var ct = TestContext.Current.CancellationToken;
        var committer = await PrepareAsync(ct);
        var failingSync = new TaskCompletionSource();
        var slowSync = new TaskCompletionSource();
        var firstWritten = new TaskCompletionSource();

        // "a" leads a batch and waits for its sync while "b" (sync fails) and "c" (sync fine) queue for the next one.
        var a = committer.CommitAsync(Insert("a", firstWritten), _ => [Record("a")], slowSync.Task, ct);
        await firstWritten.Task.WaitAsync(ct);
        var b = committer.CommitAsync(Insert("b"), _ => [Record("b")], failingSync.Task, ct);
        var c = committer.CommitAsync(Insert("c"), _ => [Record("c")], Task.CompletedTask, ct);
        failingSync.SetException(new IOException("fsync failed (test)"));
        slowSync.SetResult();

        Assert.Equal("a", await a);
        var failure = await Assert.ThrowsAsync<IOException>(() => b);
        Assert.Contains("fsync failed", failure.Message, StringComparison.Ordinal);
        Assert.Equal("c", await c);

        await AssertCommittedAsync(["a", "c"], ct);
    }

    [Fact]
    public async Task Objects_already_durable_join_the_transaction_that_waits_for_a_sync_and_a_failing_joiner_is_undone_alone()
    {
        var ct = TestContext.Current.CancellationToken;
        var committer = await PrepareAsync(ct);
        var slowSync = new TaskCompletionSource();
        var firstWritten = new TaskCompletionSource();
        var transactions = new System.Collections.Concurrent.ConcurrentDictionary<string, DbTransaction>();

        // "a" leads and waits for its sync; "b" and "d" arrive already synced ("d" fails to write), "c" still syncing.
        var a = committer.CommitAsync(Tracked("a", transactions, Insert("a", firstWritten)), _ => [Record("a")], slowSync.Task, ct);
        await firstWritten.Task.WaitAsync(ct);
        var b = committer.CommitAsync(Tracked("b", transactions, Insert("b")), _ => [Record("b")], Task.CompletedTask, ct);
        var d = committer.CommitAsync<string>((_, _, _) => throw new InvalidOperationException("index write failed (test)"), _ => [Record("d")],
            Task.CompletedTask, ct);
        var cSync = new TaskCompletionSource();
        var c = committer.CommitAsync(Tracked("c", transactions, Insert("c")), _ => [Record("c")], cSync.Task, ct);
        slowSync.SetResult();
        // "a" is answered while "c" still waits for its sync: a leader's answer does not wait for the batches after its own.
        Assert.Equal("a", await a);
        Assert.Equal("b", await b);
        await Assert.ThrowsAsync<InvalidOperationException>(() => d);
        cSync.SetResult();
        Assert.Equal("c", await c);

        Assert.Same(transactions["a"], transactions["b"]);
        Assert.NotSame(transactions["a"], transactions["c"]);
        await AssertCommittedAsync(["a", "b", "c"], ct);
    }

    /// <summary>
    /// Regression: an object that joined a waiting transaction was taken off the queue but not added to the batch, so
    /// when the transaction then failed, the others were failed and it waited for an answer forever.
    /// </summary>
    [Fact]
    public async Task A_transaction_that_fails_after_an_object_joined_it_fails_that_object_too()
    {
        var ct = TestContext.Current.CancellationToken;
        var committer = await PrepareAsync(ct);
        var slowSync = new TaskCompletionSource();
        var firstWritten = new TaskCompletionSource();

        // "b" joins "a"'s transaction while it waits for its sync; b's audit record carries details, which this log
        // (with no sealer) refuses, so the transaction fails after b joined.
        var a = committer.CommitAsync(Insert("a", firstWritten), _ => [Record("a")], slowSync.Task, ct);
        await firstWritten.Task.WaitAsync(ct);
        var b = committer.CommitAsync(Insert("b"), _ => [Record("b") with { Details = new AuditDetails { OutcomeDescription = "sealed (test)" } }],
            Task.CompletedTask, ct);
        slowSync.SetResult();

        await Assert.ThrowsAsync<InvalidOperationException>(() => a);
        await Assert.ThrowsAsync<InvalidOperationException>(() => b.WaitAsync(TimeSpan.FromSeconds(30), ct));
        await using var read = await _services.GetRequiredService<IVigieDatabase>().OpenConnectionAsync(ct);
        await using var count = read.CreateCommand(null, "SELECT count(*) FROM stored");
        Assert.Equal(0L, Convert.ToInt64(await count.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
    }

    private async Task<IngestCommitter> PrepareAsync(CancellationToken ct)
    {
        var database = _services.GetRequiredService<IVigieDatabase>();
        await _services.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
        await using (var connection = await database.OpenConnectionAsync(ct))
        {
            await using var create = connection.CreateCommand(null, "CREATE TABLE stored (name TEXT NOT NULL)");
            await create.ExecuteNonQueryAsync(ct);
        }

        return _services.GetRequiredService<IngestCommitter>();
    }

    /// <summary>Exactly these rows and audit entries are committed, and rolled-back rounds left no gap or fork in the Merkle log.</summary>
    private async Task AssertCommittedAsync(string[] names, CancellationToken ct)
    {
        var database = _services.GetRequiredService<IVigieDatabase>();
        await using var read = await database.OpenConnectionAsync(ct);
        await using var select = read.CreateCommand(null, "SELECT group_concat(name, ',') FROM (SELECT name FROM stored ORDER BY name)");
        Assert.Equal(string.Join(',', names), (string?)await select.ExecuteScalarAsync(ct));

        var log = _services.GetRequiredService<IAuditLog>();
        var audit = await log.QueryAsync(new AuditQuery { Limit = 10 }, ct);
        Assert.Equal(names, audit.Entries.Select(e => e.SourceId).Order(StringComparer.Ordinal));
        await log.SignTreeHeadAsync(ct);
        Assert.True((await log.VerifyAsync(null, ct)).IsValid);
    }

    private static Func<DbConnection, DbTransaction, CancellationToken, ValueTask<string>> Tracked(string name,
        System.Collections.Concurrent.ConcurrentDictionary<string, DbTransaction> transactions,
        Func<DbConnection, DbTransaction, CancellationToken, ValueTask<string>> write) =>
        (connection, transaction, ct) =>
        {
            transactions[name] = transaction;
            return write(connection, transaction, ct);
        };

    private static Func<DbConnection, DbTransaction, CancellationToken, ValueTask<string>> Insert(string name, TaskCompletionSource? written = null) =>
        async (connection, transaction, ct) =>
        {
            await using var insert = connection.CreateCommand(transaction, "INSERT INTO stored (name) VALUES (@n)");
            var p = insert.CreateParameter();
            p.ParameterName = "@n";
            p.Value = name;
            insert.Parameters.Add(p);
            await insert.ExecuteNonQueryAsync(ct);
            written?.TrySetResult();
            return name;
        };

    private static AuditRecord Record(string source) => new()
    {
        Time = DateTimeOffset.UtcNow,
        EventId = AuditEventIds.DicomInstancesTransferred,
        Action = AuditAction.Create,
        Outcome = AuditOutcome.Success,
        Participants =
        [
            new AuditParticipant { UserId = "MODALITY", IsRequestor = true, Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Source] },
        ],
        SourceId = source,
    };

    public async ValueTask DisposeAsync()
    {
        await _services.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }
}
