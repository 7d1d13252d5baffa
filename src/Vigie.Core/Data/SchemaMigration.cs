namespace Vigie.Core.Data;

/// <summary>One step of a module's schema, written for each provider. Versions are applied in order, once.</summary>
public sealed record SchemaMigration(string Module, int Version, string Description, string SqliteSql, string PostgresSql)
{
    public string SqlFor(DatabaseProvider provider) => provider switch
    {
        DatabaseProvider.Sqlite => SqliteSql,
        DatabaseProvider.Postgres => PostgresSql,
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, null),
    };
}

/// <summary>A module's schema. Register with <c>services.TryAddEnumerable(ServiceDescriptor.Singleton&lt;ISchemaProvider, X&gt;())</c>.</summary>
public interface ISchemaProvider
{
    IEnumerable<SchemaMigration> Migrations { get; }
}
