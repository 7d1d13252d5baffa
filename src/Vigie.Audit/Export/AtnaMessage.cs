using System.Globalization;
using System.Text;
using System.Xml;
using Vigie.Audit.Model;

namespace Vigie.Audit.Export;

/// <summary>
/// The DICOM audit message (PS3.15 A.5.1, the IHE ATNA format): EventIdentification, ActiveParticipant,
/// AuditSourceIdentification, ParticipantObjectIdentification, in schema order.
/// </summary>
internal static class AtnaMessage
{
    private static readonly XmlWriterSettings Settings = new()
    {
        Encoding = new UTF8Encoding(false),
        Indent = false,
        OmitXmlDeclaration = false,
        CheckCharacters = true,
    };

    public static byte[] Write(AuditEntry entry, string? enterpriseSiteId)
    {
        using var stream = new MemoryStream(1024);
        using (var xml = XmlWriter.Create(stream, Settings))
        {
            xml.WriteStartDocument();
            xml.WriteStartElement("AuditMessage");

            xml.WriteStartElement("EventIdentification");
            xml.WriteAttributeString("EventActionCode", ((char)entry.Action).ToString());
            xml.WriteAttributeString("EventDateTime", entry.Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            xml.WriteAttributeString("EventOutcomeIndicator", ((int)entry.Outcome).ToString(CultureInfo.InvariantCulture));
            WriteCode(xml, "EventID", entry.EventId);
            foreach (var type in entry.EventTypes)
            {
                WriteCode(xml, "EventTypeCode", type);
            }

            if (entry.Details?.OutcomeDescription is { Length: > 0 } description)
            {
                xml.WriteElementString("EventOutcomeDescription", Clean(description));
            }

            if (entry.PurposeOfUse is not null)
            {
                WriteCode(xml, "PurposeOfUse", entry.PurposeOfUse);
            }

            xml.WriteEndElement();

            foreach (var participant in entry.Participants)
            {
                xml.WriteStartElement("ActiveParticipant");
                xml.WriteAttributeString("UserID", Clean(participant.UserId));
                if (participant.AlternativeUserId is not null)
                {
                    xml.WriteAttributeString("AlternativeUserID", Clean(participant.AlternativeUserId));
                }

                if (participant.UserName is not null)
                {
                    xml.WriteAttributeString("UserName", Clean(participant.UserName));
                }

                xml.WriteAttributeString("UserIsRequestor", participant.IsRequestor ? "true" : "false");
                if (participant.NetworkAccessPointId is not null)
                {
                    xml.WriteAttributeString("NetworkAccessPointID", Clean(participant.NetworkAccessPointId));
                    xml.WriteAttributeString("NetworkAccessPointTypeCode",
                        ((int)participant.ExportedNetworkAccessPointType).ToString(CultureInfo.InvariantCulture));
                }

                foreach (var role in participant.Roles)
                {
                    WriteCode(xml, "RoleIDCode", role);
                }

                if (participant.MediaType is not null)
                {
                    xml.WriteStartElement("MediaIdentifier");
                    WriteCode(xml, "MediaType", participant.MediaType);
                    xml.WriteEndElement();
                }

                xml.WriteEndElement();
            }

            xml.WriteStartElement("AuditSourceIdentification");
            if (enterpriseSiteId is not null)
            {
                xml.WriteAttributeString("AuditEnterpriseSiteID", Clean(enterpriseSiteId));
            }

            xml.WriteAttributeString("AuditSourceID", Clean(entry.SourceId));
            // One of the schema's own values (A.5.1.2.1), not a DCM code: no code system (before 2026-12-06 labelled "DCM").
            xml.WriteStartElement("AuditSourceTypeCode");
            xml.WriteAttributeString("csd-code", "4");
            xml.WriteEndElement();
            xml.WriteEndElement();

            foreach (var o in entry.Details?.Objects ?? [])
            {
                xml.WriteStartElement("ParticipantObjectIdentification");
                xml.WriteAttributeString("ParticipantObjectID", Clean(o.Id));
                xml.WriteAttributeString("ParticipantObjectTypeCode", ((int)o.Type).ToString(CultureInfo.InvariantCulture));
                if (o.Role is not null)
                {
                    xml.WriteAttributeString("ParticipantObjectTypeCodeRole", ((int)o.Role.Value).ToString(CultureInfo.InvariantCulture));
                }

                WriteCode(xml, "ParticipantObjectIDTypeCode", o.IdType);
                // The schema wants a name or a query, exactly one (PS3.15 A.5.1): an object without either is named by its
                // own identifier (the Patient ID, the UID), what it is called. Before 2026-12-07 by its ID type's label, so
                // a query keyed on a Patient ID exported a patient named "Patient Number".
                if (o.Query is not null && o.Name is null)
                {
                    xml.WriteElementString("ParticipantObjectQuery", Convert.ToBase64String(o.Query));
                }
                else
                {
                    xml.WriteElementString("ParticipantObjectName", Clean(o.Name ?? o.Id));
                }

                foreach (var (type, value) in o.Details)
                {
                    xml.WriteStartElement("ParticipantObjectDetail");
                    xml.WriteAttributeString("type", Clean(type));
                    xml.WriteAttributeString("value", Convert.ToBase64String(Encoding.UTF8.GetBytes(value)));
                    xml.WriteEndElement();
                }

                // PS3.15 A.5.1: Accession and SOPClass belong in a ParticipantObjectDescription (before 2026-12-06 they
                // were written under the object itself, which the schema refuses).
                if (o.Accessions.Count > 0 || o.SopClasses.Count > 0)
                {
                    xml.WriteStartElement("ParticipantObjectDescription");
                    foreach (var accession in o.Accessions)
                    {
                        xml.WriteStartElement("Accession");
                        xml.WriteAttributeString("Number", Clean(accession));
                        xml.WriteEndElement();
                    }

                    foreach (var sop in o.SopClasses)
                    {
                        xml.WriteStartElement("SOPClass");
                        xml.WriteAttributeString("UID", Clean(sop.Uid));
                        xml.WriteAttributeString("NumberOfInstances", sop.NumberOfInstances.ToString(CultureInfo.InvariantCulture));
                        xml.WriteEndElement();
                    }

                    xml.WriteEndElement();
                }

                xml.WriteEndElement();
            }

            xml.WriteEndElement();
            xml.WriteEndDocument();
        }

        return stream.ToArray();
    }

    private static void WriteCode(XmlWriter xml, string name, AuditCode code)
    {
        xml.WriteStartElement(name);
        xml.WriteAttributeString("csd-code", Clean(code.Code));
        xml.WriteAttributeString("codeSystemName", Clean(code.CodeSystemName));
        xml.WriteAttributeString("originalText", Clean(code.DisplayName));
        xml.WriteEndElement();
    }

    // Sealed details come from callers: drop characters XML 1.0 cannot carry rather than fail the whole export.
    private static string Clean(string value)
    {
        foreach (var c in value)
        {
            if (!XmlConvert.IsXmlChar(c) && !char.IsSurrogate(c))
            {
                return new string(value.Where(ch => XmlConvert.IsXmlChar(ch) || char.IsSurrogate(ch)).ToArray());
            }
        }

        return value;
    }
}
