using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Vigie.Gateway.Tests.Maintenance;

/// <summary>The gateway's own settings are checked at start, each problem named with its place.</summary>
public sealed class GatewayConfigurationTests
{
    /// <summary>
    /// Regression: a destination without a title, host or valid port (or two with the same title) was accepted and
    /// every forward or C-MOVE to it then failed at run time; so was a title outside printable ASCII, which no
    /// association request can carry.
    /// </summary>
    [Fact]
    public void Destinations_that_could_never_be_reached_stop_the_start_with_their_place()
    {
        var options = new GatewayOptions
        {
            Destinations =
            [
                new DicomDestination { AETitle = "PACS", Host = "10.1.9.5", Port = 104, Forward = true },
                new DicomDestination { AETitle = "", Host = " ", Port = 0 },
                new DicomDestination { AETitle = "PACS", Host = "10.1.9.6", Port = 70000 },
                new DicomDestination { AETitle = "VIEWER", Host = "10.1.9.7", ServerCaPath = "/etc/vigie/ca.pem", ConnectTimeout = TimeSpan.Zero, ResponseTimeout = TimeSpan.FromHours(2) },
                new DicomDestination { AETitle = "OLDPACS", ArtimTimeout = TimeSpan.Zero, MaxSendPduLength = 1024 },
                new DicomDestination { AETitle = "PACS-RADIOLOGIE-É", Host = "10.1.9.8" },
            ],
        };

        var result = new GatewayOptionsValidation().Validate(null, options);

        Assert.Equal(
        [
            "Gateway:Destinations:1:AETitle '' is empty (1 to 16 characters of printable ASCII, without a backslash)",
            "Gateway:Destinations:1:Host is empty",
            "Gateway:Destinations:1:Port 0 is not 1 to 65535",
            "Gateway:Destinations:2:AETitle 'PACS' is also another destination's: C-MOVE could not tell them apart",
            "Gateway:Destinations:2:Port 70000 is not 1 to 65535",
            "Gateway:Destinations:3 names TLS files but UseTls is false: the node would be reached in clear",
            "Gateway:Destinations:3:ConnectTimeout 00:00:00 is not between 0 and 10 minutes",
            "Gateway:Destinations:3:ResponseTimeout 02:00:00 is not between 1 second and 1 hour",
            "Gateway:Destinations:4:ArtimTimeout 00:00:00 is not between 1 second and 10 minutes",
            "Gateway:Destinations:4:MaxSendPduLength 1024 is below 4096, the least PS3.8 allows (0: as the node advertises)",
            "Gateway:Destinations:5:AETitle 'PACS-RADIOLOGIE-É' has 17 characters; at most 16 (1 to 16 characters of printable ASCII, without a backslash)",
        ], result.Failures);
        Assert.True(new GatewayOptionsValidation().Validate(null, new GatewayOptions { Destinations = [options.Destinations[0]] }).Succeeded);
    }

    /// <summary>Additional storage classes must be UIDs, and not the registry's classes of another kind.</summary>
    [Fact]
    public void Additional_storage_classes_that_are_not_UIDs_or_are_other_services_stop_the_start()
    {
        var result = new GatewayOptionsValidation().Validate(null, new GatewayOptions
        {
            AdditionalStorageSopClasses = ["1.3.12.2.1107.5.9.1", "1.2.840.10008.1.1", "1.3.12.02.1", "1.3..4", "CSA Non-Image", "1.2.840.10008.5.1.4.1.1.2"],
        });

        Assert.Equal(
        [
            "Gateway:AdditionalStorageSopClasses:1 '1.2.840.10008.1.1' is the registry's Verification SOP Class (SOP Class), not a storage class",
            "Gateway:AdditionalStorageSopClasses:2 '1.3.12.02.1' is not a UID (digits and dots, at most 64 characters, no leading zero in a component)",
            "Gateway:AdditionalStorageSopClasses:3 '1.3..4' is not a UID (digits and dots, at most 64 characters, no leading zero in a component)",
            "Gateway:AdditionalStorageSopClasses:4 'CSA Non-Image' is not a UID (digits and dots, at most 64 characters, no leading zero in a component)",
        ], result.Failures);
    }

    /// <summary>Regression: a destination titled "PACS-É" started the node; every forward to it then failed to encode its association request.</summary>
    [Fact]
    public void Regression_a_destination_title_outside_printable_ASCII_started_the_node()
    {
        var result = new GatewayOptionsValidation().Validate(null,
            new GatewayOptions { Destinations = [new DicomDestination { AETitle = "PACS-É", Host = "10.1.9.5", Port = 104, Forward = true }] });

        Assert.Equal(["Gateway:Destinations:0:AETitle 'PACS-É' holds U+00C9, outside printable ASCII (1 to 16 characters of printable ASCII, without a backslash)"],
            result.Failures);
    }

    /// <summary>
    /// Written pages leave the cache at commit unless objects are forwarded, which reads each one back within seconds
    /// (the forwarder drops it once sent); an explicit setting wins.
    /// </summary>
    [Theory]
    [InlineData(false, null, true)]
    [InlineData(true, null, false)]
    [InlineData(true, true, true)]
    [InlineData(false, false, false)]
    public void Written_pages_stay_cached_until_sent_when_objects_are_forwarded(bool forwarding, bool? configured, bool released)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddGateway();
        services.Configure<GatewayOptions>(o => o.Destinations.Add(new DicomDestination { AETitle = "PACS", Host = "10.1.9.5", Port = 104, Forward = forwarding }));
        services.Configure<Vigie.Archive.ArchiveOptions>(o => o.ReleaseWrittenPages = configured);
        using var provider = services.BuildServiceProvider();

        Assert.Equal(released, provider.GetRequiredService<IOptions<Vigie.Archive.ArchiveOptions>>().Value.ReleaseWrittenPages);
    }
}
