using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Bench.Archive;

/// <summary>A throw-away archive under /tmp (data folder, key file, SQLite index), built the way AddArchive builds it.</summary>
internal sealed class BenchArchive : IDisposable
{
    public BenchArchive(bool durable, int segmentSize = 64 * 1024)
    {
        Root = Directory.CreateTempSubdirectory("vigie-bench-archive-").FullName;
        Options = new ArchiveOptions
        {
            DataFolder = Path.Combine(Root, "data"),
            KeyFile = Path.Combine(Root, "secrets", "kek.json"),
            Durable = durable,
            SegmentSize = segmentSize,
        };
        var options = Microsoft.Extensions.Options.Options.Create(Options);
        var keks = new FileKeyEncryptionKeyStore(options, TimeProvider.System);
        Keys = new ArchiveKeyService(keks, options, NullLogger<ArchiveKeyService>.Instance);
        Store = new FileObjectStore(Keys, options, TimeProvider.System, NullLogger<FileObjectStore>.Instance);
        Database = new SqliteDatabase(Path.Combine(Options.DataFolder, "index.db"), TimeSpan.FromSeconds(30));
        new SchemaMigrator(Database, [new ArchiveSchema()]).MigrateAsync(CancellationToken.None).GetAwaiter().GetResult();
        Index = new SqlArchiveIndex(Database, Keys, options, TimeProvider.System);
        Scrub = new ScrubService(Database, Store, Keys, options, NullLogger<ScrubService>.Instance);
        new ArchiveInitializer(options, Keys, keks, Store, Index, Database, NullLogger<ArchiveInitializer>.Instance).InitializeAsync(CancellationToken.None)
            .GetAwaiter().GetResult();
    }

    public string Root { get; }

    public ArchiveOptions Options { get; }

    public ArchiveKeyService Keys { get; }

    public FileObjectStore Store { get; }

    public SqliteDatabase Database { get; }

    public SqlArchiveIndex Index { get; }

    public ScrubService Scrub { get; }

    /// <summary>Streams <paramref name="content"/> in PDU-sized fragments, as the gateway does with P-DATA.</summary>
    public async Task<SpooledObject> SpoolAsync(ReadOnlyMemory<byte> content, int fragment = 16 * 1024)
    {
        await using var writer = await Store.CreateSpoolAsync(CancellationToken.None);
        for (var at = 0; at < content.Length; at += fragment)
        {
            await writer.WriteAsync(content.Slice(at, Math.Min(fragment, content.Length - at)), CancellationToken.None);
        }

        return await writer.CompleteAsync(CancellationToken.None);
    }

    public async Task<CommittedObject> PutAsync(ReadOnlyMemory<byte> content)
    {
        await using var spool = await SpoolAsync(content);
        return await Store.CommitAsync(spool, CancellationToken.None);
    }

    /// <summary>A distinct object of <paramref name="size"/> bytes: random bytes stamped with a counter, so no two deduplicate.</summary>
    public static byte[] Content(int size, long stamp)
    {
        var bytes = new byte[size];
        new Random((int)stamp).NextBytes(bytes);
        BitConverter.TryWriteBytes(bytes, stamp);
        return bytes;
    }

    public void Dispose()
    {
        Store.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
