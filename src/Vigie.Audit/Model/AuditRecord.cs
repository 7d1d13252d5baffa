namespace Vigie.Audit.Model;

/// <summary>EventActionCode of PS3.15 A.5.1 (and AuditEvent.action in FHIR).</summary>
public enum AuditAction
{
    Create = 'C',
    Read = 'R',
    Update = 'U',
    Delete = 'D',
    Execute = 'E',
}

/// <summary>EventOutcomeIndicator of PS3.15 A.5.1.</summary>
public enum AuditOutcome
{
    Success = 0,
    MinorFailure = 4,
    SeriousFailure = 8,
    MajorFailure = 12,
}

/// <summary>Whether an active participant is a person (staff member, patient on the portal) or a system (AE title, process).</summary>
public enum AuditParticipantKind
{
    Person,
    Application,
}

/// <summary>NetworkAccessPointTypeCode of PS3.15 A.5.1.</summary>
public enum NetworkAccessPointType
{
    MachineName = 1,
    IpAddress = 2,
    TelephoneNumber = 3,
    EmailAddress = 4,
    Uri = 5,
}

/// <summary>ParticipantObjectTypeCode of PS3.15 A.5.1.</summary>
public enum AuditObjectType
{
    Person = 1,
    SystemObject = 2,
    Organization = 3,
    Other = 4,
}

/// <summary>ParticipantObjectTypeCodeRole of PS3.15 A.5.1 (the subset Vigie uses).</summary>
public enum AuditObjectRole
{
    Patient = 1,
    Location = 2,
    Report = 3,
    Resource = 4,
    MasterFile = 5,
    User = 6,
    List = 7,
    Doctor = 8,
    Subscriber = 9,
    Guarantor = 10,
    SecurityUser = 11,
    SecurityGranularityDefinition = 12,
    /// <summary>13: Security Resource in PS3.15 A.5.3.2 (the audit log itself).</summary>
    SecurityResource = 13,
    DataDestination = 14,
    DataRepository = 15,
    Schedule = 16,
    Customer = 17,
    Job = 18,
    JobStream = 19,
    Table = 20,
    RoutingCriteria = 21,
    Query = 24,
}

/// <summary>
/// An ActiveParticipant: a user, an AE title or a process. Staff and device identifiers are not health data, so these
/// are stored in clear. A patient acting on the portal must be identified by a keyed hash, never by name or patient ID.
/// </summary>
public sealed record AuditParticipant
{
    public const int MaxLength = 256;

    public required string UserId { get; init; }
    public string? AlternativeUserId { get; init; }
    public string? UserName { get; init; }
    public bool IsRequestor { get; init; }
    public AuditParticipantKind Kind { get; init; } = AuditParticipantKind.Person;
    public IReadOnlyList<AuditCode> Roles { get; init; } = [];
    public string? NetworkAccessPointId { get; init; }
    public NetworkAccessPointType? NetworkAccessPointType { get; init; }

    /// <summary>For a media participant (the Destination Media of an export): its kind, PS3.16 CID 405 (PS3.15 A.5.3.7).</summary>
    public AuditCode? MediaType { get; init; }

    /// <summary>
    /// A person acting on this machine (a command, a start): their account as the user, this host as the network access
    /// point (machine name). One form for every command, so that filtering by user finds all of one account's acts
    /// (before 2026-12-06 some read "root", others "root@host (vigie command)").
    /// </summary>
    public static AuditParticipant LocalOperator(string account) => new()
    {
        UserId = account,
        IsRequestor = true,
        Kind = AuditParticipantKind.Person,
        NetworkAccessPointId = Environment.MachineName,
        NetworkAccessPointType = Model.NetworkAccessPointType.MachineName,
    };

    /// <summary>This node's own process, as the requestor of what it records of itself (alerts about its own trail).</summary>
    internal static AuditParticipant ThisApplication() => new()
    {
        UserId = "vigie",
        AlternativeUserId = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
        IsRequestor = true,
        Kind = AuditParticipantKind.Application,
        Roles = [AuditRoles.Application],
        NetworkAccessPointId = Environment.MachineName,
        NetworkAccessPointType = Model.NetworkAccessPointType.MachineName,
    };

    /// <summary>
    /// The NetworkAccessPointTypeCode exported (PS3.15 A.5.1, from RFC 3881): an IP address is 2 whatever the record
    /// says, a name 1. Since 2026-12-07; before, a destination configured by address was typed 1 (machine name).
    /// </summary>
    public NetworkAccessPointType ExportedNetworkAccessPointType =>
        NetworkAccessPointType is null or Model.NetworkAccessPointType.MachineName or Model.NetworkAccessPointType.IpAddress
            ? (IsIpAddress(NetworkAccessPointId) ? Model.NetworkAccessPointType.IpAddress : Model.NetworkAccessPointType.MachineName)
            : NetworkAccessPointType.Value;

    /// <summary>A literal IPv4 (dotted quad) or IPv6 address; "10" parses as an address but is more likely a host's name.</summary>
    public static bool IsIpAddress(string? text) =>
        text is not null && System.Net.IPAddress.TryParse(text, out _) && (text.Contains(':', StringComparison.Ordinal) || text.Count(c => c == '.') == 3);

    internal void Validate(int index)
    {
        var field = $"Participants[{index}]";
        AuditText.Check(UserId, field + ".UserId", MaxLength, forbidPipe: false, required: true);
        AuditText.Check(AlternativeUserId, field + ".AlternativeUserId", MaxLength, forbidPipe: false, required: false);
        AuditText.Check(UserName, field + ".UserName", MaxLength, forbidPipe: false, required: false);
        AuditText.Check(NetworkAccessPointId, field + ".NetworkAccessPointId", MaxLength, forbidPipe: false, required: false);
        if (Roles.Count > 8)
        {
            throw new AuditRecordException(field + ".Roles", "has more than 8 codes");
        }

        for (var i = 0; i < Roles.Count; i++)
        {
            Roles[i].Validate($"{field}.Roles[{i}]");
        }

        MediaType?.Validate(field + ".MediaType");
    }
}

/// <summary>
/// A ParticipantObjectIdentification: the data the event touched. Everything here identifies health data
/// (patient ID and name, UIDs, query keys), so it only ever reaches the database sealed.
/// </summary>
public sealed record AuditObject
{
    public required AuditObjectType Type { get; init; }
    public AuditObjectRole? Role { get; init; }
    public required AuditCode IdType { get; init; }
    public required string Id { get; init; }
    public string? Name { get; init; }

    /// <summary>The raw query (for example the C-FIND identifier or a QIDO-RS query string), exported base64-encoded.</summary>
    public byte[]? Query { get; init; }

    /// <summary>Free ParticipantObjectDetail pairs (type, value).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Details { get; init; } = [];

    /// <summary>SOP classes and instance counts for study objects (ParticipantObjectDescription/SOPClass).</summary>
    public IReadOnlyList<AuditSopClass> SopClasses { get; init; } = [];

    /// <summary>Accession numbers of a study object.</summary>
    public IReadOnlyList<string> Accessions { get; init; } = [];

    /// <summary>The audit trail itself, as the object of Audit Log Used and of alerts about it (PS3.15 A.5.3.2).</summary>
    public static AuditObject AuditLog() => new()
    {
        Type = AuditObjectType.SystemObject,
        Role = AuditObjectRole.SecurityResource,
        IdType = AuditObjectIdTypes.Uri,
        Id = "urn:vigie:audit-log",
        Name = "Security Audit Log",
    };
}

public sealed record AuditSopClass(string Uid, int NumberOfInstances);

/// <summary>The sealed part of an entry: whatever identifies health data.</summary>
public sealed record AuditDetails
{
    /// <summary>Free text of EventOutcomeDescription (a rejection reason may quote data, so it is sealed).</summary>
    public string? OutcomeDescription { get; init; }

    public IReadOnlyList<AuditObject> Objects { get; init; } = [];
}

/// <summary>One event to log.</summary>
public sealed record AuditRecord
{
    public const int MaxPatientRefLength = 128;
    public const int MaxParticipants = 16;
    public const int MaxObjects = 1000;

    /// <summary>When the event happened; the appender uses the current time when left default.</summary>
    public DateTimeOffset Time { get; init; }
    public required AuditCode EventId { get; init; }
    public IReadOnlyList<AuditCode> EventTypes { get; init; } = [];
    public required AuditAction Action { get; init; }
    public AuditOutcome Outcome { get; init; } = AuditOutcome.Success;

    /// <summary>Active participants; the first requestor is the actor that queries and the portal show.</summary>
    public required IReadOnlyList<AuditParticipant> Participants { get; init; }
    public AuditCode? PurposeOfUse { get; init; }

    /// <summary>An opaque keyed hash of the patient, computed by the caller; never a patient ID.</summary>
    public string? PatientRef { get; init; }

    /// <summary>AuditSourceID; defaults to <see cref="AuditOptions.SourceId"/>.</summary>
    public string? SourceId { get; init; }

    /// <summary>Sealed before it is stored.</summary>
    public AuditDetails? Details { get; init; }

    internal AuditParticipant Actor => Participants.FirstOrDefault(p => p.IsRequestor) ?? Participants[0];

    internal void Validate()
    {
        EventId.Validate(nameof(EventId));
        if (EventTypes.Count > 8)
        {
            throw new AuditRecordException(nameof(EventTypes), "has more than 8 codes");
        }

        for (var i = 0; i < EventTypes.Count; i++)
        {
            EventTypes[i].Validate($"{nameof(EventTypes)}[{i}]");
        }

        if (!Enum.IsDefined(Action))
        {
            throw new AuditRecordException(nameof(Action), "is not a PS3.15 action code");
        }

        if (!Enum.IsDefined(Outcome))
        {
            throw new AuditRecordException(nameof(Outcome), "is not a PS3.15 outcome indicator");
        }

        if (Participants is null || Participants.Count == 0)
        {
            throw new AuditRecordException(nameof(Participants), "needs at least one participant");
        }

        if (Participants.Count > MaxParticipants)
        {
            throw new AuditRecordException(nameof(Participants), $"has more than {MaxParticipants} participants");
        }

        for (var i = 0; i < Participants.Count; i++)
        {
            Participants[i].Validate(i);
        }

        ValidateApplicationActivity();
        PurposeOfUse?.Validate(nameof(PurposeOfUse));
        if (Details is not null)
        {
            if (Details.Objects.Count > MaxObjects)
            {
                throw new AuditRecordException("Details.Objects", $"has more than {MaxObjects} objects");
            }

            for (var i = 0; i < Details.Objects.Count; i++)
            {
                Details.Objects[i].IdType.Validate($"Details.Objects[{i}].IdType");
            }
        }

        AuditText.Check(PatientRef, nameof(PatientRef), MaxPatientRefLength, forbidPipe: false, required: false);
        AuditText.Check(SourceId, nameof(SourceId), AuditParticipant.MaxLength, forbidPipe: false, required: false);
    }

    /// <summary>
    /// PS3.15 A.5.3.1: Application Activity is typed Application Start or Stop, and names the Application (110150). Since
    /// 2026-12-07; before, `vigie scrub` and `vigie rescan` recorded it typed Use of Restricted Function, by the operator alone.
    /// </summary>
    private void ValidateApplicationActivity()
    {
        if (!EventId.SameCode(AuditEventIds.ApplicationActivity))
        {
            return;
        }

        if (EventTypes.Count != 1 || !(EventTypes[0].SameCode(AuditEventTypes.ApplicationStart) || EventTypes[0].SameCode(AuditEventTypes.ApplicationStop)))
        {
            throw new AuditRecordException(nameof(EventTypes), "of an Application Activity (110100) must be Application Start (110120) or Application Stop (110121), alone");
        }

        if (!Participants.Any(p => p.Roles.Any(r => r.SameCode(AuditRoles.Application))))
        {
            throw new AuditRecordException(nameof(Participants), "of an Application Activity (110100) must name the Application (110150)");
        }
    }
}
