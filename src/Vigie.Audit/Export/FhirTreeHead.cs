using System.Globalization;
using System.Text.Json;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;

namespace Vigie.Audit.Export;

/// <summary>
/// A signed tree head as a FHIR R4 AuditEvent, the copy a FHIR audit record repository keeps outside Vigie's database
/// (as a syslog collector keeps the VIGIE-STH messages). FHIR has no resource for a log's signed state, and a
/// repository may take nothing but AuditEvents, so the head rides in one: type DCM 110100 Application Activity,
/// subtype <c>urn:vigie:audit|signed-tree-head</c>, and the audit log as its entity, whose detail holds the head's
/// JSON line exactly as <see cref="TreeHeadJson.Write"/> prints it. <see cref="TreeHeadJson.Parse"/> reads it back.
/// </summary>
internal static class FhirTreeHead
{
    public const string SubtypeSystem = "urn:vigie:audit";
    public const string SubtypeCode = "signed-tree-head";

    /// <summary>
    /// Stable per head, so a head sent again after a restart replaces its copy; the signature's first bytes tell apart
    /// two heads of one size signed by different nodes.
    /// </summary>
    public static string ResourceId(SignedTreeHead head) =>
        $"vigie-sth-{head.TreeSize.ToString(CultureInfo.InvariantCulture)}-{Convert.ToHexStringLower(head.Signature.AsSpan(0, 8))}";

    public static byte[] Write(SignedTreeHead head, string sourceId, string? enterpriseSiteId)
    {
        using var stream = new MemoryStream(1024);
        using (var json = new Utf8JsonWriter(stream))
        {
            Write(json, head, sourceId, enterpriseSiteId);
        }

        return stream.ToArray();
    }

    public static void Write(Utf8JsonWriter json, SignedTreeHead head, string sourceId, string? enterpriseSiteId)
    {
        json.WriteStartObject();
        json.WriteString("resourceType", "AuditEvent");
        json.WriteString("id", ResourceId(head));
        json.WritePropertyName("type");
        FhirAuditEvent.WriteCoding(json, AuditEventIds.ApplicationActivity);
        json.WriteStartArray("subtype");
        FhirAuditEvent.WriteCoding(json, SubtypeSystem, SubtypeCode, "Signed tree head of the audit log");
        json.WriteEndArray();
        json.WriteString("action", "E");
        json.WriteString("recorded", head.Timestamp.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
        json.WriteString("outcome", "0");

        json.WriteStartArray("agent");
        json.WriteStartObject();
        json.WritePropertyName("type");
        FhirAuditEvent.WriteConcept(json, AuditRoles.Application);
        FhirAuditEvent.WriteReference(json, "who", sourceId);
        json.WriteBoolean("requestor", false);
        json.WriteEndObject();
        json.WriteEndArray();

        FhirAuditEvent.WriteSource(json, sourceId, enterpriseSiteId);

        json.WriteStartArray("entity");
        json.WriteStartObject();
        json.WriteStartObject("what");
        json.WriteStartObject("identifier");
        json.WriteString("value", "vigie-audit-log");
        json.WriteEndObject();
        json.WriteEndObject();
        json.WritePropertyName("type");
        FhirAuditEvent.WriteCoding(json, FhirAuditEvent.EntityTypeSystem, "2", "System Object");
        json.WritePropertyName("role");
        FhirAuditEvent.WriteCoding(json, FhirAuditEvent.ObjectRoleSystem, "13", "Security Resource");
        json.WriteString("name", "Vigie audit log");
        json.WriteStartArray("detail");
        json.WriteStartObject();
        json.WriteString("type", SubtypeCode);
        json.WriteString("valueString", TreeHeadJson.Write(head));
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndArray();

        json.WriteEndObject();
    }
}
