using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Vigie.Audit.Export;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core;
using Vigie.Core.Data;

namespace Vigie.Audit;

public static class AuditServiceCollectionExtensions
{
    /// <summary>
    /// Registers the audit trail: schema, <see cref="IAuditLog"/>, the file-based signing key (replace
    /// <see cref="IAuditSigningKeyProvider"/> for an HSM), the tree-head signer and the export workers as hosted
    /// services. The host binds <see cref="AuditOptions"/> from the "Audit" section and registers its
    /// <see cref="IAuditSealer"/>; without one, records that carry details are refused.
    /// </summary>
    public static IServiceCollection AddAudit(this IServiceCollection services)
    {
        services.AddVigieCore();
        services.AddOptions<AuditOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AuditOptions>, AuditOptionsValidation>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISchemaProvider, AuditSchema>());
        services.TryAddSingleton<AuditStore>();
        services.TryAddSingleton<AuditSignal>();
        services.TryAddSingleton<IAuditSigningKeyProvider, FileSigningKeyProvider>();
        services.TryAddSingleton<AuditSigningStatus>();
        services.TryAddSingleton<TreeHeadSigner>();
        services.TryAddSingleton<AuditSpill>();
        services.TryAddSingleton<AuditLog>(sp => new AuditLog(
            sp.GetRequiredService<AuditStore>(), sp.GetRequiredService<TreeHeadSigner>(), sp.GetRequiredService<IAuditSigningKeyProvider>(),
            sp.GetRequiredService<AuditSignal>(), sp.GetRequiredService<IOptions<AuditOptions>>(), sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<AuditLog>>(), sp.GetService<IAuditSealer>(), sp.GetRequiredService<AuditSpill>()));
        services.TryAddSingleton<IAuditLog>(sp => sp.GetRequiredService<AuditLog>());
        services.TryAddSingleton(sp => new AuditRestoreAcceptance(sp.GetRequiredService<AuditStore>(), sp.GetRequiredService<TreeHeadSigner>(),
            sp.GetRequiredService<AuditLog>(), sp.GetRequiredService<IAuditSigningKeyProvider>(), sp.GetRequiredService<Vigie.Core.Outbox.LeaseStore>(),
            sp.GetRequiredService<IOptions<AuditOptions>>().Value, sp.GetRequiredService<TimeProvider>()));
        // Hosted services stop in reverse order: the export stops after the signer, to send the head it signs last.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, AuditExportService>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, TreeHeadSigningService>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, AuditSpillService>());
        services.TryAddSingleton(sp => new AuditUnsignedTail(sp.GetRequiredService<AuditStore>(), sp.GetRequiredService<IOptions<AuditOptions>>(),
            sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new AuditExportStatus(sp.GetRequiredService<IOptions<AuditOptions>>(), sp.GetRequiredService<AuditStore>()));
        services.TryAddSingleton(sp => new AuditSetAside(sp.GetRequiredService<IOptions<AuditOptions>>(), sp.GetRequiredService<AuditStore>(),
            sp.GetRequiredService<AuditLog>(), sp.GetRequiredService<TimeProvider>()));
        return services;
    }
}
