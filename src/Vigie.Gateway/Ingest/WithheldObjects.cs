using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
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
/// <para>
/// Each withheld object also has a marker in the data folder, withheld/&lt;object id&gt;, holding a keyed hash of its id
/// (since 2026-12-08): the index's writer can neither delete it nor forge one. A retrieve or forward that finds no flag
/// row still refuses an object whose marker is there, and the scrub reports it (a flag row deleted without an audited
/// release); only a release, or a rescan that lifts the object's last flag, removes the marker. An ordinary object costs
/// one look for a file that is not there.
/// </para>
/// </summary>
public sealed class WithheldObjects(IVigieDatabase database, TimeProvider time, IOptions<ArchiveOptions> archive, IArchiveKeyService keys)
{
    /// <summary>The folder of the markers, in the data folder.</summary>
    public const string MarkerFolderName = "withheld";

    private const string MarkerHashKind = "withheld-object";

    private readonly string _markers = Path.Combine(Path.GetFullPath(archive.Value.DataFolder), MarkerFolderName);

    private string MarkerPath(ObjectId id) => Path.Combine(_markers, id.ToString());

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

        if (rules.Count > 0)
        {
            return $"withheld: flagged by vigie rescan ({string.Join("; ", rules)})";
        }

        // No row: one look for the marker. A row deleted in the index must not serve what a rescan flagged (it did until 2026-12-08).
        return File.Exists(MarkerPath(id))
            ? "withheld: flagged by vigie rescan, and its flag was deleted from the index without an audited release (its marker in withheld/ " +
              "remains); vigie withheld release lifts it"
            : null;
    }

    /// <summary>Marks the object withheld in the data folder, before its row is committed: a crash in between leaves it withheld.</summary>
    private async ValueTask WriteMarkerAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        Directory.CreateDirectory(_markers);
        var path = MarkerPath(id);
        var partial = path + ".partial";
        await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.Asynchronous | FileOptions.WriteThrough))
        {
            await file.WriteAsync(keys.HashIdentifier(MarkerHashKind, id.ToString()), cancellationToken).ConfigureAwait(false);
        }

        File.Move(partial, path, overwrite: true);
    }

    private void DeleteMarker(ObjectId id) => File.Delete(MarkerPath(id));

    /// <summary>Whether a marker is the one Vigie wrote for this object (a keyed hash of its id).</summary>
    private bool MarkerVerifies(ObjectId id, byte[] content) =>
        CryptographicOperations.FixedTimeEquals(content, keys.HashIdentifier(MarkerHashKind, id.ToString()));

    /// <summary>Objects whose marker is in withheld/ although no flag row names them (the rows deleted in the index), with the marker's time.</summary>
    private async ValueTask<IReadOnlyList<(ObjectId Id, DateTimeOffset MarkedAt)>> UnrecordedAsync(CancellationToken cancellationToken)
    {
        var unrecorded = new List<(ObjectId, DateTimeOffset)>();
        if (!Directory.Exists(_markers))
        {
            return unrecorded;
        }

        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var file in Directory.EnumerateFiles(_markers).Order(StringComparer.Ordinal))
        {
            if (ObjectId.TryParse(Path.GetFileName(file), out var id))
            {
                await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM gateway_withheld_by_rules WHERE object_id = @o").With("@o", id.ToArray());
                if (Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture) == 0)
                {
                    unrecorded.Add((id, new DateTimeOffset(File.GetLastWriteTimeUtc(file), TimeSpan.Zero)));
                }
            }
        }

        return unrecorded;
    }

    /// <summary>
    /// The scrub's check of the flags (since 2026-12-08): a marker with no flag row is a flag deleted in the index without
    /// an audited release (index tampering); a marker that is not Vigie's is foreign. With <paramref name="bind"/>
    /// (maintenance), flags kept before markers existed get theirs, and markers of objects whose file retention removed go.
    /// </summary>
    public async ValueTask<IReadOnlyList<ScrubFinding>> CheckAsync(bool bind, CancellationToken cancellationToken)
    {
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var findings = new List<ScrubFinding>();
        var foreign = new HashSet<string>(StringComparer.Ordinal);
        var objects = Path.Combine(Path.GetDirectoryName(_markers)!, "objects");
        bool Archived(ObjectId id) => File.Exists(Path.Combine(objects, id.FanOut, id.ToString()));
        foreach (var file in Directory.Exists(_markers) ? Directory.EnumerateFiles(_markers).Order(StringComparer.Ordinal).ToList() : [])
        {
            var relative = Path.Combine(MarkerFolderName, Path.GetFileName(file));
            if (!ObjectId.TryParse(Path.GetFileName(file), out var id)
                || !MarkerVerifies(id, await File.ReadAllBytesAsync(file, cancellationToken).ConfigureAwait(false)))
            {
                if (!file.EndsWith(".partial", StringComparison.Ordinal))
                {
                    foreign.Add(Path.GetFileName(file));
                    findings.Add(new ScrubFinding(ScrubFindingKind.Foreign, relative, null, null, "a file in withheld/ that Vigie did not write", []));
                }
            }
        }

        foreach (var (id, markedAt) in await UnrecordedAsync(cancellationToken).ConfigureAwait(false))
        {
            if (foreign.Contains(id.ToString()))
            {
                continue;
            }

            if (!Archived(id))
            {
                // The object left the archive (retention): nothing left to withhold.
                if (bind)
                {
                    DeleteMarker(id);
                }

                continue;
            }

            findings.Add(new ScrubFinding(ScrubFindingKind.IndexTampered, Path.Combine(MarkerFolderName, id.ToString()), id, null,
                $"withheld by vigie rescan (marked {markedAt:u}) but no flag row names it: the row was deleted from the index without an audited " +
                "release; retrieves and forwards still refuse it, vigie withheld release lifts it", []));
        }

        if (bind)
        {
            var unmarked = new List<ObjectId>();
            await using (var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
            await using (var command = connection.CreateCommand(null, "SELECT DISTINCT object_id FROM gateway_withheld_by_rules"))
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var id = new ObjectId(reader.GetFieldValue<byte[]>(0));
                    if (!File.Exists(MarkerPath(id)) && Archived(id))
                    {
                        unmarked.Add(id);
                    }
                }
            }

            foreach (var id in unmarked)
            {
                await WriteMarkerAsync(id, cancellationToken).ConfigureAwait(false);
            }
        }

        return findings;
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

        // Still withheld, by their marker: listed first, "no object is withheld" must not hide them (it did until 2026-12-08).
        var unrecorded = (await UnrecordedAsync(cancellationToken).ConfigureAwait(false))
            .Select(u => new WithheldFlag(u.Id, RowDeleted, u.MarkedAt, "unknown: the flag row was deleted from the index without an audited release"));
        return unrecorded.Concat(flags).Take(max).ToList();
    }

    /// <summary>The source of a flag whose row is gone from the index but whose marker remains.</summary>
    public const string RowDeleted = "(flag row deleted from the index)";

    /// <summary>How many flags are kept.</summary>
    public async ValueTask<long> CountAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT COUNT(*) FROM gateway_withheld_by_rules WHERE " + InArchive);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture)
            + (await UnrecordedAsync(cancellationToken).ConfigureAwait(false)).Count;
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
        // After the commit: a crash before this leaves the object withheld by its marker, and the scrub says so.
        var marked = File.Exists(MarkerPath(id));
        DeleteMarker(id);
        return lifted == 0 && marked ? 1 : lifted;
    }

    /// <summary>Withholds an object that a run with the rules of <paramref name="source"/> flagged.</summary>
    public async ValueTask WithholdAsync(ObjectId id, string source, string rules, CancellationToken cancellationToken)
    {
        await WriteMarkerAsync(id, cancellationToken).ConfigureAwait(false);
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
        var unflagged = new List<ObjectId>();
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
                unflagged.Add(new ObjectId(id));
            }
            else
            {
                held++;
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        foreach (var id in unflagged)
        {
            DeleteMarker(id);
        }

        return (released, held);
    }
}

/// <summary>One flag on a withheld object: the rules folder of the run that raised it (empty: kept before folders were recorded).</summary>
public sealed record WithheldFlag(ObjectId ObjectId, string Source, DateTimeOffset FlaggedAt, string Rules);
