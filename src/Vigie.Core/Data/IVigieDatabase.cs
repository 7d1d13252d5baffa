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

    /// <summary>
    /// Starts a write transaction whose commit may, with <see cref="CommitDurability.Deferred"/>, return before it is
    /// on disk. Only for writes that can be rebuilt from something already durable (the ingest index, from the archive).
    /// </summary>
    ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, CommitDurability durability, CancellationToken cancellationToken);

    /// <summary>Makes every commit so far durable, deferred ones included: call before anything leaves the node.</summary>
    ValueTask SyncAsync(CancellationToken cancellationToken);
}

/// <summary>When a commit reaches the disk.</summary>
public enum CommitDurability
{
    /// <summary>The commit returns once it is on disk.</summary>
    Synced,

    /// <summary>
    /// The commit returns before it is on disk; the next synced commit (or <see cref="IVigieDatabase.SyncAsync"/>) makes it
    /// durable with everything before it. A power cut may lose it, never tear it; a crash of the process loses nothing.
    /// </summary>
    Deferred,
}
