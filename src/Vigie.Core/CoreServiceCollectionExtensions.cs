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

/// <summary>
/// A busy timeout of 0 or less made the node's own background writers fail at once ("within 0 ms"). A PostgreSQL
/// connection string with a misspelt key ("Prot") stopped the start with Npgsql's "Couldn't set prot", not the setting.
/// </summary>
internal sealed class DatabaseOptionsValidation : IValidateOptions<DatabaseOptions>
{
    public ValidateOptionsResult Validate(string? name, DatabaseOptions options)
    {
        var problems = new List<string>();
        if (options.BusyTimeout <= TimeSpan.Zero)
        {
            problems.Add($"Database:BusyTimeout {options.BusyTimeout} must be positive (how long a writer waits for the SQLite write lock)");
        }

        if (options.Provider == DatabaseProvider.Postgres)
        {
            if (string.IsNullOrWhiteSpace(options.ConnectionString))
            {
                problems.Add("Database:ConnectionString is empty: the Postgres provider needs one (Host=...;Database=...;Username=...)");
            }
            else
            {
                try
                {
                    _ = new Npgsql.NpgsqlConnectionStringBuilder(options.ConnectionString);
                }
                catch (Exception e) when (e is ArgumentException or FormatException)
                {
                    // Npgsql names the key, never the value: a password stays out of the message.
                    problems.Add($"Database:ConnectionString is not a PostgreSQL connection string: {e.Message}");
                }
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
