namespace Vigie.Core.Data;

/// <summary>The index and audit database engines Vigie runs on. Both pass the same contract tests.</summary>
public enum DatabaseProvider
{
    /// <summary>Embedded default: one file in the data folder, WAL, synchronous=FULL.</summary>
    Sqlite,

    /// <summary>Shared server, for several nodes over one index.</summary>
    Postgres,
}
