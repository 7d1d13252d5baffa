namespace Vigie.Archive;

/// <summary>
/// Where the archive keeps its data and how it writes it. Bound from the "Archive" configuration section
/// (<c>VIGIE__ARCHIVE__SEGMENTSIZE</c>...). Every limit has a default.
/// </summary>
public sealed class ArchiveOptions
{
    public const string Section = "Archive";

    /// <summary>The data folder: objects/, spool/, quarantine/ and keys/ live under it. The host fills it.</summary>
    public string DataFolder { get; set; } = "data";

    /// <summary>
    /// The key-encryption key file. It must lie outside <see cref="DataFolder"/>, so that a copy of the data folder
    /// alone decrypts nothing. Empty: <c>$XDG_CONFIG_HOME/vigie/kek.json</c> (or <c>~/.config/vigie/kek.json</c>).
    /// </summary>
    public string? KeyFile { get; set; }

    /// <summary>Plaintext bytes per encrypted segment of new objects (each segment costs 16 bytes of tag).</summary>
    public int SegmentSize { get; set; } = 64 * 1024;

    /// <summary>
    /// Free space kept on the data folder's file system for the index, the audit trail and objects already arriving:
    /// under it, new objects are refused (C-STORE answers A700) while queries, retrieves and the audit trail go on. 0: no floor.
    /// </summary>
    public long MinFreeSpace { get; set; } = 512L * 1024 * 1024;

    /// <summary>
    /// Bytes set aside in the data folder (a preallocated file) and given back when its file system fills to the last
    /// byte despite <see cref="MinFreeSpace"/> (another writer): the node then still starts and serves queries and
    /// retrieves, and the audit trail has room. 0: no reserve.
    /// </summary>
    public long FullDiskReserve { get; set; } = 64L * 1024 * 1024;

    /// <summary>Largest object a spool accepts; writing past it fails with a typed error.</summary>
    public long MaxObjectBytes { get; set; } = 16L * 1024 * 1024 * 1024;

    /// <summary>fsync objects and their directories before a commit returns. Off only for benchmarks and throw-away stores.</summary>
    public bool Durable { get; set; } = true;

    /// <summary>
    /// Drop an object's pages from the page cache once it is durable (Linux; with <see cref="Durable"/> only, since
    /// only clean pages can go). Objects are written once and seldom read back at once: cached, they push the index out
    /// of memory, and every new object takes fresh pages, which on a virtual machine can cost far more than recycled
    /// ones (1.1 ms of a CT image's write against 0.1 ms, measured here at times). Unset: on, unless the host reads
    /// each object back soon (the gateway's forwarding, which drops them once sent).
    /// </summary>
    public bool? ReleaseWrittenPages { get; set; }

    /// <summary>Threads that run blocking fsync calls, so that no thread-pool thread waits on the disk.</summary>
    public int SyncThreads { get; set; } = 4;

    /// <summary>
    /// Encrypted segments gathered before one write system call (and one request to start writeback). 15 of 64 KiB fit
    /// the shared pool's 1 MiB buffers; a typical image then goes down in one write, which measured about 8% faster
    /// than 4 per write (fewer system calls and block-layer submissions per image).
    /// </summary>
    public int WriteBufferSegments { get; set; } = 15;

    /// <summary>
    /// Create the 4096 fan-out folders of objects/ at start, so that no commit has to create one (and sync objects/ too).
    /// Off: they are made on first use.
    /// </summary>
    public bool PrecreateFanOutFolders { get; set; } = true;

    /// <summary>Empty spool files kept ready in spool/reserve/, so that an arriving object does not wait for a file to be created. 0: none.</summary>
    public int SpoolReserve { get; set; } = 8;

    /// <summary>
    /// Most landing slots kept ready in spool/landing/: files written full of zeros and synced while the node is idle, so
    /// that an object that fits one is made durable by a single data flush (no new block, no rename, no folder flush),
    /// and moved to objects/ at the next idle moment. The node keeps as many ready as its largest recent burst needed,
    /// from 16 up to this. 0: off (every object takes the file, rename and folder flushes). See docs/archive.md.
    /// </summary>
    public int LandingSlots { get; set; } = 256;

    /// <summary>Size of a landing slot; a larger object is stored the ordinary way. Its last 4 KiB hold the landing record.</summary>
    public int LandingSlotBytes { get; set; } = 1024 * 1024;

    /// <summary>Off: the landing slots' idle-time work waits from the start (tests drive it themselves, with no window before they can turn it off).</summary>
    internal bool LandingIdleWork { get; set; } = true;

    /// <summary>Spool files older than this are removed at start (never acknowledged, so never needed).</summary>
    public TimeSpan StaleSpoolAge { get; set; } = TimeSpan.FromHours(6);

    /// <summary>Largest serialised attribute set per index row.</summary>
    public int MaxIndexAttributesBytes { get; set; } = 64 * 1024;

    /// <summary>Most attributes per index row.</summary>
    public int MaxIndexAttributes { get; set; } = 1024;

    /// <summary>Shortest name prefix that gets a keyed hash (shorter prefixes leak too much through frequencies).</summary>
    public int NamePrefixMinLength { get; set; } = 3;

    /// <summary>Longest name prefix that gets a keyed hash; longer query prefixes use it, then decrypt-and-filter.</summary>
    public int NamePrefixMaxLength { get; set; } = 16;

    /// <summary>Most index rows a query decrypts before it stops and reports itself incomplete.</summary>
    public int QueryMaxCandidates { get; set; } = 100_000;

    /// <summary>Rows fetched per round trip while a query scans candidates.</summary>
    public int QueryBatchSize { get; set; } = 500;

    /// <summary>Most keyed hashes a query sends to the database (UID lists beyond it are matched after decryption).</summary>
    public int QueryMaxHashParameters { get; set; } = 5_000;

    /// <summary>A study date range spanning more months than this is not narrowed by month hashes.</summary>
    public int StudyDateMaxMonths { get; set; } = 240;

    /// <summary>Objects verified at once by scrub.</summary>
    public int ScrubParallelism { get; set; } = 2;

    /// <summary>Most findings a scrub report lists (the counts stay exact).</summary>
    public int ScrubMaxFindings { get; set; } = 10_000;

    /// <summary>Time between a retention decision and the removal of the file, so that a concurrent store of the same content can claim it back.</summary>
    public TimeSpan DeletionGrace { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// An object no index row references is an interrupted commit (never acknowledged) or, on another node sharing the
    /// folder, a commit in flight. Younger than this it is counted as in flight, not reported; older, scrub reports it
    /// and maintenance schedules its deletion.
    /// </summary>
    public TimeSpan OrphanGrace { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Maintenance deletes no orphan when more than this share of the objects (and more than 10) would go: an index
    /// restored from an older backup, or another archive's, makes everything since look orphaned. They are reported
    /// (an integrity alert) until a person looks.
    /// </summary>
    public double OrphanMaxShare { get; set; } = 0.1;

    /// <summary>How often the key file is checked for a rotation made by another node or process.</summary>
    public TimeSpan KeyReloadInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Objects whose data keys are re-wrapped between two rounds of fsyncs during rotation.</summary>
    public int RotationBatchSize { get; set; } = 64;

    /// <summary>The key file's full path: <see cref="KeyFile"/>, or its default.</summary>
    public string ResolvedKeyFile => ResolveKeyFile();

    internal string ResolveKeyFile()
    {
        if (!string.IsNullOrWhiteSpace(KeyFile))
        {
            return Path.GetFullPath(KeyFile);
        }

        var config = Environment.GetFolderPath(Environment.SpecialFolder.ApplicationData);
        if (string.IsNullOrEmpty(config))
        {
            config = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        }

        return Path.Combine(config, "vigie", "kek.json");
    }

    internal void Validate()
    {
        if (SegmentSize is < Storage.ObjectFormat.MinSegmentSize or > Storage.ObjectFormat.MaxSegmentSize)
        {
            throw new InvalidOperationException(
                $"Archive:SegmentSize must be between {Storage.ObjectFormat.MinSegmentSize} and {Storage.ObjectFormat.MaxSegmentSize} bytes.");
        }

        if (SpoolReserve is < 0 or > 1024)
        {
            throw new InvalidOperationException("Archive:SpoolReserve must be between 0 and 1024 files.");
        }

        if (LandingSlots is < 0 or > 65_536)
        {
            throw new InvalidOperationException("Archive:LandingSlots must be between 0 and 65536.");
        }

        if (LandingSlotBytes is < 64 * 1024 or > 64 * 1024 * 1024 || LandingSlotBytes % 4096 != 0)
        {
            throw new InvalidOperationException("Archive:LandingSlotBytes must be a multiple of 4096 between 64 KiB and 64 MiB.");
        }

        if (MinFreeSpace < 0)
        {
            throw new InvalidOperationException("Archive:MinFreeSpace must be 0 (no floor) or a number of bytes.");
        }

        if (FullDiskReserve is < 0 or > 16L * 1024 * 1024 * 1024)
        {
            throw new InvalidOperationException("Archive:FullDiskReserve must be 0 (no reserve) or a number of bytes up to 16 GiB.");
        }

        if (MaxObjectBytes <= 0 || WriteBufferSegments <= 0 || SyncThreads <= 0 || ScrubParallelism <= 0
            || RotationBatchSize <= 0 || QueryBatchSize <= 0 || QueryMaxCandidates <= 0 || NamePrefixMinLength <= 0
            || NamePrefixMaxLength < NamePrefixMinLength)
        {
            throw new InvalidOperationException("Archive options: limits must be positive (and NamePrefixMaxLength >= NamePrefixMinLength).");
        }

        if (DeletionGrace < TimeSpan.Zero || OrphanGrace < TimeSpan.Zero)
        {
            // A negative grace removes a file at its decision (the evidence of a quarantine gone in seconds).
            throw new InvalidOperationException("Archive:DeletionGrace and OrphanGrace must not be negative.");
        }

        if (OrphanMaxShare is < 0 or > 1 || double.IsNaN(OrphanMaxShare))
        {
            throw new InvalidOperationException("Archive:OrphanMaxShare must be between 0 and 1.");
        }

        if (string.IsNullOrWhiteSpace(DataFolder))
        {
            throw new InvalidOperationException("Archive:DataFolder is not set.");
        }
    }
}
