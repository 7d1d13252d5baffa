using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// A real `vigie serve` process on free loopback ports with its own data folder (and, for PostgreSQL, its own database
/// on the test server), plus the maintenance commands run against the same folder.
/// </summary>
internal sealed class VigieNode : IAsyncDisposable
{
    private readonly ConcurrentQueue<string> _output = new();
    private readonly List<string> _arguments;
    private readonly Dictionary<string, string> _environment;
    private readonly TestDatabase? _database;
    private readonly VigieNode? _first;
    private Process? _process;

    private VigieNode(TempDirectory root, List<string> arguments, Dictionary<string, string> environment, TestDatabase? database, VigieNode? first = null)
    {
        Root = root;
        _arguments = arguments;
        _environment = environment;
        _database = database;
        _first = first;
        DicomPort = FreePort();
        HttpPort = FreePort();
    }

    public TempDirectory Root { get; }

    /// <summary>The data folder: this node's own, or for a sibling the first node's.</summary>
    public string Data => _first?.Data ?? Root.Combine("data");

    public string Keys => Data + ".keys";

    public int DicomPort { get; }

    public int HttpPort { get; }

    public string DicomPortText => DicomPort.ToString(CultureInfo.InvariantCulture);

    public IReadOnlyDictionary<string, string> Environment => _environment;

    /// <summary>Sets an environment variable of the serve process, for its next start.</summary>
    public void SetEnvironment(string name, string value) => _environment[name] = value;

    public string Output => string.Join('\n', _output);

    /// <summary>The exit code of `vigie serve` once it has exited.</summary>
    public int? ExitCode => _process is { HasExited: true } process ? process.ExitCode : null;

    public int? ProcessId => _process?.Id;

    public static async Task<VigieNode> StartAsync(DatabaseProvider provider = DatabaseProvider.Sqlite, IEnumerable<string>? arguments = null,
        IDictionary<string, string>? environment = null, CancellationToken cancellationToken = default)
    {
        var node = await CreateAsync(provider, arguments, environment, cancellationToken);
        await node.StartProcessAsync(cancellationToken);
        return node;
    }

    /// <summary>
    /// Two `vigie serve` processes on one new database, data folder and key file, started at the same moment (as an
    /// orchestrator starts replicas): the second disposes nothing it shares.
    /// </summary>
    public static async Task<(VigieNode First, VigieNode Second)> StartPairAsync(DatabaseProvider provider, IEnumerable<string>? arguments = null,
        IDictionary<string, string>? environment = null, CancellationToken cancellationToken = default)
    {
        var first = await CreateAsync(provider, arguments, environment, cancellationToken);
        var second = new VigieNode(new TempDirectory("vigie-node"), [.. arguments ?? []], new Dictionary<string, string>(first._environment), null, first);
        try
        {
            await Task.WhenAll(first.StartProcessAsync(cancellationToken), second.StartProcessAsync(cancellationToken));
            return (first, second);
        }
        catch
        {
            await second.DisposeAsync();
            await first.DisposeAsync();
            throw;
        }
    }

    /// <summary>A node not yet started, for tests that prepare its data folder first (then <see cref="StartProcessAsync(CancellationToken)"/>).</summary>
    public static async Task<VigieNode> CreateAsync(DatabaseProvider provider, IEnumerable<string>? arguments, IDictionary<string, string>? environment,
        CancellationToken cancellationToken)
    {
        var root = new TempDirectory("vigie-node");
        var env = new Dictionary<string, string>
        {
            ["DOTNET_gcServer"] = "0",
            // Background upkeep would only add noise to these short runs (unless the test is about it).
            ["VIGIE__GATEWAY__MAINTENANCE__INTERVAL"] = "00:00:00",
        };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        TestDatabase? database = null;
        if (provider == DatabaseProvider.Postgres)
        {
            database = await TestDatabases.CreateAsync(DatabaseProvider.Postgres, cancellationToken);
            env["VIGIE__DATABASE__PROVIDER"] = "Postgres";
            env["VIGIE__DATABASE__CONNECTIONSTRING"] = database.ConnectionString!;
        }

        return new VigieNode(root, [.. arguments ?? []], env, database);
    }

    public static int FreePort() => TestPorts.Free();

    /// <summary>(Re)starts the serve process on the same folder and ports, and waits until /health answers.</summary>
    public Task StartProcessAsync(CancellationToken cancellationToken = default) => StartProcessAsync(acceptUnhealthy: false, cancellationToken);

    /// <summary>
    /// (Re)starts the serve process; with <paramref name="acceptUnhealthy"/>, an unhealthy answer of /health (503, a node
    /// that refuses to sign audit heads) counts as started.
    /// </summary>
    public async Task StartProcessAsync(bool acceptUnhealthy, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "serve", "--data", Data, "--dicom-port", DicomPortText,
                     "--http-port", HttpPort.ToString(CultureInfo.InvariantCulture) }.Concat(_arguments))
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in _environment)
        {
            info.Environment[key] = value;
        }

        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => Capture(e.Data);
        _process.ErrorDataReceived += (_, e) => Capture(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await WaitUntilHealthyAsync(_process, HttpPort, () => Output, cancellationToken, acceptUnhealthy);
    }

    /// <summary>Waits until a serve process answers /health on <paramref name="httpPort"/>; fails with its output if it exits or takes 90 s.</summary>
    public static async Task WaitUntilHealthyAsync(Process process, int httpPort, Func<string> output, CancellationToken cancellationToken, bool acceptUnhealthy = false)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(90))
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"vigie serve exited with {process.ExitCode}:\n{output()}");
            }

            try
            {
                using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{httpPort}/health"), cancellationToken);
                if (response.IsSuccessStatusCode || (acceptUnhealthy && response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable))
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }

            await Task.Delay(250, cancellationToken);
        }

        throw new TimeoutException($"vigie serve did not become healthy:\n{output()}");
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    /// <summary>SIGTERM and wait for a clean shutdown.</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } process)
        {
            return;
        }

        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill!.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>Sends files to this node with dcmtk's storescu over one association, and asserts that every store succeeded.</summary>
    public async Task StoreAsync(IEnumerable<string> files, CancellationToken cancellationToken, string calledAE = "VIGIE")
    {
        var result = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", calledAE, "127.0.0.1", DicomPortText, .. files], TimeSpan.FromMinutes(1),
            cancellationToken: cancellationToken);
        Assert.True(result.ExitCode == 0 && !result.StandardError.Contains("E:", StringComparison.Ordinal), result + "\n--- node\n" + Output);
    }

    /// <summary>One check of /health: its status (Healthy, Degraded, Unhealthy) and description.</summary>
    public async Task<(string Status, string Description)> HealthCheckAsync(string name, CancellationToken cancellationToken)
    {
        using var http = new HttpClient();
        // An unhealthy node answers 503, with the same body.
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}/health"), cancellationToken);
        var health = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken)).RootElement;
        var check = health.GetProperty("checks").GetProperty(name);
        return (check.GetProperty("status").GetString()!, check.GetProperty("description").GetString()!);
    }

    /// <summary>Runs a maintenance command (stats, scrub, audit...) against this node's data folder.</summary>
    public Task<ProcessResult> VigieAsync(params string[] arguments) =>
        Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), .. arguments, "--data", Data], TimeSpan.FromMinutes(3), _environment);

    public async Task<JsonElement> StatsAsync()
    {
        var result = await VigieAsync("stats", "--json");
        Assert.True(result.ExitCode == 0, result.ToString());
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process?.Dispose();
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }

        Root.Dispose();
        if (_first is not null)
        {
            return;
        }

        try
        {
            Directory.Delete(Keys, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Capture(string? line)
    {
        if (line is not null && _output.Count < 5000)
        {
            _output.Enqueue(line);
        }
    }
}

/// <summary>A dcmtk storescp playing a PACS or a move destination, writing what it receives into a folder.</summary>
internal sealed class StoreScp : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private StoreScp(Process process, string folder, int port)
    {
        _process = process;
        Folder = folder;
        Port = port;
    }

    public string Folder { get; }

    public int Port { get; }

    /// <summary>How many C-STORE requests it received (duplicates included), from its verbose log.</summary>
    public int StoreRequests => _output.Count(l => l.Contains("Received Store Request", StringComparison.Ordinal));

    /// <summary>What storescp printed (with -d, every command's fields).</summary>
    public IReadOnlyList<string> Lines => [.. _output];

    public int Files => Directory.EnumerateFiles(Folder).Count();

    /// <summary>The calling AE titles of the associations it received (its log at -d).</summary>
    public IReadOnlyList<string> CallingAETitles => [.. _output.Select(l => l.Split("Calling Application Name:", 2))
        .Where(parts => parts.Length == 2 && parts[1].Trim().Length > 0).Select(parts => parts[1].Trim())];

    public static Task<StoreScp> StartAsync(string aeTitle, string folder, params string[] options) => StartAsync(aeTitle, folder, VigieNode.FreePort(), options);

    /// <summary>
    /// A storescp configured (dcmtk association profile) to accept one SOP class in the given transfer syntaxes only,
    /// as a PACS or workstation set up for less than Vigie sends. Syntaxes are dcmtk's names (LittleEndianImplicit...).
    /// </summary>
    public static async Task<StoreScp> StartAcceptingOnlyAsync(string aeTitle, string folder, int? port, string sopClass, params string[] transferSyntaxes)
    {
        var profile = folder + ".cfg";
        var syntaxes = string.Join('\n', transferSyntaxes.Select((t, i) => $"TransferSyntax{i + 1} = {t}"));
        await File.WriteAllTextAsync(profile, $"""
            [[TransferSyntaxes]]
            [Accepted]
            {syntaxes}

            [[PresentationContexts]]
            [Only]
            PresentationContext1 = {sopClass}\Accepted

            [[Profiles]]
            [Default]
            PresentationContexts = Only
            """);
        return await StartAsync(aeTitle, folder, port ?? VigieNode.FreePort(), "-xf", profile, "Default");
    }

    /// <summary>Starts on a given port, for a PACS that comes back where the node expects it.</summary>
    public static async Task<StoreScp> StartAsync(string aeTitle, string folder, int port, params string[] options)
    {
        var storescp = Peers.Require("storescp", "dcmtk");
        Directory.CreateDirectory(folder);
        var info = new ProcessStartInfo(storescp) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { "-v", "-aet", aeTitle, "-od", folder }.Concat(options).Append(port.ToString(CultureInfo.InvariantCulture)))
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["TCP_NODELAY"] = "1";
        var process = Process.Start(info)!;
        var scp = new StoreScp(process, folder, port);
        process.OutputDataReceived += (_, e) => scp.Capture(e.Data);
        process.ErrorDataReceived += (_, e) => scp.Capture(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, port);
                return scp;
            }
            catch (SocketException)
            {
                await Task.Delay(100);
            }
        }

        throw new TimeoutException("storescp did not start");
    }

    public async Task WaitForFilesAsync(int count, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        while (Files < count && watch.Elapsed < timeout)
        {
            await Task.Delay(200);
        }
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
        return ValueTask.CompletedTask;
    }

    private void Capture(string? line)
    {
        if (line is not null)
        {
            _output.Enqueue(line);
        }
    }
}
