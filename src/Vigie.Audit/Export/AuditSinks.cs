using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Core;
using Vigie.Core.IO;

namespace Vigie.Audit.Export;

/// <summary>
/// A collector refused what it was sent because of what it is, not because of the moment: sending it again unchanged
/// would meet the same answer. The worker isolates the refused entries and sets them aside instead of stalling.
/// </summary>
internal sealed class AuditSinkRefusedException(string message, HttpStatusCode status) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;
}

/// <summary>
/// One export destination. A batch either goes through whole or throws: <see cref="AuditSinkRefusedException"/> when
/// the collector refuses its content, anything else for the worker to retry with back-off.
/// </summary>
internal interface IAuditSink : IAsyncDisposable
{
    ValueTask SendAsync(IReadOnlyList<AuditEntry> entries, CancellationToken cancellationToken);

    /// <summary>
    /// Sends a copy of a newly signed tree head: a VIGIE-STH message to a syslog collector, an AuditEvent
    /// (<see cref="FhirTreeHead"/>) to a FHIR repository or file.
    /// </summary>
    ValueTask SendTreeHeadAsync(SignedTreeHead head, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>Whether <see cref="SendTreeHeadAsync"/> sends anything.</summary>
    bool WitnessesTreeHeads => false;
}

/// <summary>
/// RFC 5424 syslog with an ATNA XML body over TCP (RFC 6587 octet counting) or TLS (RFC 5425). The connection is
/// kept open between batches and reopened after any failure, or when the collector closed it. Syslog has no
/// application acknowledgement: a batch is counted as sent once the collector's TCP stack has acknowledged every byte
/// of it and the connection is still open a moment later (a collector that closed meanwhile, or refused the TLS session
/// after the handshake, gets it again, so it may receive entries twice; sequence numbers tell).
/// </summary>
internal sealed class SyslogSink(AuditSinkOptions options, string? enterpriseSiteId) : IAuditSink
{
    private readonly string _hostName = options.HostName ?? Environment.MachineName;
    private TcpClient? _client;
    private Stream? _stream;

    // Reads what the collector sends, which is nothing until it closes: an end of stream, a reset or a TLS alert (a
    // client certificate it refused) ends it, with the reason kept for the error.
    private Task<string>? _closed;
    private bool _fresh;

    // How long the last connection and handshake took.
    private TimeSpan _handshake;

    public bool WitnessesTreeHeads => true;

    public ValueTask SendAsync(IReadOnlyList<AuditEntry> entries, CancellationToken cancellationToken) =>
        WriteAsync(entries.Select(FrameWithinLimit), cancellationToken);

    public ValueTask SendTreeHeadAsync(SignedTreeHead head, CancellationToken cancellationToken) =>
        WriteAsync([SyslogMessage.Frame(head.Timestamp, _hostName, options.AppName, Encoding.UTF8.GetBytes(TreeHeadJson.Write(head)), SyslogMessage.TreeHeadMessageId)],
            cancellationToken);

    private async ValueTask WriteAsync(IEnumerable<byte[]> frames, CancellationToken cancellationToken)
    {
        try
        {
            // Writes to a connection the collector has closed still succeed (into the socket's buffer): a batch sent
            // on it was counted as delivered, and lost.
            if (_stream is not null && PeerClosed())
            {
                await CloseAsync().ConfigureAwait(false);
            }

            var stream = _stream ?? await ConnectAsync(cancellationToken).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(options.SendTimeout);
            try
            {
                foreach (var frame in frames)
                {
                    await stream.WriteAsync(frame, timeout.Token).ConfigureAwait(false);
                }

                await stream.FlushAsync(timeout.Token).ConfigureAwait(false);
                // Written is not received: a collector that stopped reading leaves the batch in this socket's buffer,
                // which was counted as sent and lost when the connection was given up.
                await SendQueue.WaitUntilAcknowledgedAsync(_client!.Client, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"{options.Host}:{options.Port} did not take a batch within {options.SendTimeout}: the collector does not read; it will be sent again");
            }

            // A collector that closes while the batch goes out, or refuses the TLS session once the handshake is done
            // (a client certificate it does not trust), did not take it. Its close, reset or alert comes back within
            // a round trip, a little longer on a new TLS session: the batch is then sent again.
            // Not cancelled by a stop: the batch is in the collector's hands by now, and one counted as failed is sent
            // again by the stop's final round (every stop sent its Application Stop twice, before 2026-12-06).
            // On a busy machine the refusal takes as long as the handshake did, or longer: the wait follows it (a fixed 100 ms
            // missed refusals under load, and a batch counted as sent was lost).
            var wait = _fresh ? TimeSpan.FromTicks(Math.Clamp(_handshake.Ticks * 3, FreshCloseCheckDelay.Ticks, MaxCloseCheckDelay.Ticks)) : CloseCheckDelay;
            await Task.Delay(wait, CancellationToken.None).ConfigureAwait(false);
            if (PeerClosed())
            {
                var reason = _closed is { IsCompleted: true } closed ? await closed.ConfigureAwait(false) : "closed";
                throw new IOException($"{options.Host}:{options.Port} ended the connection while a batch was being sent ({reason}); it will be sent again");
            }

            _fresh = false;
        }
        catch
        {
            await CloseAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Reads and drops anything the collector sends until it ends the connection, and says how it ended.</summary>
    private static async Task<string> WatchAsync(Stream stream)
    {
        var buffer = new byte[512];
        try
        {
            while (await stream.ReadAsync(buffer).ConfigureAwait(false) > 0)
            {
            }

            return "closed by the collector";
        }
        catch (Exception e) when (e is IOException or AuthenticationException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            return ExceptionCauses.Describe(e);
        }
    }

    /// <summary>
    /// An oversized message would block the sink for ever (it can never be sent), so it is sent without its
    /// object queries and details, then without its objects, saying so in EventOutcomeDescription.
    /// </summary>
    private byte[] FrameWithinLimit(AuditEntry entry)
    {
        var frame = SyslogMessage.Frame(entry.Time, _hostName, options.AppName, AtnaMessage.Write(entry, enterpriseSiteId));
        if (frame.Length <= options.MaxMessageBytes || entry.Details is null)
        {
            return frame;
        }

        var note = $"[Vigie: message reduced from {frame.Length} bytes to fit the collector limit]";
        var slim = entry with
        {
            Details = entry.Details with
            {
                OutcomeDescription = note,
                Objects = entry.Details.Objects.Select(o => o with { Query = null, Details = [], SopClasses = o.SopClasses.Take(16).ToArray(), Accessions = o.Accessions.Take(16).ToArray() }).ToArray(),
            },
        };
        frame = SyslogMessage.Frame(entry.Time, _hostName, options.AppName, AtnaMessage.Write(slim, enterpriseSiteId));
        if (frame.Length <= options.MaxMessageBytes)
        {
            return frame;
        }

        return SyslogMessage.Frame(entry.Time, _hostName, options.AppName,
            AtnaMessage.Write(slim with { Details = new AuditDetails { OutcomeDescription = note } }, enterpriseSiteId));
    }

    private static readonly TimeSpan CloseCheckDelay = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan FreshCloseCheckDelay = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan MaxCloseCheckDelay = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The collector closed, reset or refused the connection. Collectors send nothing (RFC 6587, RFC 5425) but TLS
    /// records (session tickets, alerts), which the watcher reads: it ends only with the connection.
    /// </summary>
    private bool PeerClosed() => _client is null || _closed is not { IsCompleted: false };

    private async ValueTask<Stream> ConnectAsync(CancellationToken cancellationToken)
    {
        var host = options.Host ?? throw new InvalidOperationException($"Audit sink {options.Name}: Host is not set.");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        var client = new TcpClient { NoDelay = true };
        var connected = false;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await client.ConnectAsync(host, options.Port, timeout.Token).ConfigureAwait(false);
            connected = true;
            Stream stream = client.GetStream();
            if (options.Kind == AuditSinkKind.SyslogTls)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                var authentication = new SslClientAuthenticationOptions
                {
                    TargetHost = options.ServerName ?? host,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                };
                if (options.TrustedCaPath is not null)
                {
                    var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
                    policy.CustomTrustStore.ImportFromPemFile(options.TrustedCaPath);
                    authentication.CertificateChainPolicy = policy;
                }

                if (options.ClientCertificatePath is not null)
                {
                    var certificate = X509Certificate2.CreateFromPemFile(options.ClientCertificatePath, options.ClientKeyPath);
                    authentication.ClientCertificates = [certificate];
                }

                await ssl.AuthenticateAsClientAsync(authentication, timeout.Token).ConfigureAwait(false);
                stream = ssl;
            }

            _client = client;
            _stream = stream;
            _closed = WatchAsync(stream);
            _fresh = true;
            _handshake = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            return stream;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Named, so the operators read "did not accept the connection" in /health rather than "operation canceled".
            client.Dispose();
            throw new TimeoutException(connected
                ? $"{host}:{options.Port} did not finish the TLS handshake within {options.ConnectTimeout}"
                : $"{host}:{options.Port} did not accept the connection within {options.ConnectTimeout}");
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private async ValueTask CloseAsync()
    {
        if (_stream is not null)
        {
            try
            {
                await _stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (IOException)
            {
            }
        }

        _client?.Dispose();
        if (_closed is not null)
        {
            await _closed.ConfigureAwait(false);
        }

        _stream = null;
        _client = null;
        _closed = null;
    }

    public ValueTask DisposeAsync() => CloseAsync();
}

/// <summary>
/// Posts AuditEvent resources to a FHIR server in transaction bundles of PUTs keyed by the entry's stable id,
/// so a batch re-sent after a failure updates rather than duplicates. Each newly signed tree head is PUT as an
/// AuditEvent of its own.
/// </summary>
internal sealed class FhirHttpSink(AuditSinkOptions options, string? enterpriseSiteId, HttpClient? http = null, string? sourceId = null) : IAuditSink
{
    private readonly HttpClient _http = http ?? new HttpClient { Timeout = options.SendTimeout };

    public bool WitnessesTreeHeads => true;

    public async ValueTask SendTreeHeadAsync(SignedTreeHead head, CancellationToken cancellationToken)
    {
        var id = FhirTreeHead.ResourceId(head);
        using var request = new HttpRequestMessage(HttpMethod.Put, new Uri(AppendSlash(BaseUrl), "AuditEvent/" + id));
        request.Content = new ByteArrayContent(FhirTreeHead.Write(head, sourceId ?? Environment.MachineName, enterpriseSiteId));
        await SendAsync(request, null, cancellationToken).ConfigureAwait(false);
    }

    private Uri BaseUrl => options.FhirBaseUrl ?? throw new InvalidOperationException($"Audit sink {options.Name}: FhirBaseUrl is not set.");

    public async ValueTask SendAsync(IReadOnlyList<AuditEntry> entries, CancellationToken cancellationToken)
    {
        var baseUrl = BaseUrl;
        using var body = new MemoryStream();
        await using (var json = new Utf8JsonWriter(body))
        {
            json.WriteStartObject();
            json.WriteString("resourceType", "Bundle");
            json.WriteString("type", "transaction");
            json.WriteStartArray("entry");
            foreach (var entry in entries)
            {
                var id = FhirAuditEvent.ResourceId(entry);
                json.WriteStartObject();
                json.WriteString("fullUrl", new Uri(AppendSlash(baseUrl), "AuditEvent/" + id).ToString());
                json.WritePropertyName("resource");
                FhirAuditEvent.Write(json, entry, enterpriseSiteId);
                json.WriteStartObject("request");
                json.WriteString("method", "PUT");
                json.WriteString("url", "AuditEvent/" + id);
                json.WriteEndObject();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, baseUrl);
        request.Content = new ByteArrayContent(body.ToArray());
        await SendAsync(request, entries.Count, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Largest transaction-response read: one entry per AuditEvent, with the resource when the server returns it.</summary>
    private const int MaxResponseBytes = 64 << 20;

    /// <summary>
    /// Sends one request. A transaction counts as delivered only when a transaction-response Bundle comes back with a
    /// success for each AuditEvent: a proxy's login page answered 200 too, and its batch was counted as delivered.
    /// </summary>
    private async ValueTask SendAsync(HttpRequestMessage request, int? transactionEntries, CancellationToken cancellationToken)
    {
        request.Content!.Headers.ContentType = new MediaTypeHeaderValue("application/fhir+json");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/fhir+json"));
        if (options.BearerToken is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.BearerToken);
        }

        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            // The status only: a FHIR server's OperationOutcome may echo resource content.
            var message = $"The FHIR server answered {(int)response.StatusCode} {response.ReasonPhrase}.";
            throw IsRefusal(response.StatusCode)
                ? new AuditSinkRefusedException(message, response.StatusCode)
                : new HttpRequestException(message, null, response.StatusCode);
        }

        var mediaType = response.Content.Headers.ContentType?.MediaType;
        string? problem;
        if (mediaType is not null && !IsJson(mediaType))
        {
            problem = $"with {mediaType}, not FHIR (a proxy's page?)";
        }
        else if (transactionEntries is not { } count)
        {
            return;
        }
        else
        {
            var body = await SinkWitness.ReadBoundedAsync(response.Content, MaxResponseBytes, cancellationToken).ConfigureAwait(false);
            problem = body is { } read ? TransactionProblem(read, count) : $"with a body over {MaxResponseBytes >> 20} MiB";
        }

        if (problem is not null)
        {
            throw new HttpRequestException($"The FHIR server answered {(int)response.StatusCode} {problem}; it will be sent again.", null, response.StatusCode);
        }
    }

    private static bool IsJson(string mediaType) =>
        mediaType.Equals("application/fhir+json", StringComparison.OrdinalIgnoreCase) || mediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
        || mediaType.Equals("application/json+fhir", StringComparison.OrdinalIgnoreCase);

    /// <summary>Why a transaction's answer does not show every AuditEvent stored, or null when it does. Names statuses only, never content.</summary>
    internal static string? TransactionProblem(ReadOnlyMemory<byte> body, int count)
    {
        try
        {
            using var document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 64 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || Text(root, "resourceType") != "Bundle")
            {
                return "with a body that is not a FHIR Bundle";
            }

            if (Text(root, "type") is var type && type != "transaction-response")
            {
                return $"with a Bundle of type '{type}', not a transaction-response";
            }

            if (!root.TryGetProperty("entry", out var entries) || entries.ValueKind != JsonValueKind.Array || entries.GetArrayLength() != count)
            {
                return $"with {(entries.ValueKind == JsonValueKind.Array ? entries.GetArrayLength() : 0)} results for {count} AuditEvents";
            }

            foreach (var entry in entries.EnumerateArray())
            {
                var status = entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object
                    ? Text(response, "status")
                    : null;
                if (status is null || !status.StartsWith('2'))
                {
                    return $"with an AuditEvent answered '{status ?? "without a status"}'";
                }
            }

            return null;
        }
        catch (JsonException)
        {
            return "with a body that is not JSON";
        }

        static string? Text(JsonElement element, string name) =>
            element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
    }

    /// <summary>
    /// Statuses about the content itself, which the same request would meet again: invalid or unprocessable (a
    /// profile's validation), conflicting, or too large. Authentication, a wrong address, throttling and server errors
    /// are the site's to fix, so those are retried.
    /// </summary>
    internal static bool IsRefusal(HttpStatusCode status) => status is HttpStatusCode.BadRequest or HttpStatusCode.Conflict
        or HttpStatusCode.PreconditionFailed or HttpStatusCode.RequestEntityTooLarge or HttpStatusCode.UnprocessableEntity;

    private static Uri AppendSlash(Uri uri) => uri.AbsoluteUri.EndsWith('/') ? uri : new Uri(uri.AbsoluteUri + "/");

    public ValueTask DisposeAsync()
    {
        if (http is null)
        {
            _http.Dispose();
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Appends AuditEvent resources to an NDJSON file, one per line, flushed to disk before the cursor moves; newly
/// signed tree heads go in the same file, as AuditEvents of their own.
/// </summary>
internal sealed class FhirNdjsonSink(AuditSinkOptions options, string? enterpriseSiteId, string? sourceId = null) : IAuditSink
{
    public bool WitnessesTreeHeads => true;

    public ValueTask SendAsync(IReadOnlyList<AuditEntry> entries, CancellationToken cancellationToken) =>
        AppendAsync(entries.Select(e => FhirAuditEvent.Write(e, enterpriseSiteId)), cancellationToken);

    public ValueTask SendTreeHeadAsync(SignedTreeHead head, CancellationToken cancellationToken) =>
        AppendAsync([FhirTreeHead.Write(head, sourceId ?? Environment.MachineName, enterpriseSiteId)], cancellationToken);

    private async ValueTask AppendAsync(IEnumerable<byte[]> lines, CancellationToken cancellationToken)
    {
        var path = options.NdjsonPath ?? throw new InvalidOperationException($"Audit sink {options.Name}: NdjsonPath is not set.");
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var streamOptions = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            streamOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        FileStream file;
        try
        {
            file = new FileStream(path, streamOptions);
        }
        catch (UnauthorizedAccessException) when (PrivateFile.Exposure(path) is { } exposure)
        {
            // Another account's file in a sticky folder (fs.protected_regular): said as what it is, not "access denied".
            throw new AuditExportFileExposedException(AuditExportFile.Refusal(path, exposure));
        }

        await using var _ = file;
        // The export holds identities in clear: a file others can read, or another account owns, gets nothing (it got
        // every entry appended, whatever its mode and owner, before 2026-12-07). Checked on the handle, at each batch,
        // since the file may be replaced while the node runs.
        if (PrivateFile.Exposure(file.SafeFileHandle) is { } exposed)
        {
            throw new AuditExportFileExposedException(AuditExportFile.Refusal(path, exposed));
        }

        foreach (var line in lines)
        {
            await file.WriteAsync(line, cancellationToken).ConfigureAwait(false);
            file.WriteByte((byte)'\n');
        }

        await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        file.Flush(flushToDisk: true);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>The NDJSON export file is not the service account's alone: nothing is written to it until it is.</summary>
internal sealed class AuditExportFileExposedException(string message) : IOException(message);

/// <summary>The NDJSON audit export file, which holds patient identities in clear, like the key files may only be the service account's.</summary>
public static class AuditExportFile
{
    /// <summary>Why Vigie refuses to write to the existing file at <paramref name="path"/>, or null (also when there is none).</summary>
    public static string? Refusal(string path) => PrivateFile.Exposure(path) is { } exposure ? Refusal(path, exposure) : null;

    internal static string Refusal(string path, FileExposure exposure) =>
        $"the NDJSON audit export {path} holds patient data in clear but is {exposure.Describe()}: Vigie writes nothing to it until {exposure.Fix(path)}";
}
