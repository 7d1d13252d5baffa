using Vigie.Testing;

namespace Vigie.Cli.Tests;

/// <summary>Runs the real `vigie` executable built next to the tests (vigie.dll through the dotnet host).</summary>
internal static class VigieProcess
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "vigie.dll");

    public static Task<ProcessResult> RunAsync(IEnumerable<string> arguments, TimeSpan? timeout = null, IDictionary<string, string>? environment = null,
        CancellationToken cancellationToken = default) =>
        Peers.RunAsync("dotnet", [DllPath, .. arguments], timeout ?? TimeSpan.FromMinutes(2), environment, cancellationToken: cancellationToken);
}
