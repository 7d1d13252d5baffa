using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vigie.Audit.Model;

// Compact, stable property names: participants are hashed as stored, details are sealed.
internal sealed record ParticipantDto(
    [property: JsonPropertyName("id")] string UserId,
    [property: JsonPropertyName("alt")] string? AlternativeUserId,
    [property: JsonPropertyName("nm")] string? UserName,
    [property: JsonPropertyName("req")] bool IsRequestor,
    [property: JsonPropertyName("k")] string Kind,
    [property: JsonPropertyName("r")] string[]? Roles,
    [property: JsonPropertyName("n")] string? NetworkAccessPointId,
    [property: JsonPropertyName("nt")] int? NetworkAccessPointType,
    [property: JsonPropertyName("mt")] string? MediaType);

internal sealed record DetailsDto(
    [property: JsonPropertyName("d")] string? OutcomeDescription,
    [property: JsonPropertyName("o")] ObjectDto[] Objects);

internal sealed record ObjectDto(
    [property: JsonPropertyName("t")] int Type,
    [property: JsonPropertyName("r")] int? Role,
    [property: JsonPropertyName("it")] string IdType,
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("nm")] string? Name,
    [property: JsonPropertyName("q")] byte[]? Query,
    [property: JsonPropertyName("dt")] string[][]? Details,
    [property: JsonPropertyName("sc")] SopClassDto[]? SopClasses,
    [property: JsonPropertyName("ac")] string[]? Accessions);

internal sealed record SopClassDto(
    [property: JsonPropertyName("u")] string Uid,
    [property: JsonPropertyName("n")] int NumberOfInstances);

/// <summary>A record kept in the local spill while the trail's database is out of reach (see AuditSpill).</summary>
internal sealed record SpilledRecordDto(
    [property: JsonPropertyName("t")] long TimeMs,
    [property: JsonPropertyName("e")] string EventId,
    [property: JsonPropertyName("et")] string? EventTypes,
    [property: JsonPropertyName("a")] char Action,
    [property: JsonPropertyName("o")] int Outcome,
    [property: JsonPropertyName("p")] string Participants,
    [property: JsonPropertyName("pu")] string? Purpose,
    [property: JsonPropertyName("pr")] string? PatientRef,
    [property: JsonPropertyName("s")] string? SourceId,
    [property: JsonPropertyName("d")] byte[]? Details);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault, MaxDepth = 8)]
[JsonSerializable(typeof(SpilledRecordDto))]
[JsonSerializable(typeof(ParticipantDto[]))]
[JsonSerializable(typeof(DetailsDto))]
internal sealed partial class AuditJsonContext : JsonSerializerContext;

/// <summary>Maps the public model to the stored JSON and back.</summary>
internal static class AuditJson
{
    public const int MaxDetailsBytes = 1 << 20;

    public static string SerializeParticipants(IReadOnlyList<AuditParticipant> participants)
    {
        var dtos = participants.Select(p => new ParticipantDto(
            p.UserId, p.AlternativeUserId, p.UserName, p.IsRequestor,
            p.Kind == AuditParticipantKind.Person ? "p" : "a",
            p.Roles.Count == 0 ? null : p.Roles.Select(r => r.ToToken()).ToArray(),
            p.NetworkAccessPointId, (int?)p.NetworkAccessPointType, p.MediaType?.ToToken())).ToArray();
        return JsonSerializer.Serialize(dtos, AuditJsonContext.Default.ParticipantDtoArray);
    }

    /// <summary>How a participant whose AlternativeUserID is <paramref name="user"/> writes it in the stored participants (to search for it).</summary>
    public static string AlternativeUserMember(string user) => "\"alt\":" + JsonSerializer.Serialize(user, AuditJsonContext.Default.String);

    public static IReadOnlyList<AuditParticipant> ParseParticipants(string json)
    {
        var dtos = JsonSerializer.Deserialize(json, AuditJsonContext.Default.ParticipantDtoArray) ?? [];
        return dtos.Select(d => new AuditParticipant
        {
            UserId = d.UserId,
            AlternativeUserId = d.AlternativeUserId,
            UserName = d.UserName,
            IsRequestor = d.IsRequestor,
            Kind = d.Kind == "a" ? AuditParticipantKind.Application : AuditParticipantKind.Person,
            Roles = d.Roles?.Select(AuditCode.Parse).ToArray() ?? [],
            NetworkAccessPointId = d.NetworkAccessPointId,
            NetworkAccessPointType = (NetworkAccessPointType?)d.NetworkAccessPointType,
            MediaType = d.MediaType is null ? null : AuditCode.Parse(d.MediaType),
        }).ToArray();
    }

    public static byte[] SerializeDetails(AuditDetails details)
    {
        var dto = new DetailsDto(details.OutcomeDescription, details.Objects.Select(o => new ObjectDto(
            (int)o.Type, (int?)o.Role, o.IdType.ToToken(), o.Id, o.Name, o.Query,
            o.Details.Count == 0 ? null : o.Details.Select(kv => new[] { kv.Key, kv.Value }).ToArray(),
            o.SopClasses.Count == 0 ? null : o.SopClasses.Select(s => new SopClassDto(s.Uid, s.NumberOfInstances)).ToArray(),
            o.Accessions.Count == 0 ? null : o.Accessions.ToArray())).ToArray());
        var bytes = JsonSerializer.SerializeToUtf8Bytes(dto, AuditJsonContext.Default.DetailsDto);
        if (bytes.Length > MaxDetailsBytes)
        {
            throw new AuditRecordException(nameof(AuditRecord.Details), $"serialise to {bytes.Length} bytes, more than {MaxDetailsBytes}");
        }

        return bytes;
    }

    public static AuditDetails ParseDetails(ReadOnlySpan<byte> json)
    {
        if (json.Length > MaxDetailsBytes)
        {
            throw new InvalidDataException("Opened audit details are larger than the limit.");
        }

        var dto = JsonSerializer.Deserialize(json, AuditJsonContext.Default.DetailsDto)
                  ?? throw new InvalidDataException("Opened audit details are empty.");
        return new AuditDetails
        {
            OutcomeDescription = dto.OutcomeDescription,
            Objects = (dto.Objects ?? []).Select(o => new AuditObject
            {
                Type = (AuditObjectType)o.Type,
                Role = (AuditObjectRole?)o.Role,
                IdType = AuditCode.Parse(o.IdType),
                Id = o.Id,
                Name = o.Name,
                Query = o.Query,
                Details = o.Details?.Where(d => d.Length == 2).Select(d => new KeyValuePair<string, string>(d[0], d[1])).ToArray() ?? [],
                SopClasses = o.SopClasses?.Select(s => new AuditSopClass(s.Uid, s.NumberOfInstances)).ToArray() ?? [],
                Accessions = o.Accessions ?? [],
            }).ToArray(),
        };
    }
}
