using System.Net;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Audit.Model;

namespace Vigie.Gateway;

/// <summary>The audit records the gateway writes, following DICOM PS3.15 A.5. Identifying details go in the sealed part.</summary>
internal static class GatewayAudit
{
    public static AuditParticipant Node(string aeTitle, IPAddress? address, bool requestor, AuditCode role, string? user = null) => new()
    {
        UserId = aeTitle.Length == 0 ? "(none)" : aeTitle,
        AlternativeUserId = user,
        IsRequestor = requestor,
        Kind = AuditParticipantKind.Application,
        Roles = [role],
        NetworkAccessPointId = address?.ToString(),
        NetworkAccessPointType = address is null ? null : NetworkAccessPointType.IpAddress,
    };

    /// <summary>Longest text taken from a peer (a user identity's name) that an entry keeps whole.</summary>
    internal const int MaxPeerText = 64;

    /// <summary>
    /// Text a peer sent (a user identity's name), as an entry may hold it: each control character replaced by U+FFFD and,
    /// past <see cref="MaxPeerText"/> characters, cut with a marker giving the length sent. Before 2026-12-07 a name of 300
    /// characters, or with a control character, made the record invalid, which was handled as an audit-trail outage.
    /// </summary>
    public static string PeerText(string text)
    {
        var length = text.Length;
        var cut = length > MaxPeerText ? MaxPeerText - (char.IsHighSurrogate(text[MaxPeerText - 1]) ? 1 : 0) : length;
        var kept = string.Create(cut, text, static (span, source) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(source[i]) ? '\uFFFD' : source[i];
            }
        });
        return cut == length ? kept : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{kept}… ({length} characters)");
    }

    /// <summary>The peer that asked: its AE title, address and DICOM user, in <paramref name="role"/>.</summary>
    public static AuditParticipant Requestor(Ingest.IngestSource source, AuditCode role) =>
        Node(source.CallingAE, source.Address, requestor: true, role, source.UserName);

    /// <summary>An object's transfer to Vigie: the peer that sent it (source) and the AE it called (destination).</summary>
    public static AuditParticipant[] SenderToSelf(Ingest.IngestSource source) =>
        [Requestor(source, AuditRoles.Source), Self(source.CalledAE ?? "VIGIE", requestor: false, AuditRoles.Destination)];

    public static AuditParticipant Self(string aeTitle, bool requestor, AuditCode role) => new()
    {
        UserId = aeTitle,
        IsRequestor = requestor,
        Kind = AuditParticipantKind.Application,
        Roles = [role],
        NetworkAccessPointId = Dns.GetHostName(),
        NetworkAccessPointType = NetworkAccessPointType.MachineName,
    };

    /// <summary>A remote node (the PACS) receiving from this one, by AE title and, when known, its host name.</summary>
    public static AuditParticipant Destination(string aeTitle, string? host = null) => new()
    {
        UserId = aeTitle,
        Kind = AuditParticipantKind.Application,
        Roles = [AuditRoles.Destination],
        NetworkAccessPointId = host,
        // An address is typed 2, a name 1 (PS3.15 A.5.1): a destination configured by address was typed 1 until 2026-12-07.
        NetworkAccessPointType = host is null ? null : AuditParticipant.IsIpAddress(host) ? NetworkAccessPointType.IpAddress : NetworkAccessPointType.MachineName,
    };

    /// <summary>Application Activity (start or stop) of this node.</summary>
    /// <summary>
    /// A start or stop of the node (PS3.15 A.5.3.1): the node as the Application, and the account that runs it as the
    /// Application Launcher, so that filtering the trail by that account finds them (the node alone until 2026-12-06).
    /// </summary>
    public static AuditRecord ApplicationActivity(AuditCode type, string aeTitle, TimeProvider time) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.ApplicationActivity,
        EventTypes = [type],
        Action = AuditAction.Execute,
        Participants =
        [
            Self(aeTitle, requestor: false, AuditRoles.Application),
            AuditParticipant.LocalOperator(Environment.UserName) with { Roles = [AuditRoles.ApplicationLauncher] },
        ],
    };

    /// <summary>
    /// An archive integrity alert ("archive integrity: ..."): a scrub's findings, a damaged copy replaced, an object that
    /// failed its check at retrieval. By this node unless <paramref name="participants"/> say who was involved.
    /// </summary>
    public static AuditRecord IntegrityAlert(TimeProvider time, string aeTitle, string description, IReadOnlyList<AuditParticipant>? participants = null,
        string? patientRef = null, IReadOnlyList<AuditObject>? objects = null) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.SecurityAlert,
        Action = AuditAction.Execute,
        Outcome = AuditOutcome.SeriousFailure,
        Participants = participants ?? [Self(aeTitle, requestor: true, AuditRoles.Application)],
        PatientRef = patientRef,
        Details = new AuditDetails { OutcomeDescription = "archive integrity: " + description, Objects = objects ?? [] },
    };

    public static AuditObject Study(string studyUid, string? sopClassUid, int instances = 1, string? accession = null) => new()
    {
        Type = AuditObjectType.SystemObject,
        Role = AuditObjectRole.Report,
        IdType = AuditObjectIdTypes.StudyInstanceUid,
        Id = studyUid,
        SopClasses = sopClassUid is null ? [] : [new AuditSopClass(sopClassUid, instances)],
        Accessions = accession is { Length: > 0 } ? [accession] : [],
    };

    /// <summary>
    /// Reads only as far as the study (bounded): who a refused or quarantined object is about. Its identifiers are short
    /// values, loaded whatever the budget; longer ones past 16 MiB stay in the object.
    /// </summary>
    private static readonly Vigie.Dicom.DicomReadOptions HeaderRead = new()
    {
        StopAtTag = Vigie.Dicom.DicomTags.SeriesInstanceUID, MaxElements = 2_000, MaxDepth = 4, LoadLargeValues = false, MaxLoadedBytes = 16L * 1024 * 1024,
    };

    /// <summary>
    /// The patient and study a (possibly hostile) object names, for the audit: its patient reference and sealed objects.
    /// Nothing when it cannot be read that far.
    /// </summary>
    public static async ValueTask<(string? PatientRef, List<AuditObject> Objects)> AboutAsync(IArchiveKeyService keys, Stream stream, CancellationToken cancellationToken)
    {
        Vigie.Dicom.DicomDataset dataset;
        try
        {
            dataset = (await Vigie.Dicom.IO.DicomReader.ReadFileAsync(stream, HeaderRead, cancellationToken).ConfigureAwait(false)).Dataset;
        }
        catch (Exception e) when (e is Vigie.Dicom.DicomParseException or InvalidDataException)
        {
            return (null, []);
        }

        return string.IsNullOrWhiteSpace(dataset.GetString(Vigie.Dicom.DicomTags.PatientID)) ? (null, []) : About(keys, dataset);
    }

    /// <summary>The patient reference and the study and patient objects of a data set read far enough.</summary>
    public static (string? PatientRef, List<AuditObject> Objects) About(IArchiveKeyService keys, Vigie.Dicom.DicomDataset dataset)
    {
        var patientId = dataset.GetString(Vigie.Dicom.DicomTags.PatientID) ?? "";
        return (PatientRef(keys, patientId, dataset.GetString(Vigie.Dicom.DicomTags.IssuerOfPatientID)),
        [
            Study(dataset.GetString(Vigie.Dicom.DicomTags.StudyInstanceUID) ?? "", dataset.GetString(Vigie.Dicom.DicomTags.SOPClassUID) ?? "", 1,
                dataset.GetString(Vigie.Dicom.DicomTags.AccessionNumber)),
            Patient(patientId, dataset.GetString(Vigie.Dicom.DicomTags.PatientName)),
        ]);
    }

    public static AuditObject Patient(string patientId, string? name) => new()
    {
        Type = AuditObjectType.Person,
        Role = AuditObjectRole.Patient,
        IdType = AuditObjectIdTypes.PatientNumber,
        Id = patientId.Length == 0 ? "(unknown)" : patientId,
        Name = name,
    };

    /// <summary>The keyed hash the index uses for the patient row, so the audit trail and the index name a patient the same way.</summary>
    public static string? PatientRef(IArchiveKeyService keys, string patientId, string? issuerOfPatientId)
    {
        var id = IndexNormalizer.Identifier(patientId);
        if (id.Length == 0)
        {
            return null;
        }

        var issuer = IndexNormalizer.Identifier(issuerOfPatientId ?? string.Empty);
        return Convert.ToHexStringLower(keys.HashIdentifier(IdentifierKinds.Patient, issuer + "\0" + id));
    }
}
