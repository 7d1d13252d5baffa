using Vigie.Audit.Model;

namespace Vigie.Gateway.Tests;

public sealed class ConfigurationChangeTests
{
    private static Dictionary<string, byte[]> Settings(params (string Name, byte Value)[] settings) =>
        settings.ToDictionary(s => s.Name, s => new[] { s.Value }, StringComparer.OrdinalIgnoreCase);

    [Fact]
    public void Settings_are_compared_by_name_whatever_their_case_and_a_change_is_classified_by_what_it_touches()
    {
        var before = Settings(("Access:DicomNodes:0:AETitle", 1), ("Dicom:Server:Port", 2), ("Gateway:Maintenance:Interval", 3));

        Assert.Null(ConfigurationChange.Between(before, Settings(("ACCESS:DICOMNODES:0:AETITLE", 1), ("Dicom:Server:Port", 2), ("Gateway:Maintenance:Interval", 3))));

        var port = ConfigurationChange.Between(before, Settings(("Access:DicomNodes:0:AETitle", 1), ("Dicom:Server:Port", 9), ("Gateway:Maintenance:Interval", 3)))!;
        Assert.Equal([AuditEventTypes.NetworkConfiguration], port.EventTypes);
        Assert.Equal("1 changed (Dicom:Server:Port)", port.Summary(10));

        var token = ConfigurationChange.Between(before, Settings(("Access:DicomNodes:0:AETitle", 1), ("Dicom:Server:Port", 2), ("Audit:Sinks:0:BearerToken", 4)))!;
        Assert.Equal([AuditEventTypes.SecurityConfiguration, AuditEventTypes.SoftwareConfiguration], token.EventTypes);
        Assert.Equal("1 added (Audit:Sinks:0:BearerToken); 1 removed (Gateway:Maintenance:Interval)", token.Summary(10));

        // A TLS certificate under the network section is about security first.
        var tls = ConfigurationChange.Between(before, new Dictionary<string, byte[]>(before, StringComparer.OrdinalIgnoreCase) { ["Dicom:Server:Tls:CertificatePath"] = [5] })!;
        Assert.Equal([AuditEventTypes.SecurityConfiguration], tls.EventTypes);
    }

    [Fact]
    public void A_large_change_names_the_first_settings_and_counts_the_rest()
    {
        var after = Enumerable.Range(0, 300).ToDictionary(i => $"Access:DicomNodes:{i}:AETitle", i => new[] { (byte)i }, StringComparer.OrdinalIgnoreCase);

        var change = ConfigurationChange.Between(Settings(), after)!;

        Assert.Equal(300, change.Count);
        Assert.EndsWith("and 290 more)", change.Summary(10), StringComparison.Ordinal);
        Assert.True(ConfigurationChange.Between(null, after)!.First);
    }
}
