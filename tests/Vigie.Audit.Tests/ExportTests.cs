// Assertions walk FHIR models whose properties are all nullable; a null there fails the test anyway.
#pragma warning disable CS8602, CS8604
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Xml.Linq;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Vigie.Audit.Export;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Testing;
using Task = System.Threading.Tasks.Task;

namespace Vigie.Audit.Tests;

/// <summary>A syslog collector on 127.0.0.1 reading RFC 6587 octet-counted frames, in clear or over TLS.</summary>
internal sealed class SyslogCollector : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly X509Certificate2? _certificate;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accept;

    private readonly int? _closeFirstAfter;
    private readonly bool _refuseClients;

    /// <param name="closeFirstAfter">Closes the first connection after reading this many messages (a collector restarted).</param>
    /// <param name="refuseClients">Over TLS, asks for a client certificate and refuses any: the refusal comes after the client's handshake is done (TLS 1.3).</param>
    public SyslogCollector(X509Certificate2? certificate = null, int port = 0, int? closeFirstAfter = null, bool refuseClients = false)
    {
        _certificate = certificate;
        _closeFirstAfter = closeFirstAfter;
        _refuseClients = refuseClients;
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accept = Task.Run(AcceptAsync);
    }

    public int Port { get; }

    public List<byte[]> Messages { get; } = [];

    public int Connections { get; private set; }

    /// <summary>Completes once the first connection was closed by this side (with <c>closeFirstAfter</c>).</summary>
    public TaskCompletionSource FirstClosed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private async Task AcceptAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                Connections++;
                var limit = Connections == 1 ? _closeFirstAfter : null;
                _ = Task.Run(() => ReadAsync(client, limit));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ReadAsync(TcpClient client, int? limit)
    {
        using (client)
        {
            var read = 0;
            try
            {
                Stream stream = client.GetStream();
                if (_certificate is not null)
                {
                    var ssl = new SslStream(stream);
                    await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                    {
                        ServerCertificate = _certificate,
                        ClientCertificateRequired = _refuseClients,
                        RemoteCertificateValidationCallback = _refuseClients ? (_, _, _, _) => false : null,
                    }, _stop.Token);
                    stream = ssl;
                }

                while (read++ != limit)
                {
                    var length = 0;
                    int b;
                    while ((b = stream.ReadByte()) is >= '0' and <= '9')
                    {
                        length = checked(length * 10 + (b - '0'));
                        if (length > 1 << 20)
                        {
                            return;
                        }
                    }

                    if (b != ' ')
                    {
                        return;
                    }

                    var message = new byte[length];
                    await stream.ReadExactlyAsync(message, _stop.Token);
                    lock (Messages)
                    {
                        Messages.Add(message);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or EndOfStreamException or ObjectDisposedException
                                           or System.Security.Authentication.AuthenticationException)
            {
            }
        }

        if (limit is not null)
        {
            FirstClosed.TrySetResult();
        }
    }

    public async Task<List<byte[]>> WaitForAsync(int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < deadline)
        {
            lock (Messages)
            {
                if (Messages.Count >= count)
                {
                    return [.. Messages];
                }
            }

            await Task.Delay(20);
        }

        lock (Messages)
        {
            return [.. Messages];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accept;
        _stop.Dispose();
    }
}

public sealed class ExportTests
{
    /// <summary>
    /// Ten entries exported, a head signed, two idle rounds (the head goes out once), five more entries and a second head:
    /// 15 entries and 2 heads for the sink.
    /// </summary>
    private static async Task<(SignedTreeHead First, SignedTreeHead Second)> ExportWhileSigningTwiceAsync(AuditHarness h, AuditExportWorker worker,
        CancellationToken ct)
    {
        await h.AppendAsync(Samples.Records(0, 10));
        Assert.Equal(10, await worker.RunOnceAsync(ct));
        var first = (await h.Log.SignTreeHeadAsync(ct))!;
        Assert.Equal(0, await worker.RunOnceAsync(ct));
        Assert.Equal(0, await worker.RunOnceAsync(ct));
        await h.AppendAsync(Samples.Records(10, 5));
        var second = (await h.Log.SignTreeHeadAsync(ct))!;
        Assert.Equal(5, await worker.RunOnceAsync(ct));
        return (first, second);
    }

    /// <summary>The collector's certificate as the PEM file a sink's TrustedCaPath names.</summary>
    private static async Task<string> TrustFileAsync(TempDirectory dir, X509Certificate2 certificate, CancellationToken ct)
    {
        var path = dir.Combine("collector.pem");
        await File.WriteAllTextAsync(path, certificate.ExportCertificatePem(), ct);
        return path;
    }

    /// <summary>A FHIR server's answer to a transaction: a transaction-response Bundle with a success for each entry.</summary>
    internal static async Task AnswerTransactionAsync(HttpListenerContext context, string transaction, CancellationToken ct)
    {
        var count = System.Text.Json.JsonDocument.Parse(transaction).RootElement.GetProperty("entry").GetArrayLength();
        var answer = Encoding.UTF8.GetBytes(TransactionResponse(count));
        context.Response.ContentType = "application/fhir+json";
        context.Response.ContentLength64 = answer.Length;
        await context.Response.OutputStream.WriteAsync(answer, ct);
    }

    internal static string TransactionResponse(int count, string status = "200 OK") =>
        "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\",\"entry\":["
        + string.Join(',', Enumerable.Repeat($"{{\"response\":{{\"status\":\"{status}\"}}}}", count)) + "]}";

    /// <summary>
    /// Regression: the FHIR sink counted any 200 as delivered. A proxy answering its login page (200, text/html) took
    /// every batch, /health said Healthy with 0 entries waiting, and the events never reached the repository.
    /// </summary>
    [Theory]
    [InlineData("text/html", "<html>Proxy login required</html>", "with text/html, not FHIR")]
    [InlineData("application/fhir+json", "garbage", "with a body that is not JSON")]
    [InlineData("application/fhir+json", "{\"resourceType\":\"OperationOutcome\"}", "with a body that is not a FHIR Bundle")]
    [InlineData("application/fhir+json", "{\"resourceType\":\"Bundle\",\"type\":\"batch-response\",\"entry\":[]}", "not a transaction-response")]
    [InlineData("application/fhir+json", "{\"resourceType\":\"Bundle\",\"type\":\"transaction-response\",\"entry\":[]}", "with 0 results for 4 AuditEvents")]
    [InlineData("application/fhir+json", "FAILED-ENTRY", "with an AuditEvent answered '404 Not Found'")]
    public async Task Regression_a_200_that_was_not_a_transaction_response_counted_as_delivered(string contentType, string answer, string problem)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 4));
        var (listener, port) = FhirServer();
        using var _ = listener;
        var server = Task.Run(async () =>
        {
            for (var i = 0; i < 2; i++)
            {
                var context = await listener.GetContextAsync();
                using var reader = new StreamReader(context.Request.InputStream);
                var transaction = await reader.ReadToEndAsync(ct);
                context.Response.StatusCode = 200;
                if (i == 0)
                {
                    var body = Encoding.UTF8.GetBytes(answer == "FAILED-ENTRY" ? TransactionResponse(4, "404 Not Found") : answer);
                    context.Response.ContentType = contentType;
                    await context.Response.OutputStream.WriteAsync(body, ct);
                }
                else
                {
                    await AnswerTransactionAsync(context, transaction, ct);
                }

                context.Response.Close();
            }
        }, ct);

        var options = new AuditSinkOptions { Name = "fhir-http", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri($"http://127.0.0.1:{port}/fhir/") };
        await using var sink = new FhirHttpSink(options, "SITE-1");
        var worker = h.ExportWorker(options, sink);
        var error = await Assert.ThrowsAsync<HttpRequestException>(async () => await worker.RunOnceAsync(ct));
        Assert.Contains(problem, error.Message, StringComparison.Ordinal);
        Assert.Equal(4, await worker.RunOnceAsync(ct));
        await server;
    }

    /// <summary>A FHIR server stand-in on a free loopback port, answering under /fhir/.</summary>
    internal static (HttpListener Listener, int Port) FhirServer()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var listener = new HttpListener();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/fhir/");
        listener.Start();
        return (listener, port);
    }

    private static (string Header, XDocument Xml) ParseSyslog(byte[] message)
    {
        var text = Encoding.UTF8.GetString(message);
        var bom = text.IndexOf('\uFEFF', StringComparison.Ordinal);
        Assert.True(bom > 0, "the MSG part starts with a BOM");
        return (text[..bom], XDocument.Parse(text[(bom + 1)..]));
    }

    private static void AssertAtnaShape(XDocument xml, long expectedSeqPatient)
    {
        var root = xml.Root!;
        Assert.Equal("AuditMessage", root.Name.LocalName);
        Assert.Equal(["EventIdentification", "ActiveParticipant", "ActiveParticipant", "AuditSourceIdentification", "ParticipantObjectIdentification", "ParticipantObjectIdentification"],
            root.Elements().Select(e => e.Name.LocalName));
        var ev = root.Element("EventIdentification")!;
        Assert.NotNull(ev.Attribute("EventActionCode"));
        Assert.NotNull(ev.Attribute("EventDateTime"));
        Assert.Equal("0", ev.Attribute("EventOutcomeIndicator")?.Value);
        Assert.Equal("DCM", ev.Element("EventID")?.Attribute("codeSystemName")?.Value);
        Assert.StartsWith("1101", ev.Element("EventID")?.Attribute("csd-code")?.Value, StringComparison.Ordinal);
        var requestor = root.Elements("ActiveParticipant").First();
        Assert.Equal("true", requestor.Attribute("UserIsRequestor")?.Value);
        Assert.Equal("2", requestor.Attribute("NetworkAccessPointTypeCode")?.Value);
        Assert.Equal("VIGIE-TEST", root.Element("AuditSourceIdentification")?.Attribute("AuditSourceID")?.Value);
        Assert.Equal("SITE-1", root.Element("AuditSourceIdentification")?.Attribute("AuditEnterpriseSiteID")?.Value);
        var patient = root.Elements("ParticipantObjectIdentification").First();
        Assert.Equal("1", patient.Attribute("ParticipantObjectTypeCode")?.Value);
        Assert.Equal("1", patient.Attribute("ParticipantObjectTypeCodeRole")?.Value);
        Assert.Equal(Samples.PatientId + "-" + (expectedSeqPatient % 7), patient.Attribute("ParticipantObjectID")?.Value);
        Assert.Equal(Samples.PatientName, patient.Element("ParticipantObjectName")?.Value);
        Assert.Equal("2", patient.Element("ParticipantObjectIDTypeCode")?.Attribute("csd-code")?.Value);
        var study = root.Elements("ParticipantObjectIdentification").Last().Element("ParticipantObjectDescription");
        Assert.NotNull(study?.Element("Accession"));
        Assert.NotNull(study?.Element("SOPClass"));
        AssertSchemaOrder(xml);
    }

    /// <summary>
    /// Regression: Accession and SOPClass were written under the object, not in a ParticipantObjectDescription, and
    /// AuditSourceTypeCode was labelled a DCM code; PS3.15 A.5.1's schema refused 205 of 240 exported messages.
    /// </summary>
    private static void AssertSchemaOrder(XDocument xml)
    {
        var source = xml.Root!.Element("AuditSourceIdentification")!.Element("AuditSourceTypeCode")!;
        Assert.Equal("4", source.Attribute("csd-code")?.Value);
        Assert.Null(source.Attribute("codeSystemName"));
        foreach (var o in xml.Root!.Elements("ParticipantObjectIdentification"))
        {
            // ParticipantObjectIDTypeCode, exactly one of Name and Query, ParticipantObjectDetail*, ParticipantObjectDescription*.
            var names = string.Join(' ', o.Elements().Select(e => e.Name.LocalName));
            Assert.Matches(@"^ParticipantObjectIDTypeCode (ParticipantObjectName|ParticipantObjectQuery)( ParticipantObjectDetail)*( ParticipantObjectDescription)*$", names);
            foreach (var description in o.Elements("ParticipantObjectDescription"))
            {
                Assert.Matches(@"^(MPPS ?)*(Accession ?)*(SOPClass ?)*$", string.Join(' ', description.Elements().Select(e => e.Name.LocalName)));
            }
        }
    }

    [Fact]
    public async Task Syslog_over_tcp_carries_rfc5424_atna_messages_and_resumes_from_its_cursor()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector();
        var options = new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = collector.Port, BatchSize = 4, HostName = "vigie-node" };
        await h.AppendAsync(Samples.Records(0, 10));

        await using (var sink = new SyslogSink(options, "SITE-1"))
        {
            var worker = h.ExportWorker(options, sink);
            Assert.Equal(4, await worker.RunOnceAsync(ct));
            Assert.Equal(4, await worker.RunOnceAsync(ct));
        }

        // The collector reads each connection on its own task: the first connection's messages are all in before the
        // second one starts, or the two could interleave in the list the assertions below read by position.
        Assert.Equal(8, (await collector.WaitForAsync(8)).Count);

        // Restart: a new sink and worker continue after entry 7.
        await using (var sink = new SyslogSink(options, "SITE-1"))
        {
            var worker = h.ExportWorker(options, sink);
            Assert.Equal(2, await worker.RunOnceAsync(ct));
            Assert.Equal(0, await worker.RunOnceAsync(ct));
        }

        var messages = await collector.WaitForAsync(10);
        Assert.Equal(10, messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            var (header, xml) = ParseSyslog(messages[i]);
            Assert.Matches(@"^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z vigie-node vigie \d+ IHE\+RFC-3881 - $", header);
            if (i % 5 is 0 or 2)
            {
                AssertAtnaShape(xml, i);
            }
        }

        var login = ParseSyslog(messages[3]).Xml.Root!;
        Assert.Equal("110122", login.Element("EventIdentification")!.Element("EventTypeCode")?.Attribute("csd-code")?.Value);
        var query = ParseSyslog(messages[1]).Xml.Root!.Elements("ParticipantObjectIdentification").Last();
        Assert.Equal("PatientName=" + Samples.PatientName, Encoding.UTF8.GetString(Convert.FromBase64String(query.Element("ParticipantObjectQuery")!.Value)));
    }

    /// <summary>
    /// Bug: a collector that closed the connection between batches (restarted, or closing idle connections) lost the
    /// next batch: writes to the closed connection succeeded into the socket's buffer, the cursor moved past them, and
    /// `audit sinks` said nothing was waiting.
    /// </summary>
    [Fact]
    public async Task A_batch_sent_after_the_collector_closed_the_connection_is_not_lost()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector(closeFirstAfter: 4);
        var options = new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = collector.Port, BatchSize = 4 };
        // The second batch is one message: written whole into the socket's buffer before any reset could come back.
        await h.AppendAsync(Samples.Records(0, 5));
        await using var sink = new SyslogSink(options, null);
        var worker = h.ExportWorker(options, sink);
        var sent = 0;
        for (var round = 0; round < 10 && sent < 5; round++)
        {
            try
            {
                sent += await worker.RunOnceAsync(ct);
            }
            catch (IOException)
            {
                // The close seen right after a batch: that batch goes again.
            }

            if (sent == 4)
            {
                await collector.FirstClosed.Task.WaitAsync(TimeSpan.FromSeconds(20), ct);
            }
        }

        Assert.Equal(5, sent);
        // Every entry arrived, some perhaps twice (the samples are a second apart: their timestamps tell them apart).
        var received = await collector.WaitForAsync(5);
        Assert.Equal(5, received.Select(m => ParseSyslog(m).Header.Split(' ')[1]).Distinct(StringComparer.Ordinal).Count());
    }

    /// <summary>
    /// A log rolled back as a whole (entries, heads, nodes and state) verifies on its own; only a head kept outside
    /// the database reveals it. Each newly signed head goes to the collector once, and what the collector stored
    /// reads back as witnesses.
    /// </summary>
    [Fact]
    public async Task Syslog_carries_each_newly_signed_tree_head_once_for_the_collector_to_witness()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector();
        var options = new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = collector.Port, HostName = "vigie-node" };
        await using var sink = new SyslogSink(options, "SITE-1");
        var (first, second) = await ExportWhileSigningTwiceAsync(h, h.ExportWorker(options, sink), ct);

        var messages = (await collector.WaitForAsync(17)).Select(m => Encoding.UTF8.GetString(m)).ToList();
        await Task.Delay(200, ct);
        Assert.Equal(17, collector.Messages.Count);
        var heads = messages.Where(m => m.Contains(" VIGIE-STH ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, heads.Count);
        Assert.Matches(@"^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z vigie-node vigie \d+ VIGIE-STH - \uFEFF\{", heads[0]);

        // The collector's file, as a SIEM keeps it: one message per line, ATNA XML and heads mixed.
        var witnessed = TreeHeadJson.Parse(string.Join('\n', messages.Select(m => m.ReplaceLineEndings(" "))));
        Assert.Equal([first.TreeSize, second.TreeSize], witnessed.Select(w => w.TreeSize));
        Assert.Equal(second.RootHash, witnessed[1].RootHash);
        var key = await h.Log.GetPublicKeyAsync(ct);
        Assert.All(witnessed, w => Assert.True(w.VerifySignature(key)));
    }

    [Fact]
    public async Task Syslog_over_tls_reaches_a_collector_with_a_self_signed_certificate()
    {
        var ct = TestContext.Current.CancellationToken;
        using var certificate = LocalCertificates.SelfSigned();
        using var dir = new TempDirectory();
        var caPath = await TrustFileAsync(dir, certificate, ct);
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector(certificate);
        await h.AppendAsync(Samples.Records(0, 5));

        var trusted = new AuditSinkOptions { Name = "tls", Kind = AuditSinkKind.SyslogTls, Host = "127.0.0.1", ServerName = "localhost", Port = collector.Port, TrustedCaPath = caPath };
        await using (var sink = new SyslogSink(trusted, "SITE-1"))
        {
            Assert.Equal(5, await h.ExportWorker(trusted, sink).RunOnceAsync(ct));
        }

        var messages = await collector.WaitForAsync(5);
        Assert.Equal(5, messages.Count);
        AssertAtnaShape(ParseSyslog(messages[0]).Xml, 0);

        // Without the collector's certificate in the trust store the handshake must fail, and the cursor stay put.
        var untrusted = new AuditSinkOptions { Name = "tls-untrusted", Kind = AuditSinkKind.SyslogTls, Host = "127.0.0.1", ServerName = "localhost", Port = collector.Port };
        await using (var sink = new SyslogSink(untrusted, "SITE-1"))
        {
            await Assert.ThrowsAsync<System.Security.Authentication.AuthenticationException>(async () => await h.ExportWorker(untrusted, sink).RunOnceAsync(ct));
        }

        Assert.Equal(0L, (await h.Store.ReadCursorAsync("sink:tls-untrusted", ct))?.NextSeq);
        Assert.Equal(5, messages.Count);
    }

    /// <summary>
    /// Regression: a TLS collector that refused the sink's client certificate (or a balancer that closed right after the
    /// handshake) received nothing, yet every batch was counted as sent: TLS 1.3 ends the client's handshake before
    /// the server checks its certificate, and the alert that followed was taken for data, not for the end.
    /// </summary>
    [Fact]
    public async Task Regression_a_TLS_collector_that_refused_the_session_after_the_handshake_lost_every_batch()
    {
        var ct = TestContext.Current.CancellationToken;
        using var certificate = LocalCertificates.SelfSigned();
        using var dir = new TempDirectory();
        var caPath = await TrustFileAsync(dir, certificate, ct);
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector(certificate, refuseClients: true);
        await h.AppendAsync(Samples.Records(0, 5));
        var options = new AuditSinkOptions { Name = "atna", Kind = AuditSinkKind.SyslogTls, Host = "127.0.0.1", ServerName = "localhost", Port = collector.Port, TrustedCaPath = caPath };
        await using var sink = new SyslogSink(options, "SITE-1");
        var worker = h.ExportWorker(options, sink);

        for (var attempt = 0; attempt < 3; attempt++)
        {
            var error = await Assert.ThrowsAnyAsync<Exception>(async () => await worker.RunOnceAsync(ct));
            Assert.True(error is IOException or System.Security.Authentication.AuthenticationException, error.ToString());
        }

        Assert.Empty(collector.Messages);
        Assert.Equal(0L, (await h.Store.ReadCursorAsync("sink:atna", ct))?.NextSeq ?? 0);
    }

    /// <summary>
    /// Regression: a collector that accepted and stopped reading (a hung SIEM) had each batch written into the sink's
    /// socket buffer and counted as sent; /health said 0 entries waiting, and a restart of the collector lost them all.
    /// </summary>
    [Fact]
    public async Task Regression_a_collector_that_stopped_reading_had_its_batches_counted_as_sent()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 400));
        using var hung = new TcpListener(IPAddress.Loopback, 0);
        // A small receive window, so that the batch does not all fit in the collector's kernel buffer.
        hung.Server.ReceiveBufferSize = 4096;
        hung.Start();
        var accepted = new List<Socket>();
        var accept = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Add(await hung.AcceptSocketAsync(ct));
            }
        }, ct);
        var options = new AuditSinkOptions
        {
            Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = ((IPEndPoint)hung.LocalEndpoint).Port,
            BatchSize = 400, SendTimeout = TimeSpan.FromSeconds(2),
        };
        await using var sink = new SyslogSink(options, null);

        var error = await Assert.ThrowsAsync<TimeoutException>(async () => await h.ExportWorker(options, sink).RunOnceAsync(ct));
        Assert.Contains("the collector does not read", error.Message, StringComparison.Ordinal);
        Assert.Equal(0L, (await h.Store.ReadCursorAsync("sink:siem", ct))?.NextSeq ?? 0);
        foreach (var socket in accepted)
        {
            socket.Dispose();
        }
    }

    /// <summary>
    /// Regression: a collector behind a firewall that drops the connection attempt, or one that accepts and never
    /// answers the TLS handshake, was reported as "The operation was canceled." in the sink's last error (/health).
    /// </summary>
    [Theory]
    [InlineData(AuditSinkKind.SyslogTcp, "did not accept the connection within 00:00:01")]
    [InlineData(AuditSinkKind.SyslogTls, "did not finish the TLS handshake within 00:00:01")]
    public async Task A_collector_that_never_answers_is_named_as_such_in_the_sinks_last_error(AuditSinkKind kind, string reason)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 2));
        using var collector = kind == AuditSinkKind.SyslogTcp ? await UnansweringPeer.DroppingConnectionsAsync() : UnansweringPeer.Silent();
        var options = new AuditSinkOptions
        {
            Name = "silent", Kind = kind, Host = "127.0.0.1", Port = collector.Port, ConnectTimeout = TimeSpan.FromSeconds(1),
            MinBackoff = TimeSpan.FromMinutes(1), MaxBackoff = TimeSpan.FromMinutes(1),
        };
        await using var sink = new SyslogSink(options, null);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);

        var run = h.ExportWorker(options, sink).RunAsync(stop.Token);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await h.Store.ReadCursorStatusAsync("sink:silent", ct))?.Attempts is null or 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100, ct);
        }

        await stop.CancelAsync();
        await run;
        var cursor = await h.Store.ReadCursorStatusAsync("sink:silent", ct);
        Assert.Equal($"TimeoutException: 127.0.0.1:{collector.Port} {reason}", cursor?.LastError);
        Assert.Equal(0L, cursor?.NextSeq);
    }

    [Fact]
    public async Task An_oversized_atna_message_is_reduced_rather_than_blocking_the_sink()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await using var collector = new SyslogCollector();
        var record = Samples.Record(1);
        var huge = record with
        {
            Details = record.Details! with
            {
                Objects = [record.Details.Objects[0], record.Details.Objects[1] with { Query = new byte[20_000] }],
            },
        };
        await h.Log.AppendAsync(huge, ct);
        await h.Log.AppendAsync(Samples.Record(2), ct);
        var options = new AuditSinkOptions { Name = "small", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = collector.Port, MaxMessageBytes = 4096 };
        await using (var sink = new SyslogSink(options, null))
        {
            Assert.Equal(2, await h.ExportWorker(options, sink).RunOnceAsync(ct));
        }

        var messages = await collector.WaitForAsync(2);
        Assert.Equal(2, messages.Count);
        Assert.All(messages, m => Assert.True(m.Length <= 4096));
        var reduced = ParseSyslog(messages[0]).Xml.Root!;
        Assert.Contains("reduced", reduced.Element("EventIdentification")!.Element("EventOutcomeDescription")!.Value, StringComparison.Ordinal);
        Assert.Equal(Samples.PatientName, reduced.Elements("ParticipantObjectIdentification").First().Element("ParticipantObjectName")?.Value);
    }

    [Fact]
    public async Task The_export_worker_retries_with_backoff_until_the_collector_comes_up()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 3));
        // Reserve a port, then close it so the first attempts are refused.
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var options = new AuditSinkOptions
        {
            Name = "late", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = port,
            MinBackoff = TimeSpan.FromMilliseconds(50), MaxBackoff = TimeSpan.FromMilliseconds(200), PollInterval = TimeSpan.FromMilliseconds(50),
        };
        await using var sink = new SyslogSink(options, null);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var run = h.ExportWorker(options, sink).RunAsync(stop.Token);
        await Task.Delay(400, ct);
        var failed = await h.ScalarAsync("SELECT attempts FROM audit_cursor WHERE sink = 'sink:late'");
        Assert.True(Convert.ToInt32(failed, System.Globalization.CultureInfo.InvariantCulture) > 0);

        await using var collector = new SyslogCollector(port: port);
        Assert.Equal(3, (await collector.WaitForAsync(3)).Count);
        // Entries appended later wake the worker through the in-process signal.
        await h.Log.AppendAsync(Samples.Record(3), ct);
        Assert.Equal(4, (await collector.WaitForAsync(4)).Count);
        // The worker moves its cursor after the collector has the message: stopping it in between (as this test did)
        // leaves the cursor one behind, and the entry is sent again at the next start (at least once, by design).
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await h.Store.ReadCursorAsync("sink:late", ct))?.NextSeq != 4 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }

        await stop.CancelAsync();
        await run;
        Assert.Equal(4L, (await h.Store.ReadCursorAsync("sink:late", ct))?.NextSeq);
    }

    /// <summary>
    /// Regression: a stop kept its export lease, so a node started again at once and stopped within 30 s exported
    /// nothing, not even at its stop: the SIEM learnt of that run only at the next start.
    /// </summary>
    [Fact]
    public async Task Regression_a_stopped_node_kept_its_export_lease_so_a_quick_restart_exported_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var options = new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = dir.Combine("audit.ndjson") };
        h.Options.Sinks.Add(options);
        for (var run = 1; run <= 2; run++)
        {
            var service = new AuditExportService(Microsoft.Extensions.Options.Options.Create(h.Options), h.Store, h.Log, h.Signal, h.Leases, TimeProvider.System,
                Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
            await service.StartAsync(ct);
            await h.AppendAsync(Samples.Records(3 * (run - 1), 3));
            await service.StopAsync(ct);
            service.Dispose();
            Assert.Null(await h.Leases.HolderAsync("audit-" + AuditExportWorker.CursorFor(options.Name), ct));
            Assert.Equal(3 * run, (await File.ReadAllLinesAsync(options.NdjsonPath, ct)).Length);
        }
    }

    /// <summary>
    /// Regression: an export (PS3.15 A.5.3.7, a quarantined object copied out for analysis) named who asked and Vigie,
    /// but not the Destination Media the data left on, which the message requires with its media type.
    /// </summary>
    [Fact]
    public async Task Regression_an_export_named_no_destination_media()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var seq = await h.AppendAsync([new AuditRecord
        {
            Time = DateTimeOffset.UtcNow,
            EventId = AuditEventIds.Export,
            Action = AuditAction.Read,
            Participants =
            [
                new AuditParticipant { UserId = "rssi", IsRequestor = true },
                new AuditParticipant { UserId = "file://host", Kind = AuditParticipantKind.Application, Roles = [AuditRoles.DestinationMedia], MediaType = AuditMediaTypes.Uri },
            ],
        }]);
        var entry = h.Log.Factory.ToEntry((await h.Store.ReadEntryAsync(seq, ct))!, unseal: false);
        Assert.Equal("110037", Assert.Single(entry.Participants, p => p.MediaType is not null).MediaType!.Code);

        var xml = XDocument.Parse(Encoding.UTF8.GetString(AtnaMessage.Write(entry, null)).TrimStart('\uFEFF'));
        var media = Assert.Single(xml.Root!.Elements("ActiveParticipant"), p => p.Attribute("UserID")?.Value == "file://host");
        Assert.Equal("RoleIDCode MediaIdentifier", string.Join(' ', media.Elements().Select(e => e.Name.LocalName)));
        Assert.Equal("110154", media.Element("RoleIDCode")?.Attribute("csd-code")?.Value);
        Assert.Equal("110037", media.Element("MediaIdentifier")?.Element("MediaType")?.Attribute("csd-code")?.Value);

        var fhir = FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(Encoding.UTF8.GetString(FhirAuditEvent.Write(entry, null)));
        var agent = Assert.Single(fhir.Agent, a => a.Media is not null);
        Assert.Equal("110037", agent.Media.Code);
        Assert.Equal("110154", agent.Type?.Coding[0].Code);
    }

    /// <summary>
    /// Regression: a participant whose network access point is an IP address but was recorded as a machine name (a
    /// C-MOVE destination configured by address) was exported with NetworkAccessPointTypeCode 1; PS3.15 A.5.1 (RFC
    /// 3881) types an IP address 2 and a name 1, whatever the record says.
    /// </summary>
    [Fact]
    public async Task Regression_an_ip_address_was_typed_machine_name_in_the_atna_message()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var seq = await h.AppendAsync([new AuditRecord
        {
            Time = DateTimeOffset.UtcNow,
            EventId = AuditEventIds.BeginTransferringDicomInstances,
            Action = AuditAction.Execute,
            Participants =
            [
                new AuditParticipant { UserId = "MOVESCU", IsRequestor = true, Kind = AuditParticipantKind.Application, NetworkAccessPointId = "127.0.0.1" },
                new AuditParticipant
                {
                    UserId = "DEST1", Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Destination], NetworkAccessPointId = "127.0.0.1",
                    NetworkAccessPointType = NetworkAccessPointType.MachineName,
                },
                new AuditParticipant
                {
                    UserId = "DEST2", Kind = AuditParticipantKind.Application, NetworkAccessPointId = "pacs.example.org",
                    NetworkAccessPointType = NetworkAccessPointType.MachineName,
                },
                new AuditParticipant { UserId = "DEST3", Kind = AuditParticipantKind.Application, NetworkAccessPointId = "pacs3" },
            ],
        }]);
        var entry = h.Log.Factory.ToEntry((await h.Store.ReadEntryAsync(seq, ct))!, unseal: false);

        var xml = XDocument.Parse(Encoding.UTF8.GetString(AtnaMessage.Write(entry, null)).TrimStart('\uFEFF'));
        string Type(string user) => xml.Root!.Elements("ActiveParticipant").Single(p => p.Attribute("UserID")?.Value == user).Attribute("NetworkAccessPointTypeCode")!.Value;
        Assert.Equal(("2", "2", "1", "1"), (Type("MOVESCU"), Type("DEST1"), Type("DEST2"), Type("DEST3")));

        var fhir = FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(Encoding.UTF8.GetString(FhirAuditEvent.Write(entry, null)));
        Assert.Contains(fhir.Agent, a => a.Network?.Address == "127.0.0.1");
        Assert.All(fhir.Agent.Where(a => a.Network?.Address == "127.0.0.1"), a => Assert.Equal(AuditEvent.AuditEventAgentNetworkType.N2, a.Network.Type));
        Assert.All(fhir.Agent.Where(a => a.Network?.Address is "pacs.example.org" or "pacs3"),
            a => Assert.Equal(AuditEvent.AuditEventAgentNetworkType.N1, a.Network.Type));
    }

    [Fact]
    public async Task Fhir_ndjson_holds_balp_audit_events_that_the_fhir_library_parses()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var options = new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = dir.Combine("audit.ndjson") };
        await h.AppendAsync(Samples.Records(0, 10));
        await using var sink = new FhirNdjsonSink(options, "SITE-1");
        Assert.Equal(10, await h.ExportWorker(options, sink).RunOnceAsync(ct));

        var lines = await File.ReadAllLinesAsync(options.NdjsonPath, ct);
        Assert.Equal(10, lines.Length);
        var events = lines.Select(l => FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(l)).ToList();

        // Entry 2: a successful read of a patient's study -> IHE.BasicAudit.PatientRead.
        var read = events[2];
        Assert.Equal(FhirAuditEvent.BalpBase + "PatientRead", Assert.Single(read.Meta.Profile));
        Assert.Equal("rest", read.Type.Code);
        Assert.Equal("read", read.Subtype[0].Code);
        Assert.Contains(read.Subtype, c => c.Code == "110103" && c.System == "http://dicom.nema.org/resources/ontology/DCM");
        Assert.Equal(AuditEvent.AuditEventAction.R, read.Action);
        Assert.Equal(AuditEvent.AuditEventOutcome.N0, read.Outcome);
        Assert.NotNull(read.Recorded);
        var user = Assert.Single(read.Agent, a => a.Type?.Coding[0].Code == "IRCP");
        Assert.True(user.Requestor);
        Assert.Equal("user2", user.Who.Identifier.Value);
        Assert.Equal("TREAT", user.PurposeOfUse[0].Coding[0].Code);
        var client = Assert.Single(read.Agent, a => a.Type?.Coding[0].Code == "110152" && a.Requestor == false && a.Network?.Address == "10.0.0.3");
        Assert.NotNull(client.Who);
        Assert.Contains(read.Agent, a => a.Type?.Coding[0].Code == "110153" && a.Who.Identifier.Value == "VIGIE-TEST");
        Assert.Equal("VIGIE-TEST", read.Source.Observer.Identifier.Value);
        var patient = Assert.Single(read.Entity, e => e.Role?.Code == "1");
        Assert.Equal("1", patient.Type.Code);
        Assert.Equal("Patient", patient.What.Type);
        Assert.Equal(Samples.PatientId + "-2", patient.What.Identifier.Value);
        var data = Assert.Single(read.Entity, e => e.Type.Code == "2");
        Assert.Equal("3", data.Role.Code);
        Assert.Equal(Samples.StudyUid + ".2", data.What.Identifier.Value);

        // Entry 1: a query -> IHE.BasicAudit.PatientQuery, with the raw query base64 in entity.query.
        var query = events[1];
        Assert.Equal(FhirAuditEvent.BalpBase + "PatientQuery", Assert.Single(query.Meta.Profile));
        Assert.Equal("search-type", query.Subtype[0].Code);
        Assert.Equal(AuditEvent.AuditEventAction.E, query.Action);
        var q = Assert.Single(query.Entity, e => e.Role?.Code == "24");
        Assert.Equal("PatientName=" + Samples.PatientName, Encoding.UTF8.GetString(q.Query));
        Assert.Null(q.What);

        // Entry 3: a login is no RESTful pattern: DCM EventID as type, EventTypeCode as subtype.
        var login = events[3];
        Assert.Empty(login.Meta?.Profile ?? []);
        Assert.Equal("110114", login.Type.Code);
        Assert.Equal("110122", login.Subtype[0].Code);

        // Ids are stable per entry, so a re-sent event replaces rather than duplicates.
        Assert.Equal(10, events.Select(e => e.Id).Distinct().Count());
    }

    /// <summary>
    /// Regression: a failed event with no event type code (a refused store, say) was written with <c>"subtype": []</c>,
    /// which FHIR forbids. A strict server refuses the whole transaction bundle, and the sink retried it for ever.
    /// </summary>
    [Fact]
    public async Task A_failed_event_without_event_type_codes_has_no_empty_subtype_array()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var options = new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = dir.Combine("audit.ndjson"), BatchSize = 500 };
        var record = Samples.Record(10);
        Assert.Equal(AuditOutcome.MinorFailure, record.Outcome);
        Assert.Empty(record.EventTypes);
        await h.AppendAsync([record]);
        await using var sink = new FhirNdjsonSink(options, "SITE-1");
        Assert.Equal(1, await h.ExportWorker(options, sink).RunOnceAsync(ct));

        var json = Assert.Single(await File.ReadAllLinesAsync(options.NdjsonPath, ct));
        Assert.DoesNotContain("\"subtype\"", json, StringComparison.Ordinal);
        Assert.Equal("110104", FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(json).Type.Code);

        // Every mix of the samples' event kinds, outcomes and patients reads as strict FHIR.
        await h.AppendAsync(Samples.Records(11, 385));
        Assert.Equal(385, await h.ExportWorker(options, sink).RunOnceAsync(ct));
        Assert.All((await File.ReadAllLinesAsync(options.NdjsonPath, ct)).Skip(1), l => FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(l));
    }

    /// <summary>
    /// FHIR-only sites had no copy of the signed tree heads outside the database, so a log rolled back as a whole went
    /// unnoticed there. Each newly signed head now goes to the NDJSON file as an AuditEvent of its own, which reads
    /// back as a witness, from the file or from a FHIR server's search Bundle.
    /// </summary>
    [Fact]
    public async Task Fhir_ndjson_carries_each_newly_signed_tree_head_as_an_audit_event_to_witness()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var options = new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = dir.Combine("audit.ndjson") };
        await using var sink = new FhirNdjsonSink(options, "SITE-1", "VIGIE-NODE-1");
        var (first, second) = await ExportWhileSigningTwiceAsync(h, h.ExportWorker(options, sink), ct);

        var lines = await File.ReadAllLinesAsync(options.NdjsonPath, ct);
        Assert.Equal(17, lines.Length);
        var events = lines.Select(l => FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(l)).ToList();
        var heads = events.Where(e => e.Subtype.Any(c => c.System == FhirTreeHead.SubtypeSystem && c.Code == FhirTreeHead.SubtypeCode)).ToList();
        Assert.Equal(2, heads.Count);
        Assert.Equal("110100", heads[0].Type.Code);
        Assert.Equal("VIGIE-NODE-1", heads[0].Source.Observer.Identifier.Value);
        Assert.Equal("SITE-1", heads[0].Source.Site);
        Assert.Equal(first.Timestamp.ToUnixTimeMilliseconds(), heads[0].Recorded!.Value.ToUnixTimeMilliseconds());
        Assert.Equal(TreeHeadJson.Write(second), ((FhirString)Assert.Single(Assert.Single(heads[1].Entity).Detail).Value).Value);
        Assert.Equal(FhirTreeHead.ResourceId(second), heads[1].Id);

        var witnessed = TreeHeadJson.Parse(string.Join('\n', lines));
        Assert.Equal([first.TreeSize, second.TreeSize], witnessed.Select(w => w.TreeSize));
        Assert.Equal(second.RootHash, witnessed[1].RootHash);
        var key = await h.Log.GetPublicKeyAsync(ct);
        Assert.All(witnessed, w => Assert.True(w.VerifySignature(key)));

        // What a FHIR server answers to GET AuditEvent?subtype=urn:vigie:audit|signed-tree-head, saved to a file.
        var search = $"{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[{string.Join(',', lines.Select(l => $"{{\"resource\":{l}}}"))}," +
            "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[]}}]}";
        Assert.Equal([first.TreeSize, second.TreeSize], TreeHeadJson.Parse(search).Select(w => w.TreeSize));

        // A head AuditEvent whose detail was altered is named, not skipped.
        var altered = System.Text.Json.Nodes.JsonNode.Parse(lines.First(l => l.Contains(FhirTreeHead.SubtypeCode, StringComparison.Ordinal)))!;
        var detail = altered["entity"]![0]!["detail"]![0]!;
        detail["valueString"] = detail["valueString"]!.GetValue<string>().Replace("\"rootHash\":\"", "\"rootHash\":\"zz", StringComparison.Ordinal);
        var error = Assert.Throws<FormatException>(() => TreeHeadJson.Parse(lines[0] + "\n" + altered.ToJsonString()));
        Assert.StartsWith("line 2: not a signed tree head", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Fhir_http_posts_transaction_bundles_of_puts()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 6));
        var (listener, port) = FhirServer();
        using var _ = listener;
        var bodies = new List<string>();
        var fail = true;
        var server = Task.Run(async () =>
        {
            for (var i = 0; i < 2; i++)
            {
                var context = await listener.GetContextAsync();
                using var reader = new StreamReader(context.Request.InputStream);
                bodies.Add(await reader.ReadToEndAsync(ct));
                Assert.Equal("application/fhir+json", context.Request.ContentType);
                Assert.Equal("Bearer s3cret", context.Request.Headers["Authorization"]);
                context.Response.StatusCode = fail ? 503 : 200;
                if (!fail)
                {
                    await AnswerTransactionAsync(context, bodies[^1], ct);
                }

                fail = false;
                context.Response.Close();
            }
        }, ct);

        var options = new AuditSinkOptions { Name = "fhir-http", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri($"http://127.0.0.1:{port}/fhir/"), BearerToken = "s3cret" };
        await using var sink = new FhirHttpSink(options, "SITE-1");
        var worker = h.ExportWorker(options, sink);
        var error = await Assert.ThrowsAsync<HttpRequestException>(async () => await worker.RunOnceAsync(ct));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, error.StatusCode);
        Assert.Equal(6, await worker.RunOnceAsync(ct));
        await server;

        Assert.Equal(bodies[0], bodies[1]);
        var bundle = FhirJsonDeserializer.STRICT.Deserialize<Bundle>(bodies[1]);
        Assert.Equal(Bundle.BundleType.Transaction, bundle.Type);
        Assert.Equal(6, bundle.Entry.Count);
        Assert.All(bundle.Entry, e =>
        {
            Assert.Equal(Bundle.HTTPVerb.PUT, e.Request.Method);
            Assert.Equal("AuditEvent/" + e.Resource.Id, e.Request.Url);
            Assert.IsType<AuditEvent>(e.Resource);
        });
    }

    [Fact]
    public async Task Fhir_http_puts_each_newly_signed_tree_head_as_an_audit_event()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 3));
        var head = (await h.Log.SignTreeHeadAsync(ct))!;
        var (listener, port) = FhirServer();
        using var _ = listener;
        var requests = new List<(string Method, string Path, string Body)>();
        var server = Task.Run(async () =>
        {
            for (var i = 0; i < 2; i++)
            {
                var context = await listener.GetContextAsync();
                using var reader = new StreamReader(context.Request.InputStream);
                requests.Add((context.Request.HttpMethod, context.Request.Url!.AbsolutePath, await reader.ReadToEndAsync(ct)));
                Assert.Equal("application/fhir+json", context.Request.ContentType);
                Assert.Equal("Bearer s3cret", context.Request.Headers["Authorization"]);
                context.Response.StatusCode = 200;
                if (context.Request.HttpMethod == "POST")
                {
                    await AnswerTransactionAsync(context, requests[^1].Body, ct);
                }

                context.Response.Close();
            }
        }, ct);

        var options = new AuditSinkOptions { Name = "fhir-http", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri($"http://127.0.0.1:{port}/fhir"), BearerToken = "s3cret" };
        await using var sink = new FhirHttpSink(options, "SITE-1", sourceId: "VIGIE-NODE-1");
        Assert.Equal(3, await h.ExportWorker(options, sink).RunOnceAsync(ct));
        await server;

        Assert.Equal(("POST", "/fhir"), (requests[0].Method, requests[0].Path));
        Assert.Equal(("PUT", "/fhir/AuditEvent/" + FhirTreeHead.ResourceId(head)), (requests[1].Method, requests[1].Path));
        var resource = FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(requests[1].Body);
        Assert.Equal(FhirTreeHead.ResourceId(head), resource.Id);
        var witnessed = Assert.Single(TreeHeadJson.Parse(requests[1].Body));
        Assert.Equal(head.RootHash, witnessed.RootHash);
        Assert.True(witnessed.VerifySignature(await h.Log.GetPublicKeyAsync(ct)));
    }

    /// <summary>
    /// `audit verify --witness-sink` reads the heads back from the repository: the search for them, page after page,
    /// with the sink's token; a page that links to another server is refused, since the token would follow it.
    /// </summary>
    [Fact]
    public async Task The_heads_a_fhir_repository_holds_are_read_back_page_after_page()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 3));
        var first = (await h.Log.SignTreeHeadAsync(ct))!;
        await h.AppendAsync(Samples.Records(3, 2));
        var second = (await h.Log.SignTreeHeadAsync(ct))!;
        var (listener, port) = FhirServer();
        using var _ = listener;
        string Resource(SignedTreeHead head) => Encoding.UTF8.GetString(FhirTreeHead.Write(head, "VIGIE-NODE-1", null));
        var pages = new Dictionary<string, string>
        {
            ["1"] = $"{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":[{{\"relation\":\"self\",\"url\":\"x\"}},{{\"relation\":\"next\",\"url\":\"http://127.0.0.1:{port}/fhir/AuditEvent?page=2\"}}],"
                + $"\"entry\":[{{\"resource\":{Resource(first)}}}]}}",
            ["2"] = $"{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[{{\"resource\":{Resource(second)}}},{{\"resource\":{{\"resourceType\":\"OperationOutcome\"}}}}]}}",
            ["3"] = $"{{\"resourceType\":\"Bundle\",\"link\":[{{\"relation\":\"next\",\"url\":\"http://192.0.2.1/fhir/AuditEvent?page=4\"}}]}}",
        };
        var queries = new List<string>();
        var server = Task.Run(async () =>
        {
            for (var i = 0; i < 3; i++)
            {
                var context = await listener.GetContextAsync();
                queries.Add(context.Request.Url!.PathAndQuery);
                Assert.Equal("Bearer s3cret", context.Request.Headers["Authorization"]);
                var page = context.Request.QueryString["page"] ?? (i == 0 ? "1" : "3");
                var body = Encoding.UTF8.GetBytes(pages[page]);
                context.Response.ContentType = "application/fhir+json";
                await context.Response.OutputStream.WriteAsync(body, ct);
                context.Response.Close();
            }
        }, ct);

        var sink = new AuditSinkOptions { Name = "arr", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri($"http://127.0.0.1:{port}/fhir"), BearerToken = "s3cret" };
        var heads = await SinkWitness.ReadAsync(sink, ct);
        Assert.Equal([first.TreeSize, second.TreeSize], heads.Select(x => x.TreeSize));
        Assert.Equal("/fhir/AuditEvent?subtype=urn%3Avigie%3Aaudit%7Csigned-tree-head&_count=200", queries[0]);
        Assert.Equal("/fhir/AuditEvent?page=2", queries[1]);

        var elsewhere = await Assert.ThrowsAsync<FormatException>(() => SinkWitness.ReadAsync(sink, ct));
        Assert.Equal($"sink arr: page 2 links outside http://127.0.0.1:{port}", elsewhere.Message);
        await server;

        var syslog = new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "127.0.0.1", Port = 514 };
        Assert.StartsWith("sink siem is a syslog collector", (await Assert.ThrowsAsync<FormatException>(() => SinkWitness.ReadAsync(syslog, ct))).Message,
            StringComparison.Ordinal);
    }
}
