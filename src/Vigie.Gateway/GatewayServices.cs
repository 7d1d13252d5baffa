using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Access;
using Vigie.Archive;
using Vigie.Archive.Keys;
using Vigie.Archive.Retention;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Dicom.Network;
using Vigie.Gateway.Commitment;
using Vigie.Gateway.Dimse;
using Vigie.Gateway.Forwarding;
using Vigie.Gateway.Ingest;
using Vigie.Inspection;

namespace Vigie.Gateway;

public static class GatewayServiceCollectionExtensions
{
    /// <summary>
    /// The gateway and everything it composes: archive, audit (sealed with the archive's keys), inspection, access, the
    /// ingest pipeline, the DICOM node and the forwarder. The host binds the options sections and the data folder.
    /// </summary>
    public static IServiceCollection AddGateway(this IServiceCollection services)
    {
        // Registered first: hosted services start in order, and everything below needs the schema and the keys.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, GatewayStartup>());
        services.TryAddSingleton<IAuditSealer, ArchiveAuditSealer>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISchemaProvider, GatewaySchema>());
        services.TryAddSingleton<ConfigurationAudit>();
        services.TryAddSingleton<Ingest.WithheldObjects>();
        services.TryAddSingleton<IRetentionAudit, RetentionAuditBridge>();
        services.TryAddSingleton<IRetentionHold, Forwarding.ForwardRetentionHold>();
        services.AddArchive();
        services.AddAudit();
        // Before the inspection module's unbounded default: the plaintext copies and what inspections hold share one bound.
        services.TryAddSingleton(sp => new InspectionMemory(
            () => sp.GetRequiredService<IOptionsMonitor<GatewayOptions>>().CurrentValue.InMemoryInspectionTotal));
        services.AddVigieInspection();
        services.AddAccess();
        services.AddOptions<GatewayOptions>().ValidateOnStart();
        // Forwarding reads each object back within seconds: it stays cached until sent, and the forwarder drops it then.
        services.AddOptions<ArchiveOptions>().PostConfigure<IOptions<GatewayOptions>>((archive, gateway) =>
            archive.ReleaseWrittenPages ??= !gateway.Value.Destinations.Any(d => d.Forward));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidation>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<Vigie.Audit.AuditOptions>, AuditFilePlacementValidation>());
        services.AddOptions<DicomServerOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DicomServerOptions>, DicomServerOptionsValidation>());
        services.TryAddSingleton<IngestCommitter>();
        services.TryAddSingleton<IngestPipeline>();
        services.TryAddSingleton<ArchiveRecovery>();
        services.TryAddSingleton<ClockStepGuard>();
        services.TryAddSingleton<NegotiationStatus>();
        services.TryAddSingleton<StoreStatus>();
        services.TryAddSingleton<RetrieveIntegrity>();
        services.TryAddSingleton<ArchiveIntegrityStatus>();
        services.TryAddSingleton<ArchiveMaintenanceWatch>();
        services.TryAddSingleton<GatewayServiceProvider>();
        services.TryAddSingleton<IDicomServiceProvider>(sp => sp.GetRequiredService<GatewayServiceProvider>());
        services.TryAddSingleton<Forwarder>();
        services.TryAddSingleton<ForwardQueue>();
        services.TryAddSingleton<QuarantineManager>();
        services.TryAddSingleton<ArchiveRescan>();
        services.TryAddSingleton<CommitmentReports>();
        services.TryAddSingleton<StorageCommitmentService>();
        services.TryAddSingleton<CommitmentQueue>();
        services.TryAddSingleton<CommitmentReporter>();
        services.TryAddSingleton<DicomNodeService>();

        // Then the node, then the background consumers. Hosted services stop in reverse order: the consumers, the node
        // (its associations drain), then the stop is recorded, and only then does the audit trail sign its last tree
        // head, so a clean stop leaves no entry unsigned.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, GatewayStopRecorder>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, DicomNodeService>(sp => sp.GetRequiredService<DicomNodeService>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, Forwarder>(sp => sp.GetRequiredService<Forwarder>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, CommitmentReporter>(sp => sp.GetRequiredService<CommitmentReporter>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, ArchiveMaintenance>());
        return services;
    }
}

/// <summary>Migrates the schema, opens (or creates, on first start) the keys and folders, and records the start in the audit trail.</summary>
public sealed class GatewayStartup(
    SchemaMigrator migrator,
    ArchiveInitializer archive,
    IArchiveKeyService keys,
    IAuditLog audit,
    ArchiveRecovery recovery,
    ConfigurationAudit configuration,
    IOptionsMonitor<DicomServerOptions> server,
    ILogger<GatewayStartup> logger,
    TimeProvider time,
    IOptions<AuditOptions> auditOptions) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Before anything is written: an NDJSON export others can read, or another account owns, would get patient
        // identities in clear (it did, whatever its mode and owner, before 2026-12-07). The sink checks it again at
        // each batch, since the file may be replaced later.
        foreach (var sink in auditOptions.Value.Sinks.Where(s => s.Enabled && s.Kind == AuditSinkKind.FhirNdjson && !string.IsNullOrWhiteSpace(s.NdjsonPath)))
        {
            if (Vigie.Audit.Export.AuditExportFile.Refusal(Path.GetFullPath(sink.NdjsonPath!)) is { } refusal)
            {
                throw new InvalidOperationException($"Audit sink {sink.Name}: {refusal}");
            }
        }

        archive.RefuseForeignDataFolder();
        await migrator.MigrateAsync(cancellationToken).ConfigureAwait(false);
        var initialization = await archive.InitializeAsync(cancellationToken).ConfigureAwait(false);
        await keys.EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        // The signing key now, not at the first head seconds later: a foreign or exposed key file stops the start
        // (before 2026-12-06 the node ran and stored with nothing signed).
        await audit.GetPublicKeyAsync(cancellationToken).ConfigureAwait(false);
        if (initialization.KeysCreated)
        {
            LogKeyBackupAdvice(initialization.KeyFile, auditOptions.Value.SigningKeyPath);
        }

        await audit.AppendAsync(Activity(AuditEventTypes.ApplicationStart), cancellationToken).ConfigureAwait(false);
        StartRecorded = true;
        await configuration.RecordAsync(cancellationToken).ConfigureAwait(false);
        // Before the node accepts anything: what a power cut took from the index is filed again first.
        await recovery.RunAsync(cancellationToken).ConfigureAwait(false);
        archive.SetFullDiskReserveAside();
    }

    /// <summary>
    /// Whether the start is in the trail: a start that fails after it (a port in use) records its stop too, since
    /// PS3.15 A.5.3.1 pairs them (until 2026-12-07 such a start was left without a stop).
    /// </summary>
    public bool StartRecorded { get; private set; }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private AuditRecord Activity(AuditCode type) => GatewayAudit.ApplicationActivity(type, server.CurrentValue.AETitle, time);

    /// <summary>
    /// The one backup advice an administrator acts on names every key file the node needs: until 2026-12-07 it named
    /// kek.json alone, and a restore made that way refused to start for want of the audit signing key.
    /// </summary>
    private void LogKeyBackupAdvice(string keyFile, string? signingKeyPath)
    {
        var signingKey = string.IsNullOrWhiteSpace(signingKeyPath) ? null : Path.GetFullPath(signingKeyPath);
        var folder = Path.IsPathRooted(keyFile) ? Path.GetDirectoryName(keyFile) : null;
        if (folder is not null && (signingKey is null || string.Equals(Path.GetDirectoryName(signingKey), folder, StringComparison.Ordinal)))
        {
            var files = signingKey is null
                ? Path.GetFileName(keyFile)
                : $"{Path.GetFileName(keyFile)}, {Path.GetFileName(signingKey)} and {Path.GetFileName(signingKey)}.heads";
            logger.LogWarning("Created new keys in {KeyFolder}{Separator} ({Files}). Back up this whole folder apart from the data folder, and again after "
                + "each vigie keys rotate: without the key-encryption key nothing stored can be read, without the audit signing key a restored node "
                + "refuses to start, and without its .heads record a rolled-back audit log goes unnoticed (deploy.md, Install)",
                folder, Path.DirectorySeparatorChar, files);
            return;
        }

        logger.LogWarning("Created new keys: the key-encryption key {KeyFile}, the audit signing key {SigningKey} and its record {Heads}. "
            + "Back up these files apart from the data folder, and again after each vigie keys rotate: without the key-encryption key nothing "
            + "stored can be read, without the audit signing key a restored node refuses to start, and without its .heads record a rolled-back "
            + "audit log goes unnoticed (deploy.md, Install)",
            keyFile, signingKey ?? "(none: Audit:SigningKeyPath is not set)", signingKey is null ? "(none)" : signingKey + ".heads");
    }
}

/// <summary>Records the stop in the audit trail, once the DICOM node has stopped and before the last tree head is signed.</summary>
public sealed class GatewayStopRecorder(IAuditLog audit, IOptionsMonitor<DicomServerOptions> server, ILogger<GatewayStopRecorder> logger, TimeProvider time)
    : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var record = GatewayAudit.ApplicationActivity(AuditEventTypes.ApplicationStop, server.CurrentValue.AETitle, time);
        try
        {
            await audit.AppendAsync(record, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The database out of reach: kept in the spill like any record of the outage, appended at the next start or
            // by another node (before 2026-12-07 it was lost, and a clean stop read as a crash).
            if (await audit.KeepForLaterAsync(record, CancellationToken.None).ConfigureAwait(false))
            {
                logger.LogWarning("The stop could not be recorded in the audit trail ({Reason}); it is kept in the audit spill", e.GetType().Name);
            }
            else
            {
                logger.LogWarning(e, "Could not record the stop in the audit trail");
            }
        }
    }
}

/// <summary>
/// Runs the DICOM node (the listener) for the host's lifetime: its ports are bound with the host's other services, and
/// associations accepted only once every service has started (the web server's port included).
/// </summary>
public sealed class DicomNodeService(IOptionsMonitor<DicomServerOptions> options, IDicomServiceProvider provider, ILogger<DicomNodeService> logger)
    : IHostedLifecycleService
{
    public DicomServer? Server { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        Server = new DicomServer(options.CurrentValue, provider);
        try
        {
            Server.Bind();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The port bound before the one that failed is let go now, not when the process exits.
            await Server.DisposeAsync().ConfigureAwait(false);
            Server = null;
            throw;
        }
    }

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        if (Server is null)
        {
            return Task.CompletedTask;
        }

        var settings = Server.Options;
        Server.Accept();
        if (Server.Port == 0)
        {
            // Port 0 is off: TLS alone (the line said ":0 and TLS ..." before 2026-12-07).
            logger.LogInformation("DICOM node {AETitle} listening on {Address}:{TlsPort} (TLS only)", settings.AETitle, settings.BindAddress, Server.TlsPort);
        }
        else
        {
            logger.LogInformation("DICOM node {AETitle} listening on {Address}:{Port}{Tls}", settings.AETitle, settings.BindAddress, Server.Port,
                Server.TlsPort > 0 ? $" and TLS {Server.TlsPort}" : "");
        }

        if (Server.ServerCertificate?.Current is { } certificate)
        {
            var left = certificate.NotAfter.ToUniversalTime() - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                logger.LogError("The DICOM TLS certificate {Subject} expired on {NotAfter:u}: TLS peers will refuse it. Replace the file; it is read again at the next connection",
                    certificate.Subject, certificate.NotAfter.ToUniversalTime());
            }
            else if (left < DicomTlsExpiry.WarnBefore)
            {
                logger.LogWarning("The DICOM TLS certificate {Subject} expires on {NotAfter:u}, in {Days} days. Replace the file; it is read again at the next connection",
                    certificate.Subject, certificate.NotAfter.ToUniversalTime(), (int)left.TotalDays);
            }
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Server is not null)
        {
            await Server.StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>How early an expiring DICOM TLS certificate is reported (at start and by /health).</summary>
public static class DicomTlsExpiry
{
    public static readonly TimeSpan WarnBefore = TimeSpan.FromDays(30);
}
