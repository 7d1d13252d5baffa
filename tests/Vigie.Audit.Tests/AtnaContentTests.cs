// Assertions walk FHIR models whose properties are all nullable; a null there fails the test anyway.
#pragma warning disable CS8602, CS8604
using System.Text;
using System.Xml.Linq;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Vigie.Audit.Export;
using Vigie.Audit.Model;
using Vigie.Core.Data;
using Vigie.Testing;
using Task = System.Threading.Tasks.Task;

namespace Vigie.Audit.Tests;

/// <summary>What the exported messages say, against PS3.15 A.5.3 (review 24).</summary>
public sealed class AtnaContentTests
{
    private static AuditParticipant Modality => new()
    {
        UserId = "CT01", IsRequestor = true, Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Source],
        NetworkAccessPointId = "10.0.0.7", NetworkAccessPointType = NetworkAccessPointType.IpAddress,
    };

    private static AuditParticipant Node(AuditCode role) => new()
    {
        UserId = "VIGIE", Kind = AuditParticipantKind.Application, Roles = [role],
        NetworkAccessPointId = "vigie.example", NetworkAccessPointType = NetworkAccessPointType.MachineName,
    };

    private static AuditObject Patient(string? name) => new()
    {
        Type = AuditObjectType.Person, Role = AuditObjectRole.Patient, IdType = AuditObjectIdTypes.PatientNumber, Id = Samples.PatientId, Name = name,
    };

    private static AuditObject Study => new()
    {
        Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Report, IdType = AuditObjectIdTypes.StudyInstanceUid, Id = Samples.StudyUid,
        SopClasses = [new AuditSopClass(Samples.SopClassUid, 1)],
    };

    private static async Task<AuditEntry> EntryAsync(AuditHarness h, AuditRecord record)
    {
        var seq = await h.AppendAsync([record]);
        return h.Log.Factory.ToEntry((await h.Store.ReadEntryAsync(seq, TestContext.Current.CancellationToken))!, unseal: true);
    }

    private static AuditEvent Fhir(AuditEntry entry) =>
        FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(Encoding.UTF8.GetString(FhirAuditEvent.Write(entry, "SITE-1")));

    /// <summary>
    /// Regression: a clean `vigie scrub` (and a `vigie rescan` run) was recorded as 110100 Application Activity typed 110132
    /// Use of Restricted Function, with the operator alone. PS3.15 A.5.3.1 gives Application Activity one event type,
    /// 110120 Application Start or 110121 Application Stop, and requires the Application participant (110150): such a
    /// record is now refused, whoever builds it.
    /// </summary>
    [Fact]
    public async Task Regression_an_application_activity_carried_another_event_type_and_no_application()
    {
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var scrub = new AuditRecord
        {
            EventId = AuditEventIds.ApplicationActivity,
            EventTypes = [AuditEventTypes.UseOfRestrictedFunction],
            Action = AuditAction.Execute,
            Participants = [AuditParticipant.LocalOperator("root")],
        };
        var typed = await Assert.ThrowsAsync<AuditRecordException>(() => h.AppendAsync([scrub]));
        Assert.Equal(nameof(AuditRecord.EventTypes), typed.Field);
        var untyped = await Assert.ThrowsAsync<AuditRecordException>(() => h.AppendAsync([scrub with { EventTypes = [] }]));
        Assert.Equal(nameof(AuditRecord.EventTypes), untyped.Field);
        var noApplication = await Assert.ThrowsAsync<AuditRecordException>(() => h.AppendAsync([scrub with { EventTypes = [AuditEventTypes.ApplicationStart] }]));
        Assert.Equal(nameof(AuditRecord.Participants), noApplication.Field);

        // A start with its Application, as the node writes it, is taken.
        await h.AppendAsync([scrub with
        {
            EventTypes = [AuditEventTypes.ApplicationStart],
            Participants = [Node(AuditRoles.Application), AuditParticipant.LocalOperator("root") with { Roles = [AuditRoles.ApplicationLauncher] }],
        }]);
    }

    /// <summary>
    /// Regression: the store of an instance Vigie already held was exported as BALP PatientCreate (action C). It is now
    /// recorded R (PS3.15 A.5.3.4: the receiver held the copies and changed nothing), and an R whose requestor is the
    /// data's source (110153) claims no BALP profile: BALP Read types the requestor as the one that received the data.
    /// A new version (U) claims PatientUpdate, with the sender as the client (110153) as BALP Update has it.
    /// </summary>
    [Fact]
    public async Task Regression_a_store_of_an_instance_already_held_was_exported_as_a_BALP_create()
    {
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        AuditRecord Store(AuditAction action, string outcome) => new()
        {
            EventId = AuditEventIds.DicomInstancesTransferred,
            Action = action,
            Participants = [Modality, Node(AuditRoles.Destination)],
            PatientRef = Samples.PatientRef(1),
            Details = new AuditDetails { OutcomeDescription = outcome, Objects = [Study, Patient(Samples.PatientName)] },
        };

        var duplicate = Fhir(await EntryAsync(h, Store(AuditAction.Read, "already stored")));
        Assert.Empty(duplicate.Meta?.Profile ?? []);
        Assert.Equal(AuditEvent.AuditEventAction.R, duplicate.Action);
        Assert.Equal("110104", duplicate.Type.Code);
        Assert.DoesNotContain(duplicate.Agent, a => a.Type?.Coding[0].Code == "110152" && a.Who.Identifier.Value == "CT01");

        var version = Fhir(await EntryAsync(h, Store(AuditAction.Update, "stored")));
        Assert.Equal(FhirAuditEvent.BalpBase + "PatientUpdate", Assert.Single(version.Meta.Profile));
        Assert.Equal("update", version.Subtype[0].Code);
        Assert.Contains(version.Agent, a => a.Type?.Coding[0].Code == "110153" && a.Who.Identifier.Value == "CT01" && a.Requestor == true);

        var created = Fhir(await EntryAsync(h, Store(AuditAction.Create, "stored")));
        Assert.Equal(FhirAuditEvent.BalpBase + "PatientCreate", Assert.Single(created.Meta.Profile));

        // A retrieve keeps its BALP Read: the requestor is the destination, the one that read.
        var retrieve = Fhir(await EntryAsync(h, Store(AuditAction.Read, "C-GET to CT01: 1 of 1 instances sent") with
        {
            Participants = [Modality with { Roles = [AuditRoles.Destination] }, Node(AuditRoles.Source)],
        }));
        Assert.Equal(FhirAuditEvent.BalpBase + "PatientRead", Assert.Single(retrieve.Meta.Profile));
    }

    /// <summary>
    /// Regression: ParticipantObjectName carried the ID type's label: a query keyed on a Patient ID exported a patient named
    /// "Patient Number", every study was named "Study Instance UID", a quarantined object "Node ID". PS3.15 A.5.1 wants a
    /// name or a query in each object: the name when the record has one, else the object's own identifier, valid against
    /// the A.5.1 schema. FHIR, where the name is optional, gets none.
    /// </summary>
    [Fact]
    public async Task Regression_participant_object_names_were_the_id_types_label()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var entry = await EntryAsync(h, new AuditRecord
        {
            EventId = AuditEventIds.Query,
            Action = AuditAction.Execute,
            Participants = [Modality, Node(AuditRoles.Destination)],
            PatientRef = Samples.PatientRef(1),
            Details = new AuditDetails
            {
                Objects =
                [
                    new AuditObject
                    {
                        Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Report, IdType = AuditObjectIdTypes.SopClassUid,
                        Id = "1.2.840.10008.5.1.4.1.2.2.1", Query = Encoding.UTF8.GetBytes("PatientID=" + Samples.PatientId),
                    },
                    Patient(null),
                    Study,
                    new AuditObject { Type = AuditObjectType.SystemObject, Role = AuditObjectRole.Resource, IdType = AuditObjectIdTypes.NodeId, Id = "q-4242" },
                    Patient(Samples.PatientName) with { Id = Samples.PatientId + "-2" },
                ],
            },
        });

        var bytes = AtnaMessage.Write(entry, "SITE-1");
        var xml = XDocument.Parse(Encoding.UTF8.GetString(bytes).TrimStart('\uFEFF'));
        var names = xml.Root!.Elements("ParticipantObjectIdentification")
            .Select(o => (Id: o.Attribute("ParticipantObjectID")!.Value, Name: (string?)o.Element("ParticipantObjectName")?.Value)).ToList();
        List<(string Id, string? Name)> expected =
            [
                ("1.2.840.10008.5.1.4.1.2.2.1", null),
                (Samples.PatientId, Samples.PatientId),
                (Samples.StudyUid, Samples.StudyUid),
                ("q-4242", "q-4242"),
                (Samples.PatientId + "-2", Samples.PatientName),
            ];
        Assert.Equal(expected, names);
        Assert.DoesNotContain(names, n => n.Name is "Patient Number" or "Study Instance UID" or "Node ID" or "SOP Class UID");

        var fhir = Fhir(entry);
        Assert.Null(Assert.Single(fhir.Entity, e => e.What?.Identifier.Value == Samples.PatientId).Name);
        Assert.Equal(Samples.PatientName, Assert.Single(fhir.Entity, e => e.What?.Identifier.Value == Samples.PatientId + "-2").Name);

        await AssertValidAsync(bytes, ct);
    }

    /// <summary>Validates an ATNA message with xmllint against the PS3.15 A.5.1 schema.</summary>
    private static async Task AssertValidAsync(byte[] message, CancellationToken ct)
    {
        var xmllint = Peers.Require("xmllint", "libxml2-utils");
        using var dir = new TempDirectory("vigie-atna-schema");
        var path = dir.Combine("message.xml");
        await File.WriteAllBytesAsync(path, message, ct);
        var result = await Peers.RunAsync(xmllint, ["--noout", "--relaxng", Path.Combine(AppContext.BaseDirectory, "Schema", "dicom-audit-message.rng"), path],
            TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
    }
}
