using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Vigie.Access;
using Vigie.Archive;
using Vigie.Audit;
using Vigie.Audit.Merkle;
using Vigie.Audit.Signing;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Dicom.Network;
using Vigie.Gateway;
using Vigie.Testing;

namespace Vigie.Web.Tests;

/// <summary>
/// The HTTP side of a real node (Kestrel, the DICOM node, SQLite, the archive and the audit trail): health, the
/// Prometheus scrape and the public audit verification API, checked the way an outside auditor would.
/// </summary>
public sealed class WebHostTests : IAsyncLifetime
{
    private readonly TempDirectory _folder = new("vigie-web");
    private readonly HttpClient _http = new();
    private WebApplication? _app;
    private int _dicomPort;

    public async ValueTask InitializeAsync()
    {
        var data = _folder.Combine("data");
        var keys = _folder.Combine("keys");
        _dicomPort = FreePort();
        var httpPort = FreePort();
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Archive:DataFolder"] = data,
            ["Archive:KeyFile"] = Path.Combine(keys, "kek.json"),
            ["Audit:SigningKeyPath"] = Path.Combine(keys, "audit-signing.key"),
            ["Audit:TreeHeadInterval"] = "00:00:01",
            ["Database:Provider"] = nameof(DatabaseProvider.Sqlite),
            ["Database:SqlitePath"] = Path.Combine(data, "index.db"),
            ["Dicom:Server:Port"] = _dicomPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Access:DicomNodes:0:AETitle"] = "*",
            ["Access:DicomNodes:0:Networks:0"] = "127.0.0.0/8",
            ["Access:DicomNodes:0:Rights"] = nameof(DicomRights.All),
        }).Build();

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddConfiguration(configuration);
        builder.WebHost.UseUrls($"http://127.0.0.1:{httpPort}");
        builder.Logging.ClearProviders();
        builder.Services.Configure<DatabaseOptions>(configuration.GetSection(DatabaseOptions.Section));
        builder.Services.Configure<ArchiveOptions>(configuration.GetSection("Archive"));
        builder.Services.Configure<AuditOptions>(configuration.GetSection(AuditOptions.Section));
        builder.Services.Configure<AccessOptions>(configuration.GetSection(AccessOptions.Section));
        builder.Services.Configure<DicomServerOptions>(configuration.GetSection(DicomServerOptions.Section));
        builder.Services.AddVigieCore();
        builder.Services.AddGateway();
        builder.Services.AddVigieWeb();
        _app = builder.Build();
        _app.MapVigieEndpoints();
        await _app.StartAsync(TestContext.Current.CancellationToken);
        _http.BaseAddress = new Uri($"http://127.0.0.1:{httpPort}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }

        _http.Dispose();
        _folder.Dispose();
    }

    /// <summary>Regression: /health and /metrics answered 200 to DELETE, TRACE or a made-up method, as if they had acted.</summary>
    [Theory]
    [InlineData("/health")]
    [InlineData("/health/live")]
    [InlineData("/metrics")]
    public async Task Regression_read_only_endpoints_answered_any_method(string path)
    {
        var ct = TestContext.Current.CancellationToken;
        foreach (var method in new[] { "DELETE", "TRACE", "FOOBAR", "POST" })
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            using var response = await _http.SendAsync(request, ct);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        }

        using var head = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Head, path), ct);
        Assert.True(head.IsSuccessStatusCode, $"HEAD {path}: {head.StatusCode}");
    }

    [Fact]
    public async Task Health_reports_database_data_folder_and_dicom_node()
    {
        var response = await _http.GetAsync("/health", TestContext.Current.CancellationToken);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(body);
        Assert.True(json.RootElement.GetProperty("status").GetString() == "Healthy", body);
        var checks = json.RootElement.GetProperty("checks");
        foreach (var name in new[] { "database", "data-folder", "dicom-node" })
        {
            Assert.Equal("Healthy", checks.GetProperty(name).GetProperty("status").GetString());
        }

        Assert.Contains(_dicomPort.ToString(System.Globalization.CultureInfo.InvariantCulture), checks.GetProperty("dicom-node").GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.Matches("; landing slots: [0-9]+ ready, 0 objects landed$", checks.GetProperty("data-folder").GetProperty("description").GetString());
    }

    [Fact]
    public async Task Metrics_scrape_carries_the_dicom_node_counters_after_an_echo()
    {
        var echoscu = Peers.Require("echoscu", "dcmtk");
        var echo = await Peers.RunAsync(echoscu, ["-aet", "WEBTEST", "-aec", "VIGIE", "127.0.0.1", _dicomPort.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            TimeSpan.FromSeconds(30), cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(echo.ExitCode == 0, echo.ToString());

        // Prometheus exports on a collection cycle; poll briefly rather than assume its period.
        string text = "";
        for (var i = 0; i < 50 && !text.Contains("vigie_dicom", StringComparison.Ordinal); i++)
        {
            using var response = await _http.GetAsync("/metrics", TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType ?? "", StringComparison.Ordinal);
            text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            if (!text.Contains("vigie_dicom", StringComparison.Ordinal))
            {
                await Task.Delay(200, TestContext.Current.CancellationToken);
            }
        }

        Assert.Contains("# TYPE", text, StringComparison.Ordinal);
        Assert.Contains("vigie_dicom", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Audit_api_tree_head_is_signed_and_every_inclusion_proof_verifies()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        var echo = await Peers.RunAsync(echoscu, ["-aet", "WEBTEST", "-aec", "VIGIE", "127.0.0.1", _dicomPort.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());

        var key = await _http.GetFromJsonAsync<JsonElement>("/api/audit/public-key", ct);
        Assert.Equal("Ed25519", key.GetProperty("algorithm").GetString());
        var publicKey = AuditPublicKey.FromRaw(Convert.FromBase64String(key.GetProperty("publicKey").GetString()!));
        Assert.Equal(publicKey.KeyId, key.GetProperty("keyId").GetString());

        // The signer seals at least every second here; the echo's association entries must be covered.
        JsonElement head = default;
        for (var i = 0; i < 100; i++)
        {
            using var response = await _http.GetAsync("/api/audit/tree-head", ct);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                head = await response.Content.ReadFromJsonAsync<JsonElement>(ct);
                if (head.GetProperty("treeSize").GetInt64() >= 2)
                {
                    break;
                }
            }

            await Task.Delay(100, ct);
        }

        Assert.Equal(JsonValueKind.Object, head.ValueKind);
        var treeSize = head.GetProperty("treeSize").GetInt64();
        Assert.True(treeSize >= 2, $"tree size {treeSize}");
        var signed = new SignedTreeHead(treeSize, head.GetProperty("timestamp").GetDateTimeOffset(),
            Convert.FromHexString(head.GetProperty("rootHash").GetString()!), head.GetProperty("keyId").GetString()!,
            Convert.FromBase64String(head.GetProperty("publicKey").GetString()!), Convert.FromBase64String(head.GetProperty("signature").GetString()!));
        Assert.True(signed.VerifySignature(publicKey), "the tree head's Ed25519 signature does not verify");

        for (long sequence = 0; sequence < treeSize; sequence++)
        {
            var proof = await _http.GetFromJsonAsync<JsonElement>($"/api/audit/proofs/inclusion/{sequence}?treeSize={treeSize}", ct);
            var path = proof.GetProperty("auditPath").EnumerateArray().Select(e => Convert.FromHexString(e.GetString()!)).ToList();
            Assert.True(MerkleProofs.VerifyInclusion(sequence, treeSize, Convert.FromHexString(proof.GetProperty("leafHash").GetString()!), path, signed.RootHash),
                $"inclusion proof of entry {sequence} does not lead to the signed root");
        }

        using var missing = await _http.GetAsync($"/api/audit/proofs/inclusion/{treeSize + 1000}", ct);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);

        // A second echo grows the log; the next signed head must be consistent with the first (append-only).
        echo = await Peers.RunAsync(echoscu, ["-aet", "WEBTEST", "-aec", "VIGIE", "127.0.0.1", _dicomPort.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());
        var laterSize = treeSize;
        for (var i = 0; i < 100 && laterSize <= treeSize; i++)
        {
            await Task.Delay(100, ct);
            laterSize = (await _http.GetFromJsonAsync<JsonElement>("/api/audit/tree-head", ct)).GetProperty("treeSize").GetInt64();
        }

        Assert.True(laterSize > treeSize, "no later tree head was signed");
        var consistency = await _http.GetFromJsonAsync<JsonElement>($"/api/audit/proofs/consistency?first={treeSize}&second={laterSize}", ct);
        var first = consistency.GetProperty("first");
        var second = consistency.GetProperty("second");
        Assert.Equal(head.GetProperty("rootHash").GetString(), first.GetProperty("rootHash").GetString());
        Assert.True(MerkleProofs.VerifyConsistency(first.GetProperty("treeSize").GetInt64(), second.GetProperty("treeSize").GetInt64(),
            Convert.FromHexString(first.GetProperty("rootHash").GetString()!), Convert.FromHexString(second.GetProperty("rootHash").GetString()!),
            consistency.GetProperty("proof").EnumerateArray().Select(e => Convert.FromHexString(e.GetString()!)).ToList()), "consistency proof does not verify");

        using var unsigned = await _http.GetAsync($"/api/audit/proofs/consistency?first={laterSize + 1000}", ct);
        Assert.Equal(HttpStatusCode.NotFound, unsigned.StatusCode);

        // Regression: requests no proof can answer were "not found", with .NET's own wording ("Actual value was -1").
        foreach (var bad in new[] { "/api/audit/proofs/inclusion/-1", "/api/audit/proofs/consistency?first=0", $"/api/audit/proofs/consistency?first={laterSize}&second=1" })
        {
            using var response = await _http.GetAsync(bad, ct);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.DoesNotContain("Actual value", await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }
    }

    private static int FreePort() => TestPorts.Free();
}
