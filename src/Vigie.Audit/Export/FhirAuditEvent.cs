using System.Globalization;
using System.Text.Json;
using Vigie.Audit.Model;

namespace Vigie.Audit.Export;

/// <summary>
/// FHIR R4 AuditEvent JSON following IHE BALP. Successful create/read/update/delete/query events claim the matching
/// BALP profile (the Patient variant when a patient object is present): type is "rest", the restful interaction is
/// the first subtype and the DICOM EventID and EventTypeCodes follow as further subtypes. Other events carry the
/// DICOM EventID as type.
/// </summary>
internal static class FhirAuditEvent
{
    public const string BalpBase = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.";
    private const string DcmSystem = "http://dicom.nema.org/resources/ontology/DCM";
    private const string EventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type";
    private const string InteractionSystem = "http://hl7.org/fhir/restful-interaction";
    internal const string EntityTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
    internal const string ObjectRoleSystem = "http://terminology.hl7.org/CodeSystem/object-role";
    private const string ParticipationSystem = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
    private const string SourceTypeSystem = "http://terminology.hl7.org/CodeSystem/security-source-type";
    private const string ProvenanceSystem = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";

    /// <summary>The resource id: stable per entry, so re-sending after a crash overwrites rather than duplicates.</summary>
    public static string ResourceId(AuditEntry entry) => "vigie-" + Convert.ToHexStringLower(entry.LeafHash.AsSpan(0, 16));

    /// <summary>The BALP profile an entry claims, or null.</summary>
    public static (string Profile, string Interaction, AuditCode ClientType, AuditCode ServerType)? Balp(AuditEntry entry)
    {
        if (entry.Outcome != AuditOutcome.Success)
        {
            return null;
        }

        var patient = entry.Details?.Objects.Any(IsPatient) == true ? "Patient" : "";
        var source = AuditRoles.Source;
        var destination = AuditRoles.Destination;
        return entry.Action switch
        {
            AuditAction.Create => (BalpBase + patient + "Create", "create", source, destination),
            // BALP Read types the requestor as the one that received the data (110152). A requestor that is the data's
            // Source did not read: a store of an instance already held (PS3.15 A.5.3.4, R) claims no profile. Since
            // 2026-12-07; before, such a store was C and claimed PatientCreate.
            AuditAction.Read when RequestorIsSource(entry) => null,
            AuditAction.Read => (BalpBase + patient + "Read", "read", destination, source),
            AuditAction.Update => (BalpBase + patient + "Update", "update", source, destination),
            AuditAction.Delete => (BalpBase + patient + "Delete", "delete", AuditRoles.Application, new AuditCode("custodian", "provenance", "Custodian")),
            AuditAction.Execute when entry.EventId.Code == AuditEventIds.Query.Code => (BalpBase + patient + "Query", "search-type", source, destination),
            AuditAction.Execute => null,
            _ => null,
        };
    }

    private static bool RequestorIsSource(AuditEntry entry) =>
        (entry.Participants.FirstOrDefault(p => p.IsRequestor) ?? entry.Participants[0]).Roles.Any(r => r.SameCode(AuditRoles.Source));

    private static bool IsPatient(AuditObject o) => o.Type == AuditObjectType.Person && o.Role == AuditObjectRole.Patient;

    public static byte[] Write(AuditEntry entry, string? enterpriseSiteId)
    {
        using var stream = new MemoryStream(2048);
        using (var json = new Utf8JsonWriter(stream))
        {
            Write(json, entry, enterpriseSiteId);
        }

        return stream.ToArray();
    }

    public static void Write(Utf8JsonWriter json, AuditEntry entry, string? enterpriseSiteId)
    {
        var balp = Balp(entry);
        json.WriteStartObject();
        json.WriteString("resourceType", "AuditEvent");
        json.WriteString("id", ResourceId(entry));
        if (balp is not null)
        {
            json.WriteStartObject("meta");
            json.WriteStartArray("profile");
            json.WriteStringValue(balp.Value.Profile);
            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteStartArray("extension");
        json.WriteStartObject();
        json.WriteString("url", "urn:vigie:audit:sequence");
        json.WriteString("valueString", entry.Sequence.ToString(CultureInfo.InvariantCulture));
        json.WriteEndObject();
        json.WriteEndArray();

        if (balp is not null)
        {
            json.WritePropertyName("type");
            WriteCoding(json, EventTypeSystem, "rest", "Restful Operation");
        }
        else
        {
            json.WritePropertyName("type");
            WriteCoding(json, entry.EventId);
        }

        // FHIR forbids an empty array: a strict server refused the whole batch with it, and the sink retried that batch for ever.
        if (balp is not null || entry.EventTypes.Count > 0)
        {
            json.WriteStartArray("subtype");
            if (balp is not null)
            {
                WriteCoding(json, InteractionSystem, balp.Value.Interaction, balp.Value.Interaction);
                WriteCoding(json, entry.EventId);
            }

            foreach (var type in entry.EventTypes)
            {
                WriteCoding(json, type);
            }

            json.WriteEndArray();
        }
        json.WriteString("action", ((char)entry.Action).ToString());
        json.WriteString("recorded", entry.Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
        json.WriteString("outcome", ((int)entry.Outcome).ToString(CultureInfo.InvariantCulture));
        if (entry.Details?.OutcomeDescription is { Length: > 0 } description)
        {
            json.WriteString("outcomeDesc", description);
        }

        if (entry.PurposeOfUse is not null)
        {
            json.WriteStartArray("purposeOfEvent");
            WriteConcept(json, entry.PurposeOfUse);
            json.WriteEndArray();
        }

        json.WriteStartArray("agent");
        var requestor = entry.Participants.FirstOrDefault(p => p.IsRequestor) ?? entry.Participants[0];
        foreach (var p in entry.Participants)
        {
            // With a BALP profile a person requestor is the "user" agent; its network address goes to a separate client agent.
            if (balp is not null && ReferenceEquals(p, requestor) && p.Kind == AuditParticipantKind.Person)
            {
                WriteAgent(json, p, new AuditCode("IRCP", ParticipationSystem, "information recipient"), entry.PurposeOfUse, withNetwork: false);
                if (p.NetworkAccessPointId is not null)
                {
                    WriteAgent(json, p with { IsRequestor = false, UserName = null, Roles = [] }, balp.Value.ClientType, null, withNetwork: true, whoOverride: p.NetworkAccessPointId);
                }
            }
            else if (balp is not null && ReferenceEquals(p, requestor))
            {
                WriteAgent(json, p, balp.Value.ClientType, entry.PurposeOfUse, withNetwork: true);
            }
            else
            {
                WriteAgent(json, p, p.Roles.FirstOrDefault(), null, withNetwork: true);
            }
        }

        if (balp is not null)
        {
            // The server: this Vigie node.
            json.WriteStartObject();
            json.WritePropertyName("type");
            WriteConcept(json, balp.Value.ServerType);
            WriteReference(json, "who", entry.SourceId);
            json.WriteBoolean("requestor", false);
            json.WriteStartObject("network");
            json.WriteString("address", entry.SourceId);
            json.WriteString("type", "1");
            json.WriteEndObject();
            json.WriteEndObject();
        }

        json.WriteEndArray();

        WriteSource(json, entry.SourceId, enterpriseSiteId);

        var objects = entry.Details?.Objects ?? [];
        if (objects.Count > 0)
        {
            json.WriteStartArray("entity");
            foreach (var o in objects)
            {
                WriteEntity(json, o);
            }

            json.WriteEndArray();
        }

        json.WriteEndObject();
    }

    /// <summary>The node that recorded the event: AuditEvent.source, an application server.</summary>
    internal static void WriteSource(Utf8JsonWriter json, string sourceId, string? enterpriseSiteId)
    {
        json.WriteStartObject("source");
        if (enterpriseSiteId is not null)
        {
            json.WriteString("site", enterpriseSiteId);
        }

        WriteReference(json, "observer", sourceId);
        json.WriteStartArray("type");
        WriteCoding(json, SourceTypeSystem, "4", "Application Server");
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>A Reference by identifier, displayed as that identifier (agent.who, source.observer).</summary>
    internal static void WriteReference(Utf8JsonWriter json, string name, string identifier)
    {
        json.WriteStartObject(name);
        json.WriteStartObject("identifier");
        json.WriteString("value", identifier);
        json.WriteEndObject();
        json.WriteString("display", identifier);
        json.WriteEndObject();
    }

    private static void WriteEntity(Utf8JsonWriter json, AuditObject o)
    {
        json.WriteStartObject();
        var isQuery = o.Role == AuditObjectRole.Query || (o.Query is not null && o.Name is null && o.Type == AuditObjectType.SystemObject);
        if (!isQuery)
        {
            json.WriteStartObject("what");
            if (IsPatient(o))
            {
                json.WriteString("type", "Patient");
            }

            json.WriteStartObject("identifier");
            json.WriteStartObject("type");
            json.WriteStartArray("coding");
            WriteCoding(json, o.IdType);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteString("value", o.Id);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        json.WritePropertyName("type");
        WriteCoding(json, EntityTypeSystem, ((int)o.Type).ToString(CultureInfo.InvariantCulture), o.Type switch
        {
            AuditObjectType.Person => "Person",
            AuditObjectType.SystemObject => "System Object",
            AuditObjectType.Organization => "Organization",
            AuditObjectType.Other => "Other",
            _ => "Other",
        });
        var role = isQuery ? AuditObjectRole.Query : o.Role ?? (o.Type == AuditObjectType.Person ? AuditObjectRole.Patient : AuditObjectRole.Resource);
        json.WritePropertyName("role");
        WriteCoding(json, ObjectRoleSystem, ((int)role).ToString(CultureInfo.InvariantCulture), role.ToString());
        if (o.Name is not null)
        {
            json.WriteString("name", o.Name);
        }

        if (o.Query is not null)
        {
            json.WriteBase64String("query", o.Query);
        }

        var details = o.Details.Select(kv => (kv.Key, kv.Value))
            .Concat(o.SopClasses.Select(s => ("SOPClass", $"{s.Uid} ({s.NumberOfInstances.ToString(CultureInfo.InvariantCulture)})")))
            .Concat(o.Accessions.Select(a => ("Accession", a)))
            .ToList();
        if (details.Count > 0)
        {
            json.WriteStartArray("detail");
            foreach (var (type, value) in details)
            {
                json.WriteStartObject();
                json.WriteString("type", type);
                json.WriteString("valueString", value);
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        json.WriteEndObject();
    }

    private static void WriteAgent(Utf8JsonWriter json, AuditParticipant p, AuditCode? type, AuditCode? purpose, bool withNetwork, string? whoOverride = null)
    {
        json.WriteStartObject();
        if (type is not null)
        {
            json.WritePropertyName("type");
            WriteConcept(json, type);
        }

        if (p.Roles.Count > 0)
        {
            json.WriteStartArray("role");
            foreach (var role in p.Roles)
            {
                WriteConcept(json, role);
            }

            json.WriteEndArray();
        }

        json.WriteStartObject("who");
        json.WriteStartObject("identifier");
        json.WriteString("value", whoOverride ?? p.UserId);
        json.WriteEndObject();
        json.WriteString("display", whoOverride ?? p.UserName ?? p.UserId);
        json.WriteEndObject();
        if (p.AlternativeUserId is not null)
        {
            json.WriteString("altId", p.AlternativeUserId);
        }

        if (p.UserName is not null)
        {
            json.WriteString("name", p.UserName);
        }

        json.WriteBoolean("requestor", p.IsRequestor);
        if (p.MediaType is not null)
        {
            json.WritePropertyName("media");
            WriteCoding(json, p.MediaType);
        }

        if (withNetwork && p.NetworkAccessPointId is not null)
        {
            json.WriteStartObject("network");
            json.WriteString("address", p.NetworkAccessPointId);
            json.WriteString("type", ((int)p.ExportedNetworkAccessPointType).ToString(CultureInfo.InvariantCulture));
            json.WriteEndObject();
        }

        if (purpose is not null)
        {
            json.WriteStartArray("purposeOfUse");
            WriteConcept(json, purpose);
            json.WriteEndArray();
        }

        json.WriteEndObject();
    }

    private static string SystemUri(AuditCode code) => code.CodeSystemName switch
    {
        "DCM" => DcmSystem,
        "RFC-3881" => "urn:ietf:rfc:3881",
        "provenance" => ProvenanceSystem,
        _ => code.CodeSystemName,
    };

    internal static void WriteCoding(Utf8JsonWriter json, AuditCode code) => WriteCoding(json, SystemUri(code), code.Code, code.DisplayName);

    internal static void WriteCoding(Utf8JsonWriter json, string system, string code, string display)
    {
        json.WriteStartObject();
        json.WriteString("system", system);
        json.WriteString("code", code);
        json.WriteString("display", display);
        json.WriteEndObject();
    }

    internal static void WriteConcept(Utf8JsonWriter json, AuditCode code)
    {
        json.WriteStartObject();
        json.WriteStartArray("coding");
        WriteCoding(json, code);
        json.WriteEndArray();
        json.WriteEndObject();
    }
}
