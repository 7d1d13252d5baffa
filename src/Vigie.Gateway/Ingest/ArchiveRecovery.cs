using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Index;
using Vigie.Archive.Storage;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// Ingest commits are not synced (the object file is, before the answer), so a power cut can take the index rows, audit
/// entries and forward events of the last objects acknowledged. At start, this files again every object written since
/// shortly before the newest one the index knows and that nothing references: rows rebuilt from the object, a
/// forward event, and an audit entry that says so. A crash of the process alone loses nothing (the log is written).
/// Only SQLite defers those commits; on PostgreSQL this does nothing.
/// </summary>
public sealed class ArchiveRecovery(
    IObjectStore store,
    IArchiveIndex index,
    IngestPipeline pipeline,
    IVigieDatabase database,
    ClockStepGuard clock,
    IOptionsMonitor<GatewayOptions> options,
    IOptionsMonitor<DicomServerOptions> server,
    ILogger<ArchiveRecovery> logger)
{
    public const string AuditNote = "recovered after an unclean shutdown";

    /// <summary>The sender's AE title in the audit entry of a recovered object whose sender nothing on disk records.</summary>
    public const string UnknownSender = "UNKNOWN";

    private const int Batch = 256;

    internal static readonly Meter Meter = new("Vigie.Gateway.Recovery");
    private static readonly Counter<long> Recovered = Meter.CreateCounter<long>("vigie.gateway.recovered", description: "Objects filed again from the archive at start");

    /// <summary>Files again what the index lost; returns how many objects were recovered and how many were left to scrub.</summary>
    public async Task<(int Recovered, int Skipped)> RunAsync(CancellationToken cancellationToken)
    {
        // PostgreSQL commits every store synchronously (and other nodes may be committing right now): nothing to rebuild.
        if (database.Provider != DatabaseProvider.Sqlite)
        {
            return (0, 0);
        }

        var latest = await index.LatestObjectTimeAsync(cancellationToken).ConfigureAwait(false);
        // An empty index looks at everything: a data folder restored without its database is filed again whole. A clock
        // that stepped back left a floor (see ClockStepGuard): files written since may be older than the newest filed.
        var since = latest is { } t ? t - options.CurrentValue.RecoveryWindow : DateTimeOffset.MinValue;
        var floor = await index.RecoveryFloorAsync(cancellationToken).ConfigureAwait(false);
        if (floor < since)
        {
            since = floor.Value;
        }

        int recovered = 0, skipped = 0;
        var written = new List<WrittenObject>();
        await foreach (var candidate in store.ListWrittenSinceAsync(since, cancellationToken).ConfigureAwait(false))
        {
            written.Add(candidate);
        }

        // Oldest first: of two versions of one instance that a power cut both took, the later one ends up current.
        written.Sort((a, b) => a.WrittenAt.CompareTo(b.WrittenAt));
        foreach (var batch in written.Chunk(Batch))
        {
            var unreferenced = (await index.FindUnreferencedAsync(batch.Select(w => w.Id).ToList(), cancellationToken).ConfigureAwait(false)).ToHashSet();
            foreach (var candidate in batch.Where(w => unreferenced.Contains(w.Id)))
            {
                if (await TryFileAsync(candidate, cancellationToken).ConfigureAwait(false))
                {
                    recovered++;
                }
                else
                {
                    skipped++;
                }
            }
        }

        if (recovered + skipped > 0)
        {
            // Most were acknowledged before a power cut; one whose index commit failed after its file was written (a full
            // disk, answered A700) is filed too, and its sender's retry then finds it stored: nothing says which it was.
            logger.LogWarning("Recovery: {Recovered} objects written to the archive but missing from the index (acknowledged before an unclean shutdown, "
                + "or refused after their file was written) were filed again; {Skipped} left for the scrub",
                recovered, skipped);
        }

        // Everything written since the floor is filed now (and synced with it): the guard sets a new one if the clock
        // is still behind at the next store.
        if (floor is not null)
        {
            await index.ClearRecoveryFloorAsync(cancellationToken).ConfigureAwait(false);
        }

        clock.Start(await index.LatestObjectTimeAsync(cancellationToken).ConfigureAwait(false));
        return (recovered, skipped);
    }

    /// <summary>
    /// An old orphan maintenance found (on any provider): filed again as at start when it is a valid instance the index
    /// does not know, such as every object acknowledged since the backup of an index restored on PostgreSQL (deleted as
    /// orphans before 2026-12-07). False leaves it to the scrub (not an instance, or an older copy of an indexed one).
    /// </summary>
    public async ValueTask<bool> FileOrphanAsync(WrittenObject orphan, CancellationToken cancellationToken) =>
        await TryFileAsync(orphan, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// One object. Whatever is wrong with it alone (unreadable, damaged, an index write that fails as it did when it
    /// was never acknowledged) skips it and leaves it to the scrub; only the database failing stops the start.
    /// </summary>
    private async Task<bool> TryFileAsync(WrittenObject written, CancellationToken cancellationToken)
    {
        try
        {
            return await FileAsync(written, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not (OperationCanceledException or System.Data.Common.DbException))
        {
            // Not something ingest would have filed (or damaged since).
            logger.LogWarning("Recovery: object {ObjectId} cannot be filed ({Reason}); left for the scrub", written.Id, e.GetType().Name);
            return false;
        }
    }

    private async Task<bool> FileAsync(WrittenObject written, CancellationToken cancellationToken)
    {
        var id = written.Id;
        InstanceIndexEntry? entry;
        await using (var reader = await store.OpenReadAsync(id, cancellationToken).ConfigureAwait(false))
        {
            DicomFile file;
            using (var content = new ObjectContentSource(reader))
            await using (var stream = content.OpenStream())
            {
                file = await DicomReader.ReadFileAsync(stream, IngestPipeline.IndexRead, cancellationToken).ConfigureAwait(false);
            }

            // Objects stored before 2026-12-07 name their sender in the meta group; later ones do not (the same data set
            // from two AEs is one object), and the entry for a filing the cut took names an unknown sender.
            var sender = file.Meta.GetString(DicomTags.SourceApplicationEntityTitle) is { Length: > 0 } named ? named : UnknownSender;
            var source = new IngestSource(IngestChannel.Recovery, sender, null, CalledAE: server.CurrentValue.AETitle);
            entry = IndexedAttributes.ToEntry(file, id, reader.Length, IngestPipeline.SourceAttributes(source), out var problem);
            if (entry is null)
            {
                logger.LogWarning("Recovery: object {ObjectId} is not an instance the index can file ({Problem}); left for the scrub", id, problem);
                return false;
            }

            // An instance the index already has: this file is its newer version (a correction whose commit the cut took)
            // when it was written after the current one was stored, else an older copy that must not become current.
            var versions = await index.GetVersionsAsync(entry.Instance.SopInstanceUid, cancellationToken).ConfigureAwait(false);
            if (versions.Count > 0 && versions[^1].StoredAt >= written.WrittenAt)
            {
                logger.LogWarning("Recovery: object {ObjectId} is an older copy of an indexed instance; left for the scrub", id);
                return false;
            }

            await pipeline.IndexAsync(entry, id, source, Task.CompletedTask, CommitDurability.Synced, AuditNote, cancellationToken).ConfigureAwait(false);
        }

        Recovered.Add(1);
        return true;
    }
}
