using Vigie.Audit.Model;

namespace Vigie.Gateway.Tests;

/// <summary>The participants the gateway names in its audit records.</summary>
public sealed class GatewayAuditTests
{
    /// <summary>
    /// Regression: a C-MOVE destination configured by address ("127.0.0.1") was typed 1, machine name, in the ATNA
    /// message, while PS3.15 A.5.1 (from RFC 3881) types an IP address 2; the requestor at the same address was typed 2.
    /// </summary>
    [Theory]
    [InlineData("127.0.0.1", NetworkAccessPointType.IpAddress)]
    [InlineData("fe80::1", NetworkAccessPointType.IpAddress)]
    [InlineData("pacs.example.org", NetworkAccessPointType.MachineName)]
    [InlineData("pacs1", NetworkAccessPointType.MachineName)]
    public void Regression_a_move_destinations_ip_address_was_typed_machine_name(string host, NetworkAccessPointType expected)
    {
        var destination = GatewayAudit.Destination("DEST1", host);
        Assert.Equal(host, destination.NetworkAccessPointId);
        Assert.Equal(expected, destination.NetworkAccessPointType);
        Assert.Null(GatewayAudit.Destination("DEST1").NetworkAccessPointType);
    }
}
