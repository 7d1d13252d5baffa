using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Retention;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core.Data;

namespace Vigie.Archive;

public static class ArchiveServiceCollectionExtensions
{
    /// <summary>
    /// Registers the archive: <see cref="IArchiveKeyService"/>, <see cref="IKeyEncryptionKeyStore"/> (the key file; replace it
    /// before calling this for PKCS#11 or a KMS), <see cref="IObjectStore"/>, <see cref="IArchiveIndex"/> and its schema,
    /// <see cref="ScrubService"/>, <see cref="KeyRotationService"/>, <see cref="RetentionService"/> (it needs an
    /// <see cref="IRetentionAudit"/> from the audit module) and <see cref="ArchiveInitializer"/>. The host binds
    /// <see cref="ArchiveOptions"/> from the "Archive" section and needs <c>AddVigieCore()</c> and logging.
    /// </summary>
    public static IServiceCollection AddArchive(this IServiceCollection services)
    {
        services.AddOptions<ArchiveOptions>();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<IKeyEncryptionKeyStore>(sp =>
            new FileKeyEncryptionKeyStore(sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new ArchiveKeyService(sp.GetRequiredService<IKeyEncryptionKeyStore>(),
            sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<ILogger<ArchiveKeyService>>()));
        services.TryAddSingleton<IArchiveKeyService>(sp => sp.GetRequiredService<ArchiveKeyService>());
        services.TryAddSingleton(sp => new FileObjectStore(sp.GetRequiredService<ArchiveKeyService>(), sp.GetRequiredService<IOptions<ArchiveOptions>>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<FileObjectStore>>()));
        services.TryAddSingleton<IObjectStore>(sp => sp.GetRequiredService<FileObjectStore>());
        services.TryAddSingleton(sp => sp.GetRequiredService<IObjectStore>().Space);
        services.TryAddSingleton<IArchiveIndex>(sp => new SqlArchiveIndex(sp.GetRequiredService<IVigieDatabase>(), sp.GetRequiredService<ArchiveKeyService>(),
            sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<TimeProvider>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISchemaProvider, ArchiveSchema>());
        services.TryAddSingleton(sp => new ScrubService(sp.GetRequiredService<IVigieDatabase>(), sp.GetRequiredService<FileObjectStore>(),
            sp.GetRequiredService<ArchiveKeyService>(), sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<ILogger<ScrubService>>(),
            indexFile: sp.GetService<IOptions<DatabaseOptions>>()?.Value.SqlitePath, audit: sp.GetService<IRetentionAudit>()));
        services.TryAddSingleton(sp => new KeyRotationService(sp.GetRequiredService<ArchiveKeyService>(), sp.GetRequiredService<FileObjectStore>(),
            sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<ILogger<KeyRotationService>>()));
        services.TryAddSingleton(sp => new RetentionService(sp.GetRequiredService<IVigieDatabase>(), sp.GetRequiredService<FileObjectStore>(),
            sp.GetRequiredService<IRetentionAudit>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<IOptions<ArchiveOptions>>(),
            sp.GetRequiredService<ILogger<RetentionService>>(), sp.GetService<IRetentionHold>(), sp.GetRequiredService<ArchiveKeyService>()));
        services.TryAddSingleton(sp => new ArchiveInitializer(sp.GetRequiredService<IOptions<ArchiveOptions>>(), sp.GetRequiredService<ArchiveKeyService>(),
            sp.GetRequiredService<IKeyEncryptionKeyStore>(), sp.GetRequiredService<FileObjectStore>(), sp.GetRequiredService<IArchiveIndex>(),
            sp.GetRequiredService<IVigieDatabase>(), sp.GetRequiredService<ILogger<ArchiveInitializer>>()));
        return services;
    }
}
