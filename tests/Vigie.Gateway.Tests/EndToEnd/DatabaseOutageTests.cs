using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Npgsql;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// The shared PostgreSQL becoming unreachable (a restart, a failover, a network cut) and coming back: associations are
/// rejected as transient meanwhile (nothing is served that cannot be audited), the node stays up, and it takes stores
/// again on its own once the database answers.
/// </summary>
public sealed class DatabaseOutageTests
{
    [Fact]
    public async Task While_the_database_is_unreachable_associations_are_rejected_as_transient_and_the_node_recovers_on_its_own()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(null, ct);
        await using var _ = node;
        await using var __ = proxy;
        var files = Peers.CtCorpusFiles();
        await node.StoreAsync(files.Take(2), ct);

        proxy.Cut();
        var refused = await EchoAsync(node, ct);

        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("Rejected Transient", refused.StandardError + refused.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Temporary Congestion", refused.StandardError + refused.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("refused for now: the audit trail is unavailable", node.Output, StringComparison.Ordinal);
        using (var http = new HttpClient())
        {
            // Readiness says the node cannot serve; liveness says it need not be restarted.
            using var health = await http.GetAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            using var live = await http.GetAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health/live"), ct);
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        proxy.Restore();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while ((await EchoAsync(node, ct)).ExitCode != 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the node did not take associations again once the database was back:\n" + node.Output);
            await Task.Delay(500, ct);
        }

        await node.StoreAsync(files.Skip(2).Take(2), ct);
        Assert.Equal(4, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // Regression: the association refused during the outage left no trace (the trail was out of reach). It was kept,
        // sealed, in the data folder's spill, and is in the trail once the database answers, with its own time.
        var refusals = await Eventually.WaitForAsync(async () => JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110113"))
                .StandardOutput).RootElement.EnumerateArray().Where(e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "")
                .Contains("refused for now", StringComparison.Ordinal)).Select(e => e.Clone()).ToList(),
            r => r.Count > 0, ct, TimeSpan.FromSeconds(60));
        Assert.Contains(refusals, r => r.GetRawText().Contains("ECHOSCU", StringComparison.Ordinal));
        var spill = Path.Combine(node.Data, "audit-spill");
        Assert.True(!Directory.Exists(spill) || Directory.GetFiles(spill).Length == 0, string.Join(", ", Directory.Exists(spill) ? Directory.GetFiles(spill) : []));
        await node.StopAsync();
        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
    }

    /// <summary>
    /// Regression: archive maintenance asked the database for its lease outside its own error handling; at a database
    /// outage that failure stopped the host, with exit code 0, so systemd's on-failure restart never came, and nodes
    /// started together (same schedule) all went down at once.
    /// </summary>
    [Fact]
    public async Task Regression_maintenance_during_a_database_outage_stopped_the_node_for_good()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(null, ct, new Dictionary<string, string>
        {
            // Every 2 s, so that a run falls in the outage whatever the start took.
            ["VIGIE__GATEWAY__MAINTENANCE__FIRSTRUNDELAY"] = "00:00:01",
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:02",
        });
        await using var _ = node;
        await using var __ = proxy;
        proxy.Cut();
        var logged = await Eventually.WaitForAsync(() => Task.FromResult(node.Output),
            o => o.Contains("Archive maintenance waits: the database did not answer", StringComparison.Ordinal) || node.ExitCode is not null, ct,
            TimeSpan.FromSeconds(30));
        Assert.True(node.ExitCode is null, "the node stopped:\n" + logged);
        Assert.Contains("Archive maintenance waits: the database did not answer", logged, StringComparison.Ordinal);
        Assert.NotEqual(0, (await EchoAsync(node, ct)).ExitCode);
        Assert.Equal("Unhealthy", (await node.HealthCheckAsync("dicom-node", ct)).Status);

        proxy.Restore();
        // Regression: /health said 503 for up to 2 minutes after the database came back, until an association came.
        var settled = await Eventually.WaitForAsync(() => node.HealthCheckAsync("dicom-node", ct), h => h.Status != "Unhealthy", ct, TimeSpan.FromSeconds(45));
        Assert.Equal("Degraded", settled.Status);
        Assert.Contains("the database answers again", settled.Description, StringComparison.Ordinal);
        var echo = await Eventually.WaitForAsync(() => EchoAsync(node, ct), r => r.ExitCode == 0, ct, TimeSpan.FromSeconds(60));
        Assert.True(echo.ExitCode == 0, node.Output);
        Assert.Null(node.ExitCode);
    }

    [Fact]
    public async Task A_storage_commitment_request_while_the_database_is_unreachable_is_refused_for_a_retry()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(["--destination", $"SCU1@127.0.0.1:{VigieNode.FreePort()}"], ct);
        await using var _ = node;
        await using var __ = proxy;
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "SCU1", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.StorageCommitmentPushModel], DicomUids.ImplicitVRLittleEndian), ct);
        var information = new DicomDataset();
        information.SetString(DicomTags.TransactionUID, DicomVR.UI, "2.25.7");
        var item = new DicomDataset();
        item.SetString(DicomTags.ReferencedSOPClassUID, DicomVR.UI, "1.2.840.10008.5.1.4.1.1.2");
        item.SetString(DicomTags.ReferencedSOPInstanceUID, DicomVR.UI, "1.2.3.4");
        var sequence = new DicomSequence(DicomTags.ReferencedSOPSequence);
        sequence.Items.Add(item);
        information.AddOrUpdate(sequence);
        var encoded = DicomWriter.Encode(information, TransferSyntax.ImplicitVRLittleEndian);

        // Not queued, so not accepted: the modality is told to ask again, and the association goes on.
        proxy.Cut();
        var refused = await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1, encoded, ct);
        Assert.Equal(DimseStatus.ProcessingFailure, refused.Status);
        Assert.Equal("Vigie could not queue the request: retry later", refused.ErrorComment);
        // The node's log reaches the test through its output pipe, a moment after the answer.
        var logged = await Eventually.WaitForAsync(() => Task.FromResult(node.Output),
            o => o.Contains("Storage commitment request from SCU1 could not be queued", StringComparison.Ordinal), ct, TimeSpan.FromSeconds(10));
        Assert.Contains("Storage commitment request from SCU1 could not be queued", logged, StringComparison.Ordinal);

        proxy.Restore();
        var accepted = await Eventually.WaitForAsync(
            async () => await client.ActionAsync(DicomUids.StorageCommitmentPushModel, DicomUids.StorageCommitmentPushModelInstance, 1, encoded, ct),
            r => r.Status == DimseStatus.Success, ct);
        Assert.Equal(DimseStatus.Success, accepted.Status);
        await client.ReleaseAsync(ct);
    }

    /// <summary>
    /// Regression: a node stopped while its database was out of reach logged "Could not record the stop" and lost its
    /// Application Stop, though the spill kept every other record of the outage: the trail showed two starts with nothing
    /// between, so a clean stop read as a crash.
    /// </summary>
    [Fact]
    public async Task Regression_a_node_stopped_during_a_database_outage_lost_its_Application_Stop()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(null, ct);
        await using var _ = node;
        await using var __ = proxy;
        proxy.Cut();
        await node.StopAsync();
        Assert.Contains("it is kept in the audit spill", node.Output, StringComparison.Ordinal);

        proxy.Restore();
        await node.StartProcessAsync(ct);
        List<string> Activity(string json) => [.. JsonDocument.Parse(json).RootElement.EnumerateArray().OrderBy(e => e.GetProperty("sequence").GetInt64())
            .Select(e => e.GetProperty("event_types").GetRawText())];
        var activity = await Eventually.WaitForAsync(async () => Activity((await node.VigieAsync("audit", "show", "--json", "--event", "110100")).StandardOutput),
            a => a.Count(t => t.Contains("Application Stop", StringComparison.Ordinal)) == 1, ct, TimeSpan.FromSeconds(60));
        Assert.Equal(2, activity.Count(t => t.Contains("Application Start", StringComparison.Ordinal)));
        Assert.Single(activity, t => t.Contains("Application Stop", StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression: a C-STORE answered A700 because the database failed while its index rows were committed was audited
    /// with the SOP class alone, though the whole data set had arrived and its header had been read: no patient, no
    /// study, no SOP Instance UID, and missing from the patient's history (PS3.15 A.5.3.5 makes both mandatory).
    /// </summary>
    [Fact]
    public async Task Regression_a_store_refused_A700_mid_association_named_no_patient_study_or_instance()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(null, ct);
        await using var _ = node;
        await using var __ = proxy;
        var files = Peers.CtCorpusFiles();
        var second = await DicomReader.ReadFileAsync(files[1], new DicomReadOptions { LoadLargeValues = true }, ct);
        var patientId = second.Dataset.GetString(DicomTags.PatientID)!;
        var studyUid = second.Dataset.GetString(DicomTags.StudyInstanceUID)!;
        var sopInstanceUid = second.Dataset.GetString(DicomTags.SOPInstanceUID)!;
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(files[0], ct)).Status);
            proxy.Cut();
            var refused = await client.StoreAsync(DicomUids.CTImageStorage, sopInstanceUid, DicomUids.ExplicitVRLittleEndian,
                new MemoryStream(DicomWriter.Encode(second.Dataset, TransferSyntax.ExplicitVRLittleEndian)), ct);
            Assert.Equal(DimseStatus.OutOfResources, refused.Status);
        }

        proxy.Restore();
        var history = await Eventually.WaitForAsync(async () => JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--details", "--patient", patientId,
                "--event", "110104")).StandardOutput).RootElement.EnumerateArray().Where(e => e.GetProperty("outcome").GetString() != "success").Select(e => e.Clone()).ToList(),
            r => r.Count > 0, ct, TimeSpan.FromSeconds(60));
        var entry = Assert.Single(history).GetRawText();
        Assert.Contains("could not be stored", entry, StringComparison.Ordinal);
        Assert.Contains(studyUid, entry, StringComparison.Ordinal);
        Assert.Contains(sopInstanceUid, entry, StringComparison.Ordinal);
        Assert.Contains(patientId, entry, StringComparison.Ordinal);
    }

    /// <summary>A node on PostgreSQL reached through a <see cref="TcpProxy"/>, so the test can cut the database away from it.</summary>
    /// <summary>
    /// Regression: an object the forwarder had claimed when the database went away stayed claimed for the whole lease
    /// (5 minutes) once the database was back: the failed round could not give it back, and nothing did later. Here
    /// the PACS takes the connection but does not answer while the database is cut, so the round fails holding it.
    /// </summary>
    [Fact]
    public async Task Regression_an_object_claimed_for_forwarding_when_the_database_went_away_waited_out_its_lease()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-fwd-outage");
        var pacsPort = VigieNode.FreePort();
        var silent = new TcpListener(IPAddress.Loopback, pacsPort);
        silent.Start();
        var held = new List<Socket>();
        var holding = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var socket = await silent.AcceptSocketAsync(ct);
                    lock (held)
                    {
                        held.Add(socket);
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
            }
        }, ct);
        var (node, proxy) = await StartBehindProxyAsync(null, ct, new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "PACS",
            ["VIGIE__GATEWAY__DESTINATIONS__0__HOST"] = "127.0.0.1",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = pacsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__FORWARD"] = "true",
            ["VIGIE__GATEWAY__DESTINATIONS__0__ARTIMTIMEOUT"] = "00:00:03",
        });
        await using var _ = node;
        await using var __ = proxy;
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await Eventually.WaitForAsync(() => Task.FromResult(held.Count), n => n > 0, ct);

        proxy.Cut();
        await Eventually.WaitForAsync(() => Task.FromResult(node.Output), o => o.Contains("Forwarding round failed", StringComparison.Ordinal), ct);
        silent.Stop();
        lock (held)
        {
            held.ForEach(s => s.Close(0));
        }

        await holding;
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"), pacsPort);
        proxy.Restore();
        var delivered = await Eventually.WaitForAsync(() => Task.FromResult(pacs.Files), n => n > 0, ct, TimeSpan.FromSeconds(90));
        Assert.True(delivered == 1, "the object waited out its claim's lease:\n" + node.Output);
    }

    private static async Task<(VigieNode Node, TcpProxy Proxy)> StartBehindProxyAsync(IEnumerable<string>? arguments, CancellationToken ct,
        IDictionary<string, string>? environment = null)
    {
        var node = await VigieNode.CreateAsync(DatabaseProvider.Postgres, arguments, environment, ct);
        var direct = new NpgsqlConnectionStringBuilder(node.Environment["VIGIE__DATABASE__CONNECTIONSTRING"]);
        var addresses = await Dns.GetHostAddressesAsync(direct.Host!, ct);
        var proxy = TcpProxy.Start(new IPEndPoint(addresses.First(a => a.AddressFamily == AddressFamily.InterNetwork), direct.Port));
        node.SetEnvironment("VIGIE__DATABASE__CONNECTIONSTRING", new NpgsqlConnectionStringBuilder(direct.ConnectionString)
        {
            Host = "127.0.0.1",
            Port = proxy.Port,
        }.ConnectionString);
        try
        {
            await node.StartProcessAsync(ct);
            return (node, proxy);
        }
        catch
        {
            await node.DisposeAsync();
            await proxy.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Regression: with the SQLite index locked by another process, every association was refused as transient while
    /// /health said Healthy ("Sqlite reachable": SELECT 1 needs no lock), so an orchestrator or the supervision saw
    /// nothing wrong. The DICOM node check now says the associations are refused, and why.
    /// </summary>
    [Fact]
    public async Task Regression_health_said_healthy_while_a_locked_index_refused_every_association()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__DATABASE__BUSYTIMEOUT"] = "00:00:02" },
            cancellationToken: ct);
        using var http = new HttpClient();
        var healthUri = new Uri($"http://127.0.0.1:{node.HttpPort}/health");
        using (var locker = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await locker.OpenAsync(ct);
            await using (var exclusive = locker.CreateCommand())
            {
                exclusive.CommandText = "BEGIN EXCLUSIVE";
                await exclusive.ExecuteNonQueryAsync(ct);
            }

            var refused = await EchoAsync(node, ct);
            Assert.Contains("Rejected Transient", refused.StandardError + refused.StandardOutput, StringComparison.Ordinal);
            using var health = await http.GetAsync(healthUri, ct);
            var text = await health.Content.ReadAsStringAsync(ct);
            Assert.True(health.StatusCode == HttpStatusCode.ServiceUnavailable, text);
            Assert.Contains("associations refused for now", text, StringComparison.Ordinal);
        }

        var echo = await EchoAsync(node, ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());
        using var healthy = await http.GetAsync(healthUri, ct);
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
    }

    /// <summary>
    /// Regression: with PostgreSQL hung (stopped by SIGSTOP), /health took about a minute to answer, past any probe's
    /// patience, instead of saying the database did not answer, and associations waited until the sender gave up.
    /// </summary>
    [Fact]
    public async Task Regression_health_took_a_minute_to_answer_while_the_database_hung()
    {
        var ct = TestContext.Current.CancellationToken;
        var (node, proxy) = await StartBehindProxyAsync(null, ct);
        await using var _ = node;
        await using var __ = proxy;
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
        var healthUri = new Uri($"http://127.0.0.1:{node.HttpPort}/health");

        proxy.Freeze();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using (var health = await http.GetAsync(healthUri, ct))
        {
            watch.Stop();
            var text = await health.Content.ReadAsStringAsync(ct);
            Assert.True(health.StatusCode == HttpStatusCode.ServiceUnavailable, text);
            Assert.Contains("the database did not answer within 5 s", text, StringComparison.Ordinal);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(25), $"/health answered after {watch.Elapsed}: {text}");
        }

        // An association is refused for a retry, not held until the sender gives up (echoscu waits 30 s for an answer).
        var refused = await EchoAsync(node, ct);
        Assert.True(refused.ExitCode != 0 && (refused.StandardError + refused.StandardOutput).Contains("Rejected Transient", StringComparison.Ordinal),
            refused.ToString());

        proxy.Thaw();
        var echo = await Eventually.WaitForAsync(() => EchoAsync(node, ct), e => e.ExitCode == 0, ct, TimeSpan.FromSeconds(90));
        Assert.True(echo.ExitCode == 0, echo + "\n" + node.Output);
        var healthy = await Eventually.WaitForAsync(async () =>
        {
            using var health = await http.GetAsync(healthUri, ct);
            return (health.StatusCode, Text: await health.Content.ReadAsStringAsync(ct));
        }, h => h.StatusCode == HttpStatusCode.OK, ct, TimeSpan.FromSeconds(60));
        Assert.True(healthy.StatusCode == HttpStatusCode.OK, healthy.Text);
    }

    private static Task<ProcessResult> EchoAsync(VigieNode node, CancellationToken ct) =>
        Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-v", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);

    /// <summary>A TCP forwarder on loopback that can be cut (listener closed, every connection reset) and restored on the same port.</summary>
    private sealed class TcpProxy : IAsyncDisposable
    {
        private readonly IPEndPoint _target;
        private readonly List<Socket> _sockets = [];
        private TcpListener _listener;
        private volatile TaskCompletionSource _open = Opened();
        private bool _disposed;

        private TcpProxy(IPEndPoint target, TcpListener listener)
        {
            _target = target;
            _listener = listener;
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        public int Port { get; }

        public static TcpProxy Start(IPEndPoint target)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var proxy = new TcpProxy(target, listener);
            _ = proxy.AcceptAsync(listener);
            return proxy;
        }

        public void Cut()
        {
            _listener.Stop();
            lock (_sockets)
            {
                foreach (var socket in _sockets)
                {
                    socket.Close(0);
                }

                _sockets.Clear();
            }
        }

        /// <summary>Holds every byte both ways, as a server stopped by SIGSTOP or a path that drops packets: connections open, nothing answers.</summary>
        public void Freeze() => _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Thaw() => _open.TrySetResult();

        public void Restore()
        {
            _listener = new TcpListener(IPAddress.Loopback, Port);
            _listener.Start();
            _ = AcceptAsync(_listener);
        }

        public ValueTask DisposeAsync()
        {
            _disposed = true;
            Thaw();
            Cut();
            return ValueTask.CompletedTask;
        }

        private async Task AcceptAsync(TcpListener listener)
        {
            while (!_disposed)
            {
                Socket client;
                try
                {
                    client = await listener.AcceptSocketAsync();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    await server.ConnectAsync(_target);
                }
                catch (SocketException)
                {
                    client.Close(0);
                    server.Dispose();
                    continue;
                }

                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }

                _ = PumpAsync(client, server);
                _ = PumpAsync(server, client);
            }
        }

        private static TaskCompletionSource Opened()
        {
            var open = new TaskCompletionSource();
            open.SetResult();
            return open;
        }

        private async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 * 1024];
            try
            {
                int read;
                while ((read = await from.ReceiveAsync(buffer, SocketFlags.None)) > 0)
                {
                    await _open.Task;
                    await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None);
                }

                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Cut, or one side went away: the other is closed by Cut or by its own peer.
                from.Close(0);
                to.Close(0);
            }
        }
    }
}
