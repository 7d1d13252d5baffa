using System.Text;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Scan;

/// <summary>`vigie scan --rules` and `vigie signatures` as a user runs them: the real executable and generated rules.</summary>
public sealed class SignaturesCommandTests
{
    private static string Hex(string text) => Convert.ToHexStringLower(Encoding.ASCII.GetBytes(text));

    [Fact]
    public async Task Scan_with_a_rules_folder_names_the_signature_and_a_bad_folder_exits_2()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-sigs");
        Directory.CreateDirectory(folder.Combine("rules"));
        Directory.CreateDirectory(folder.Combine("in"));
        await File.WriteAllTextAsync(folder.Combine("rules", "site.ndb"), $"Site.Test.Marker:0:*:{Hex("SITE-INERT-MARKER")}\n", ct);
        await File.WriteAllTextAsync(folder.Combine("in", "marked.txt"), "header SITE-INERT-MARKER footer\n", ct);
        await File.WriteAllTextAsync(folder.Combine("in", "plain.txt"), "nothing here\n", ct);

        var result = await VigieProcess.RunAsync(["scan", "--json", "--rules", folder.Combine("rules"), folder.Combine("in")], cancellationToken: ct);
        Assert.True(result.ExitCode == 1, result.ToString());
        var reports = result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)
            .ToDictionary(r => Path.GetFileName(r.GetProperty("path").GetString()!));
        var finding = Assert.Single(reports["marked.txt"].GetProperty("findings").EnumerateArray(), f => f.GetProperty("rule").GetString() == "signature.pattern");
        Assert.Contains("Site.Test.Marker", finding.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(7, finding.GetProperty("offset").GetInt64());
        Assert.Equal("clean", reports["plain.txt"].GetProperty("verdict").GetString());

        await File.WriteAllTextAsync(folder.Combine("rules", "broken.ndb"), "Broken:0:*:41zz\n", ct);
        var broken = await VigieProcess.RunAsync(["scan", "--rules", folder.Combine("rules"), folder.Combine("in")], cancellationToken: ct);
        Assert.True(broken.ExitCode == 2, broken.ToString());
        Assert.Contains("broken.ndb:1", broken.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_lists_what_loads_and_export_writes_clamav_and_yara_files()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-sigs");
        var rules = Directory.CreateDirectory(folder.Combine("rules")).FullName;
        await File.WriteAllTextAsync(Path.Combine(rules, "site.ndb"), $"Site.A:0:*:{Hex("AAAA-MARK")}\nSite.Ep:9:EP+0:{Hex("BBBB")}\n", ct);
        await File.WriteAllTextAsync(Path.Combine(rules, "site.sha256"), $"{new string('a', 64)}  Site.Hash\n", ct);
        await File.WriteAllTextAsync(Path.Combine(rules, "site.yar"), "rule site_rule { strings: $a = \"CCCC\" condition: $a }\n", ct);

        var check = await VigieProcess.RunAsync(["signatures", "check", "--json", rules], cancellationToken: ct);
        Assert.True(check.ExitCode == 0, check.ToString());
        var report = JsonDocument.Parse(check.StandardOutput).RootElement;
        Assert.Equal(1, report.GetProperty("hashes").GetInt32());
        Assert.Equal(1, report.GetProperty("body").GetInt32());
        Assert.Equal(1, report.GetProperty("yara_files").GetInt32());
        Assert.Contains("compiled by libyara", report.GetProperty("yara").GetString(), StringComparison.Ordinal);
        Assert.Contains(report.GetProperty("skipped").EnumerateArray(), s => s.GetString()!.StartsWith("site.ndb:2", StringComparison.Ordinal));

        var export = await VigieProcess.RunAsync(["signatures", "export", rules, "--clamav", folder.Combine("clamav"), "--yara", folder.Combine("out.yar")], cancellationToken: ct);
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.Contains("Site.A:0:*:", await File.ReadAllTextAsync(folder.Combine("clamav", "vigie.ndb"), ct), StringComparison.Ordinal);
        Assert.Contains(":*:Site.Hash:73", await File.ReadAllTextAsync(folder.Combine("clamav", "vigie.hsb"), ct), StringComparison.Ordinal);
        Assert.Contains("rule Site_A", await File.ReadAllTextAsync(folder.Combine("out.yar"), ct), StringComparison.Ordinal);

        var none = await VigieProcess.RunAsync(["signatures", "export", rules], cancellationToken: ct);
        Assert.True(none.ExitCode == 2, none.ToString());
        await File.WriteAllTextAsync(Path.Combine(rules, "bad.yar"), "rule { }\n", ct);
        var bad = await VigieProcess.RunAsync(["signatures", "check", rules], cancellationToken: ct);
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("bad.yar", bad.StandardError, StringComparison.Ordinal);
    }
}
