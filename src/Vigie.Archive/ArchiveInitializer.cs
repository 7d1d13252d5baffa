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

        _store.StartLanding();
        var keyFile = (_keks as FileKeyEncryptionKeyStore)?.KeyFilePath ?? "(external key store)";
        return new ArchiveInitialization(layout.Root, keyFile, keysCreated, stale, landed);
    }

    /// <summary>
    /// Ties the data folder and its index to one archive identity, held by both, and refuses a start that pairs them
    /// otherwise. A folder moved to an empty PostgreSQL database, or a second node left on the default SQLite index beside
    /// a PostgreSQL one, ran until maintenance deleted as orphans every object its index did not know (until 2026-12-07).
    /// An archive of an earlier version (neither bound) is bound now, unless its folder holds objects its index lacks.
    /// </summary>
    private async ValueTask BindIndexAsync(CancellationToken cancellationToken)
    {
        var layout = _store.Layout;
        var folder = await ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        var index = await _index.ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        // Another node starting this archive binds the index, then the folder: give it a moment.
        for (var wait = 0; folder is null && index is not null && wait < 20; wait++)
        {
            await Task.Delay(250, cancellationToken).ConfigureAwait(false);
            folder = await ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        }

        var which = _database.Provider == DatabaseProvider.Postgres ? "the PostgreSQL index (Database:ConnectionString)" : "the SQLite index (Database:SqlitePath)";
        if (folder is not null && index is null)
        {
            throw new InvalidOperationException(
                $"The data folder {layout.Root} belongs to archive {folder}, but {which} holds no record of it: it is another index (a new database, " +
                "or a node started without this archive's Database settings). Start with the index this archive uses. Nothing was changed.");
        }

        if (folder is null && index is not null)
        {
            throw new InvalidOperationException(
                $"{char.ToUpperInvariant(which[0])}{which[1..]} belongs to archive {index}, whose data folder is not {layout.Root} (--data, Archive:DataFolder). " +
                "Start with the folder this index belongs to. Nothing was changed.");
        }

        if (folder is not null && index is not null)
        {
            if (!string.Equals(folder, index, StringComparison.Ordinal))
            {
                throw new InvalidOperationException(
                    $"The data folder {layout.Root} belongs to archive {folder}, and {which} to archive {index}: they are not one archive. Nothing was changed.");
            }

            return;
        }

        if (!await _index.HasObjectsAsync(cancellationToken).ConfigureAwait(false) && HoldsObjects(layout))
        {
            throw new InvalidOperationException(
                $"The data folder {layout.Root} holds stored objects, but {which} is empty: it is not this archive's index (a new database, or a node " +
                "started without this archive's Database settings). Start with the index this archive uses. Nothing was changed.");
        }

        var bound = await _index.BindArchiveIdAsync(Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)), cancellationToken)
            .ConfigureAwait(false);
        await FileSync.CreateOnceAsync(layout.ArchiveIdFile, System.Text.Encoding.ASCII.GetBytes(bound + "\n"), cancellationToken).ConfigureAwait(false);
        var written = await ReadArchiveIdAsync(cancellationToken).ConfigureAwait(false);
        if (!string.Equals(written, bound, StringComparison.Ordinal))
        {
            throw new InvalidOperationException(
                $"The data folder {layout.Root} was bound to archive {written} while this node bound {which} to archive {bound}: two nodes started it " +
                "on different indexes. Nothing else was changed.");
        }

        _logger.LogInformation("The data folder and its index are archive {ArchiveId}.", bound);
    }

    private async ValueTask<string?> ReadArchiveIdAsync(CancellationToken cancellationToken)
    {
        var path = _store.Layout.ArchiveIdFile;
        if (!File.Exists(path))
        {
            return null;
        }

        var text = (await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false)).Trim();
        return text.Length is > 0 and <= 64 && text.All(char.IsAsciiLetterOrDigit)
            ? text
            : throw new InvalidOperationException($"{path} does not hold an archive identity: restore it from the backup of the data folder.");
    }

    /// <summary>Whether objects/ holds any file (its fan-out folders, empty or not, are made at start).</summary>
    private static bool HoldsObjects(ArchiveLayout layout) =>
        Directory.Exists(layout.Objects)
        && Directory.EnumerateFiles(layout.Objects, "*", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 2 }).Any();

    /// <summary>
    /// Refuses to start a new archive in a folder that holds other things (a mistyped <c>--data /srv</c>, a home folder):
    /// Vigie would spread its folders among them, and the index and scrub would never account for them. A folder with an
    /// archive (its root key) is Vigie's; one holding only Vigie's own names (a start cut short, another node starting
    /// beside this one) or a file system's lost+found is new. The host calls it before the schema migration, which may
    /// create the SQLite index in the folder.
    /// </summary>
    public void RefuseForeignDataFolder()
    {
        var layout = _store.Layout;
        if (File.Exists(layout.Root))
        {
            throw new InvalidOperationException($"The data folder {layout.Root} is a file, not a folder (--data, Archive:DataFolder). Nothing is created.");
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
