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

    /// <summary>
    /// Regression: a negative quarantine period with a negative deletion grace started without a word and destroyed a
    /// quarantined object (the evidence of an attack) 8 s after it arrived; a MaxShare of 5 disabled the halt; and a
    /// policy with maintenance turned off never ran, silently.
    /// </summary>
    [Fact]
    public void Regression_retention_settings_that_destroy_evidence_or_never_run_were_accepted()
    {
        var negative = new GatewayOptions { Maintenance = new MaintenanceOptions { Retention = new Archive.Retention.RetentionPolicy("neg", Quarantine: TimeSpan.FromDays(-3650)) } };
        var refused = new GatewayOptionsValidation().Validate(null, negative);
        Assert.True(refused.Failed);
        Assert.Contains("Retention:Quarantine -3650.00:00:00 must be a positive period", refused.FailureMessage, StringComparison.Ordinal);

        var share = new GatewayOptions { Maintenance = new MaintenanceOptions { Retention = new Archive.Retention.RetentionPolicy("s", Studies: TimeSpan.FromDays(7305), MaxShare: 5) } };
        Assert.Contains("MaxShare 5 must be more than 0 and at most 1", new GatewayOptionsValidation().Validate(null, share).FailureMessage, StringComparison.Ordinal);

        var off = new GatewayOptions { Maintenance = new MaintenanceOptions { Interval = TimeSpan.Zero, Retention = new Archive.Retention.RetentionPolicy("o", Studies: TimeSpan.FromDays(7305)) } };
        Assert.Contains("the policy would never run", new GatewayOptionsValidation().Validate(null, off).FailureMessage, StringComparison.Ordinal);

        var unnamed = new GatewayOptions { Maintenance = new MaintenanceOptions { Retention = new Archive.Retention.RetentionPolicy(" ", Studies: TimeSpan.FromDays(7305)) } };
        Assert.Contains("Retention:Name is empty", new GatewayOptionsValidation().Validate(null, unnamed).FailureMessage, StringComparison.Ordinal);

        var fine = new GatewayOptions { Maintenance = new MaintenanceOptions { Retention = new Archive.Retention.RetentionPolicy("f", Studies: TimeSpan.FromDays(7305)) } };
        Assert.True(new GatewayOptionsValidation().Validate(null, fine).Succeeded);
    }
}
