using System.Text.Json;
using System.Text.Json.Serialization;

namespace Vigie.Audit.Model;

// Compact, stable property names: participants are hashed as stored, details are sealed.
internal sealed record ParticipantDto(
    [property: JsonPropertyName("id")] string UserId,
    [property: JsonPropertyName("alt")] string? AlternativeUserId,
    [property: JsonPropertyName("name")] string? UserName,
    [property: JsonPropertyName("req")] bool IsRequestor,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("roles")] string[]? Roles,
    [property: JsonPropertyName("nap")] string? NetworkAccessPointId,
    [property: JsonPropertyName("napType")] int? NetworkAccessPointType);

internal sealed record DetailsDto(
    [property: JsonPropertyName("outcome")] string? OutcomeDescription,
    [property: JsonPropertyName("objects")] ObjectDto[] Objects);

internal sealed record ObjectDto(
    [property: JsonPropertyName("type")] int Type,
    [property: JsonPropertyName("role")] int? Role,
    [property: JsonPropertyName("idType")] string IdType,
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("query")] byte[]? Query,
    [property: JsonPropertyName("details")] string[][]? Details,
    [property: JsonPropertyName("sopClasses")] SopClassDto[]? SopClasses,
    [property: JsonPropertyName("accessions")] string[]? Accessions);

internal sealed record SopClassDto(
    [property: JsonPropertyName("uid")] string Uid,
    [property: JsonPropertyName("n")] int NumberOfInstances);

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, MaxDepth = 8)]
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
            p.Kind == AuditParticipantKind.Person ? "person" : "application",
            p.Roles.Count == 0 ? null : p.Roles.Select(r => r.ToToken()).ToArray(),
            p.NetworkAccessPointId, (int?)p.NetworkAccessPointType)).ToArray();
        return JsonSerializer.Serialize(dtos, AuditJsonContext.Default.ParticipantDtoArray);
    }

    public static IReadOnlyList<AuditParticipant> ParseParticipants(string json)
    {
        var dtos = JsonSerializer.Deserialize(json, AuditJsonContext.Default.ParticipantDtoArray) ?? [];
        return dtos.Select(d => new AuditParticipant
        {
            UserId = d.UserId,
            AlternativeUserId = d.AlternativeUserId,
            UserName = d.UserName,
            IsRequestor = d.IsRequestor,
            Kind = d.Kind == "application" ? AuditParticipantKind.Application : AuditParticipantKind.Person,
            Roles = d.Roles?.Select(AuditCode.Parse).ToArray() ?? [],
            NetworkAccessPointId = d.NetworkAccessPointId,
            NetworkAccessPointType = (NetworkAccessPointType?)d.NetworkAccessPointType,
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
