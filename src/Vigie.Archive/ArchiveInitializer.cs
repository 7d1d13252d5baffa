using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.IO;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;

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
    private readonly ILogger<ArchiveInitializer> _logger;

    internal ArchiveInitializer(IOptions<ArchiveOptions> options, ArchiveKeyService keys, IKeyEncryptionKeyStore keks, FileObjectStore store,
        ILogger<ArchiveInitializer> logger)
    {
        _options = options.Value;
        _keys = keys;
        _keks = keks;
        _store = store;
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
