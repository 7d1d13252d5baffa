using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Vigie.Cli.Tests.Conventions;

/// <summary>Regression: a misspelt configuration key ("AETitel", "Acess") was ignored without a word, leaving a default in force.</summary>
public sealed class ConfigurationKeyTests
{
    [Fact]
    public void Every_key_the_tests_and_the_sample_configuration_use_is_known()
    {
        string[] used =
        [
            "ACCESS:DICOMNODES:0:AETITLE",
            "ACCESS:DICOMNODES:0:NETWORKS:0",
            "ACCESS:DICOMNODES:0:NETWORKS:1",
            "ACCESS:DICOMNODES:0:RIGHTS",
            "ARCHIVE:LANDINGSLOTS",
            "ARCHIVE:MINFREESPACE",
            "ARCHIVE:SPOOLRESERVE",
            "AUDIT:SINKS:0:BEARERTOKEN",
            "AUDIT:SINKS:0:FHIRBASEURL",
            "AUDIT:SINKS:0:HOST",
            "AUDIT:SINKS:0:KIND",
            "AUDIT:SINKS:0:MAXBACKOFF",
            "AUDIT:SINKS:0:MINBACKOFF",
            "AUDIT:SINKS:0:NAME",
            "AUDIT:SINKS:0:NDJSONPATH",
            "AUDIT:SINKS:0:PORT",
            "AUDIT:TREEHEADINTERVAL",
            "DATABASE:CONNECTIONSTRING",
            "DATABASE:PROVIDER",
            "DICOM:SERVER:ASSOCIATION:ARTIMTIMEOUT",
            "DICOM:SERVER:ASSOCIATION:IDLETIMEOUT",
            "DICOM:SERVER:ASSOCIATION:READTIMEOUT",
            "DICOM:SERVER:BINDADDRESS",
            "DICOM:SERVER:MAXASSOCIATIONSPERCALLINGAE",
            "DICOM:SERVER:TLSPORT",
            "DICOM:SERVER:TLS:CERTIFICATEPATH",
            "DICOM:SERVER:TLS:CLIENTCAPATH",
            "DICOM:SERVER:TLS:KEYPATH",
            "DICOM:SERVER:TLS:REQUIRECLIENTCERTIFICATE",
            "GATEWAY:DESTINATIONS:0:AETITLE",
            "GATEWAY:DESTINATIONS:0:CONNECTTIMEOUT",
            "GATEWAY:DESTINATIONS:0:FORWARD",
            "GATEWAY:DESTINATIONS:0:HOST",
            "GATEWAY:DESTINATIONS:0:PORT",
            "GATEWAY:DESTINATIONS:1:AETITLE",
            "GATEWAY:DESTINATIONS:1:CONNECTTIMEOUT",
            "GATEWAY:DESTINATIONS:1:PORT",
            "GATEWAY:FORWARDING:BACKLOGALERT",
            "GATEWAY:FORWARDING:INITIALRETRYDELAY",
            "GATEWAY:FORWARDING:LEASE",
            "GATEWAY:FORWARDING:MAXRETRYDELAY",
            "GATEWAY:MAINTENANCE:FINISHEDMESSAGERETENTION",
            "GATEWAY:MAINTENANCE:FIRSTRUNDELAY",
            "GATEWAY:MAINTENANCE:INTERVAL",
        ];
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));
        var sample = new ConfigurationBuilder().AddJsonFile(Path.Combine(root, "deploy", "vigie.json")).Build();
        Assert.Empty(ConfigurationKeys.Unknown(sample));
        Assert.DoesNotContain(used, k => !ConfigurationKeys.IsKnown(k));
        Assert.True(ConfigurationKeys.IsKnown("Logging:LogLevel:Microsoft.AspNetCore"));
        Assert.True(ConfigurationKeys.IsKnown("Web:Urls"));
    }

    [Fact]
    public void Regression_misspelt_keys_were_ignored_without_a_word()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Dicom:Server:AETitel"] = "PACSGW",
            ["Dicom:Server:AETitle"] = "VIGIE",
            ["Acess:DicomNodes:0:AETitle"] = "CT1",
            ["Access:DicomNodes:0:Colour"] = "red",
            ["Access:DicomNodes:0:Networks:0"] = "10.0.0.0/8",
            ["Access:DicomNodes:x:AETitle"] = "CT2",
            ["Gateway:Destinations:0:Port:Extra"] = "1",
        }).Build();
        Assert.Equal(
            ["Access:DicomNodes:0:Colour", "Access:DicomNodes:x:AETitle", "Acess:DicomNodes:0:AETitle", "Dicom:Server:AETitel", "Gateway:Destinations:0:Port:Extra"],
            ConfigurationKeys.Unknown(configuration));
    }
}

/// <summary>
/// Regression: the binder drops a list entry it cannot read, without a word. A rule with "Rights": "Stor" vanished,
/// the node fell back to its loopback rule with every right, and the caller it was meant to restrict could store,
/// query and retrieve; an audit sink of "Kind": "Kafka" vanished and /health said there was no sink.
/// </summary>
public sealed class UnreadableEntryTests
{
    [Fact]
    public void Regression_a_list_entry_the_binder_cannot_read_was_dropped_and_the_node_opened_to_every_right()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Access:DicomNodes:0:AETitle"] = "CT01",
            ["Access:DicomNodes:0:Networks:0"] = "127.0.0.1/32",
            ["Access:DicomNodes:0:Rights"] = "Stor",
            ["Access:DicomNodes:1:AETitle"] = "PACS",
            ["Access:DicomNodes:1:Networks:0"] = "127.0.0.1/32",
            ["Access:DicomNodes:1:Rights"] = "Store, Query",
            ["Audit:Sinks:0:Name"] = "siem",
            ["Audit:Sinks:0:Kind"] = "Kafka",
        }).Build();

        var problems = ConfigurationKeys.Unreadable(configuration);
        Assert.Equal(2, problems.Count);
        var rule = Assert.Single(problems, p => p.StartsWith("Access:DicomNodes:0 cannot be read:", StringComparison.Ordinal));
        Assert.Contains("Access:DicomNodes:0:Rights is 'Stor', which is not a comma-separated list of:", rule, StringComparison.Ordinal);
        Assert.Contains("Store", rule, StringComparison.Ordinal);
        var sink = Assert.Single(problems, p => p.StartsWith("Audit:Sinks:0 cannot be read:", StringComparison.Ordinal));
        Assert.Contains("SyslogTcp", sink, StringComparison.Ordinal);
    }

    /// <summary>Regression: "DicomNodes": [] (an administrator shutting everyone out) gave every local AE every right.</summary>
    [Fact]
    public void Regression_an_emptied_allow_list_gave_every_local_caller_every_right()
    {
        static Vigie.Access.AccessOptions Bound(string json)
        {
            var configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json))).Build();
            using var services = new ServiceCollection().AddVigieConfiguration(configuration).BuildServiceProvider();
            return services.GetRequiredService<Microsoft.Extensions.Options.IOptions<Vigie.Access.AccessOptions>>().Value;
        }

        Assert.Empty(Bound("""{ "Access": { "DicomNodes": [] } }""").DicomNodes);
        Assert.Equal("*", Assert.Single(Bound("""{ "Access": { } }""").DicomNodes).AETitle);
        Assert.Equal("*", Assert.Single(Bound("""{ }""").DicomNodes).AETitle);
        Assert.Equal("CT01", Assert.Single(Bound("""{ "Access": { "DicomNodes": [ { "AETitle": "CT01", "Networks": [ "10.0.0.0/8" ] } ] } }""").DicomNodes).AETitle);
    }

    [Fact]
    public void A_configuration_that_binds_has_no_unreadable_entry()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Access:DicomNodes:0:AETitle"] = "CT01",
            ["Access:DicomNodes:0:Networks:0"] = "10.1.2.0/24",
            ["Access:DicomNodes:0:Rights"] = "Store, Query",
            ["Gateway:Destinations:0:AETitle"] = "PACS",
            ["Gateway:Destinations:0:Host"] = "127.0.0.1",
            ["Gateway:Destinations:0:Port"] = "104",
        }).Build();
        Assert.Empty(ConfigurationKeys.Unreadable(configuration));
    }
}
