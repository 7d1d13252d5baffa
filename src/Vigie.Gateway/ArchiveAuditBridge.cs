using System.Data.Common;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Archive.Retention;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Dicom.Network;

namespace Vigie.Gateway;

/// <summary>Seals the identifying part of audit entries with the archive's key hierarchy (the "seal" derived key).</summary>
internal sealed class ArchiveAuditSealer(IArchiveKeyService keys) : IAuditSealer
{
    private static ReadOnlySpan<byte> Context => "vigie/audit/v1"u8;

    public string KeyId => "archive-root/seal-v1";

    public byte[] Seal(ReadOnlySpan<byte> plaintext) => keys.Seal(plaintext, Context);

    public byte[] Open(string keyId, ReadOnlySpan<byte> sealedBytes)
    {
        if (keyId != KeyId)
        {
            throw new InvalidOperationException($"Audit details sealed under unknown key '{keyId}'.");
        }

        return keys.Open(sealedBytes, Context);
    }
}

/// <summary>
/// Every retention decision becomes an audit entry in the transaction that deletes the rows: a study as DICOM Study
/// Deleted (110105), a superseded version or a quarantined object as DICOM Instances Accessed (110103) with action D
/// (PS3.15 A.5.3.2), which is what a deletion below the study level is. Studies and patients are named by the index's
/// keyed hashes, never in clear. A quarantined object has no index row naming its patient: its header is read (bounded),
/// as for its quarantine and its export, so that its removal shows in the patient's history too.
/// </summary>
internal sealed class RetentionAuditBridge(IAuditLog audit, IObjectStore store, IArchiveKeyService keys, IOptionsMonitor<DicomServerOptions> server, TimeProvider time)
    : IRetentionAudit
{
    public async ValueTask RecordAsync(DbConnection connection, DbTransaction transaction, RetentionEvent retentionEvent, CancellationToken cancellationToken)
    {
        var about = retentionEvent switch
        {
            { Action: RetentionAction.QuarantineRemoved, QuarantineId: { } quarantined } => await AboutAsync(ct => store.OpenQuarantinedAsync(quarantined, ct), cancellationToken).ConfigureAwait(false),
            { Action: RetentionAction.OrphanRemoved, Objects: [var orphan] } => await AboutAsync(ct => store.OpenReadAsync(orphan, ct), cancellationToken).ConfigureAwait(false),
            _ => (null, StudyAndPatient(retentionEvent)),
        };
        var listed = Math.Min(retentionEvent.Objects.Count, AuditRecord.MaxObjects - about.Objects.Count);
        var what = retentionEvent.Action switch
        {
            RetentionAction.StudyRemoved => $"study {Key(retentionEvent.StudyKey)}, {retentionEvent.Instances} instances",
            RetentionAction.SupersededVersionRemoved =>
                $"version {retentionEvent.Version} of instance row {retentionEvent.InstanceRowId} (study {Key(retentionEvent.StudyKey)})",
            RetentionAction.QuarantineRemoved => $"quarantine {retentionEvent.QuarantineId}",
            RetentionAction.OrphanRemoved => "an object no index row references and that could not be filed again, deleted after the grace",
            _ => retentionEvent.Action.ToString(),
        };
        var description = retentionEvent.Action == RetentionAction.OrphanRemoved
            ? $"archive maintenance: {retentionEvent.Action}, {what}"
            : $"retention policy '{retentionEvent.Policy}': {retentionEvent.Action}, {what}, {retentionEvent.Objects.Count} objects";
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = retentionEvent.Action == RetentionAction.StudyRemoved ? AuditEventIds.DicomStudyDeleted : AuditEventIds.DicomInstancesAccessed,
            Action = AuditAction.Delete,
            Participants = [GatewayAudit.Self(server.CurrentValue.AETitle, requestor: true, AuditRoles.Application)],
            PatientRef = retentionEvent.PatientKey is { } key ? Convert.ToHexStringLower(key) : about.PatientRef,
            Details = new AuditDetails
            {
                OutcomeDescription = description + (listed < retentionEvent.Objects.Count ? $" (the first {listed} listed)" : ""),
                Objects =
                [
                    .. about.Objects,
                    .. retentionEvent.Objects.Take(listed).Select(o => new AuditObject
                    {
                        Type = AuditObjectType.SystemObject,
                        Role = AuditObjectRole.Resource,
                        IdType = AuditObjectIdTypes.NodeId,
                        Id = o.ToString(),
                    }),
                ],
            },
        };
        await audit.AppendAsync([record], connection, transaction, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The patient and study an object names (a quarantined one, or an orphan that is an older copy of an indexed
    /// instance); nothing when it cannot be read (damaged, gone, not DICOM).
    /// </summary>
    private async ValueTask<(string? PatientRef, List<AuditObject> Objects)> AboutAsync(
        Func<CancellationToken, ValueTask<ArchiveObjectReader>> open, CancellationToken cancellationToken)
    {
        try
        {
            await using var reader = await open(cancellationToken).ConfigureAwait(false);
            await using var stream = reader.OpenStream();
            return await GatewayAudit.AboutAsync(keys, stream, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectFormatException or UnauthorizedAccessException)
        {
            return (null, []);
        }
    }

    /// <summary>
    /// The study and patient a deleted study's index rows name (PS3.15 A.5.3.8: both mandatory). Before 2026-12-07 the
    /// entry named only the objects' hashes, and a SIEM could not tell which study of which patient was destroyed.
    /// </summary>
    private static List<AuditObject> StudyAndPatient(RetentionEvent retentionEvent)
    {
        var objects = new List<AuditObject>();
        if (retentionEvent.StudyAttributes?.First(Vigie.Dicom.DicomTags.StudyInstanceUID.Value) is { Length: > 0 } studyUid)
        {
            objects.Add(GatewayAudit.Study(studyUid, null, retentionEvent.Instances,
                retentionEvent.StudyAttributes.First(Vigie.Dicom.DicomTags.AccessionNumber.Value)));
        }

        if (retentionEvent.PatientAttributes is { } patient)
        {
            objects.Add(GatewayAudit.Patient(patient.First(Vigie.Dicom.DicomTags.PatientID.Value) ?? "", patient.First(Vigie.Dicom.DicomTags.PatientName.Value)));
        }

        return objects;
    }

    private static string Key(byte[]? key) => key is null ? "(none)" : "#" + Convert.ToHexStringLower(key);
}
