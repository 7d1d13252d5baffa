using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vigie.Audit.Signing;

/// <summary>
/// The one portable form of a signed tree head, as the API serves it, `vigie audit head` prints it and the syslog
/// export sends it. A head kept outside the database (a SIEM, a printed report, another node) is what reveals a log
/// rolled back as a whole; <see cref="Parse"/> reads such copies back for `vigie audit verify --witness`.
/// </summary>
public static class TreeHeadJson
{
    /// <summary>Largest witness text read: a year of heads every 10 s fits comfortably.</summary>
    public const int MaxTextLength = 64 * 1024 * 1024;

    /// <summary>Most heads read from one text.</summary>
    public const int MaxHeads = 1_000_000;

    public static JsonObject ToNode(SignedTreeHead head) => new()
    {
        ["treeSize"] = head.TreeSize,
        ["timestamp"] = head.Timestamp.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        ["rootHash"] = Convert.ToHexStringLower(head.RootHash),
        ["keyId"] = head.KeyId,
        ["publicKey"] = Convert.ToBase64String(head.PublicKey),
        ["signature"] = Convert.ToBase64String(head.Signature),
    };

    // Base64's '+' and '/' written as they are: the line is copied by people and grepped in collectors, never put in HTML.
    private static readonly JsonSerializerOptions Plain = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>One line of JSON.</summary>
    public static string Write(SignedTreeHead head) => ToNode(head).ToJsonString(Plain);

    /// <summary>
    /// Reads heads from a JSON object, a JSON array of them, or lines that each carry one object (JSON Lines, or
    /// syslog lines as a collector stores them: the object is taken from the line's first '{' to its last '}').
    /// Lines without '{' are skipped. FHIR copies read too: the AuditEvents that carry a head, alone, one per line
    /// (the NDJSON export, other AuditEvents skipped) or in a Bundle (a FHIR server's search result). Throws
    /// <see cref="FormatException"/> naming the line of a malformed head.
    /// </summary>
    public static IReadOnlyList<SignedTreeHead> Parse(string text)
    {
        if (text.Length > MaxTextLength)
        {
            throw new FormatException($"more than {MaxTextLength} characters of tree heads");
        }

        var trimmed = text.AsSpan().Trim();
        if (trimmed.Length > 0 && (trimmed[0] == '[' || trimmed[0] == '{'))
        {
            JsonNode? whole = null;
            try
            {
                whole = JsonNode.Parse(text, documentOptions: Depth);
            }
            catch (JsonException)
            {
                // Not one JSON value: one object per line.
            }

            switch (whole)
            {
                case JsonObject single:
                    var found = new List<SignedTreeHead>();
                    Add(found, single, "the head");
                    return found;
                case JsonArray array when array.Count > MaxHeads:
                    throw new FormatException($"more than {MaxHeads} tree heads");
                case JsonArray array:
                    var items = new List<SignedTreeHead>();
                    for (var i = 0; i < array.Count; i++)
                    {
                        Add(items, array[i] as JsonObject ?? throw new FormatException($"item {i + 1} is not an object"), $"item {i + 1}");
                    }

                    return items;
                default:
                    break;
            }
        }

        var heads = new List<SignedTreeHead>();
        var number = 0;
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            number++;
            var open = line.IndexOf('{');
            var close = line.LastIndexOf('}');
            if (open < 0)
            {
                continue;
            }

            if (close < open || heads.Count == MaxHeads)
            {
                throw new FormatException(close < open ? $"line {number}: '{{' without a closing '}}'" : $"more than {MaxHeads} tree heads");
            }

            JsonObject node;
            try
            {
                node = JsonNode.Parse(line[open..(close + 1)].ToString(), documentOptions: Depth) as JsonObject
                    ?? throw new FormatException($"line {number}: not a JSON object");
            }
            catch (JsonException e)
            {
                throw new FormatException($"line {number}: {e.Message}", e);
            }

            Add(heads, node, $"line {number}");
        }

        return heads;
    }

    // A FHIR Bundle of AuditEvents nests about ten deep; nothing legitimate goes further.
    internal static readonly JsonDocumentOptions Depth = new() { MaxDepth = 16 };

    /// <summary>Adds the head <paramref name="node"/> is, or the heads a FHIR resource carries (none for other AuditEvents).</summary>
    internal static void Add(List<SignedTreeHead> heads, JsonObject node, string where)
    {
        if (heads.Count >= MaxHeads)
        {
            throw new FormatException($"more than {MaxHeads} tree heads");
        }

        switch (node["resourceType"] is null ? null : Text(node, "resourceType") ?? "")
        {
            case null:
                heads.Add(FromNode(node, where));
                break;
            case "Bundle":
                var entries = node["entry"] as JsonArray ?? [];
                for (var i = 0; i < entries.Count; i++)
                {
                    if ((entries[i] as JsonObject)?["resource"] is JsonObject { } resource && resource["resourceType"] is not null)
                    {
                        Add(heads, resource, $"{where}, bundle entry {i + 1}");
                    }
                }

                break;
            case "AuditEvent" when IsTreeHead(node):
                var detail = (node["entity"] as JsonArray ?? [])
                    .SelectMany(e => (e as JsonObject)?["detail"] as JsonArray ?? [])
                    .OfType<JsonObject>()
                    .FirstOrDefault(d => Text(d, "type") == Export.FhirTreeHead.SubtypeCode);
                var text = detail is null ? null : Text(detail, "valueString");
                JsonObject head;
                try
                {
                    head = JsonNode.Parse(text ?? throw new FormatException("its entity has no signed-tree-head detail"),
                        documentOptions: new JsonDocumentOptions { MaxDepth = 4 }) as JsonObject ?? throw new FormatException("its detail is not a JSON object");
                }
                catch (Exception e) when (e is JsonException or FormatException)
                {
                    throw new FormatException($"{where}: a signed-tree-head AuditEvent, but {e.Message}", e);
                }

                heads.Add(FromNode(head, where));
                break;
            default:
                // Other resources (the exported AuditEvents themselves, a search's OperationOutcome) witness nothing.
                break;
        }
    }

    private static bool IsTreeHead(JsonObject auditEvent) =>
        (auditEvent["subtype"] as JsonArray ?? []).OfType<JsonObject>()
            .Any(c => Text(c, "system") == Export.FhirTreeHead.SubtypeSystem && Text(c, "code") == Export.FhirTreeHead.SubtypeCode);

    /// <summary>A string member, or null whatever else stands there: copies come from outside and may be anything.</summary>
    internal static string? Text(JsonObject node, string name) =>
        node[name] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : null;

    private static SignedTreeHead FromNode(JsonObject node, string where)
    {
        try
        {
            var size = node["treeSize"]?.GetValue<long>() ?? throw Missing("treeSize");
            var timestamp = DateTimeOffset.Parse(node["timestamp"]?.GetValue<string>() ?? throw Missing("timestamp"), CultureInfo.InvariantCulture,
                DateTimeStyles.RoundtripKind);
            var root = Convert.FromHexString(node["rootHash"]?.GetValue<string>() ?? throw Missing("rootHash"));
            var keyId = node["keyId"]?.GetValue<string>() ?? throw Missing("keyId");
            var publicKey = Convert.FromBase64String(node["publicKey"]?.GetValue<string>() ?? throw Missing("publicKey"));
            var signature = Convert.FromBase64String(node["signature"]?.GetValue<string>() ?? throw Missing("signature"));
            if (size <= 0 || root.Length != 32 || publicKey.Length != 32 || signature.Length != 64 || keyId.Length is 0 or > 64)
            {
                throw new FormatException("treeSize must be positive, rootHash 32 bytes, publicKey 32 bytes, signature 64 bytes");
            }

            return new SignedTreeHead(size, timestamp, root, keyId, publicKey, signature);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or JsonException)
        {
            throw new FormatException($"{where}: not a signed tree head ({e.Message})", e);
        }
    }

    private static FormatException Missing(string name) => new($"'{name}' is missing");
}
