using Vigie.Core.Data;

namespace Vigie.Core.Outbox;

/// <summary>
/// Named leases in the database, so that one node at a time runs a background job (scrub, tree-head signing...)
/// while every node may accept associations.
/// </summary>
public sealed class LeaseStore(IVigieDatabase database, TimeProvider time)
{
    /// <summary>Takes or renews the lease when it is free, expired or already ours.</summary>
    public async ValueTask<bool> TryAcquireAsync(string name, string holder, TimeSpan duration, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var until = now + (long)duration.TotalMilliseconds;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, """
            INSERT INTO leases (name, holder, until_ms) VALUES (@n, @h, @u)
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
            WHERE leases.holder = excluded.holder OR leases.until_ms < @now
            """).With("@n", name).With("@h", holder).With("@u", until).With("@now", now);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows == 1;
    }

    /// <summary>Who holds the lease now, if anyone does and it has not expired.</summary>
    public async ValueTask<string?> HolderAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT holder FROM leases WHERE name = @n AND until_ms >= @now")
            .With("@n", name).With("@now", time.GetUtcNow().ToUnixTimeMilliseconds());
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
    }

    /// <summary>Takes the lease from <paramref name="previous"/> (a holder known to be gone), if it still holds it.</summary>
    public async ValueTask<bool> TryTakeOverAsync(string name, string previous, string holder, TimeSpan duration, CancellationToken cancellationToken)
    {
        var until = time.GetUtcNow().ToUnixTimeMilliseconds() + (long)duration.TotalMilliseconds;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, "UPDATE leases SET holder = @h, until_ms = @u WHERE name = @n AND holder = @p")
            .With("@n", name).With("@h", holder).With("@u", until).With("@p", previous);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows == 1;
    }

    public async ValueTask ReleaseAsync(string name, string holder, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, "DELETE FROM leases WHERE name = @n AND holder = @h")
            .With("@n", name).With("@h", holder);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}
