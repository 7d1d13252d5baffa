using System.Diagnostics;
using System.Globalization;
using Vigie.Testing;

namespace Vigie.Cli.Tests;

/// <summary>Data folders for the maintenance commands' tests, made by the real node.</summary>
internal static class DataFolders
{
    /// <summary>
    /// A data folder a real node created and filled with <paramref name="files"/> CT images (stopped since), with its key
    /// folder beside it.
    /// </summary>
    public static async Task<string> FilledAsync(TempDirectory root, string name, int files, CancellationToken cancellationToken)
    {
        var storescu = Peers.Require("storescu", "dcmtk");
        var corpus = Peers.CtCorpusFiles().Take(files).ToArray();
        var data = root.Combine(name);
        var (dicomPort, httpPort) = (TestPorts.Free(), TestPorts.Free());
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { VigieProcess.DllPath, "serve", "--data", data, "--dicom-port", dicomPort.ToString(CultureInfo.InvariantCulture),
                     "--http-port", httpPort.ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(argument);
        }

        using var serve = Process.Start(info)!;
        var output = serve.StandardOutput.ReadToEndAsync(cancellationToken);
        var errors = serve.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            using var http = new HttpClient();
            var up = await Eventually.WaitForAsync(async () =>
            {
                try
                {
                    return (await http.GetAsync(new Uri($"http://127.0.0.1:{httpPort}/health"), cancellationToken)).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, answered => answered || serve.HasExited, cancellationToken);
            Assert.True(up, "the node did not answer /health");
            var store = await Peers.RunAsync(storescu, ["-aec", "VIGIE", "127.0.0.1", dicomPort.ToString(CultureInfo.InvariantCulture), .. corpus],
                TimeSpan.FromMinutes(1), cancellationToken: cancellationToken);
            Assert.True(store.ExitCode == 0, store.ToString());
        }
        finally
        {
            await Peers.RunAsync("kill", ["-TERM", serve.Id.ToString(CultureInfo.InvariantCulture)], TimeSpan.FromSeconds(10), cancellationToken: CancellationToken.None);
            await serve.WaitForExitAsync(CancellationToken.None);
        }

        Assert.True(serve.ExitCode == 0, await output + await errors);
        return data;
    }
}
