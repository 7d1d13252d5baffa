using System.Data.Common;

namespace Vigie.Core.Data;

/// <summary>
/// Opens connections to the one database that holds the index, the audit trail and the outbox,
/// so that a change, its audit entry and its events commit in the same transaction.
/// </summary>
public interface IVigieDatabase
{
    DatabaseProvider Provider { get; }

    /// <summary>Opens a pooled connection, configured for durability (see the provider implementations).</summary>
    ValueTask<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Starts a transaction that will write. On SQLite this takes the write lock at once (BEGIN IMMEDIATE)
    /// so two writers never deadlock upgrading a read lock; on PostgreSQL it is a plain READ COMMITTED transaction.
    /// </summary>
    ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken cancellationToken);
}
