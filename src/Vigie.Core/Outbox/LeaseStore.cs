using System.Data.Common;
using Microsoft.Extensions.Logging;
using Vigie.Core.Data;

namespace Vigie.Core.Outbox;

/// <summary>
/// Named leases in the database, so that one node at a time runs a background job (scrub, tree-head signing...)
/// while every node may accept associations.
/// </summary>
public sealed class LeaseStore(IVigieDatabase database, TimeProvider time, ILogger<LeaseStore>? logger = null)
{
    /// <summary>
    /// Clocks of the nodes sharing an index may differ by this much: a lease reaching further than the longest one an
    /// honest holder takes, plus this, was written by someone else or under a broken clock.
    /// </summary>
    public static readonly TimeSpan ClockSlack = TimeSpan.FromMinutes(1);

    /// <summary>Takes or renews the lease when it is free, expired, already ours, or runs further than <paramref name="duration"/> can explain.</summary>
    public async ValueTask<bool> TryAcquireAsync(string name, string holder, TimeSpan duration, CancellationToken cancellationToken) =>
        (await AcquireAsync(name, holder, duration, duration, cancellationToken).ConfigureAwait(false)).Acquired;

    /// <summary>
    /// Takes or renews the lease when it is free, expired or already ours; and takes it over when it runs further into
    /// the future than <paramref name="longest"/> (the longest lease any honest holder of it takes) plus <see cref="ClockSlack"/>.
    /// Before 2026-12-08 a row written into the database with a far-future end held the job (tree-head signing, the
    /// maintenance scrub) back for good, on every node, across restarts.
    /// </summary>
    public async ValueTask<LeaseGrant> AcquireAsync(string name, string holder, TimeSpan duration, TimeSpan longest, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var until = now + (long)duration.TotalMilliseconds;
        var ceiling = now + (long)(Max(duration, longest) + ClockSlack).TotalMilliseconds;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        LeaseGrant grant;
        await using (var command = connection.CreateCommand(transaction, """
            INSERT INTO leases (name, holder, until_ms) VALUES (@n, @h, @u)
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
            WHERE leases.holder = excluded.holder OR leases.until_ms < @now
            """).With("@n", name).With("@h", holder).With("@u", until).With("@now", now))
        {
            grant = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1 ? LeaseGrant.Taken : LeaseGrant.Refused;
        }

        if (!grant.Acquired)
        {
            // Only read when the lease is someone else's: the holder's own renewal costs nothing more.
            grant = await TakeOverForgedAsync(connection, transaction, name, holder, until, ceiling, cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return grant;
    }

    private async ValueTask<LeaseGrant> TakeOverForgedAsync(DbConnection connection, DbTransaction transaction, string name, string holder, long until,
        long ceiling, CancellationToken cancellationToken)
    {
        string? previous = null;
        long previousUntil = 0;
        await using (var read = connection.CreateCommand(transaction, "SELECT holder, until_ms FROM leases WHERE name = @n").With("@n", name))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                previous = reader.GetString(0);
                previousUntil = reader.GetInt64(1);
            }
        }

        if (previous is null || previousUntil <= ceiling)
        {
            return LeaseGrant.Refused;
        }

        await using var update = connection.CreateCommand(transaction, "UPDATE leases SET holder = @h, until_ms = @u WHERE name = @n AND holder = @p AND until_ms = @pu")
            .With("@n", name).With("@h", holder).With("@u", until).With("@p", previous).With("@pu", previousUntil);
        if (await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) != 1)
        {
            return LeaseGrant.Refused;
        }

        var claimed = DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(previousUntil, 0, DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()));
        logger?.LogWarning("Lease {Lease} taken over from {Holder}: it claimed it until {Until:u}, further than any holder takes it (a row written into the database, or a broken clock)",
            name, previous, claimed);
        return new LeaseGrant(true, previous, claimed);
    }

    /// <summary>
    /// Records a time under a name of its own in the leases table (not a lease: nobody acquires it), for every node to
    /// read: when a job last completed, whichever node ran it.
    /// </summary>
    public async ValueTask StampAsync(string name, string holder, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using (var command = connection.CreateCommand(transaction, """
            INSERT INTO leases (name, holder, until_ms) VALUES (@n, @h, @u)
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
            """).With("@n", name).With("@h", holder).With("@u", at.ToUnixTimeMilliseconds()))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The time <see cref="StampAsync"/> last recorded under the name, or null.</summary>
    public async ValueTask<DateTimeOffset?> ReadStampAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT until_ms FROM leases WHERE name = @n").With("@n", name);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long ms
            ? DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(ms, 0, DateTimeOffset.MaxValue.ToUnixTimeMilliseconds()))
            : null;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

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

/// <summary>
/// Whether the lease was taken; when it was taken over from a holder whose lease ran too far into the future
/// (forged, or a broken clock), that holder and the end it claimed, for the caller to log and audit.
/// </summary>
public readonly record struct LeaseGrant(bool Acquired, string? OverriddenHolder = null, DateTimeOffset? OverriddenUntil = null)
{
    public static LeaseGrant Taken => new(true);

    public static LeaseGrant Refused => new(false);
}
