using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// Archived objects that `vigie rescan` found hostile. The archive is immutable, so they stay where they are, but no
/// copy leaves: the forwarder gives them up and a retrieve fails their sub-operation (before 2026-12-06 a flagged
/// object still went to a PACS that had been down, and to any C-GET). Each flag is kept with the rules folder of the
/// run that raised it: a later whole rescan with the same folder that no longer flags the object lifts that flag (a
/// rule withdrawn as a false positive); a rescan with another folder lifts nothing (before 2026-12-07 the next
/// campaign's indicator released what the previous one had flagged). Flags kept before then have no folder (''): no
/// rescan lifts them; `vigie withheld release` does, as it does any flag, audited.
/// </summary>
public sealed class WithheldObjects(IVigieDatabase database, TimeProvider time)
{
    /// <summary>The source of a run with no rules folder: the built-in analysers and signatures alone.</summary>
    public const string BuiltInOnly = "(no rules folder)";

    /// <summary>A rules folder as flags name it: links resolved, no trailing separator.</summary>
    public static string SourceOf(string folder)
    {
        try
        {
            return Vigie.Core.IO.RealPath.Resolve(folder);
        }
        catch (IOException)
        {
            return Path.GetFullPath(folder);
        }
    }

    /// <summary>Why the object is withheld (the rules that flagged it), or null.</summary>
    public async ValueTask<string?> ReasonAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT rules FROM gateway_withheld_by_rules WHERE object_id = @o").With("@o", id.ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rules = new List<string>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rules.Add(reader.GetString(0));
        }

        return rules.Count == 0 ? null : $"withheld: flagged by vigie rescan ({string.Join("; ", rules)})";
    }

    /// <summary>
    /// Flags of objects the archive still holds: an object retention removed kept its flag, and was listed and counted
    /// as withheld (until 2026-12-07).
    /// </summary>
    private const string InArchive = "EXISTS (SELECT 1 FROM archive_objects a WHERE a.object_id = gateway_withheld_by_rules.object_id)";

    /// <summary>Whether the archive still holds the object (retention may have removed it since it was flagged).</summary>
    public async ValueTask<bool> HeldAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM archive_objects WHERE object_id = @o").With("@o", id.ToArray());
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture) > 0;
    }

    /// <summary>Every flag kept on an object the archive holds, oldest first, at most <paramref name="max"/>.</summary>
    public async ValueTask<IReadOnlyList<WithheldFlag>> ListAsync(int max, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT object_id, source, flagged_at, rules FROM gateway_withheld_by_rules WHERE " + InArchive + " ORDER BY flagged_at, source LIMIT @m")
            .With("@m", max);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var flags = new List<WithheldFlag>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            flags.Add(new WithheldFlag(new ObjectId(reader.GetFieldValue<byte[]>(0)), reader.GetString(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)),
                reader.GetString(3)));
        }

        return flags;
    }

    /// <summary>How many flags are kept.</summary>
    public async ValueTask<long> CountAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM gateway_withheld_by_rules WHERE " + InArchive);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Lifts every flag of one object (an operator's decision); returns how many there were.</summary>
    public async ValueTask<int> ReleaseAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        int lifted;
        await using (var delete = connection.CreateCommand(transaction, "DELETE FROM gateway_withheld_by_rules WHERE object_id = @o").With("@o", id.ToArray()))
        {
            lifted = await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return lifted;
    }

    /// <summary>Withholds an object that a run with the rules of <paramref name="source"/> flagged.</summary>
    public async ValueTask WithholdAsync(ObjectId id, string source, string rules, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using (var command = connection.CreateCommand(transaction, """
                         INSERT INTO gateway_withheld_by_rules (object_id, source, flagged_at, rules) VALUES (@o, @s, @t, @r)
                         ON CONFLICT (object_id, source) DO UPDATE SET flagged_at = excluded.flagged_at, rules = excluded.rules
                         """).With("@o", id.ToArray()).With("@s", source).With("@t", time.GetUtcNow().ToUnixTimeMilliseconds()).With("@r", rules))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Lifts the flags of <paramref name="source"/> that a whole run with it did not
    /// raise again; returns how many objects that leaves with no flag at all, and how many stay withheld by other rules.
    /// </summary>
    public async ValueTask<(int Released, int HeldByOtherRules)> ReleaseAllButAsync(IReadOnlySet<ObjectId> stillFlagged, string source, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        // One row per object and folder (the key): each object comes once.
        var lifted = new List<byte[]>();
        await using (var select = connection.CreateCommand(null, "SELECT object_id FROM gateway_withheld_by_rules WHERE source = @s").With("@s", source))
        await using (var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var id = reader.GetFieldValue<byte[]>(0);
                if (!stillFlagged.Contains(new ObjectId(id)))
                {
                    lifted.Add(id);
                }
            }
        }

        if (lifted.Count == 0)
        {
            return (0, 0);
        }

        int released = 0, held = 0;
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var id in lifted)
        {
            await using var delete = connection.CreateCommand(transaction, "DELETE FROM gateway_withheld_by_rules WHERE object_id = @o AND source = @s")
                .With("@o", id).With("@s", source);
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var left = connection.CreateCommand(transaction, "SELECT COUNT(*) FROM gateway_withheld_by_rules WHERE object_id = @o").With("@o", id);
            if (Convert.ToInt64(await left.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture) == 0)
            {
                released++;
            }
            else
            {
                held++;
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (released, held);
    }
}

/// <summary>One flag on a withheld object: the rules folder of the run that raised it (empty: kept before folders were recorded).</summary>
public sealed record WithheldFlag(ObjectId ObjectId, string Source, DateTimeOffset FlaggedAt, string Rules);
