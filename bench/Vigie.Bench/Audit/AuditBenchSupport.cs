using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core;
using Vigie.Core.Data;

namespace Vigie.Bench.Audit;

/// <summary>AES-256-GCM sealer, as the host's would cost.</summary>
internal sealed class BenchSealer : IAuditSealer
{
    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(32);

    [ThreadStatic]
    private static AesGcm? _threadAes;

    private static AesGcm Aes => _threadAes ??= new AesGcm(Key, 16);

    public string KeyId => "bench";

    public byte[] Seal(ReadOnlySpan<byte> plaintext)
    {
        var output = new byte[28 + plaintext.Length];
        RandomNumberGenerator.Fill(output.AsSpan(0, 12));
        Aes.Encrypt(output.AsSpan(0, 12), plaintext, output.AsSpan(28), output.AsSpan(12, 16));
        return output;
    }

    public byte[] Open(string keyId, ReadOnlySpan<byte> sealedBytes)
    {
        var plaintext = new byte[sealedBytes.Length - 28];
        Aes.Decrypt(sealedBytes[..12], sealedBytes[28..], sealedBytes.Slice(12, 16), plaintext);
        return plaintext;
    }
}

/// <summary>A fresh SQLite audit log in a temp folder, built the way the host builds it.</summary>
internal sealed class BenchLog : IAsyncDisposable
{
    private readonly string _directory;

    private BenchLog(string directory, SqliteDatabase database, AuditLog log, AuditStore store)
    {
        _directory = directory;
        Database = database;
        Log = log;
        Store = store;
    }

    public SqliteDatabase Database { get; }
    public AuditLog Log { get; }
    public AuditStore Store { get; }

    public static async Task<BenchLog> CreateAsync(string? directory = null)
    {
        directory ??= Directory.CreateTempSubdirectory("vigie-audit-bench-").FullName;
        Directory.CreateDirectory(directory);
        var database = new SqliteDatabase(Path.Combine(directory, "index.db"), TimeSpan.FromSeconds(30));
        await using (var services = new ServiceCollection().AddVigieCore().BuildServiceProvider())
        {
            await new SchemaMigrator(database, [new AuditSchema(), .. services.GetServices<ISchemaProvider>()]).MigrateAsync(CancellationToken.None);
        }

        var options = Options.Create(new AuditOptions { SigningKeyPath = Path.Combine(directory, "keys", "audit.pem"), SourceId = "BENCH" });
        var store = new AuditStore(database);
        var keys = new FileSigningKeyProvider(options, store);
        var signal = new AuditSignal();
        var log = new AuditLog(store, new TreeHeadSigner(store, keys, signal, new AuditSigningStatus(), options, TimeProvider.System), keys, signal, options,
            TimeProvider.System, NullLogger<AuditLog>.Instance, new BenchSealer());
        return new BenchLog(directory, database, log, store);
    }

    public async Task AppendBatchAsync(IReadOnlyList<AuditRecord> records)
    {
        await using var connection = await Database.OpenConnectionAsync(CancellationToken.None);
        // As the standalone appender does; the gateway's own connections would want the same.
        await Store.TuneWriterConnectionAsync(connection, CancellationToken.None);

        await using var transaction = await Database.BeginWriteAsync(connection, CancellationToken.None);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        await Log.AppendAsync(records, connection, transaction, CancellationToken.None);
        var appended = System.Diagnostics.Stopwatch.GetTimestamp();
        await transaction.CommitAsync(CancellationToken.None);
        AppendMs += System.Diagnostics.Stopwatch.GetElapsedTime(started, appended).TotalMilliseconds;
        CommitMs += System.Diagnostics.Stopwatch.GetElapsedTime(appended).TotalMilliseconds;
    }

    /// <summary>Time spent in <see cref="AppendBatchAsync"/> appending, then committing (the fsync), summed over calls.</summary>
    public static double AppendMs { get; set; }

    public static double CommitMs { get; set; }

    /// <summary>Keep the database folder when disposed (for repeated verification runs).</summary>
    public bool Keep { get; set; }

    public string DirectoryPath => _directory;

    public async ValueTask DisposeAsync()
    {
        await Log.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Keep)
        {
            return;
        }

        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>
    /// A typical gateway entry: a C-STORE with its patient and study sealed. Entries come in bursts of 50 per patient
    /// (one study's instances) over 5000 patients; set VIGIE_BENCH_RANDOM_PATIENTS=1 for a different patient every entry.
    /// </summary>
    public static AuditRecord Record(int i) => Record(i, RandomPatients ? i % 5000 : (i / 50) % 5000);

    private static readonly bool RandomPatients = Environment.GetEnvironmentVariable("VIGIE_BENCH_RANDOM_PATIENTS") == "1";

    private static AuditRecord Record(int i, int patient) => new()
    {
        Time = DateTimeOffset.UtcNow,
        EventId = AuditEventIds.DicomInstancesTransferred,
        Action = AuditAction.Create,
        Participants =
        [
            new AuditParticipant { UserId = "MODALITY" + (i % 8), IsRequestor = true, Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Source], NetworkAccessPointId = "10.1.0." + (i % 200), NetworkAccessPointType = NetworkAccessPointType.IpAddress },
            new AuditParticipant { UserId = "VIGIE", Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Destination], NetworkAccessPointId = "vigie.local", NetworkAccessPointType = NetworkAccessPointType.MachineName },
        ],
        PurposeOfUse = AuditPurposes.Treatment,
        PatientRef = "pref:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("p" + patient)))[..32],
        Details = new AuditDetails
        {
            Objects =
            [
                new AuditObject { Type = AuditObjectType.Person, Role = AuditObjectRole.Patient, IdType = AuditObjectIdTypes.PatientNumber, Id = "SYNTH" + patient, Name = "SYNTHETIC^PATIENT" },
                new AuditObject { Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Report, IdType = AuditObjectIdTypes.StudyInstanceUid, Id = "1.2.826.0.1.3680043.8.498." + (i / 100), SopClasses = [new AuditSopClass("1.2.840.10008.5.1.4.1.1.2", 1)] },
            ],
        },
    };
}
