using System.Data.Common;
using System.Globalization;
using Vigie.Core.Data;

namespace Vigie.Core.Outbox;

/// <summary>
/// The transactional outbox. Producers enqueue inside their own write transaction; consumers claim a batch
/// under a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, the single SQLite writer otherwise), then complete
/// or reschedule each message. Completing twice is harmless.
/// </summary>
public sealed class Outbox(IVigieDatabase database, TimeProvider time, OutboxSignal signal)
{
    public const string OutcomeDone = "done";
    public const string OutcomeDead = "dead";

    /// <summary>A message given up on that an operator decided not to retry; kept for the record, purged like done ones.</summary>
    public const string OutcomeDismissed = "dismissed";

    /// <summary>
    /// Adds an event to the caller's transaction. It becomes visible when that transaction commits. <paramref name="subject"/>
    /// names whom it concerns (a destination), for <see cref="StatusBySubjectAsync"/>.
    /// </summary>
    public async ValueTask EnqueueAsync(DbConnection connection, DbTransaction transaction, string topic, ReadOnlyMemory<byte> payload,
        CancellationToken cancellationToken, DateTimeOffset? availableAt = null, string? subject = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var command = connection.CreateCommand(transaction,
                "INSERT INTO outbox (topic, payload, created_at, available_at, subject) VALUES (@t, @p, @c, @a, @s)")
            .With("@t", topic).With("@p", payload.ToArray()).With("@c", now)
            .With("@a", availableAt?.ToUnixTimeMilliseconds() ?? now).With("@s", subject);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Adds an event already claimed by <paramref name="consumer"/> for <paramref name="lease"/> (its first attempt under
    /// way), and returns its id: the producer tries to handle it itself, then completes it or hands it over with
    /// <see cref="RetryLaterAsync"/>. Should the process die first, other consumers take it once the lease runs out.
    /// </summary>
    public async ValueTask<long> EnqueueClaimedAsync(DbConnection connection, DbTransaction transaction, string topic, ReadOnlyMemory<byte> payload,
        string consumer, TimeSpan lease, CancellationToken cancellationToken, string? subject = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var command = connection.CreateCommand(transaction,
                "INSERT INTO outbox (topic, payload, created_at, available_at, claimed_by, claim_until, attempts, subject) VALUES (@t, @p, @c, @c, @b, @u, 1, @s) RETURNING id")
            .With("@t", topic).With("@p", payload.ToArray()).With("@c", now).With("@b", consumer).With("@u", now + (long)lease.TotalMilliseconds)
            .With("@s", subject);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
    }

    /// <summary>Wakes consumers of <paramref name="topic"/> in this process; call after the producing transaction commits.</summary>
    public void Notify(string topic) => signal.Notify(topic);

    /// <summary>
    /// Claims up to <paramref name="max"/> due messages of a topic for <paramref name="lease"/>, oldest first. With
    /// <paramref name="subject"/>, only that subject's; with <paramref name="exceptSubjects"/>, only those of no subject or
    /// another one. <paramref name="dueOrNot"/> takes them whether their retry is due or not (a destination's first
    /// attempt after its own back-off: everything waiting for it goes in order of arrival).
    /// </summary>
    public async ValueTask<IReadOnlyList<OutboxMessage>> ClaimAsync(string topic, string consumer, int max, TimeSpan lease,
        CancellationToken cancellationToken, string? subject = null, IReadOnlyCollection<string>? exceptSubjects = null, bool dueOrNot = false)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var until = now + (long)lease.TotalMilliseconds;
        var lockClause = database.Provider == DatabaseProvider.Postgres ? "FOR UPDATE SKIP LOCKED" : string.Empty;
        var except = exceptSubjects is { Count: > 0 }
            ? $" AND (subject IS NULL OR subject NOT IN ({string.Join(", ", exceptSubjects.Select((_, i) => $"@x{i}"))}))"
            : string.Empty;
        var sql = $"""
            UPDATE outbox SET claimed_by = @c, claim_until = @u, attempts = attempts + 1
            WHERE id IN (SELECT id FROM outbox
                         WHERE topic = @t AND done_at IS NULL{(dueOrNot ? string.Empty : " AND available_at <= @n")} AND (claim_until IS NULL OR claim_until < @n)
                         {(subject is null ? string.Empty : "AND subject = @s")}{except}
                         ORDER BY id LIMIT @m {lockClause})
            RETURNING id, topic, payload, attempts, created_at
            """;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        var claimed = new List<OutboxMessage>();
        await using var claim = connection.CreateCommand(transaction, sql)
            .With("@c", consumer).With("@u", until).With("@t", topic).With("@n", now).With("@m", max);
        if (subject is not null)
        {
            claim.With("@s", subject);
        }

        foreach (var (name, i) in (exceptSubjects ?? []).Select((name, i) => (name, i)))
        {
            claim.With($"@x{i}", name);
        }

        await using (var reader = await claim.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                claimed.Add(new OutboxMessage(
                    reader.GetInt64(0),
                    reader.GetString(1),
                    (byte[])reader.GetValue(2),
                    Convert.ToInt32(reader.GetValue(3), CultureInfo.InvariantCulture),
                    DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4))));
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        claimed.Sort((a, b) => a.Id.CompareTo(b.Id));
        return claimed;
    }

    /// <summary>
    /// Extends this consumer's claim on messages it still holds to <paramref name="lease"/> from now, and returns those:
    /// a message missing from the answer was taken over by another consumer after the claim ran out (or is done), and
    /// must not be handled here again.
    /// </summary>
    public async ValueTask<IReadOnlySet<long>> ExtendClaimsAsync(IReadOnlyList<long> ids, string consumer, TimeSpan lease, CancellationToken cancellationToken)
    {
        var held = new HashSet<long>();
        if (ids.Count == 0)
        {
            return held;
        }

        var until = time.GetUtcNow().ToUnixTimeMilliseconds() + (long)lease.TotalMilliseconds;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        held.UnionWith(await ForIdsAsync(connection, transaction,
            "UPDATE outbox SET claim_until = @u WHERE claimed_by = @c AND done_at IS NULL AND id IN ({ids}) RETURNING id", ids,
            command => command.With("@u", until).With("@c", consumer), cancellationToken).ConfigureAwait(false));
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return held;
    }

    /// <summary>
    /// Gives back this consumer's claim on messages it did not try (the rest of a batch behind an unanswered one, or a
    /// stopping node's), due at once and without the attempt their claim counted. Left claimed, they waited for the
    /// lease (5 minutes) after a restart.
    /// </summary>
    public async ValueTask ReleaseAsync(IReadOnlyList<long> ids, string consumer, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
        {
            return;
        }

        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await ForIdsAsync(connection, transaction,
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END " +
            "WHERE claimed_by = @c AND done_at IS NULL AND id IN ({ids}) RETURNING id", ids,
            command => command.With("@c", consumer), cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Gives back, due at once, the claims on <paramref name="topic"/> held by consumers <paramref name="abandoned"/> says
    /// are gone (an earlier process of this node, ended by kill -9 or a power cut), instead of letting them wait for their
    /// lease. Returns how many messages were given back.
    /// </summary>
    public async ValueTask<int> ReleaseAbandonedAsync(string topic, Func<string, bool> abandoned, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var holders = new List<string>();
        await using (var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        await using (var command = connection.CreateCommand(null,
                         "SELECT DISTINCT claimed_by FROM outbox WHERE topic = @t AND done_at IS NULL AND claimed_by IS NOT NULL AND claim_until >= @n")
                     .With("@t", topic).With("@n", now))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                holders.Add(reader.GetString(0));
            }
        }

        var released = 0;
        foreach (var holder in holders.Where(abandoned))
        {
            await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            await using var command = connection.CreateCommand(transaction,
                    "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE topic = @t AND claimed_by = @c AND done_at IS NULL")
                .With("@t", topic).With("@c", holder);
            released += await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        return released;
    }

    /// <summary>Marks a message handled. Returns false when the claim was lost (lease expired and re-claimed) or it was already done.</summary>
    public ValueTask<bool> CompleteAsync(long id, string consumer, CancellationToken cancellationToken) =>
        FinishAsync(id, consumer, OutcomeDone, null, cancellationToken);

    /// <summary>Gives up on a message for good, keeping the reason.</summary>
    public ValueTask<bool> DeadLetterAsync(long id, string consumer, string error, CancellationToken cancellationToken) =>
        FinishAsync(id, consumer, OutcomeDead, error, cancellationToken);

    /// <summary>Releases the claim and makes the message due again after <paramref name="delay"/>.</summary>
    public async ValueTask<bool> RetryLaterAsync(long id, string consumer, TimeSpan delay, string error, CancellationToken cancellationToken)
    {
        var at = time.GetUtcNow().ToUnixTimeMilliseconds() + (long)delay.TotalMilliseconds;
        return await UpdateAsync(
            "UPDATE outbox SET available_at = @a, claimed_by = NULL, claim_until = NULL, last_error = @e WHERE id = @i AND claimed_by = @c AND done_at IS NULL",
            cmd => cmd.With("@a", at).With("@e", Truncate(error)).With("@i", id).With("@c", consumer),
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes every waiting, unclaimed message of <paramref name="subject"/> due now (a destination that accepts again:
    /// what waited out a longer back-off is not left behind what came later). Returns how many.
    /// </summary>
    public async ValueTask<int> BringForwardAsync(string topic, string subject, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction,
                "UPDATE outbox SET available_at = @n WHERE topic = @t AND subject = @s AND done_at IS NULL AND available_at > @n AND (claim_until IS NULL OR claim_until < @n)")
            .With("@n", now).With("@t", topic).With("@s", subject);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows;
    }

    /// <summary>
    /// Makes every waiting, unclaimed message of <paramref name="subject"/> due no sooner than <paramref name="until"/>
    /// (a destination backing off): the queue then says when the next attempt comes, and a restart or another node
    /// keeps to it. Returns how many.
    /// </summary>
    public async ValueTask<int> HoldUntilAsync(string topic, string subject, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction,
                "UPDATE outbox SET available_at = @u WHERE topic = @t AND subject = @s AND done_at IS NULL AND available_at < @u AND (claim_until IS NULL OR claim_until < @n)")
            .With("@u", until.ToUnixTimeMilliseconds()).With("@n", now).With("@t", topic).With("@s", subject);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows;
    }

    /// <summary>Number of messages of a topic not yet done (due or not).</summary>
    public async ValueTask<long> PendingCountAsync(string topic, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM outbox WHERE topic = @t AND done_at IS NULL").With("@t", topic);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
    }

    /// <summary>Waiting and given-up counts of a topic, the age of its oldest waiting message and the last error met.</summary>
    public async ValueTask<OutboxQueueStatus> StatusAsync(string topic, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        long waiting;
        long? oldest;
        int attempts;
        long deadCount;
        long? due;
        // One statement, so a message given up on between two reads is not counted both waiting and given up.
        await using (var command = connection.CreateCommand(null,
                         "SELECT COUNT(*), MIN(created_at), COALESCE(MAX(attempts), 0), (SELECT COUNT(*) FROM outbox WHERE topic = @t AND outcome = @o), MIN(available_at) " +
                         "FROM outbox WHERE topic = @t AND done_at IS NULL").With("@t", topic).With("@o", OutcomeDead))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            waiting = Convert.ToInt64(reader.GetValue(0), CultureInfo.InvariantCulture);
            oldest = reader.IsDBNull(1) ? null : Convert.ToInt64(reader.GetValue(1), CultureInfo.InvariantCulture);
            attempts = Convert.ToInt32(reader.GetValue(2), CultureInfo.InvariantCulture);
            deadCount = Convert.ToInt64(reader.GetValue(3), CultureInfo.InvariantCulture);
            due = reader.IsDBNull(4) ? null : Convert.ToInt64(reader.GetValue(4), CultureInfo.InvariantCulture);
        }

        string? lastError = null;
        if (waiting > 0)
        {
            // The error of the message that failed last: the one whose next attempt is furthest away.
            await using var command = connection.CreateCommand(null,
                "SELECT last_error FROM outbox WHERE topic = @t AND done_at IS NULL AND last_error IS NOT NULL ORDER BY available_at DESC LIMIT 1").With("@t", topic);
            lastError = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
        }

        return new OutboxQueueStatus(waiting, oldest is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null, attempts, lastError, deadCount)
        {
            NextDue = due is { } d ? DateTimeOffset.FromUnixTimeMilliseconds(d) : null,
        };
    }

    /// <summary>
    /// <see cref="StatusAsync"/> per subject, most waiting first: each subject with messages waiting or given up on.
    /// Reads the waiting and given-up messages through their own indexes, never the done ones.
    /// </summary>
    public async ValueTask<IReadOnlyList<OutboxSubjectStatus>> StatusBySubjectAsync(string topic, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var subjects = new Dictionary<string, (long Waiting, long? Oldest, int Attempts, long Dead)>(StringComparer.Ordinal);
        const string none = "\0";
        // One statement, so a message given up on between two reads is not counted both waiting and given up.
        await using (var command = connection.CreateCommand(null,
                         "SELECT subject, 0, COUNT(*), MIN(created_at), COALESCE(MAX(attempts), 0) FROM outbox WHERE topic = @t AND done_at IS NULL GROUP BY subject " +
                         "UNION ALL SELECT subject, 1, COUNT(*), NULL, 0 FROM outbox WHERE topic = @t AND outcome = @o GROUP BY subject")
                     .With("@t", topic).With("@o", OutcomeDead))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var key = reader.IsDBNull(0) ? none : reader.GetString(0);
                var count = Convert.ToInt64(reader.GetValue(2), CultureInfo.InvariantCulture);
                subjects[key] = Convert.ToInt32(reader.GetValue(1), CultureInfo.InvariantCulture) == 0
                    ? subjects.GetValueOrDefault(key) with
                    {
                        Waiting = count,
                        Oldest = reader.IsDBNull(3) ? null : Convert.ToInt64(reader.GetValue(3), CultureInfo.InvariantCulture),
                        Attempts = Convert.ToInt32(reader.GetValue(4), CultureInfo.InvariantCulture),
                    }
                    : subjects.GetValueOrDefault(key) with { Dead = count };
            }
        }

        var statuses = new List<OutboxSubjectStatus>(subjects.Count);
        foreach (var (key, counts) in subjects)
        {
            var subject = key == none ? null : key;
            string? lastError = null;
            if (counts.Waiting > 0)
            {
                await using var command = connection.CreateCommand(null, subject is null
                        ? "SELECT last_error FROM outbox WHERE topic = @t AND done_at IS NULL AND subject IS NULL AND last_error IS NOT NULL ORDER BY available_at DESC LIMIT 1"
                        : "SELECT last_error FROM outbox WHERE topic = @t AND done_at IS NULL AND subject = @s AND last_error IS NOT NULL ORDER BY available_at DESC LIMIT 1")
                    .With("@t", topic);
                if (subject is not null)
                {
                    command.With("@s", subject);
                }

                lastError = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
            }

            statuses.Add(new OutboxSubjectStatus(subject, counts.Waiting, counts.Oldest is { } ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null,
                counts.Attempts, lastError, counts.Dead));
        }

        return [.. statuses.OrderByDescending(s => s.Waiting).ThenByDescending(s => s.Dead).ThenBy(s => s.Subject, StringComparer.Ordinal)];
    }

    /// <summary>The payloads of every message of a topic not delivered: waiting, or given up on and not dismissed.</summary>
    public async ValueTask<IReadOnlyList<byte[]>> UndeliveredPayloadsAsync(string topic, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null,
                "SELECT payload FROM outbox WHERE topic = @t AND (done_at IS NULL OR outcome = @o) ORDER BY id")
            .With("@t", topic).With("@o", OutcomeDead);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var payloads = new List<byte[]>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            payloads.Add((byte[])reader.GetValue(0));
        }

        return payloads;
    }

    /// <summary>The messages of a topic given up on, oldest first, at most <paramref name="max"/>.</summary>
    public async ValueTask<IReadOnlyList<DeadMessage>> ListDeadAsync(string topic, int max, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null,
                "SELECT id, payload, attempts, created_at, done_at, last_error FROM outbox WHERE topic = @t AND outcome = @o ORDER BY id LIMIT @m")
            .With("@t", topic).With("@o", OutcomeDead).With("@m", max);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var dead = new List<DeadMessage>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            dead.Add(new DeadMessage(
                reader.GetInt64(0),
                (byte[])reader.GetValue(1),
                Convert.ToInt32(reader.GetValue(2), CultureInfo.InvariantCulture),
                DateTimeOffset.FromUnixTimeMilliseconds(Convert.ToInt64(reader.GetValue(3), CultureInfo.InvariantCulture)),
                DateTimeOffset.FromUnixTimeMilliseconds(Convert.ToInt64(reader.GetValue(4), CultureInfo.InvariantCulture)),
                reader.IsDBNull(5) ? null : reader.GetString(5)));
        }

        return dead;
    }

    /// <summary>
    /// Puts messages given up on back in the queue, due now and with their attempts counted from zero; the others of
    /// <paramref name="ids"/> are left alone. Returns the ids requeued.
    /// </summary>
    public ValueTask<IReadOnlyList<long>> RequeueDeadAsync(string topic, IReadOnlyCollection<long> ids, CancellationToken cancellationToken) =>
        UpdateDeadAsync(topic, ids, "done_at = NULL, outcome = NULL, attempts = 0, available_at = @n, claimed_by = NULL, claim_until = NULL", cancellationToken);

    /// <summary>Marks messages given up on as dismissed: an operator decided they will not be retried.</summary>
    public ValueTask<IReadOnlyList<long>> DismissDeadAsync(string topic, IReadOnlyCollection<long> ids, CancellationToken cancellationToken) =>
        UpdateDeadAsync(topic, ids, $"outcome = '{OutcomeDismissed}', done_at = @n", cancellationToken);

    private async ValueTask<IReadOnlyList<long>> UpdateDeadAsync(string topic, IReadOnlyCollection<long> ids, string set, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        var changed = await ForIdsAsync(connection, transaction, $"UPDATE outbox SET {set} WHERE topic = @t AND outcome = @o AND id IN ({{ids}}) RETURNING id",
            ids.Distinct(), command => command.With("@t", topic).With("@o", OutcomeDead).With("@n", now), cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed;
    }

    /// <summary>Waits until a producer in this process notifies the topic, or the timeout passes (other nodes are polled).</summary>
    public Task WaitAsync(string topic, TimeSpan timeout, CancellationToken cancellationToken) => signal.WaitAsync(topic, timeout, cancellationToken);

    /// <summary>Deletes finished messages older than <paramref name="age"/>. Messages given up on stay until retried or dismissed.</summary>
    public async ValueTask<int> PurgeAsync(TimeSpan age, CancellationToken cancellationToken)
    {
        // In chunks found outside the write lock: on SQLite one DELETE over a month of messages would hold the only
        // writer, and with it every store, for the length of its scan.
        var before = time.GetUtcNow().ToUnixTimeMilliseconds() - (long)age.TotalMilliseconds;
        const int chunk = 500;
        var total = 0;
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var ids = new List<long>();
            await using (var find = connection.CreateCommand(null,
                                 "SELECT id FROM outbox WHERE done_at IS NOT NULL AND done_at < @b AND outcome <> @o ORDER BY id LIMIT @m")
                             .With("@b", before).With("@o", OutcomeDead).With("@m", chunk))
            await using (var reader = await find.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    ids.Add(reader.GetInt64(0));
                }
            }

            if (ids.Count == 0)
            {
                return total;
            }

            await using (var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false))
            {
                total += (await ForIdsAsync(connection, transaction, "DELETE FROM outbox WHERE done_at IS NOT NULL AND outcome <> @o AND id IN ({ids}) RETURNING id",
                    ids, command => command.With("@o", OutcomeDead), cancellationToken).ConfigureAwait(false)).Count;
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }

            if (ids.Count < chunk)
            {
                return total;
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="sql"/> in the caller's transaction for <paramref name="ids"/>, a chunk of them at a time in
    /// place of <c>{ids}</c>, and returns the ids its RETURNING clause gave back.
    /// </summary>
    private static async ValueTask<List<long>> ForIdsAsync(DbConnection connection, DbTransaction transaction, string sql, IEnumerable<long> ids,
        Action<DbCommand> bind, CancellationToken cancellationToken)
    {
        var returned = new List<long>();
        foreach (var chunk in ids.Chunk(200))
        {
            var names = string.Join(", ", chunk.Select((_, i) => $"@i{i}"));
            await using var command = connection.CreateCommand(transaction, sql.Replace("{ids}", names, StringComparison.Ordinal));
            bind(command);
            for (var i = 0; i < chunk.Length; i++)
            {
                command.With($"@i{i}", chunk[i]);
            }

            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                returned.Add(reader.GetInt64(0));
            }
        }

        return returned;
    }

    private async ValueTask<bool> FinishAsync(long id, string consumer, string outcome, string? error, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        return await UpdateAsync(
            "UPDATE outbox SET done_at = @d, outcome = @o, last_error = COALESCE(@e, last_error), claimed_by = NULL, claim_until = NULL WHERE id = @i AND claimed_by = @c AND done_at IS NULL",
            cmd => cmd.With("@d", now).With("@o", outcome).With("@e", error is null ? null : Truncate(error)).With("@i", id).With("@c", consumer),
            cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<bool> UpdateAsync(string sql, Action<DbCommand> bind, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(transaction, sql);
        bind(command);
        var rows = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return rows == 1;
    }

    private static string Truncate(string error) => error.Length <= 2000 ? error : error[..2000];
}
