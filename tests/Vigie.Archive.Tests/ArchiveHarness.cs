using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>
/// A real archive in a temp folder: data/ (objects, spool, quarantine, keys, and the SQLite index when asked) and a
/// key file beside it, plus a fresh database (SQLite or PostgreSQL). <see cref="ReopenAsync"/> simulates a restart.
/// </summary>
internal sealed class ArchiveHarness : IAsyncDisposable
{
    private readonly TempDirectory? _ownedRoot;
    private readonly TestDatabase? _testDatabase;
    private readonly bool _ownsDatabase;

    private ArchiveHarness(string root, TempDirectory? ownedRoot, ArchiveOptions options, IVigieDatabase database, TestDatabase? testDatabase,
        bool ownsDatabase)
    {
        Root = root;
        _ownedRoot = ownedRoot;
        Options = options;
        Database = database;
        _testDatabase = testDatabase;
        _ownsDatabase = ownsDatabase;
        var wrapped = Microsoft.Extensions.Options.Options.Create(options);
        Keks = new FileKeyEncryptionKeyStore(wrapped, TimeProvider.System);
        Keys = new ArchiveKeyService(Keks, wrapped, NullLogger<ArchiveKeyService>.Instance);
        Store = new FileObjectStore(Keys, wrapped, TimeProvider.System, NullLogger<FileObjectStore>.Instance);
        Index = new SqlArchiveIndex(database, Keys, wrapped, TimeProvider.System);
        Scrub = new ScrubService(database, Store, Keys, wrapped, NullLogger<ScrubService>.Instance);
        Rotation = new KeyRotationService(Keys, Store, wrapped, NullLogger<KeyRotationService>.Instance);
        Initializer = new ArchiveInitializer(wrapped, Keys, Keks, Store, Index, database, NullLogger<ArchiveInitializer>.Instance);
    }

    public string Root { get; }

    public string DataFolder => Options.DataFolder;

    public ArchiveOptions Options { get; }

    public IVigieDatabase Database { get; }

    public DatabaseProvider Provider => Database.Provider;

    public FileKeyEncryptionKeyStore Keks { get; }

    public ArchiveKeyService Keys { get; }

    public FileObjectStore Store { get; }

    public SqlArchiveIndex Index { get; }

    public ScrubService Scrub { get; }

    public KeyRotationService Rotation { get; }

    public ArchiveInitializer Initializer { get; }

    /// <summary>What the start found and did.</summary>
    public ArchiveInitialization Initialization { get; private set; } = null!;

    public static async Task<ArchiveHarness> CreateAsync(DatabaseProvider provider = DatabaseProvider.Sqlite, Action<ArchiveOptions>? configure = null,
        bool indexInDataFolder = false)
    {
        var ct = TestContext.Current.CancellationToken;
        var root = new TempDirectory("vigie-archive");
        var options = NewOptions(root.Path);
        configure?.Invoke(options);
        IVigieDatabase database;
        TestDatabase? testDatabase = null;
        if (indexInDataFolder && provider == DatabaseProvider.Sqlite)
        {
            database = new SqliteDatabase(Path.Combine(options.DataFolder, "index.db"), TimeSpan.FromSeconds(30));
        }
        else
        {
            testDatabase = await TestDatabases.CreateAsync(provider, ct);
            database = testDatabase.Database;
        }

        await new SchemaMigrator(database, [new ArchiveSchema()]).MigrateAsync(ct);
        var harness = new ArchiveHarness(root.Path, root, options, database, testDatabase, ownsDatabase: true);
        harness.Initialization = await harness.Initializer.InitializeAsync(ct);
        return harness;
    }

    public static ArchiveOptions NewOptions(string root) => new()
    {
        DataFolder = Path.Combine(root, "data"),
        KeyFile = Path.Combine(root, "secrets", "kek.json"),
        KeyReloadInterval = TimeSpan.FromMilliseconds(20),
        SegmentSize = 4096,
        // Removing 4096 folders per test costs seconds here; the lazy path is the one under test.
        PrecreateFanOutFolders = false,
        // Slots are made only at idle moments, so whether an object lands would depend on timing: LandingTests turn them on.
        LandingSlots = 0,
    };

    /// <summary>A second process on the same folders and database (or a restart after a crash).</summary>
    public async Task<ArchiveHarness> ReopenAsync(Action<ArchiveOptions>? configure = null)
    {
        var options = NewOptions(Root);
        options.SegmentSize = Options.SegmentSize;
        configure?.Invoke(options);
        var harness = new ArchiveHarness(Root, null, options, Database, null, ownsDatabase: false);
        harness.Initialization = await harness.Initializer.InitializeAsync(TestContext.Current.CancellationToken);
        return harness;
    }

    public async Task<SpooledObject> SpoolAsync(byte[] content, int chunk = 1500)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var writer = await Store.CreateSpoolAsync(ct);
        for (var at = 0; at < content.Length; at += chunk)
        {
            await writer.WriteAsync(content.AsMemory(at, Math.Min(chunk, content.Length - at)), ct);
        }

        return await writer.CompleteAsync(ct);
    }

    public async Task<CommittedObject> PutAsync(byte[] content)
    {
        await using var spool = await SpoolAsync(content);
        return await Store.CommitAsync(spool, TestContext.Current.CancellationToken);
    }

    /// <summary>Stores content and indexes it as one instance, as the gateway does: blob durable, then one transaction.</summary>
    public async Task<(CommittedObject Object, IndexWriteResult Index)> IngestAsync(byte[] content, InstanceIndexEntry template)
    {
        var ct = TestContext.Current.CancellationToken;
        var committed = await PutAsync(content);
        await using var connection = await Database.OpenConnectionAsync(ct);
        await using var transaction = await Database.BeginWriteAsync(connection, ct);
        var result = await Index.StoreInstanceAsync(connection, transaction, template with { ObjectId = committed.Id, ObjectLength = committed.Length }, ct);
        await transaction.CommitAsync(ct);
        return (committed, result);
    }

    public async Task<byte[]> ReadAllAsync(ObjectId id)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var reader = await Store.OpenReadAsync(id, ct);
        await using var stream = reader.OpenStream();
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy, ct);
        return copy.ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        Store.Dispose();
        if (_ownsDatabase && _testDatabase is not null)
        {
            await _testDatabase.DisposeAsync();
        }

        if (_ownsDatabase)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        }

        _ownedRoot?.Dispose();
    }
}

/// <summary>Synthetic patients, studies and instances (no real data), and deterministic content.</summary>
internal static class Samples
{
    public static readonly string[] Names = ["DUPONT^JEAN", "DURAND^MARIE", "MARTIN^ÉLODIE", "LI^WEI", "DUPONTEL^PAUL", "O'NEIL^SEAN"];

    public static byte[] Content(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static string PatientId(int patient) => $"VIGPID{patient:D5}X";

    public static string StudyUid(int patient, int study) => $"1.2.826.0.1.3680043.10.543.{patient}.{study}";

    public static string SeriesUid(int patient, int study, int series) => $"{StudyUid(patient, study)}.{series}";

    public static string SopUid(int patient, int study, int series, int instance) => $"{SeriesUid(patient, study, series)}.{instance}";

    public static string Accession(int patient, int study) => $"ACCVIG{patient:D3}{study:D2}";

    public const string CtImageStorage = "1.2.840.10008.5.1.4.1.1.2";

    public static InstanceIndexEntry Entry(int patient, int study, int series, int instance, string? studyDate = null, string modality = "CT",
        string sopClass = CtImageStorage)
    {
        var name = Names[patient % Names.Length];
        return new InstanceIndexEntry(
            new PatientEntry(PatientId(patient), "VIGIE-TEST",
                AttributeSet.From((DicomTags.PatientName, name), (DicomTags.PatientBirthDate, $"19{50 + patient % 40:D2}0{1 + patient % 9}15"),
                    (DicomTags.PatientSex, patient % 2 == 0 ? "M" : "F"))),
            new StudyEntry(StudyUid(patient, study),
                AttributeSet.From((DicomTags.StudyDate, studyDate ?? $"2024{1 + study % 12:D2}1{study % 10}"), (DicomTags.StudyTime, "101500"),
                    (DicomTags.AccessionNumber, Accession(patient, study)), (DicomTags.StudyDescription, $"SCANNER THORAX {patient}"),
                    (DicomTags.ReferringPhysicianName, "HOUSE^GREGORY"))),
            new SeriesEntry(SeriesUid(patient, study, series),
                AttributeSet.From((DicomTags.Modality, modality), (DicomTags.SeriesNumber, series.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                    (DicomTags.SeriesDescription, "AXIAL 1MM"))),
            new InstanceEntry(SopUid(patient, study, series, instance), sopClass,
                AttributeSet.From((DicomTags.InstanceNumber, instance.ToString(System.Globalization.CultureInfo.InvariantCulture)))),
            default,
            0);
    }
}
