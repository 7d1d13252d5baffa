using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Vigie.Core.Data;
using Vigie.Core.Outbox;

namespace Vigie.Core;

public static class CoreServiceCollectionExtensions
{
    /// <summary>
    /// Registers the database chosen by <see cref="DatabaseOptions"/>, the schema migrator, the outbox and leases.
    /// The host binds <see cref="DatabaseOptions"/> and fills <see cref="DatabaseOptions.SqlitePath"/> from its data folder.
    /// </summary>
    public static IServiceCollection AddVigieCore(this IServiceCollection services)
    {
        services.AddOptions<DatabaseOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DatabaseOptions>, DatabaseOptionsValidation>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<IVigieDatabase>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<DatabaseOptions>>().Value;
            return options.Provider switch
            {
                DatabaseProvider.Sqlite => new SqliteDatabase(
                    options.SqlitePath ?? throw new InvalidOperationException("Database:SqlitePath is not set."), options.BusyTimeout),
                DatabaseProvider.Postgres => new PostgresDatabase(
                    options.ConnectionString ?? throw new InvalidOperationException("Database:ConnectionString is required for PostgreSQL.")),
                _ => throw new InvalidOperationException($"Unknown database provider {options.Provider}."),
            };
        });
        services.TryAddSingleton<SchemaMigrator>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISchemaProvider, OutboxSchema>());
        services.TryAddSingleton<OutboxSignal>();
        services.TryAddSingleton<Outbox.Outbox>();
        services.TryAddSingleton<LeaseStore>();
        return services;
    }
}

/// <summary>A busy timeout of 0 or less made the node's own background writers fail at once ("within 0 ms").</summary>
internal sealed class DatabaseOptionsValidation : IValidateOptions<DatabaseOptions>
{
    public ValidateOptionsResult Validate(string? name, DatabaseOptions options) =>
        options.BusyTimeout > TimeSpan.Zero
            ? ValidateOptionsResult.Success
            : ValidateOptionsResult.Fail($"Database:BusyTimeout {options.BusyTimeout} must be positive (how long a writer waits for the SQLite write lock)");
}
