using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.IO;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Archive;

/// <summary>What <see cref="ArchiveInitializer.InitializeAsync"/> found and did.</summary>
public sealed record ArchiveInitialization(string DataFolder, string KeyFile, bool KeysCreated, int StaleSpoolsRemoved, int LandedObjectsMoved);

/// <summary>
/// Prepares the data folder at start: objects/ (with its 4096 fan-out folders unless told otherwise), spool/, quarantine/ and keys/ (mode 0700),
/// the key-encryption key file (mode 0600) and the root key on first start, and removes stale spools. The host calls it
/// once before serving, after the schema migration.
/// </summary>
public sealed class ArchiveInitializer
{
    private readonly ArchiveOptions _options;
    private readonly ArchiveKeyService _keys;
    private readonly IKeyEncryptionKeyStore _keks;
    private readonly FileObjectStore _store;
    private readonly IArchiveIndex _index;
    private readonly IVigieDatabase _database;
    private readonly ILogger<ArchiveInitializer> _logger;

    internal ArchiveInitializer(IOptions<ArchiveOptions> options, ArchiveKeyService keys, IKeyEncryptionKeyStore keks, FileObjectStore store,
        IArchiveIndex index, IVigieDatabase database, ILogger<ArchiveInitializer> logger)
    {
        _options = options.Value;
        _keys = keys;
        _keks = keks;
        _store = store;
        _index = index;
        _database = database;
        _logger = logger;
    }

    /// <summary>
    /// Written first into a backup by `vigie backup` and removed last: a folder that holds it is a copy cut short, which no
    /// command may use as a data folder.
    /// </summary>
    public const string IncompleteBackupMarker = "BACKUP-INCOMPLETE";

    public async Task<ArchiveInitialization> InitializeAsync(CancellationToken cancellationToken)
    {
        _options.Validate();
        RefuseForeignDataFolder();
        var layout = _store.Layout;
        FileSync.EnsureDirectory(layout.Root, _options.Durable);
        foreach (var directory in new[] { layout.Objects, layout.Spool, layout.Quarantine, layout.Keys })
        {
            FileSync.EnsureDirectory(directory, _options.Durable);
        }

        if (_options.PrecreateFanOutFolders)
        {
            foreach (var fanOut in ArchiveLayout.FanOutNames())
            {
                // One sync of objects/ at the end instead of one per folder.
                FileSync.EnsureDirectory(Path.Combine(layout.Objects, fanOut), durable: false);
            }

            // Synced even when this node made none: another node starting beside it may have made them and not synced
            // them yet, and this node's objects will sit in them.
            if (_options.Durable)
            {
                FileSync.SyncDirectory(layout.Objects);
                _store.FanOutFoldersAreDurable();
            }
        }

        // Before any key is made or object moved: a folder and an index of two archives are refused as they are.
        await BindIndexAsync(cancellationToken).ConfigureAwait(false);
        var createdBefore = _keys.KeysCreated;
        await _keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        var keysCreated = _keys.KeysCreated && !createdBefore;
        var stale = _store.RemoveStaleSpools();
        if (stale > 0)
        {
            _logger.LogWarning("Removed {Count} stale spool file(s) left by an earlier crash.", stale);
        }

        // Objects a crash (or another node) left in landing slots go to objects/ before anything walks it.
        var landed = await _store.MoveLandedAsync(cancellationToken).ConfigureAwait(false);
        if (landed > 0)
        {
            _logger.LogInformation("Moved {Count} object(s) from landing slots to objects/.", landed);
        }

        // Rows of an earlier version, sealed without their parent: bound to it now, once, before anything is served.
        var (resealed, unopened) = await _index.BindLegacySealsAsync(cancellationToken).ConfigureAwait(false);
        if (resealed > 0 || unopened > 0)
        {
            _logger.LogWarning("Index rows re-sealed bound to their parent: {Resealed}; rows that open in no form (altered in the database; run vigie scrub): {Failed}",
                resealed, unopened);
        }

        await BindQuarantinePurposeAsync(cancellationToken).ConfigureAwait(false);
        _store.StartLanding();
        var keyFile = (_keks as FileKeyEncryptionKeyStore)?.KeyFilePath ?? "(external key store)";
        return new ArchiveInitialization(layout.Root, keyFile, keysCreated, stale, landed);
    }

    /// <summary>
    /// Ties the data folder and its index to one archive identity, held by both, and refuses a start that pairs them
    /// otherwise. A folder moved to an empty PostgreSQL database, or a second node left on the default SQLite index beside
    /// a PostgreSQL one, ran until maintenance deleted as orphans every object its index did not know (until 2026-12-07).
    /// The folder is given the identity first, marked pending until the index holds it too, so that a start cut short
    /// between the two is finished by the next one. An archive of an earlier version (neither bound) is bound now, unless
    /// one side holds objects and the other none.
    /// </summary>
    private async ValueTask BindIndexAsync(CancellationToken cancellationToken)
    {
        var layout = _store.Layout;
        var folder = await ReadFolderBindingAsync(cancellationToken).ConfigureAwait(false);
        var index = await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        Refuse(folder, index);
        if (folder is { Pending: false })
        {
            return;
        }

        if (folder is null)
        {
            var indexHolds = await _index.HasObjectsAsync(cancellationToken).ConfigureAwait(false);
            var folderHolds = HoldsObjects(layout);
            if (folderHolds && !indexHolds)
            {
                throw new InvalidOperationException(
                    $"The data folder {layout.Root} holds stored objects, but {Which} is empty: it is not this archive's index (a new database, or a node " +
                    "started without this archive's Database settings). Start with the index this archive uses. Nothing was changed.");
            }

            if (indexHolds && !folderHolds)
            {
                throw new InvalidOperationException(
                    $"{Capital(Which)} holds stored objects, but the data folder {layout.Root} holds none: it is not this index's data folder " +
                    "(--data, Archive:DataFolder). Start with the folder this index belongs to. Nothing was changed.");
            }

            // Another node starting this archive beside this one may have given the folder its identity first: that one counts.
            var candidate = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
            await FileSync.CreateOnceAsync(layout.ArchiveIdFile, System.Text.Encoding.ASCII.GetBytes(candidate + " pending\n"), cancellationToken)
                .ConfigureAwait(false);
            folder = await ReadFolderBindingAsync(cancellationToken).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"{layout.ArchiveIdFile} could not be written.");
            if (!folder.Value.Pending)
            {
                // Bound by that node meanwhile, index first: the index read before is out of date (the clean-clone CI
                // caught two nodes starting together on a new SQLite index refused this way).
                Refuse(folder, await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false));
                return;
            }
        }

        var bound = await _index.BindArchiveIdAsync(folder.Value.Id, cancellationToken).ConfigureAwait(false);
        if (!string.Equals(bound, folder.Value.Id, StringComparison.Ordinal))
        {
            throw new InvalidOperationException(
                $"The data folder {layout.Root} is archive {folder.Value.Id}, but {Which} was bound to archive {bound} meanwhile: two nodes started " +
                "one archive on different indexes. Nothing else was changed.");
        }

        await FileSync.WriteAtomicallyAsync(layout.ArchiveIdFile, System.Text.Encoding.ASCII.GetBytes(bound + "\n"), cancellationToken).ConfigureAwait(false);
        _logger.LogInformation("The data folder and its index are archive {ArchiveId}.", bound);
    }

    /// <summary>
    /// Quarantine files written before 2026-12-07 hold a data key wrapped as an archive object's: copied into objects/ and
    /// named by index rows, one opened and was served. Their keys are re-wrapped for quarantine once, here (key slots only,
    /// file by file, only files a quarantine record names), then that is recorded beside the key file, where the index's
    /// writer cannot undo it (since 2026-12-07; before, only in the index: deleting that row re-ran the re-wrap at will,
    /// review 25 F1), and in the index too. Until it is recorded, a command run without a start refuses every object id a
    /// quarantine record names. Once it is, each start still re-wraps record-named quarantine files (harmless there), but
    /// never looks in objects/ again.
    /// </summary>
    private async ValueTask BindQuarantinePurposeAsync(CancellationToken cancellationToken)
    {
        var bound = await QuarantinePurposeBoundAsync(cancellationToken).ConfigureAwait(false);
        var records = new List<(string QuarantineId, ObjectId ObjectId)>();
        await using (var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        await using (var command = connection.CreateCommand(null, "SELECT quarantine_id, object_id FROM archive_quarantine ORDER BY id"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (reader.GetValue(1) is byte[] { Length: ObjectId.Size } objectId)
                {
                    records.Add((reader.GetString(0), new ObjectId(objectId)));
                }
            }
        }

        if (bound)
        {
            // Every start still re-wraps the quarantine files the records name (a data folder restored from before the
            // upgrade brings old ones back, and the record beside the key file would not say so); copies in objects/ are
            // looked for once only.
            _store.RefuseAsQuarantined(null);
            var (again, _, _) = await _store.BindQuarantinePurposeAsync(records, null, cancellationToken).ConfigureAwait(false);
            if (again > 0)
            {
                _logger.LogWarning("Quarantined objects re-wrapped for quarantine (written before 2026-12-07, a data folder restored?): {Count}", again);
            }

            return;
        }

        _store.RefuseAsQuarantined(records.Select(r => r.ObjectId).ToHashSet());
        var (rewrapped, failed, skipped) = await _store.BindQuarantinePurposeAsync(records, IsArchivedAsync, cancellationToken).ConfigureAwait(false);
        // What the index says no longer decides whether an object is served: the purpose is in each file now.
        _store.RefuseAsQuarantined(null);
        if (skipped.Count > 0)
        {
            _logger.LogWarning("Quarantine records whose file is not their object, left as they are: {Count} (first: {First}); run vigie scrub",
                skipped.Count, skipped[0]);
        }

        if (failed.Count > 0)
        {
            // Not recorded: the next start tries again.
            _logger.LogError("Quarantined objects whose data key could not be re-wrapped for quarantine: {Count} (first: {First}); run vigie scrub",
                failed.Count, failed[0]);
            return;
        }

        await _index.RecordQuarantinePurposeBoundAsync(cancellationToken).ConfigureAwait(false);
        if (QuarantinePurposeMarker is { } marker)
        {
            var archiveId = await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await FileSync.WriteAtomicallyAsync(marker, System.Text.Encoding.ASCII.GetBytes(archiveId + "\n"), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A key folder mounted read-only is supported: the pass then runs again at each start, which changes nothing.
                _logger.LogWarning("Could not record beside the key file that quarantine files are re-wrapped ({Reason}); the check runs again at the next start",
                    e.Message);
            }
        }

        if (rewrapped > 0)
        {
            _logger.LogWarning("Quarantined objects re-wrapped for quarantine (written before 2026-12-07): {Count}", rewrapped);
        }
    }

    /// <summary>Where the re-wrap of quarantine files is recorded as done: beside the key file, which the data folder's writer cannot reach.</summary>
    private string? QuarantinePurposeMarker => _keks is FileKeyEncryptionKeyStore file ? file.KeyFilePath + ".quarantine-bound" : null;

    /// <summary>
    /// Whether the re-wrap is done for this archive: the record beside the key file names it. An external key store has
    /// no folder of ours, so the index's record stands in there.
    /// </summary>
    private async ValueTask<bool> QuarantinePurposeBoundAsync(CancellationToken cancellationToken)
    {
        if (QuarantinePurposeMarker is not { } marker)
        {
            return await _index.FindLegacyQuarantinedAsync(cancellationToken).ConfigureAwait(false) is null;
        }

        if (!File.Exists(marker))
        {
            return false;
        }

        var archiveId = await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        var text = await File.ReadAllTextAsync(marker, cancellationToken).ConfigureAwait(false);
        return archiveId is not null && string.Equals(text.Trim(), archiveId, StringComparison.Ordinal);
    }

    private async ValueTask<bool> IsArchivedAsync(ObjectId id, CancellationToken cancellationToken)
    {
        await using var connection = await _database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT 1 FROM archive_versions WHERE object_id = @o LIMIT 1").With("@o", id.ToArray());
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not (null or DBNull);
    }

    /// <summary>
    /// For commands that open an archive without starting it (scrub, rescan, stats...): the same refusals as a start, so
    /// that none of them reports on, or writes its audit entries to, another archive's index. Nothing is bound.
    /// </summary>
    public async Task CheckIndexAsync(CancellationToken cancellationToken)
    {
        var folder = await ReadFolderBindingAsync(cancellationToken).ConfigureAwait(false);
        var index = await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        Refuse(folder, index);
        // A command run before the first start on this version: quarantined ids are not archive objects.
        _store.RefuseAsQuarantined(await QuarantinePurposeBoundAsync(cancellationToken).ConfigureAwait(false)
            ? null
            : await _index.FindLegacyQuarantinedAsync(cancellationToken).ConfigureAwait(false));
        if (folder is null && index is null && HoldsObjects(_store.Layout) && !await _index.HasObjectsAsync(cancellationToken).ConfigureAwait(false))
        {
            throw new InvalidOperationException(
                $"the data folder {_store.Layout.Root} holds stored objects, but {Which} is empty: it is not this archive's index");
        }
    }

    private string Which => _database.Provider == DatabaseProvider.Postgres ? "the PostgreSQL index (Database:ConnectionString)" : "the SQLite index (Database:SqlitePath)";

    private static string Capital(string text) => char.ToUpperInvariant(text[0]) + text[1..];

    private void Refuse((string Id, bool Pending)? folder, string? index)
    {
        var root = _store.Layout.Root;
        if (folder is { Pending: false } bound && index is null)
        {
            throw new InvalidOperationException(
                $"The data folder {root} belongs to archive {bound.Id}, but {Which} holds no record of it: it is another index (a new database, " +
                "or a node started without this archive's Database settings). Start with the index this archive uses. Nothing was changed.");
        }

        if (folder is null && index is not null)
        {
            throw new InvalidOperationException(
                $"{Capital(Which)} belongs to archive {index}, whose data folder is not {root} (--data, Archive:DataFolder). " +
                "Start with the folder this index belongs to. Nothing was changed.");
        }

        if (folder is { } given && index is not null && !string.Equals(given.Id, index, StringComparison.Ordinal))
        {
            throw new InvalidOperationException(
                $"The data folder {root} belongs to archive {given.Id}, and {Which} to archive {index}: they are not one archive. Nothing was changed.");
        }
    }

    /// <summary>The folder's identity and whether its index is still to be bound; null when it has none.</summary>
    private async ValueTask<(string Id, bool Pending)?> ReadFolderBindingAsync(CancellationToken cancellationToken)
    {
        var path = _store.Layout.ArchiveIdFile;
        if (Directory.Exists(path))
        {
            throw new InvalidOperationException($"{path} is a folder, not the archive's identity: restore the file from the backup of the data folder.");
        }

        // File.Exists is true for a link to nothing (.NET looks at the link itself).
        if (!File.Exists(path))
        {
            return null;
        }

        string text;
        try
        {
            text = await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (FileNotFoundException)
        {
            throw new InvalidOperationException(
                $"{path} is a link to {new FileInfo(path).LinkTarget ?? "nothing"}, which does not exist: restore the file from the backup of the data folder.");
        }

        var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return words is [var id, ..] && id.Length is > 0 and <= 64 && id.All(char.IsAsciiLetterOrDigit) && words.Length <= 2
               && (words.Length == 1 || words[1] == "pending")
            ? (id, words.Length == 2)
            : throw new InvalidOperationException($"{path} does not hold an archive identity: restore it from the backup of the data folder.");
    }

    /// <summary>Whether objects/ holds any file (its fan-out folders, empty or not, are made at start).</summary>
    private static bool HoldsObjects(ArchiveLayout layout) =>
        Directory.Exists(layout.Objects)
        && Directory.EnumerateFiles(layout.Objects, "*", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 2 }).Any();

    /// <summary>Sets the full-disk reserve aside when it is missing and the file system has room to spare (Archive:FullDiskReserve).</summary>
    public void SetFullDiskReserveAside() => _store.Space.Reserve?.Restore();

    /// <summary>
    /// Why a data folder that is an archive has no SQLite index at <paramref name="sqlitePath"/>: its index is elsewhere
    /// (PostgreSQL), and the Database settings were not given. Null otherwise. One text for a start and for the commands,
    /// which until 2026-12-07 asked whether the folder was a Vigie data folder at all.
    /// </summary>
    public static string? IndexElsewhere(string dataFolder, string sqlitePath) =>
        File.Exists(new ArchiveLayout(dataFolder).ArchiveIdFile) && !File.Exists(sqlitePath)
            ? $"The data folder {Path.GetFullPath(dataFolder)} belongs to an archive whose index is not the SQLite index {sqlitePath}, which does not exist: " +
              "give this archive's Database settings (Database:Provider, Database:ConnectionString; --config names the file that has them)."
            : null;

    /// <summary>
    /// Refuses to start a new archive in a folder that holds other things (a mistyped <c>--data /srv</c>, a home folder):
    /// Vigie would spread its folders among them, and the index and scrub would never account for them. A folder with an
    /// archive (its root key) is Vigie's; one holding only Vigie's own names (a start cut short, another node starting
    /// beside this one) or a file system's lost+found is new. The host calls it before the schema migration, which may
    /// create the SQLite index in the folder.
    /// </summary>
    public void RefuseForeignDataFolder()
    {
        // First: on a file system another writer filled to the last byte, nothing below (SQLite included) could start.
        if (_store.Space.Reserve is { } reserve && Directory.Exists(_store.Layout.Root))
        {
            reserve.ReleaseIfFull();
        }

        var layout = _store.Layout;
        if (File.Exists(layout.Root))
        {
            throw new InvalidOperationException($"The data folder {layout.Root} is a file, not a folder (--data, Archive:DataFolder). Nothing is created.");
        }

        // A backup cut short holds some objects and maybe its keys, but no index: started on, it looked like an archive
        // that had lost its index, and filed its objects again (until 2026-12-08).
        if (File.Exists(Path.Combine(layout.Root, IncompleteBackupMarker)))
        {
            throw new InvalidOperationException($"The data folder {layout.Root} is a backup that was cut short (it holds {IncompleteBackupMarker}): "
                + "it must not be used. Nothing was changed. Restore a complete backup (docs/deploy.md, backups), or take the backup again.");
        }

        // Before the migration creates an empty SQLite index in a folder whose index is elsewhere (PostgreSQL): the
        // refused start then left that file behind, and later commands read it as the archive's (until 2026-12-07).
        if (_database is SqliteDatabase sqlite && IndexElsewhere(layout.Root, sqlite.Path) is { } elsewhere)
        {
            throw new InvalidOperationException(elsewhere + " Nothing was changed.");
        }

        if (!Directory.Exists(layout.Root) || File.Exists(layout.RootKeyFile))
        {
            return;
        }

        var foreign = Directory.EnumerateFileSystemEntries(layout.Root)
            .Select(Path.GetFileName)
            .Where(name => !ArchiveLayout.IsOwnEntry(name!))
            .Order(StringComparer.Ordinal)
            .Take(4)
            .ToList();
        if (foreign.Count > 0)
        {
            throw new InvalidOperationException(
                $"The data folder {layout.Root} holds no archive but other files ({string.Join(", ", foreign.Take(3))}{(foreign.Count > 3 ? ", ..." : "")}): " +
                "is it the folder you meant (--data, Archive:DataFolder)? Nothing is created. Give a new or empty folder for a new archive.");
        }
    }
}
