namespace Vigie.Audit.Model;

/// <summary>
/// A coded value as DICOM PS3.15 audit messages carry it (csd-code, codeSystemName, originalText).
/// Stored as "system|code|display", so none of the three may hold '|' or a control character.
/// </summary>
public sealed record AuditCode(string Code, string CodeSystemName, string DisplayName)
{
    public const int MaxPartLength = 128;

    public static AuditCode Dcm(string code, string display) => new(code, "DCM", display);

    /// <summary>
    /// Stored form: "alias|code" for a code of the built-in catalogs (its display comes back from the catalog), else
    /// "system|code|display". Shorter rows are the cheapest speed-up an append-bound log has.
    /// </summary>
    internal string ToToken() =>
        AuditCodeCatalog.Aliases.TryGetValue(this, out var alias)
            ? string.Concat(alias, "|", Code)
            : string.Concat(CodeSystemName, "|", Code, "|", DisplayName);

    internal static AuditCode Parse(string token)
    {
        var parts = token.Split('|');
        return parts.Length switch
        {
            3 => new AuditCode(parts[1], parts[0], parts[2]),
            2 when AuditCodeCatalog.ByAlias.TryGetValue((parts[0], parts[1]), out var known) => known,
            _ => throw new FormatException("A stored audit code is neither system|code|display nor a catalog code."),
        };
    }

    internal static string ToTokens(IReadOnlyList<AuditCode> codes) => string.Join('\n', codes.Select(c => c.ToToken()));

    internal static IReadOnlyList<AuditCode> ParseTokens(string? tokens) =>
        string.IsNullOrEmpty(tokens) ? [] : tokens.Split('\n').Select(Parse).ToArray();

    /// <summary>The same code in the same system, whatever its display text.</summary>
    internal bool SameCode(AuditCode other) => Code == other.Code && CodeSystemName == other.CodeSystemName;

    internal void Validate(string field)
    {
        AuditText.Check(Code, $"{field}.Code", MaxPartLength, forbidPipe: true, required: true);
        AuditText.Check(CodeSystemName, $"{field}.CodeSystemName", MaxPartLength, forbidPipe: true, required: true);
        AuditText.Check(DisplayName, $"{field}.DisplayName", MaxPartLength, forbidPipe: true, required: false);
    }
}

/// <summary>Every code Vigie defines, for the compact stored form.</summary>
internal static class AuditCodeCatalog
{
    private static readonly Dictionary<string, string> SystemAliases = new(StringComparer.Ordinal)
    {
        ["DCM"] = "DCM",
        ["RFC-3881"] = "RFC-3881",
        [AuditPurposes.System] = "ActReason",
    };

    public static readonly Dictionary<AuditCode, string> Aliases = Build();

    public static readonly Dictionary<(string Alias, string Code), AuditCode> ByAlias =
        Aliases.ToDictionary(kv => (kv.Value, kv.Key.Code), kv => kv.Key);

    private static Dictionary<AuditCode, string> Build()
    {
        var codes = new List<AuditCode>();
        foreach (var type in new[] { typeof(AuditEventIds), typeof(AuditEventTypes), typeof(AuditRoles), typeof(AuditObjectIdTypes), typeof(AuditPurposes) })
        {
            codes.AddRange(type.GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
                .Where(f => f.FieldType == typeof(AuditCode)).Select(f => (AuditCode)f.GetValue(null)!));
        }

        return codes.Distinct().ToDictionary(c => c, c => SystemAliases[c.CodeSystemName]);
    }
}

/// <summary>DICOM PS3.16 CID 400 Audit Event ID (EventID of PS3.15 A.5.1).</summary>
public static class AuditEventIds
{
    public static readonly AuditCode ApplicationActivity = AuditCode.Dcm("110100", "Application Activity");
    public static readonly AuditCode AuditLogUsed = AuditCode.Dcm("110101", "Audit Log Used");
    public static readonly AuditCode BeginTransferringDicomInstances = AuditCode.Dcm("110102", "Begin Transferring DICOM Instances");
    public static readonly AuditCode DicomInstancesAccessed = AuditCode.Dcm("110103", "DICOM Instances Accessed");
    public static readonly AuditCode DicomInstancesTransferred = AuditCode.Dcm("110104", "DICOM Instances Transferred");
    public static readonly AuditCode DicomStudyDeleted = AuditCode.Dcm("110105", "DICOM Study Deleted");
    public static readonly AuditCode Export = AuditCode.Dcm("110106", "Export");
    public static readonly AuditCode Import = AuditCode.Dcm("110107", "Import");
    public static readonly AuditCode NetworkEntry = AuditCode.Dcm("110108", "Network Entry");
    public static readonly AuditCode OrderRecord = AuditCode.Dcm("110109", "Order Record");
    public static readonly AuditCode PatientRecord = AuditCode.Dcm("110110", "Patient Record");
    public static readonly AuditCode ProcedureRecord = AuditCode.Dcm("110111", "Procedure Record");
    public static readonly AuditCode Query = AuditCode.Dcm("110112", "Query");
    public static readonly AuditCode SecurityAlert = AuditCode.Dcm("110113", "Security Alert");
    public static readonly AuditCode UserAuthentication = AuditCode.Dcm("110114", "User Authentication");

    public static IReadOnlyList<AuditCode> All { get; } =
    [
        ApplicationActivity, AuditLogUsed, BeginTransferringDicomInstances, DicomInstancesAccessed, DicomInstancesTransferred,
        DicomStudyDeleted, Export, Import, NetworkEntry, OrderRecord, PatientRecord, ProcedureRecord, Query, SecurityAlert,
        UserAuthentication,
    ];
}

/// <summary>DICOM PS3.16 CID 401 Audit Event Type Code (EventTypeCode of PS3.15 A.5.1).</summary>
public static class AuditEventTypes
{
    public static readonly AuditCode ApplicationStart = AuditCode.Dcm("110120", "Application Start");
    public static readonly AuditCode ApplicationStop = AuditCode.Dcm("110121", "Application Stop");
    public static readonly AuditCode Login = AuditCode.Dcm("110122", "Login");
    public static readonly AuditCode Logout = AuditCode.Dcm("110123", "Logout");
    public static readonly AuditCode Attach = AuditCode.Dcm("110124", "Attach");
    public static readonly AuditCode Detach = AuditCode.Dcm("110125", "Detach");
    public static readonly AuditCode NodeAuthentication = AuditCode.Dcm("110126", "Node Authentication");
    public static readonly AuditCode EmergencyOverrideStarted = AuditCode.Dcm("110127", "Emergency Override Started");
    public static readonly AuditCode NetworkConfiguration = AuditCode.Dcm("110128", "Network Configuration");
    public static readonly AuditCode SecurityConfiguration = AuditCode.Dcm("110129", "Security Configuration");
    public static readonly AuditCode HardwareConfiguration = AuditCode.Dcm("110130", "Hardware Configuration");
    public static readonly AuditCode SoftwareConfiguration = AuditCode.Dcm("110131", "Software Configuration");
    public static readonly AuditCode UseOfRestrictedFunction = AuditCode.Dcm("110132", "Use of Restricted Function");
    public static readonly AuditCode AuditRecordingStopped = AuditCode.Dcm("110133", "Audit Recording Stopped");
    public static readonly AuditCode AuditRecordingStarted = AuditCode.Dcm("110134", "Audit Recording Started");
    public static readonly AuditCode ObjectSecurityAttributesChanged = AuditCode.Dcm("110135", "Object Security Attributes Changed");
    public static readonly AuditCode SecurityRolesChanged = AuditCode.Dcm("110136", "Security Roles Changed");
    public static readonly AuditCode UserSecurityAttributesChanged = AuditCode.Dcm("110137", "User security Attributes Changed");
    public static readonly AuditCode EmergencyOverrideStopped = AuditCode.Dcm("110138", "Emergency Override Stopped");
    public static readonly AuditCode RemoteServiceOperationStarted = AuditCode.Dcm("110139", "Remote Service Operation Started");
    public static readonly AuditCode RemoteServiceOperationStopped = AuditCode.Dcm("110140", "Remote Service Operation Stopped");
    public static readonly AuditCode LocalServiceOperationStarted = AuditCode.Dcm("110141", "Local Service Operation Started");
    public static readonly AuditCode LocalServiceOperationStopped = AuditCode.Dcm("110142", "Local Service Operation Stopped");
}

/// <summary>DICOM PS3.16 CID 402 Audit Active Participant Role ID Code.</summary>
public static class AuditRoles
{
    public static readonly AuditCode Application = AuditCode.Dcm("110150", "Application");
    public static readonly AuditCode ApplicationLauncher = AuditCode.Dcm("110151", "Application Launcher");
    public static readonly AuditCode Destination = AuditCode.Dcm("110152", "Destination Role ID");
    public static readonly AuditCode Source = AuditCode.Dcm("110153", "Source Role ID");
    public static readonly AuditCode DestinationMedia = AuditCode.Dcm("110154", "Destination Media");
    public static readonly AuditCode SourceMedia = AuditCode.Dcm("110155", "Source Media");
}

/// <summary>DICOM PS3.16 CID 405 Media Type Code, for the media of an export or import.</summary>
public static class AuditMediaTypes
{
    public static readonly AuditCode Uri = AuditCode.Dcm("110037", "URI");
}

/// <summary>ParticipantObjectIDTypeCode values (PS3.16 CID 404 and the RFC 3881 codes DICOM reuses).</summary>
public static class AuditObjectIdTypes
{
    public static readonly AuditCode PatientNumber = new("2", "RFC-3881", "Patient Number");
    public static readonly AuditCode EncounterNumber = new("3", "RFC-3881", "Encounter Number");
    public static readonly AuditCode ReportNumber = new("9", "RFC-3881", "Report Number");
    public static readonly AuditCode SearchCriteria = new("10", "RFC-3881", "Search Criteria");
    public static readonly AuditCode Uri = new("12", "RFC-3881", "URI");
    public static readonly AuditCode StudyInstanceUid = AuditCode.Dcm("110180", "Study Instance UID");
    public static readonly AuditCode SopClassUid = AuditCode.Dcm("110181", "SOP Class UID");
    public static readonly AuditCode NodeId = AuditCode.Dcm("110182", "Node ID");
}

/// <summary>Purpose of use codes (HL7 v3 ActReason), as BALP and the portal show them.</summary>
public static class AuditPurposes
{
    public const string System = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    public static readonly AuditCode Treatment = new("TREAT", System, "treatment");
    public static readonly AuditCode EmergencyTreatment = new("ETREAT", System, "Emergency Treatment");
    public static readonly AuditCode Operations = new("HOPERAT", System, "healthcare operations");
    public static readonly AuditCode PatientRequest = new("PATRQT", System, "patient requested");
    public static readonly AuditCode Research = new("HRESCH", System, "healthcare research");
    public static readonly AuditCode Security = new("HSYSADMIN", System, "health system administration");
}
