namespace Vigie.Core.Data;

/// <summary>Where the index, audit trail and outbox live. Bound from the "Database" configuration section.</summary>
public sealed class DatabaseOptions
{
    public const string Section = "Database";

    public DatabaseProvider Provider { get; set; } = DatabaseProvider.Sqlite;

    /// <summary>SQLite file path. The host fills it from the data folder when empty.</summary>
    public string? SqlitePath { get; set; }

    /// <summary>Npgsql connection string, required when <see cref="Provider"/> is Postgres.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>How long a writer waits for the SQLite write lock before failing.</summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(30);
}
