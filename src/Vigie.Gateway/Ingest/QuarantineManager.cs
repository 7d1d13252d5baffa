using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.IO;
using Vigie.Dicom.Network;

namespace Vigie.Gateway.Ingest;

/// <summary>One quarantined object as an analyst sees it: when, from whom, the verdict, the rules and the reason.</summary>
public sealed record QuarantinedItem(long RowId, string QuarantineId, DateTimeOffset QuarantinedAt, long Length, string Verdict, IReadOnlyList<string> Rules,
    string? CallingAE, string Reason);

/// <summary>Why an export was refused: no such object, a file already there, or a quarantined copy that no longer decrypts.</summary>
public sealed class QuarantineExportException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The quarantine as the security officer works with it: what was refused and why, and a copy of one object for
/// analysis. The copy is the data set exactly as it arrived (hostile), in the DICOM file Vigie made of it, decrypted
/// and checked against its content hash; it is written only once the export is in the audit trail, so that no copy
/// leaves without a trace.
/// </summary>
public sealed class QuarantineManager(IArchiveIndex index, IObjectStore store, IAuditLog audit, IOptions<ArchiveOptions> archive, IArchiveKeyService keys,
    IOptionsMonitor<DicomServerOptions> server, TimeProvider time, ILogger<QuarantineManager> logger)
{
    /// <summary>Most objects one listing returns.</summary>
    public const int MaxListed = 10_000;

    /// <summary>Quarantined objects, oldest first, after row <paramref name="afterRowId"/>.</summary>
    public async Task<IReadOnlyList<QuarantinedItem>> ListAsync(long afterRowId, int limit, CancellationToken cancellationToken)
    {
        var records = await index.ListQuarantineAsync(afterRowId, Math.Clamp(limit, 0, MaxListed), cancellationToken).ConfigureAwait(false);
        return [.. records.Select(ToItem)];
    }

    /// <summary>The quarantined object with this id, or null.</summary>
    public async Task<QuarantinedItem?> FindAsync(string quarantineId, CancellationToken cancellationToken) =>
        await index.FindQuarantineAsync(quarantineId, cancellationToken).ConfigureAwait(false) is { } record ? ToItem(record) : null;

    /// <summary>
    /// Writes the object, decrypted, to <paramref name="path"/> (owner-only permissions), after recording the export,
    /// who asked and why in the audit trail. Refuses an existing file unless <paramref name="overwrite"/>.
    /// </summary>
    public async Task<QuarantinedItem> ExportAsync(string quarantineId, string path, bool overwrite, string operatorName, string justification,
        CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(justification);
        var item = await FindAsync(quarantineId, cancellationToken).ConfigureAwait(false)
            ?? throw new QuarantineExportException($"no quarantined object {quarantineId}");
        var target = Path.GetFullPath(path);
        var name = Path.GetFileName(target);
        if (name.Length == 0 || Directory.Exists(target))
        {
            throw new QuarantineExportException($"{path} names a folder: give the file to write");
        }

        // Every write below goes through this handle (openat), so the folder checked is the folder written: before
        // 2026-12-06 the checks and the writes went by path, and a folder swapped for a link in between sent the
        // decrypted object into the data folder.
        using var folder = FolderHandle.Open(Path.GetDirectoryName(target)!);
        // A decrypted copy inside the data folder would be plaintext where none may be (and a stranger to the scrub);
        // beside the keys, it would sit where the backups of the data never go, and the analyst would not look.
        foreach (var kept in new[] { archive.Value.DataFolder, archive.Value.KeyFile is { } keyFile ? Path.GetDirectoryName(keyFile) : null })
        {
            if (kept is not null && RealPath.IsWithin(folder.Location, kept))
            {
                throw new QuarantineExportException($"{target} is inside {Path.GetFullPath(kept)}: write the copy outside Vigie's data and key folders");
            }
        }

        // Without --force the name is taken at once (an empty owner-only file), so that nothing can appear there between
        // the audit entry and the rename: the trail never records an export that left no file.
        var reserved = false;
        if (!overwrite)
        {
            using var reservation = folder.CreateNew(name, FileAccess.Write)
                ?? throw new QuarantineExportException($"{target} already exists (--force replaces it)");
            reserved = true;
        }

        var partial = $".{name}.{Guid.NewGuid():N}.partial";
        var exported = false;
        try
        {
            (string? PatientRef, List<AuditObject> Objects) about;
            await using (var copy = folder.CreateNew(partial, FileAccess.ReadWrite) ?? throw new IOException($"{partial} is taken"))
            {
                await CopyOutAsync(quarantineId, copy, cancellationToken).ConfigureAwait(false);
                copy.Position = 0;
                // PS3.15 A.5.3.7: the export names the patient whose data left, and shows in that patient's history.
                about = await GatewayAudit.AboutAsync(keys, copy, cancellationToken).ConfigureAwait(false);
            }

            await audit.AppendAsync(new AuditRecord
            {
                Time = time.GetUtcNow(),
                EventId = AuditEventIds.Export,
                Action = AuditAction.Read,
                Participants =
                [
                    AuditParticipant.LocalOperator(operatorName),
                    GatewayAudit.Self(server.CurrentValue.AETitle, requestor: false, AuditRoles.Source),
                    // PS3.15 A.5.3.7: the media the data left on. Participants are stored in clear, and a file name an
                    // operator typed may name the patient: the media is this host's file system, the path stays sealed below.
                    new AuditParticipant
                    {
                        UserId = "file://" + Environment.MachineName,
                        Kind = AuditParticipantKind.Application,
                        Roles = [AuditRoles.DestinationMedia],
                        MediaType = AuditMediaTypes.Uri,
                    },
                ],
                PatientRef = about.PatientRef,
                Details = new AuditDetails
                {
                    OutcomeDescription = $"quarantined object {quarantineId} exported for analysis to {target}: {justification}",
                    Objects =
                    [
                        .. about.Objects,
                        new AuditObject
                        {
                            Type = AuditObjectType.SystemObject,
                            Role = AuditObjectRole.Resource,
                            IdType = AuditObjectIdTypes.NodeId,
                            Id = quarantineId,
                            Details = [new KeyValuePair<string, string>("rules", string.Join(", ", item.Rules))],
                        },
                    ],
                },
            }, cancellationToken).ConfigureAwait(false);
            folder.Rename(partial, name);
            folder.Sync();
            exported = true;
        }
        finally
        {
            folder.Delete(partial);
            if (reserved && !exported)
            {
                folder.Delete(name);
            }
        }

        logger.LogWarning("{Operator} exported quarantined object {QuarantineId} for analysis", operatorName, quarantineId);
        return item;
    }

    private async Task CopyOutAsync(string quarantineId, FileStream output, CancellationToken cancellationToken)
    {
        try
        {
            await using var reader = await store.OpenQuarantinedAsync(quarantineId, cancellationToken).ConfigureAwait(false);
            // The reader authenticates every segment and checks the content hash at the end: a damaged copy never comes out whole.
            await using (var source = reader.OpenStream())
            {
                await source.CopyToAsync(output, cancellationToken).ConfigureAwait(false);
            }

            output.Flush(flushToDisk: true);
        }
        catch (Exception e) when (e is ObjectFormatException or FileNotFoundException)
        {
            throw new QuarantineExportException($"quarantined object {quarantineId} cannot be read back ({e.Message}); `vigie scrub` reports it", e);
        }
    }

    private static QuarantinedItem ToItem(QuarantineRecord record)
    {
        // The rules were stored as one multi-valued attribute; none leaves a single empty value.
        IReadOnlyList<string> rules = record.Details.TryGetValue(IngestPipeline.QuarantineRulesTag, out var values) ? [.. values.Where(r => r.Length > 0)] : [];
        return new QuarantinedItem(record.RowId, record.QuarantineId, record.QuarantinedAt, record.Length,
            record.Details.First(IngestPipeline.QuarantineVerdictTag) ?? "unrecorded", rules, record.Details.First(IngestPipeline.QuarantineCallerTag), record.Reason);
    }
}
