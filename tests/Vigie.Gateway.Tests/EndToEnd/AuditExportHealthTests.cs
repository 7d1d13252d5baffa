using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// The hospital's SIEM down for a day is a day of accesses the security officer's tools have not seen: /health says so
/// while the export fails, and turns healthy by itself once the collector takes the backlog.
/// </summary>
public sealed class AuditExportHealthTests
{
    [Fact]
    public async Task A_collector_that_is_down_turns_health_degraded_until_it_takes_the_backlog()
    {
        var ct = TestContext.Current.CancellationToken;
        var collectorPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "siem",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "SyslogTcp",
            ["VIGIE__AUDIT__SINKS__0__HOST"] = "127.0.0.1",
            ["VIGIE__AUDIT__SINKS__0__PORT"] = collectorPort.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__AUDIT__SINKS__0__MINBACKOFF"] = "00:00:00.200",
            ["VIGIE__AUDIT__SINKS__0__MAXBACKOFF"] = "00:00:01",
        }, cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        using var http = new HttpClient();
        async Task<(string Status, string Description)> ExportHealthAsync()
        {
            var check = JsonDocument.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct)).RootElement
                .GetProperty("checks").GetProperty("audit-export");
            return (check.GetProperty("status").GetString()!, check.GetProperty("description").GetString()!);
        }

        var down = await Eventually.WaitForAsync(ExportHealthAsync, h => h.Status == "Degraded", ct);
        Assert.Equal("Degraded", down.Status);
        Assert.Matches("^siem: [0-9]+ failed attempts, [1-9][0-9]* entries waiting, last error: ", down.Description);

        // The collector comes up and reads whatever it is sent.
        using var collector = new TcpListener(IPAddress.Loopback, collectorPort);
        collector.Start();
        var received = 0L;
        var reading = Task.Run(async () =>
        {
            using var client = await collector.AcceptTcpClientAsync(ct);
            var buffer = new byte[65536];
            int read;
            while ((read = await client.GetStream().ReadAsync(buffer, ct)) > 0)
            {
                Interlocked.Add(ref received, read);
            }
        }, ct);

        var up = await Eventually.WaitForAsync(ExportHealthAsync, h => h.Status == "Healthy" && h.Description == "siem: 0 entries waiting", ct);
        Assert.Equal(("Healthy", "siem: 0 entries waiting"), up);
        Assert.True(Interlocked.Read(ref received) > 0);
    }
}
