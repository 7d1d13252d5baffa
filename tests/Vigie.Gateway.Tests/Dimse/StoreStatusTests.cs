using Vigie.Gateway.Dimse;

namespace Vigie.Gateway.Tests.Dimse;

/// <summary>
/// Regression: /health said Healthy while every C-STORE was refused A700 on the database's "permission denied for table
/// archive_instances" (a revoked INSERT): nothing told the administrator that the modalities kept their images.
/// </summary>
public sealed class StoreStatusTests
{
    private static readonly DateTimeOffset Noon = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Regression_health_was_healthy_while_every_store_was_refused_on_a_database_error()
    {
        var status = new StoreStatus();
        Assert.Null(status.Failing(Noon));
        status.Failed(Noon, "the object could not be stored (PostgresException 42501)");
        status.Failed(Noon.AddSeconds(5), "the object could not be stored (PostgresException 42501)");
        var failing = status.Failing(Noon.AddSeconds(10));
        Assert.NotNull(failing);
        Assert.Equal(Noon, failing.Value.Since);
        Assert.Equal(2, failing.Value.Count);
        Assert.Contains("42501", failing.Value.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_store_completed_since_or_ten_quiet_minutes_clear_it()
    {
        var status = new StoreStatus();
        status.Failed(Noon, "the object could not be stored (IOException)");
        status.Stored();
        Assert.Null(status.Failing(Noon.AddSeconds(1)));

        status.Failed(Noon, "the object could not be stored (IOException)");
        Assert.Null(status.Failing(Noon.AddMinutes(11)));
    }
}
