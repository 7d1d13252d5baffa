using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>deploy/vigie.service: what systemd makes of it, the system call filter it sets, and the readiness protocol.</summary>
public sealed partial class ServiceUnitTests
{
    private static string UnitFile => Path.Combine(RepositoryRoot(), "deploy", "vigie.service");

    private static string AppHost => Path.Combine(AppContext.BaseDirectory, "vigie");

    [Fact]
    public async Task The_unit_file_verifies_and_its_exposure_stays_low()
    {
        var ct = TestContext.Current.CancellationToken;
        var analyze = Peers.Require("systemd-analyze", "systemd");
        using var work = new TempDirectory("vigie-unit");
        var unit = work.Combine("vigie.service");
        // The unit names the installed binary; this one names the build's, which systemd-analyze checks exists.
        await File.WriteAllTextAsync(unit, (await File.ReadAllTextAsync(UnitFile, ct)).Replace("/opt/vigie/vigie", AppHost, StringComparison.Ordinal), ct);

        var verify = await Peers.RunAsync(analyze, ["verify", unit], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(verify.ExitCode == 0 && verify.StandardError.Trim().Length == 0, verify.ToString());
        // systemd's own score, 0 (locked down) to 10 (exposed); the unit stands at 1.7.
        var security = await Peers.RunAsync(analyze, ["security", "--offline=true", "--threshold=25", unit], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(security.ExitCode == 0, security.ToString());
    }

    [Fact]
    public async Task A_serve_run_makes_no_system_call_outside_the_unit_s_filter()
    {
        var ct = TestContext.Current.CancellationToken;
        var analyze = Peers.Require("systemd-analyze", "systemd");
        var strace = Peers.Require("strace", "strace");
        var filter = Regex.Match(await File.ReadAllTextAsync(UnitFile, ct), @"^SystemCallFilter=(\S+)$", RegexOptions.Multiline).Groups[1].Value;
        Assert.Equal("@system-service", filter);
        var allowed = await ExpandAsync(analyze, filter, ct);
        using var work = new TempDirectory("vigie-strace");
        var dicomPort = VigieNode.FreePort();
        var httpPort = VigieNode.FreePort();
        var trace = work.Combine("trace");
        var info = new ProcessStartInfo(strace) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-f", "-qq", "-o", trace, AppHost, "serve", "--data", work.Combine("data"), "--dicom-port",
                     dicomPort.ToString(CultureInfo.InvariantCulture), "--http-port", httpPort.ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(argument);
        }

        using var traced = Process.Start(info)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        traced.OutputDataReceived += (_, e) => output.Enqueue(e.Data ?? "");
        traced.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? "");
        traced.BeginOutputReadLine();
        traced.BeginErrorReadLine();
        try
        {
            await VigieNode.WaitUntilHealthyAsync(traced, httpPort, () => string.Join('\n', output), ct);
            using var http = new HttpClient();
            var port = dicomPort.ToString(CultureInfo.InvariantCulture);
            var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", port, .. Peers.CtCorpusFiles().Take(3)],
                TimeSpan.FromMinutes(2), cancellationToken: ct);
            Assert.True(store.ExitCode == 0, store.ToString());
            var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(find.ExitCode == 0, find.ToString());
            await http.GetStringAsync(new Uri($"http://127.0.0.1:{httpPort}/metrics"), ct);

            // SIGTERM to the traced process itself (strace's child), as systemd sends it.
            var child = (await File.ReadAllTextAsync($"/proc/{traced.Id}/task/{traced.Id}/children", ct)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            using (var kill = Process.Start("kill", ["-TERM", child]))
            {
                await kill!.WaitForExitAsync(ct);
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            await traced.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!traced.HasExited)
            {
                traced.Kill(entireProcessTree: true);
            }
        }

        var used = (await File.ReadAllLinesAsync(trace, ct)).Select(l => SystemCall().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value)
            .ToHashSet(StringComparer.Ordinal);
        Assert.True(used.Count > 40, $"only {used.Count} system calls traced");
        Assert.Empty(used.Except(allowed).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Serve_tells_the_service_manager_when_it_is_ready_and_when_it_stops()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-notify");
        var path = work.Combine("notify.sock");
        using var manager = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        manager.Bind(new UnixDomainSocketEndPoint(path));
        await using var node = await VigieNode.CreateAsync(DatabaseProvider.Sqlite, null, null, ct);
        node.SetEnvironment("NOTIFY_SOCKET", path);

        await node.StartProcessAsync(ct);
        var ready = await ReceiveAsync(manager, ct);
        await node.StopAsync();
        var stopping = await ReceiveAsync(manager, ct);

        Assert.StartsWith("READY=1\n", ready, StringComparison.Ordinal);
        Assert.Contains("STATUS=Vigie", ready, StringComparison.Ordinal);
        Assert.Equal("STOPPING=1", stopping);
    }

    /// <summary>
    /// Regression: the stop was recorded after the last tree head was signed, so every clean stop left its own entry
    /// outside any signed head until the next start.
    /// </summary>
    [Fact]
    public async Task A_clean_stop_leaves_no_audit_entry_unsigned()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);

        await node.StopAsync();

        var verify = await node.VigieAsync("audit", "verify", "--json");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Equal(0, System.Text.Json.JsonDocument.Parse(verify.StandardOutput).RootElement.GetProperty("unsigned_entries").GetInt64());

        // Regression: run by hand (umask 022), the data folder and index.db were readable by every local user.
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(node.Data));
            foreach (var file in Directory.GetFiles(node.Data, "index.db*"))
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            }
        }

        var show = await node.VigieAsync("audit", "show", "--json");
        Assert.Contains("Application Stop", show.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: SIGTERM while a storescu was sending cut the shutdown off after 2 s (System.CommandLine's default
    /// termination timeout): exit 143, associations aborted, the last tree head never signed.
    /// </summary>
    [Fact]
    public async Task Regression_a_stop_during_a_store_was_cut_off_after_two_seconds()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var files = Peers.CtCorpusFiles();
        var store = Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. files, .. files, .. files],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        await Eventually.WaitForAsync(async () => (await node.StatsAsync()).GetProperty("instances").GetInt64(), n => n >= 20, ct, TimeSpan.FromSeconds(60));

        await node.StopAsync();
        await store;
        Assert.Equal(0, node.ExitCode);
        var verify = await node.VigieAsync("audit", "verify", "--json");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        Assert.Equal(0, System.Text.Json.JsonDocument.Parse(verify.StandardOutput).RootElement.GetProperty("unsigned_entries").GetInt64());
    }

    /// <summary>
    /// Regression: SIGTERM while the node was starting (systemctl stop or restart then) exited 2 with "vigie: cancelled",
    /// which systemd's on-failure restart and monitoring read as a failed start.
    /// </summary>
    [Fact]
    public async Task Regression_a_stop_asked_for_during_start_up_exited_2_cancelled()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-stop-starting");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "serve", "--data", work.Combine("data"),
                     "--dicom-port", VigieNode.FreePort().ToString(CultureInfo.InvariantCulture), "--http-port", VigieNode.FreePort().ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var starting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var error = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("Hosting starting", StringComparison.Ordinal) == true)
            {
                starting.TrySetResult();
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            lock (error)
            {
                error.AppendLine(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await starting.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync(ct);
        }

        await process.WaitForExitAsync(ct).WaitAsync(TimeSpan.FromSeconds(60), ct);
        string stderr;
        lock (error)
        {
            stderr = error.ToString();
        }

        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {stderr}");
        Assert.DoesNotContain("cancelled", stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a DICOM port already taken stopped the start with "Address already in use" (which port?) and a
    /// critical log from the tree-head signer, whose wait the aborted start cancelled.
    /// </summary>
    [Fact]
    public async Task A_DICOM_port_already_taken_is_named_and_the_start_fails_cleanly()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-busy");
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);

        var serve = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "serve", "--data", work.Combine("data"), "--dicom-port", port,
            "--http-port", VigieNode.FreePort().ToString(CultureInfo.InvariantCulture)], TimeSpan.FromMinutes(1), cancellationToken: ct);

        Assert.True(serve.ExitCode == 2, serve.ToString());
        Assert.Contains($"cannot listen for DICOM on 127.0.0.1:{port}", serve.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("crit:", serve.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a TLS key that did not match its certificate ended the start with "Unhandled exception", a stack trace
    /// and exit code 1, which the CLI keeps for "threats found".
    /// </summary>
    [Fact]
    public async Task A_TLS_key_that_does_not_match_its_certificate_is_named_and_the_start_exits_2()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-tls");
        foreach (var name in new[] { "a", "b" })
        {
            await TestCertificates.SelfSignedAsync(work.Path, name, 2, "/CN=" + name, ct);
        }

        var serve = await Peers.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "vigie.dll"), "serve", "--data", work.Combine("data"),
            "--dicom-port", VigieNode.FreePort().ToString(CultureInfo.InvariantCulture), "--http-port", VigieNode.FreePort().ToString(CultureInfo.InvariantCulture)],
            TimeSpan.FromMinutes(1), new Dictionary<string, string>
            {
                ["VIGIE__DICOM__SERVER__TLSPORT"] = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture),
                ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = work.Combine("a.crt"),
                ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = work.Combine("b.key"),
            }, cancellationToken: ct);

        Assert.True(serve.ExitCode == 2, serve.ToString());
        Assert.Contains($"the TLS certificate {work.Combine("a.crt")} with key {work.Combine("b.key")} cannot be used", serve.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", serve.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_example_configuration_loads_and_applies_its_allow_list()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-config");
        var config = work.Combine("vigie.json");
        File.Copy(Path.Combine(RepositoryRoot(), "deploy", "vigie.json"), config);
        // The example listens on every address on port 104; here the node stays on loopback, on a free port.
        await using var node = await VigieNode.StartAsync(arguments: ["--config", config],
            environment: new Dictionary<string, string> { ["VIGIE__DICOM__SERVER__BINDADDRESS"] = "127.0.0.1" }, cancellationToken: ct);

        // CT01 is allowed from 10.1.2.0/24 only: from loopback it is rejected, which only a loaded allow-list does.
        var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-v", "-aet", "CT01", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(1), cancellationToken: ct);

        Assert.NotEqual(0, echo.ExitCode);
        Assert.Contains("Calling AE Title Not Recognized", echo.StandardError + echo.StandardOutput, StringComparison.OrdinalIgnoreCase);
    }

    private static async Task<string> ReceiveAsync(Socket socket, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        var buffer = new byte[4096];
        var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return Encoding.UTF8.GetString(buffer, 0, read);
    }

    /// <summary>The system calls of a systemd set, its nested sets expanded.</summary>
    private static async Task<HashSet<string>> ExpandAsync(string analyze, string set, CancellationToken ct)
    {
        var calls = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([set]);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (pending.TryPop(out var next))
        {
            if (!seen.Add(next))
            {
                continue;
            }

            var listed = await Peers.RunAsync(analyze, ["syscall-filter", next], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(listed.ExitCode == 0, listed.ToString());
            foreach (var line in listed.StandardOutput.Split('\n').Skip(1).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')))
            {
                if (line.StartsWith('@'))
                {
                    pending.Push(line);
                }
                else
                {
                    calls.Add(line);
                }
            }
        }

        return calls;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Vigie.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("the repository root (Vigie.slnx) was not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"^\d+\s+([a-z0-9_]+)\(")]
    private static partial Regex SystemCall();
}
