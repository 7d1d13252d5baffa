using Microsoft.Extensions.Configuration;

namespace Vigie.Gateway.Tests.Maintenance;

/// <summary>The retention policy as a hospital writes it in the configuration file.</summary>
public sealed class RetentionConfigurationTests
{
    [Fact]
    public void A_policy_binds_from_configuration_with_its_limit()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:Maintenance:Retention:Name"] = "imaging-20y",
            ["Gateway:Maintenance:Retention:Studies"] = "7305.00:00:00",
            ["Gateway:Maintenance:Retention:Quarantine"] = "90.00:00:00",
        }).Build();
        var policy = configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>()?.Maintenance.Retention;
        Assert.NotNull(policy);
        Assert.Equal("imaging-20y", policy.Name);
        Assert.Equal(TimeSpan.FromDays(7305), policy.Studies);
        Assert.Null(policy.SupersededVersions);
        Assert.Equal(0.1, policy.MaxShare);

        configuration["Gateway:Maintenance:Retention:MaxShare"] = "0.5";
        Assert.Equal(0.5, configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>()?.Maintenance.Retention?.MaxShare);
    }
}
