using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Core.Outbox;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>AES-256-GCM sealer for tests (the host uses the archive's key hierarchy). Layout: nonce(12) || tag(16) || ciphertext.</summary>
internal sealed class TestSealer(string keyId = "test-k1") : IAuditSealer
{
    private readonly Dictionary<string, byte[]> _keys = new() { [keyId] = RandomNumberGenerator.GetBytes(32) };

    public string KeyId { get; } = keyId;

    public byte[] Seal(ReadOnlySpan<byte> plaintext)
    {
        var output = new byte[12 + 16 + plaintext.Length];
        RandomNumberGenerator.Fill(output.AsSpan(0, 12));
        using var aes = new AesGcm(_keys[KeyId], 16);
        aes.Encrypt(output.AsSpan(0, 12), plaintext, output.AsSpan(28), output.AsSpan(12, 16));
        return output;
    }

    public byte[] Open(string keyId, ReadOnlySpan<byte> sealedBytes)
    {
        if (sealedBytes.Length < 28 || !_keys.TryGetValue(keyId, out var key))
        {
            throw new CryptographicException("Unknown key or truncated blob.");
        }

        var plaintext = new byte[sealedBytes.Length - 28];
        using var aes = new AesGcm(key, 16);
        aes.Decrypt(sealedBytes[..12], sealedBytes[28..], sealedBytes.Slice(12, 16), plaintext);
        return plaintext;
    }
}

/// <summary>A migrated database, a key file and an <see cref="AuditLog"/> over them; <see cref="ReopenAsync"/> simulates a restart.</summary>
internal sealed class AuditHarness : IAsyncDisposable
{
    private readonly TempDirectory _keys;

    private AuditHarness(TestDatabase db, TempDirectory keys, AuditOptions options, TestSealer sealer)
    {
        Db = db;
        _keys = keys;
        Options = options;
        Sealer = sealer;
        Store = new AuditStore(db.Database);
        Leases = new LeaseStore(db.Database, TimeProvider.System);
        (Log, Signer) = Build();
    }

    public TestDatabase Db { get; }
    public AuditOptions Options { get; }
    public TestSealer Sealer { get; }
    public AuditStore Store { get; }
    public LeaseStore Leases { get; }
    public AuditLog Log { get; private set; }
    public TreeHeadSigner Signer { get; private set; }
    public AuditSignal Signal { get; } = new();
    public string KeyPath => Options.SigningKeyPath!;

    public static async Task<AuditHarness> CreateAsync(DatabaseProvider provider, Action<AuditOptions>? configure = null)
    {
        var ct = TestContext.Current.CancellationToken;
        var db = await TestDatabases.CreateAsync(provider, ct);
        // Core's own schema (outbox, leases) comes from its registration, as in the host.
        await using var services = new ServiceCollection().AddVigieCore().BuildServiceProvider();
        await new SchemaMigrator(db.Database, [new AuditSchema(), .. services.GetServices<ISchemaProvider>()]).MigrateAsync(ct);
        var keys = new TempDirectory("vigie-audit-keys");
        var options = new AuditOptions { SigningKeyPath = keys.Combine("audit-signing.pem"), SourceId = "VIGIE-TEST", EnterpriseSiteId = "SITE-1" };
        configure?.Invoke(options);
        return new AuditHarness(db, keys, options, new TestSealer());
    }

    /// <summary>Why the signer last refused, as /health reads it.</summary>
    public AuditSigningStatus SigningStatus { get; } = new();

    private (AuditLog, TreeHeadSigner) Build()
    {
        var options = Microsoft.Extensions.Options.Options.Create(Options);
        var keys = new FileSigningKeyProvider(options, Store);
        var signer = new TreeHeadSigner(Store, keys, Signal, SigningStatus, options, TimeProvider.System);
        return (new AuditLog(Store, signer, keys, Signal, options, TimeProvider.System, NullLogger<AuditLog>.Instance, Sealer), signer);
    }

    /// <summary>Drops the log object (and its appender) and builds a new one over the same database and key.</summary>
    public async Task ReopenAsync()
    {
        await Log.DisposeAsync();
        (Log, Signer) = Build();
    }

    /// <summary>An export worker for one sink over this harness's log, as the export service builds it.</summary>
    internal Export.AuditExportWorker ExportWorker(AuditSinkOptions options, Export.IAuditSink sink) =>
        new(options, sink, Store, Log.Factory, Signal, Leases, TimeProvider.System, "test-holder", NullLogger.Instance);

    /// <summary>Appends records in one transaction through the transactional API.</summary>
    public async Task<long> AppendAsync(IReadOnlyList<AuditRecord> records)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await Db.Database.OpenConnectionAsync(ct);
        await using var transaction = await Db.Database.BeginWriteAsync(connection, ct);
        var first = await Log.AppendAsync(records, connection, transaction, ct);
        await transaction.CommitAsync(ct);
        return first;
    }

    public async Task ExecuteAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await Db.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.ExecuteNonQueryAsync(ct);
    }

    public async Task<object?> ScalarAsync(string sql, params (string Name, object? Value)[] parameters)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await Db.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        var result = await command.ExecuteScalarAsync(ct);
        return result is DBNull ? null : result;
    }

    public async ValueTask DisposeAsync()
    {
        await Log.DisposeAsync();
        await Db.DisposeAsync();
        _keys.Dispose();
    }
}

/// <summary>Synthetic records. The patient names and UIDs are made up, and the confidentiality test greps for them.</summary>
internal static class Samples
{
    public const string PatientName = "DUPONT^JEANNE";
    public const string PatientId = "PID-778899";
    public const string StudyUid = "1.2.826.0.1.3680043.8.498.10001";
    public const string SopClassUid = "1.2.840.10008.5.1.4.1.1.2";

    public static string PatientRef(int patient) => "pref:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("patient-" + patient)))[..32];

    public static AuditRecord Record(int i, DateTimeOffset? time = null)
    {
        var patient = i % 7;
        var kind = i % 5;
        return new AuditRecord
        {
            Time = time ?? DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000 + i * 1000L),
            EventId = kind switch
            {
                0 => AuditEventIds.DicomInstancesTransferred,
                1 => AuditEventIds.Query,
                2 => AuditEventIds.DicomInstancesAccessed,
                3 => AuditEventIds.UserAuthentication,
                _ => AuditEventIds.SecurityAlert,
            },
            EventTypes = kind == 3 ? [AuditEventTypes.Login] : kind == 4 ? [AuditEventTypes.EmergencyOverrideStarted] : [],
            Action = kind switch
            {
                0 => AuditAction.Create,
                1 => AuditAction.Execute,
                2 => AuditAction.Read,
                _ => AuditAction.Execute,
            },
            Outcome = i % 11 == 10 ? AuditOutcome.MinorFailure : AuditOutcome.Success,
            Participants =
            [
                new AuditParticipant
                {
                    UserId = "user" + (i % 3), UserName = "Dr Staff " + (i % 3), IsRequestor = true, Kind = AuditParticipantKind.Person,
                    Roles = [new AuditCode("RAD", "urn:vigie:roles", "Radiologist")], NetworkAccessPointId = "10.0.0." + (i % 9 + 1),
                    NetworkAccessPointType = NetworkAccessPointType.IpAddress,
                },
                new AuditParticipant
                {
                    UserId = "VIGIE_SCP", Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Destination],
                    NetworkAccessPointId = "vigie.example", NetworkAccessPointType = NetworkAccessPointType.MachineName,
                },
            ],
            PurposeOfUse = kind == 4 ? AuditPurposes.EmergencyTreatment : AuditPurposes.Treatment,
            PatientRef = kind == 3 ? null : PatientRef(patient),
            Details = kind == 3 ? null : new AuditDetails
            {
                OutcomeDescription = i % 11 == 10 ? "rejected: " + PatientName : null,
                Objects =
                [
                    new AuditObject
                    {
                        Type = AuditObjectType.Person, Role = AuditObjectRole.Patient, IdType = AuditObjectIdTypes.PatientNumber,
                        Id = PatientId + "-" + patient, Name = PatientName,
                    },
                    kind == 1
                        ? new AuditObject
                        {
                            Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Query, IdType = AuditObjectIdTypes.SopClassUid,
                            Id = "1.2.840.10008.5.1.4.1.2.2.1", Query = Encoding.UTF8.GetBytes("PatientName=" + PatientName),
                        }
                        : new AuditObject
                        {
                            Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Report, IdType = AuditObjectIdTypes.StudyInstanceUid,
                            Id = StudyUid + "." + i, SopClasses = [new AuditSopClass(SopClassUid, 3)], Accessions = ["ACC" + i],
                        },
                ],
            },
        };
    }

    public static List<AuditRecord> Records(int start, int count) => Enumerable.Range(start, count).Select(i => Record(i)).ToList();
}
