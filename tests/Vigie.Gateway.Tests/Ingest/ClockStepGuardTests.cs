using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive;
using Vigie.Archive.Index;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Gateway.Ingest;

namespace Vigie.Gateway.Tests.Ingest;

/// <summary>The recovery floor a stepped-back clock calls for, on a real SQLite index.</summary>
public sealed class ClockStepGuardTests : IAsyncDisposable
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(10);
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeMilliseconds(1_790_000_000_000);

    private readonly string _folder = Directory.CreateTempSubdirectory("vigie-clock-").FullName;
    private readonly ServiceProvider _services;

    public ClockStepGuardTests()
    {
        var services = new ServiceCollection();
        services.AddSingleton<ILoggerFactory>(NullLoggerFactory.Instance);
        services.AddSingleton(typeof(ILogger<>), typeof(NullLogger<>));
        services.AddVigieCore();
        services.Configure<DatabaseOptions>(o => o.SqlitePath = Path.Combine(_folder, "index.db"));
        services.AddArchive();
        services.Configure<ArchiveOptions>(o =>
        {
            o.DataFolder = Path.Combine(_folder, "data");
            o.KeyFile = Path.Combine(_folder, "keys", "kek.json");
        });
        services.Configure<GatewayOptions>(o => o.RecoveryWindow = Window);
        services.AddSingleton<ClockStepGuard>();
        _services = services.BuildServiceProvider();
    }

    private async Task<(ClockStepGuard Guard, IArchiveIndex Index)> PrepareAsync(CancellationToken ct)
    {
        await _services.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
        return (_services.GetRequiredService<ClockStepGuard>(), _services.GetRequiredService<IArchiveIndex>());
    }

    [Fact]
    public async Task Stores_with_the_clock_far_behind_lower_the_floor_once_and_a_further_step_lowers_it_again()
    {
        var ct = TestContext.Current.CancellationToken;
        var (guard, index) = await PrepareAsync(ct);
        guard.Start(Now.AddHours(2));

        // Concurrent stores two hours behind: one synced write, a window before the first of them.
        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => guard.BeforeStoreAsync(Now.AddMilliseconds(i), ct).AsTask()));
        var floor = await index.RecoveryFloorAsync(ct);
        Assert.NotNull(floor);
        Assert.InRange(floor.Value, Now - Window, Now.AddMilliseconds(16) - Window);

        // Later stores are covered by it; a clock stepped back again, past it, lowers it again.
        await guard.BeforeStoreAsync(Now.AddMinutes(30), ct);
        Assert.Equal(floor, await index.RecoveryFloorAsync(ct));
        await guard.BeforeStoreAsync(Now.AddHours(-1), ct);
        Assert.Equal(Now.AddHours(-1) - Window, await index.RecoveryFloorAsync(ct));
    }

    [Fact]
    public async Task Small_steps_within_half_the_window_and_an_unstarted_guard_write_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        var (guard, index) = await PrepareAsync(ct);
        await guard.BeforeStoreAsync(Now.AddDays(-1), ct);
        Assert.Null(await index.RecoveryFloorAsync(ct));

        guard.Start(Now);
        await guard.BeforeStoreAsync(Now.AddMinutes(-4), ct);
        await guard.BeforeStoreAsync(Now.AddMinutes(1), ct);
        // The newest filing time moved on: a step back that was small from the start is large from there.
        await guard.BeforeStoreAsync(Now.AddMinutes(-5), ct);
        Assert.Equal(Now.AddMinutes(-5) - Window, await index.RecoveryFloorAsync(ct));
    }

    public async ValueTask DisposeAsync()
    {
        await _services.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }
}
