using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// Archived objects that `vigie rescan` found hostile. The archive is immutable, so they stay where they are, but no
/// copy leaves: the forwarder gives them up and a retrieve fails their sub-operation (before 2026-12-06 a flagged
/// object still went to a PACS that had been down, and to any C-GET). A later full rescan that no longer flags an
/// object releases it (a rule withdrawn as a false positive).
/// </summary>
public sealed class WithheldObjects(IVigieDatabase database, TimeProvider time)
{
    /// <summary>Why the object is withheld (the rules that flagged it), or null.</summary>
    public async ValueTask<string?> ReasonAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT rules FROM gateway_withheld WHERE object_id = @o").With("@o", id.ToArray());
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string rules
            ? $"withheld: flagged by vigie rescan ({rules})"
            : null;
    }

    public async ValueTask WithholdAsync(ObjectId id, string rules, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        await using (var command = connection.CreateCommand(transaction, """
                         INSERT INTO gateway_withheld (object_id, flagged_at, rules) VALUES (@o, @t, @r)
                         ON CONFLICT (object_id) DO UPDATE SET flagged_at = excluded.flagged_at, rules = excluded.rules
                         """).With("@o", id.ToArray()).With("@t", time.GetUtcNow().ToUnixTimeMilliseconds()).With("@r", rules))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Releases every withheld object a full rescan did not flag again; returns how many.</summary>
    public async ValueTask<int> ReleaseAllButAsync(IReadOnlySet<ObjectId> stillFlagged, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var withheld = new List<byte[]>();
        await using (var select = connection.CreateCommand(null, "SELECT object_id FROM gateway_withheld"))
        await using (var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                withheld.Add(reader.GetFieldValue<byte[]>(0));
            }
        }

        var released = withheld.Where(bytes => !stillFlagged.Contains(new ObjectId(bytes))).ToList();
        if (released.Count == 0)
        {
            return 0;
        }

        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var bytes in released)
        {
            await using var delete = connection.CreateCommand(transaction, "DELETE FROM gateway_withheld WHERE object_id = @o").With("@o", bytes);
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return released.Count;
    }
}
