using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Orthanc (Debian package) playing a modality that asks Vigie for storage commitment, driven through its REST API.
/// Vigie is declared to it as the modality "vigie".
/// </summary>
internal sealed class OrthancPeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TempDirectory _root;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly HttpClient _http;

    private OrthancPeer(Process process, TempDirectory root, int dicomPort, int httpPort)
    {
        _process = process;
        _root = root;
        DicomPort = dicomPort;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}/"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public int DicomPort { get; }

    public string Output => string.Join('\n', _output);

    public static async Task<OrthancPeer> StartAsync(string aeTitle, int dicomPort, int vigiePort, CancellationToken cancellationToken)
    {
        var executable = Peers.Require("Orthanc", "orthanc");
        var root = new TempDirectory("vigie-orthanc");
        var httpPort = VigieNode.FreePort();
        var config = new Dictionary<string, object>
        {
            ["Name"] = "vigie-test",
            ["StorageDirectory"] = root.Combine("db"),
            ["IndexDirectory"] = root.Combine("db"),
            ["DicomAet"] = aeTitle,
            ["DicomPort"] = dicomPort,
            ["HttpPort"] = httpPort,
            ["RemoteAccessAllowed"] = false,
            ["AuthenticationEnabled"] = false,
            ["DicomModalities"] = new Dictionary<string, object> { ["vigie"] = new object[] { "VIGIE", "127.0.0.1", vigiePort } },
        };
        var path = root.Combine("orthanc.json");
        await File.WriteAllTextAsync(path, JsonSerializer.Serialize(config), cancellationToken);
        var info = new ProcessStartInfo(executable) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(path);
        var process = Process.Start(info)!;
        var peer = new OrthancPeer(process, root, dicomPort, httpPort);
        process.OutputDataReceived += (_, e) => peer.Capture(e.Data);
        process.ErrorDataReceived += (_, e) => peer.Capture(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await peer._http.GetAsync(new Uri("system", UriKind.Relative), cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    return peer;
                }
            }
            catch (HttpRequestException) when (deadline.Elapsed < TimeSpan.FromSeconds(30) && !process.HasExited)
            {
            }

            if (process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                await peer.DisposeAsync();
                throw new InvalidOperationException("Orthanc did not start:\n" + peer.Output);
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    /// <summary>Asks Vigie for storage commitment of these instances (N-ACTION); returns the transaction UID.</summary>
    public async Task<string> RequestCommitmentAsync(IEnumerable<(string SopClass, string SopInstance)> instances, CancellationToken cancellationToken)
    {
        var body = new { DicomInstances = instances.Select(i => new { SOPClassUID = i.SopClass, SOPInstanceUID = i.SopInstance }).ToList() };
        // Orthanc's field names are PascalCase: the default options keep them (the web defaults would camel-case them).
        using var content = new StringContent(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");
        using var response = await _http.PostAsync(new Uri("modalities/vigie/storage-commitment", UriKind.Relative), content, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        Assert.True(response.IsSuccessStatusCode, $"Orthanc: {(int)response.StatusCode} {text}\n{Output}");
        return JsonDocument.Parse(text).RootElement.GetProperty("ID").GetString()!;
    }

    /// <summary>The report as Orthanc received it: Status (Pending, Success, Failure), Success and Failures lists.</summary>
    public async Task<JsonElement> CommitmentAsync(string transactionUid, CancellationToken cancellationToken)
    {
        var text = await _http.GetStringAsync(new Uri("storage-commitment/" + transactionUid, UriKind.Relative), cancellationToken);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        _http.Dispose();
        _root.Dispose();
    }

    private void Capture(string? line)
    {
        if (line is not null && _output.Count < 2000)
        {
            _output.Enqueue(line);
        }
    }
}
