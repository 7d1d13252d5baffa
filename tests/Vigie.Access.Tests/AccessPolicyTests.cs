using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace Vigie.Access.Tests;

public sealed class AccessPolicyTests
{
    private static IPolicyDecisionPoint Policy(params DicomNodeRule[] rules)
    {
        var services = new ServiceCollection().AddAccess();
        services.Configure<AccessOptions>(o =>
        {
            o.DicomNodes.AddRange(rules);
            o.DicomUsers.Add(new DicomUser { Name = "tech", PasswordHash = PasswordHashing.Hash("s3cret-passcode") });
        });
        return services.BuildServiceProvider().GetRequiredService<IPolicyDecisionPoint>();
    }

    /// <summary>
    /// Regression: a network that does not parse (or names no network, as 10.1.2.5/24) was accepted and then never
    /// matched, so the modality was rejected as "not allowed from" its address with nothing pointing at the typo.
    /// </summary>
    [Fact]
    public void An_allow_list_rule_that_could_never_match_stops_the_start_and_names_its_place()
    {
        var services = new ServiceCollection().AddAccess();
        services.Configure<AccessOptions>(o =>
        {
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "CT1", Networks = ["10.1.2.5/24", "10.1.2.0/33", "ct-room-1", "10.1.3.7", "fd00::/8"] });
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "MR1", Networks = [] });
        });

        var error = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            services.BuildServiceProvider().GetRequiredService<Microsoft.Extensions.Options.IOptionsMonitor<AccessOptions>>().CurrentValue);

        Assert.Equal(
        [
            "Access:DicomNodes:0:Networks:0 '10.1.2.5/24' has bits set past its prefix: write 10.1.2.0/24",
            "Access:DicomNodes:0:Networks:1 '10.1.2.0/33' has a prefix length that is not 0 to 32",
            "Access:DicomNodes:0:Networks:2 'ct-room-1' is not an IP address or a network such as 10.1.2.0/24 (an IPv4 address as four decimal numbers without leading zeros (10.1.2.3) or an IPv6 address)",
            "Access:DicomNodes:1:Networks is empty: the rule would match no caller",
        ], error.Failures);
    }

    /// <summary>
    /// Regression: the runtime's parser took inet_aton's legacy forms, so a zero-padded network from an inventory
    /// (010.1.2.0/24) meant 8.1.2.0/24, and 0177.0.0.1 was 127.0.0.1; an IPv4-mapped rule matched nobody; and a second
    /// entry for a title with other rights started the node, though only the first matching one decides.
    /// </summary>
    [Fact]
    public void Regression_legacy_ipv4_forms_mapped_networks_and_repeated_titles_were_accepted_silently()
    {
        foreach (var legacy in new[] { "0177.0.0.1", "010.1.2.0/24", "0x7f.0.0.1", "2130706433", "127.1", "1.2.3" })
        {
            Assert.Throws<FormatException>(() => DicomNodeRule.Parse("CT1@" + legacy));
        }

        var services = new ServiceCollection().AddAccess();
        services.Configure<AccessOptions>(o =>
        {
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "CT1", Networks = ["127.0.0.1/32"], Rights = DicomRights.Store });
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "CT1", Networks = ["127.0.0.0/8"], Rights = DicomRights.Query });
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "MR1", Networks = ["::ffff:10.0.0.0/104"] });
        });
        var error = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            services.BuildServiceProvider().GetRequiredService<Microsoft.Extensions.Options.IOptionsMonitor<AccessOptions>>().CurrentValue);
        Assert.Equal(
        [
            "Access:DicomNodes:1 repeats AE title 'CT1' of Access:DicomNodes:0 with other rights: the first entry matching a caller decides, so give each title one entry (its networks together) or the same rights",
        ], error.Failures);
    }

    [Fact]
    public async Task An_ipv4_mapped_rule_matches_its_ipv4_callers()
    {
        var policy = Policy(new DicomNodeRule { AETitle = "CT1", Networks = ["::ffff:10.1.2.0/120"], Rights = DicomRights.Store });
        var (rights, decision) = await policy.DicomRightsAsync(Node("CT1", "10.1.2.7"), CancellationToken.None);
        Assert.True(decision.Permitted, decision.Reason);
        Assert.Equal(DicomRights.Store, rights);
    }

    /// <summary>
    /// Regression: a rule for " CT1" (a space before it) or "IRM-É" started the node and never matched, since a calling
    /// title arrives trimmed and in printable ASCII: the modality was refused as an unknown AE.
    /// </summary>
    [Fact]
    public void Regression_an_allowed_title_no_caller_could_send_started_the_node()
    {
        var services = new ServiceCollection().AddAccess();
        services.Configure<AccessOptions>(o =>
        {
            o.DicomNodes.Add(new DicomNodeRule { AETitle = " CT1", Networks = ["10.1.2.0/24"] });
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "IRM-É", Networks = ["10.1.3.0/24"] });
            o.DicomNodes.Add(new DicomNodeRule { AETitle = "*", Networks = ["10.1.4.0/24"] });
        });

        var error = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            services.BuildServiceProvider().GetRequiredService<Microsoft.Extensions.Options.IOptionsMonitor<AccessOptions>>().CurrentValue);

        Assert.Equal(
        [
            "Access:DicomNodes:0:AETitle ' CT1' has spaces at its ends, which DICOM ignores: write 'CT1' (1 to 16 characters of printable ASCII, without a backslash, or \"*\")",
            "Access:DicomNodes:1:AETitle 'IRM-É' holds U+00C9, outside printable ASCII (1 to 16 characters of printable ASCII, without a backslash, or \"*\")",
        ], error.Failures);
    }

    private static DicomNodeSubject Node(string ae, string ip, string? user = null) => new(ae, IPAddress.Parse(ip), user);

    [Fact]
    public async Task Allowed_AE_from_its_network_gets_its_rights_only()
    {
        var pdp = Policy(new DicomNodeRule { AETitle = "CT1", Networks = ["10.1.0.0/16"], Rights = DicomRights.Store });
        var ct = TestContext.Current.CancellationToken;
        Assert.True((await pdp.DecideAsync(new AccessRequest(Node("CT1", "10.1.2.3"), AccessAction.DicomStore), ct)).Permitted);
        var query = await pdp.DecideAsync(new AccessRequest(Node("CT1", "10.1.2.3"), AccessAction.DicomQuery), ct);
        Assert.False(query.Permitted);
        Assert.Contains("does not grant Query", query.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Known_AE_from_the_wrong_address_and_unknown_AE_are_denied_with_distinct_reasons()
    {
        var pdp = Policy(DicomNodeRule.Parse("CT1@10.1.0.0/16"));
        var ct = TestContext.Current.CancellationToken;
        var wrongIp = await pdp.DecideAsync(new AccessRequest(Node("CT1", "192.168.1.1"), AccessAction.DicomAssociate), ct);
        Assert.False(wrongIp.Permitted);
        Assert.Contains("not allowed from 192.168.1.1", wrongIp.Reason, StringComparison.Ordinal);
        var unknown = await pdp.DecideAsync(new AccessRequest(Node("EVIL", "10.1.2.3"), AccessAction.DicomAssociate), ct);
        Assert.Contains("not in the allow-list", unknown.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IPv4_mapped_addresses_match_IPv4_networks()
    {
        var pdp = Policy(DicomNodeRule.Parse("CT1@127.0.0.1"));
        var rights = await pdp.DicomRightsAsync(new DicomNodeSubject("CT1", IPAddress.Parse("::ffff:127.0.0.1")), TestContext.Current.CancellationToken);
        Assert.Equal(DicomRights.All, rights.Rights);
    }

    [Fact]
    public async Task Rules_that_require_a_user_deny_anonymous_associations()
    {
        var pdp = Policy(new DicomNodeRule { AETitle = "*", Networks = ["127.0.0.0/8"], Rights = DicomRights.All, RequireUser = true });
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(DicomRights.None, (await pdp.DicomRightsAsync(Node("ANY", "127.0.0.1"), ct)).Rights);
        Assert.Equal(DicomRights.All, (await pdp.DicomRightsAsync(Node("ANY", "127.0.0.1", "tech"), ct)).Rights);
    }

    /// <summary>
    /// Regression: an unknown user name was refused before PBKDF2 ran (3.6 ms) and a known one with a wrong passcode
    /// after it (50 ms), so the refusal's time told which user names exist. Both now cost one PBKDF2.
    /// </summary>
    [Fact]
    public void Regression_an_unknown_user_name_was_refused_faster_than_a_known_one()
    {
        var services = new ServiceCollection().AddAccess();
        services.Configure<AccessOptions>(o => o.DicomUsers.Add(new DicomUser { Name = "tech", PasswordHash = PasswordHashing.Hash("s3cret-passcode") }));
        var users = services.BuildServiceProvider().GetRequiredService<IDicomUserVerifier>();
        Assert.True(users.Verify("tech", "s3cret-passcode"));

        // The fastest of a few tries each, interleaved, so that a busy machine slows both alike.
        var known = TimeSpan.MaxValue;
        var unknown = TimeSpan.MaxValue;
        for (var i = 0; i < 5; i++)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Assert.False(users.Verify("tech", "guess"));
            known = TimeSpan.FromTicks(Math.Min(known.Ticks, watch.Elapsed.Ticks));
            watch.Restart();
            Assert.False(users.Verify("nosuchuser", "guess"));
            unknown = TimeSpan.FromTicks(Math.Min(unknown.Ticks, watch.Elapsed.Ticks));
        }

        Assert.True(unknown > known / 2, $"an unknown name was refused in {unknown.TotalMilliseconds:0.0} ms, a known one in {known.TotalMilliseconds:0.0} ms");
        Assert.False(users.Verify("nosuchuser", ""));
    }

    [Fact]
    public void Passcodes_verify_only_with_the_right_secret()
    {
        var hash = PasswordHashing.Hash("correct horse");
        Assert.True(PasswordHashing.Verify("correct horse", hash));
        Assert.False(PasswordHashing.Verify("wrong horse", hash));
        Assert.False(PasswordHashing.Verify("x", "garbage"));
        Assert.False(PasswordHashing.Verify("x", "pbkdf2-sha256$1$AA==$AA=="));
    }

    [Theory]
    [InlineData("CT1")]
    [InlineData("CT1@")]
    [InlineData("@10.0.0.0/8")]
    [InlineData("CT1@not-a-network")]
    public void Malformed_allow_flags_are_refused(string text) => Assert.ThrowsAny<FormatException>(() => DicomNodeRule.Parse(text));
}
