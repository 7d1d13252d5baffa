using Microsoft.Extensions.Configuration;
using Vigie.Inspection;

namespace Vigie.Gateway.Tests.Ingest;

public sealed class InspectionMemoryTests
{
    [Fact]
    public void Copies_are_refused_past_the_node_s_total_and_allowed_again_once_released()
    {
        var memory = new InspectionMemory(() => 3 << 20);
        Assert.True(memory.TryReserve(1 << 20));
        Assert.True(memory.TryReserve(2 << 20));
        Assert.False(memory.TryReserve(1));
        memory.Release(2 << 20);
        Assert.True(memory.TryReserve(2 << 20));
        Assert.Equal(3 << 20, memory.Used);
    }

    [Fact]
    public void The_total_is_read_at_each_reservation_so_a_lowered_setting_applies_at_once()
    {
        long total = 4 << 20;
        var memory = new InspectionMemory(() => total);
        Assert.True(memory.TryReserve(2 << 20));
        total = 2 << 20;
        Assert.False(memory.TryReserve(1));
    }

    [Theory]
    [InlineData("InMemoryInspectionLimit", "0", "Gateway:InMemoryInspectionLimit is 0: it must be positive")]
    [InlineData("InMemoryInspectionLimit", "2000000000", "Gateway:InMemoryInspectionLimit 2000000000 is above 1 GiB")]
    [InlineData("InMemoryInspectionTotal", "-1", "Gateway:InMemoryInspectionTotal is -1: it must not be negative")]
    [InlineData("MaxFindResults", "-5", "Gateway:MaxFindResults is -5: it must be positive")]
    [InlineData("Forwarding:BacklogAlert", "-00:15:00", "Gateway:Forwarding:BacklogAlert -00:15:00 must be positive")]
    [InlineData("CommitmentReportExpiry", "-1.00:00:00", "Gateway:CommitmentReportExpiry -1.00:00:00 must be positive")]
    [InlineData("Forwarding:BatchSize", "-1", "Gateway:Forwarding:BatchSize is -1: it must be at least 1")]
    [InlineData("Forwarding:MaxRetryDelay", "00:00:01", "Gateway:Forwarding:MaxRetryDelay 00:00:01 is below InitialRetryDelay 00:00:05")]
    public void A_setting_out_of_range_is_named_with_its_value(string setting, string value, string expected)
    {
        var options = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:" + setting] = value }).Build()
            .GetSection(GatewayOptions.Section).Get<GatewayOptions>()!;
        var result = new GatewayOptionsValidation().Validate(null, options);
        Assert.Contains(expected, result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void A_total_of_zero_is_allowed_and_reads_every_object_back()
    {
        Assert.True(new GatewayOptionsValidation().Validate(null, new GatewayOptions { InMemoryInspectionTotal = 0 }).Succeeded);
        Assert.False(new InspectionMemory(() => 0).TryReserve(1));
    }
}
