using System.Data.Common;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Archive.Retention;
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

/// <summary>Every retention decision becomes an audit entry in the transaction that deletes the rows (PS3.15 110105).</summary>
internal sealed class RetentionAuditBridge(IAuditLog audit, IOptionsMonitor<DicomServerOptions> server, TimeProvider time) : IRetentionAudit
{
    public async ValueTask RecordAsync(DbConnection connection, DbTransaction transaction, RetentionEvent retentionEvent, CancellationToken cancellationToken)
    {
        var record = new AuditRecord
        {
            Time = time.GetUtcNow(),
            EventId = AuditEventIds.DicomStudyDeleted,
            Action = AuditAction.Delete,
            Participants = [GatewayAudit.Self(server.CurrentValue.AETitle, requestor: true, AuditRoles.Application)],
            PatientRef = retentionEvent.PatientKey is { } key ? Convert.ToHexStringLower(key) : null,
            Details = new AuditDetails
            {
                OutcomeDescription = $"retention policy '{retentionEvent.Policy}': {retentionEvent.Action}, {retentionEvent.Instances} instances, "
                    + $"{retentionEvent.Objects.Count} objects{(retentionEvent.QuarantineId is null ? "" : ", quarantine " + retentionEvent.QuarantineId)}",
                Objects = retentionEvent.Objects.Take(AuditRecord.MaxObjects).Select(o => new AuditObject
                {
                    Type = AuditObjectType.SystemObject,
                    Role = AuditObjectRole.Resource,
                    IdType = AuditObjectIdTypes.NodeId,
                    Id = o.ToString(),
                }).ToList(),
            },
        };
        await audit.AppendAsync([record], connection, transaction, cancellationToken).ConfigureAwait(false);
    }
}
