using Vigie.Testing;

namespace Vigie.Cli.Tests.Conventions;

/// <summary>
/// Regressions from a first-deployment review: a wrong argument or setting is named in the operator's words, with exit
/// code 2, before anything is created.
/// </summary>
public sealed class ErrorMessageTests
{
    [Fact]
    public async Task Regression_bad_arguments_and_settings_gave_dotnet_type_names_or_no_cause()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-cli-errors");
        var data = work.Combine("data");

        var port = await VigieProcess.RunAsync(["serve", "--data", data, "--dicom-port", "abc"], cancellationToken: ct);
        Assert.Equal(2, port.ExitCode);
        Assert.Contains("as a whole number", port.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", port.StandardError, StringComparison.Ordinal);

        var range = await VigieProcess.RunAsync(["serve", "--data", data, "--http-port", "99999"], cancellationToken: ct);
        Assert.Equal(2, range.ExitCode);
        Assert.Contains("--http-port must be between 1 and 65535", range.StandardError, StringComparison.Ordinal);
        Assert.False(Directory.Exists(data));

        var prove = await VigieProcess.RunAsync(["audit", "prove", "-1", "--data", data], cancellationToken: ct);
        Assert.Equal(2, prove.ExitCode);
        Assert.Contains("cannot be negative", prove.StandardError, StringComparison.Ordinal);

        var network = await VigieProcess.RunAsync(["serve", "--data", data, "--allow", "CT01@10.1.2.0/33", "--dicom-port", "1", "--http-port", "1"],
            cancellationToken: ct);
        Assert.Equal(2, network.ExitCode);
        Assert.Contains("'10.1.2.0/33' is not an IP address or network", network.StandardError, StringComparison.Ordinal);

        Directory.CreateDirectory(data);
        var config = work.Combine("vigie.json");
        await File.WriteAllTextAsync(config, "{ \"Gateway\": {\n  \"MaxFindResults\": 10,\n", ct);
        var json = await VigieProcess.RunAsync(["stats", "--data", data, "--config", config], cancellationToken: ct);
        Assert.Equal(2, json.ExitCode);
        Assert.Contains("LineNumber", json.StandardError, StringComparison.Ordinal);
    }
}
