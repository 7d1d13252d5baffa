using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vigie.Audit.Signing;

namespace Vigie.Audit.Export;

/// <summary>
/// Reads back the signed tree heads a configured FHIR sink holds, for `vigie audit verify --witness-sink NAME`: the
/// NDJSON file as it stands, or the repository's search for them, page after page. A syslog collector cannot be
/// queried; its stored lines go through a witness file.
/// </summary>
public static class SinkWitness
{
    /// <summary>Pages followed at most: 10,000 of the server's size, well past a year of heads.</summary>
    public const int MaxPages = 10_000;

    public static async Task<IReadOnlyList<SignedTreeHead>> ReadAsync(AuditSinkOptions sink, CancellationToken cancellationToken)
    {
        switch (sink.Kind)
        {
            case AuditSinkKind.FhirNdjson:
                var path = sink.NdjsonPath ?? throw new FormatException($"sink {sink.Name} has no NdjsonPath");
                if (new FileInfo(path).Length > TreeHeadJson.MaxTextLength)
                {
                    throw new FormatException($"{path} is larger than {TreeHeadJson.MaxTextLength} bytes; give a recent part of it with --witness");
                }

                return TreeHeadJson.Parse(await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false));
            case AuditSinkKind.FhirHttp:
                return await SearchAsync(sink, cancellationToken).ConfigureAwait(false);
            case AuditSinkKind.SyslogTcp:
            case AuditSinkKind.SyslogTls:
                throw new FormatException($"sink {sink.Name} is a syslog collector, which cannot be queried: give the VIGIE-STH lines it stored with --witness FILE");
            default:
                throw new FormatException($"sink {sink.Name} has an unknown kind");
        }
    }

    private static async Task<IReadOnlyList<SignedTreeHead>> SearchAsync(AuditSinkOptions sink, CancellationToken cancellationToken)
    {
        var baseUrl = sink.FhirBaseUrl ?? throw new FormatException($"sink {sink.Name} has no FhirBaseUrl");
        using var http = new HttpClient { Timeout = sink.SendTimeout };
        var root = baseUrl.AbsoluteUri.EndsWith('/') ? baseUrl : new Uri(baseUrl.AbsoluteUri + "/");
        Uri? next = new(root, $"AuditEvent?subtype={Uri.EscapeDataString(FhirTreeHead.SubtypeSystem + "|" + FhirTreeHead.SubtypeCode)}&_count=200");
        var heads = new List<SignedTreeHead>();
        for (var page = 1; next is not null; page++)
        {
            if (page > MaxPages)
            {
                throw new FormatException($"sink {sink.Name}: more than {MaxPages} pages of tree heads");
            }

            // Only the repository's own pages are followed, so a crafted link cannot send the token elsewhere.
            if (!string.Equals(next.GetLeftPart(UriPartial.Authority), root.GetLeftPart(UriPartial.Authority), StringComparison.OrdinalIgnoreCase))
            {
                throw new FormatException($"sink {sink.Name}: page {page} links outside {root.GetLeftPart(UriPartial.Authority)}");
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, next);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/fhir+json"));
            if (sink.BearerToken is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", sink.BearerToken);
            }

            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException($"sink {sink.Name}: the FHIR server answered {(int)response.StatusCode} {response.ReasonPhrase} on page {page}.",
                    null, response.StatusCode);
            }

            var json = await ReadBoundedAsync(response.Content, TreeHeadJson.MaxTextLength, cancellationToken).ConfigureAwait(false)
                ?? throw new FormatException($"sink {sink.Name}: page {page} is larger than {TreeHeadJson.MaxTextLength} bytes");
            // Parsed once: the heads it carries and the link to the next page both come from this node.
            JsonObject bundle;
            try
            {
                bundle = JsonNode.Parse(json.Span, documentOptions: TreeHeadJson.Depth) as JsonObject ?? throw new FormatException("not a JSON object");
                TreeHeadJson.Add(heads, bundle, "the page");
            }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                throw new FormatException($"sink {sink.Name}, page {page}: {e.Message}", e);
            }

            next = NextPage(bundle, next);
        }

        return heads;
    }

    /// <summary>The Bundle's link with relation "next", resolved against the page it came from; null on the last page.</summary>
    private static Uri? NextPage(JsonObject bundle, Uri current)
    {
        var link = (bundle["link"] as JsonArray ?? []).OfType<JsonObject>().FirstOrDefault(l => TreeHeadJson.Text(l, "relation") == "next");
        return link is not null && TreeHeadJson.Text(link, "url") is { } url && Uri.TryCreate(current, url, out var resolved) ? resolved : null;
    }

    /// <summary>A FHIR server's answer, whole, or null past <paramref name="limit"/> bytes (declared or read): never trusted to be small.</summary>
    internal static async Task<ReadOnlyMemory<byte>?> ReadBoundedAsync(HttpContent content, int limit, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength > limit)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }
}
