using System.Globalization;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// `vigie echo`: before going live, a PACS administrator checks that Vigie reaches each node it will call, with the
/// address, timeouts, TLS files and AE title it will use, and reads why one cannot be reached.
/// </summary>
public sealed class DestinationEchoTests
{
    [Fact]
    public async Task Vigie_echo_names_the_destinations_that_cannot_be_reached_and_why()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-echo");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        using var firewall = await UnansweringPeer.DroppingConnectionsAsync();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "PACS",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = pacs.Port.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__FORWARD"] = "true",
            ["VIGIE__GATEWAY__DESTINATIONS__1__AETITLE"] = "WORKSTATION",
            ["VIGIE__GATEWAY__DESTINATIONS__1__PORT"] = firewall.Port.ToString(CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__1__CONNECTTIMEOUT"] = "00:00:01",
        }, cancellationToken: ct);

        var all = await node.VigieAsync("echo", "--json");
        Assert.True(all.ExitCode == 1, all.ToString());
        var outcomes = JsonDocument.Parse(all.StandardOutput).RootElement.EnumerateArray().ToDictionary(o => o.GetProperty("ae_title").GetString()!);
        Assert.True(outcomes["PACS"].GetProperty("answered").GetBoolean());
        Assert.Equal("C-ECHO answered", outcomes["PACS"].GetProperty("detail").GetString());
        Assert.False(outcomes["WORKSTATION"].GetProperty("answered").GetBoolean());
        Assert.Equal($"127.0.0.1:{firewall.Port} did not accept the connection within 00:00:01", outcomes["WORKSTATION"].GetProperty("detail").GetString());

        var one = await node.VigieAsync("echo", "PACS");
        Assert.True(one.ExitCode == 0, one.ToString());
        Assert.Contains("C-ECHO answered", one.StandardOutput, StringComparison.Ordinal);
        var unknown = await node.VigieAsync("echo", "NOPE");
        Assert.True(unknown.ExitCode == 2, unknown.ToString());
        Assert.Contains("not under Gateway:Destinations: NOPE", unknown.StandardError, StringComparison.Ordinal);
    }

    /// <summary>Regression: a destination that accepted the association but refused Verification counted as answered, exit 0.</summary>
    [Fact]
    public async Task Regression_a_destination_refusing_verification_counted_as_answered()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-echo-mr");
        await using var pacs = await StoreScp.StartAcceptingOnlyAsync("PACS", work.Combine("pacs"), null, "MRImageStorage", "LittleEndianExplicit");
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "PACS",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = pacs.Port.ToString(CultureInfo.InvariantCulture),
        }, cancellationToken: ct);
        var echo = await node.VigieAsync("echo", "PACS");
        Assert.True(echo.ExitCode == 1, echo.ToString());
        Assert.Contains("but Verification refused", echo.StandardOutput, StringComparison.Ordinal);
    }
}
