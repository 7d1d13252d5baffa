using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Core.Outbox;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.Maintenance;

/// <summary>Whether a maintenance scrub completes at all, on any node, as /health archive-integrity reads it.</summary>
public sealed class ArchiveMaintenanceWatchTests
{
    /// <summary>
    /// Regression (review 30, 05): with the archive-maintenance lease held by a made-up node, no scrub ever ran, and
    /// archive-integrity said Healthy "no problem found by this node's last maintenance scrub". Three intervals without a
    /// completed scrub on any node are now said; a scrub completed by another node (its stamp in the database) is enough.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_no_maintenance_scrub_for_three_intervals_was_reported_as_no_problem(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabases.CreateAsync(provider, ct);
        await using (var services = new ServiceCollection().AddVigieCore().BuildServiceProvider())
        {
            await new SchemaMigrator(db.Database, [.. services.GetServices<ISchemaProvider>()]).MigrateAsync(ct);
        }

        var leases = new LeaseStore(db.Database, TimeProvider.System);
        var options = new GatewayOptions();
        options.Maintenance.Interval = TimeSpan.FromMinutes(10);
        var status = new ArchiveIntegrityStatus();
        var watch = new ArchiveMaintenanceWatch(status, leases, new StaticMonitor(options), TimeProvider.System);
        Assert.Null(await watch.FindOverdueAsync(ct));

        // First run due 20 minutes ago: within three intervals of 10 minutes.
        status.Started(DateTimeOffset.UtcNow.AddMinutes(-21), TimeSpan.FromMinutes(1));
        Assert.Null(await watch.FindOverdueAsync(ct));

        status.Started(DateTimeOffset.UtcNow.AddHours(-2), TimeSpan.FromMinutes(1));
        var overdue = await watch.FindOverdueAsync(ct);
        Assert.NotNull(overdue);
        Assert.Contains("no maintenance scrub has completed on any node yet", overdue, StringComparison.Ordinal);

        await leases.StampAsync(ArchiveIntegrityStatus.ScrubbedStamp, "othervm-2", DateTimeOffset.UtcNow.AddMinutes(-5), ct);
        Assert.Null(await watch.FindOverdueAsync(ct));

        await leases.StampAsync(ArchiveIntegrityStatus.ScrubbedStamp, "othervm-2", DateTimeOffset.UtcNow.AddMinutes(-45), ct);
        Assert.Contains("since", await watch.FindOverdueAsync(ct), StringComparison.Ordinal);
    }

    private sealed class StaticMonitor(GatewayOptions value) : IOptionsMonitor<GatewayOptions>
    {
        public GatewayOptions CurrentValue => value;

        public GatewayOptions Get(string? name) => value;

        public IDisposable? OnChange(Action<GatewayOptions, string?> listener) => null;
    }
}
