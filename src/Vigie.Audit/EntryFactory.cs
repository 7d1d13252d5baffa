using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;

namespace Vigie.Audit;

/// <summary>Turns records into rows (validating and sealing) and rows back into entries (optionally unsealing).</summary>
internal sealed class EntryFactory(AuditOptions options, TimeProvider time, IAuditSealer? sealer)
{
    public bool CanUnseal => sealer is not null;

    public EntryRow ToRow(AuditRecord record)
    {
        record.Validate();
        byte[]? sealedBytes = null;
        string? keyId = null;
        if (record.Details is not null)
        {
            if (sealer is null)
            {
                throw new InvalidOperationException("An audit record carries details but no IAuditSealer is registered: refusing to store them in clear.");
            }

            var plaintext = AuditJson.SerializeDetails(record.Details);
            sealedBytes = sealer.Seal(plaintext);
            keyId = sealer.KeyId;
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plaintext);
            if (sealedBytes.Length > options.MaxSealedBytes)
            {
                throw new AuditRecordException(nameof(AuditRecord.Details), $"sealed to {sealedBytes.Length} bytes, more than {options.MaxSealedBytes}");
            }

            AuditText.Check(keyId, "seal key id", 128, forbidPipe: false, required: true);
        }

        var when = record.Time == default ? time.GetUtcNow() : record.Time;
        return new EntryRow
        {
            TimeMs = when.ToUnixTimeMilliseconds(),
            EventId = record.EventId.ToToken(),
            EventTypes = AuditCode.ToTokens(record.EventTypes),
            Action = ((char)record.Action).ToString(),
            Outcome = (long)record.Outcome,
            UserId = record.Actor.UserId,
            Participants = AuditJson.SerializeParticipants(record.Participants),
            Purpose = record.PurposeOfUse?.ToToken(),
            PatientRef = string.IsNullOrEmpty(record.PatientRef) ? null : record.PatientRef,
            SourceId = string.IsNullOrEmpty(record.SourceId) ? options.SourceId : record.SourceId,
            SealKeyId = keyId,
            Sealed = sealedBytes,
        };
    }

    public AuditEntry ToEntry(EntryRow row, bool unseal)
    {
        AuditDetails? details = null;
        if (unseal && row.Sealed is not null && row.SealKeyId is not null)
        {
            if (sealer is null)
            {
                throw new InvalidOperationException("Unsealing audit details needs an IAuditSealer.");
            }

            if (row.Sealed.Length > options.MaxSealedBytes)
            {
                throw new InvalidDataException($"Entry {row.Seq}: the sealed details exceed the size limit.");
            }

            var plaintext = sealer.Open(row.SealKeyId, row.Sealed);
            details = AuditJson.ParseDetails(plaintext);
        }

        return new AuditEntry
        {
            Sequence = row.Seq,
            Time = DateTimeOffset.FromUnixTimeMilliseconds(row.TimeMs),
            EventId = AuditCode.Parse(row.EventId),
            EventTypes = AuditCode.ParseTokens(row.EventTypes),
            Action = row.Action.Length == 1 && Enum.IsDefined((AuditAction)row.Action[0]) ? (AuditAction)row.Action[0] : throw new InvalidDataException($"Entry {row.Seq}: unknown action code."),
            Outcome = Enum.IsDefined((AuditOutcome)row.Outcome) ? (AuditOutcome)row.Outcome : throw new InvalidDataException($"Entry {row.Seq}: unknown outcome."),
            UserId = row.UserId,
            Participants = AuditJson.ParseParticipants(row.Participants),
            PurposeOfUse = row.Purpose is null ? null : AuditCode.Parse(row.Purpose),
            PatientRef = row.PatientRef,
            SourceId = row.SourceId,
            SealKeyId = row.SealKeyId,
            Sealed = row.Sealed,
            LeafHash = row.LeafHash,
            Details = details,
        };
    }
}
