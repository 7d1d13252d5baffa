using Microsoft.Extensions.DependencyInjection;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

public sealed class RegistrationTests
{
    [Fact]
    public async Task AddArchive_wires_the_services_and_the_initializer_prepares_a_first_start()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddVigieCore();
        services.Configure<DatabaseOptions>(o => o.SqlitePath = Path.Combine(root.Path, "data", "index.db"));
        services.Configure<ArchiveOptions>(o =>
        {
            var defaults = ArchiveHarness.NewOptions(root.Path);
            o.DataFolder = defaults.DataFolder;
            o.KeyFile = defaults.KeyFile;
        });
        services.AddArchive();
        services.AddArchive();
        await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = false, ValidateScopes = true });

        await provider.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
        var init = await provider.GetRequiredService<ArchiveInitializer>().InitializeAsync(ct);
        Assert.True(init.KeysCreated);
        Assert.True(Directory.Exists(Path.Combine(init.DataFolder, "spool")));
        Assert.Single(provider.GetServices<ISchemaProvider>(), p => p is ArchiveSchema);

        var store = provider.GetRequiredService<IObjectStore>();
        await using var content = new MemoryStream(Samples.Content(100_000, 1));
        var stored = await store.PutAsync(content, ct);
        Assert.True(await store.ExistsAsync(stored.Id, ct));
        Assert.NotNull(provider.GetRequiredService<IArchiveKeyService>());
        Assert.NotNull(provider.GetRequiredService<IArchiveIndex>());
        Assert.NotNull(provider.GetRequiredService<ScrubService>());
        Assert.NotNull(provider.GetRequiredService<KeyRotationService>());
        Assert.False((await provider.GetRequiredService<ArchiveInitializer>().InitializeAsync(ct)).KeysCreated);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
    }

    [Fact]
    public async Task Regression_old_keys_over_a_data_folder_with_no_archive_started_a_new_archive()
    {
        // A data volume not mounted: the node made a new root key and a new audit log beside the old archive's keys.
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory();
        var defaults = ArchiveHarness.NewOptions(root.Path);
        ServiceProvider Build() => ArchiveServices(defaults, Path.Combine(root.Path, "data", "index.db"));

        await using (var first = Build())
        {
            await first.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
            Assert.True((await first.GetRequiredService<ArchiveInitializer>().InitializeAsync(ct)).KeysCreated);
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        File.SetLastWriteTimeUtc(defaults.KeyFile!, DateTime.UtcNow.AddHours(-1));
        Directory.Delete(defaults.DataFolder, recursive: true);
        Directory.CreateDirectory(defaults.DataFolder);

        await using var again = Build();
        await again.GetRequiredService<SchemaMigrator>().MigrateAsync(ct);
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await again.GetRequiredService<ArchiveInitializer>().InitializeAsync(ct));
        Assert.Contains("is its volume mounted", refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(defaults.DataFolder, "keys", "root.key")));
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
    }

    [Fact]
    public async Task Regression_a_first_start_on_a_folder_of_other_files_spread_the_archive_among_them()
    {
        // vigie serve --data ~ (or a mistyped /srv) made objects/, spool/, keys/ and index.db among the user's files.
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory();
        var defaults = ArchiveHarness.NewOptions(root.Path);
        Directory.CreateDirectory(Path.Combine(defaults.DataFolder, "photos"));
        await File.WriteAllTextAsync(Path.Combine(defaults.DataFolder, "notes.txt"), "not Vigie's", ct);
        Directory.CreateDirectory(Path.Combine(defaults.DataFolder, "lost+found"));
        await using var provider = ArchiveServices(defaults, root.Combine("index.db"));
        await provider.GetRequiredService<Vigie.Core.Data.SchemaMigrator>().MigrateAsync(ct);
        var initializer = provider.GetRequiredService<ArchiveInitializer>();

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await initializer.InitializeAsync(ct));
        Assert.Contains("holds no archive but other files (notes.txt, photos)", refused.Message, StringComparison.Ordinal);
        Assert.Equal(["lost+found", "notes.txt", "photos"], Directory.EnumerateFileSystemEntries(defaults.DataFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.False(File.Exists(defaults.KeyFile));

        // A settings file is not Vigie's either: none is read from the data folder since 2026-12-07 (before, one could be
        // put there first).
        File.Delete(Path.Combine(defaults.DataFolder, "notes.txt"));
        Directory.Delete(Path.Combine(defaults.DataFolder, "photos"));
        await File.WriteAllTextAsync(Path.Combine(defaults.DataFolder, "vigie.json"), "{}", ct);
        refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await initializer.InitializeAsync(ct));
        Assert.Contains("holds no archive but other files (vigie.json)", refused.Message, StringComparison.Ordinal);

        // Emptied of the user's files (lost+found of a dedicated file system stays), it starts.
        File.Delete(Path.Combine(defaults.DataFolder, "vigie.json"));
        Assert.True((await initializer.InitializeAsync(ct)).KeysCreated);
    }

    /// <summary>
    /// Regression: a backup cut short after its keys were copied (BACKUP-INCOMPLETE in it, no index.db) started as an
    /// archive that had lost its index. It is refused, and nothing in it is changed.
    /// </summary>
    [Fact]
    public async Task Regression_a_backup_cut_short_was_accepted_as_a_data_folder()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory();
        var defaults = ArchiveHarness.NewOptions(root.Path);
        Directory.CreateDirectory(Path.Combine(defaults.DataFolder, "objects"));
        await File.WriteAllTextAsync(Path.Combine(defaults.DataFolder, ArchiveInitializer.IncompleteBackupMarker), "cut short", ct);
        await using var provider = ArchiveServices(defaults, root.Combine("index.db"));
        await provider.GetRequiredService<Vigie.Core.Data.SchemaMigrator>().MigrateAsync(ct);

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await provider.GetRequiredService<ArchiveInitializer>().InitializeAsync(ct));
        Assert.Contains("is a backup that was cut short (it holds BACKUP-INCOMPLETE)", refused.Message, StringComparison.Ordinal);
        Assert.Equal([ArchiveInitializer.IncompleteBackupMarker, "objects"],
            Directory.EnumerateFileSystemEntries(defaults.DataFolder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.False(File.Exists(defaults.KeyFile));
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
    }

    /// <summary>The archive's services over <paramref name="defaults"/>' data and key folders, with the SQLite index at <paramref name="index"/>.</summary>
    private static ServiceProvider ArchiveServices(ArchiveOptions defaults, string index)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddVigieCore();
        services.Configure<DatabaseOptions>(o => o.SqlitePath = index);
        services.Configure<ArchiveOptions>(o =>
        {
            o.DataFolder = defaults.DataFolder;
            o.KeyFile = defaults.KeyFile;
        });
        services.AddArchive();
        return services.BuildServiceProvider();
    }

    /// <summary>Regression: a negative deletion grace was accepted, and removed a file (a quarantined object) at its retention decision.</summary>
    [Fact]
    public void Regression_a_negative_deletion_grace_was_accepted()
    {
        using var root = new TempDirectory();
        var options = ArchiveHarness.NewOptions(root.Path);
        options.DeletionGrace = TimeSpan.FromDays(-1);
        Assert.Contains("DeletionGrace", Assert.Throws<InvalidOperationException>(options.Validate).Message, StringComparison.Ordinal);
    }
}
