using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Vigie.Archive.Tests;

[CollectionDefinition(nameof(SyncCountCollection), DisableParallelization = true)]
public sealed class SyncCountCollection;

/// <summary>How many fsyncs a commit costs (the metric is process-wide, so these tests run alone).</summary>
[Collection(nameof(SyncCountCollection))]
public sealed class SyncCountTests
{
    private sealed class SyncListener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<string, long> _counts = new();

        public SyncListener()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == ArchiveTelemetry.Name && instrument.Name == "vigie.archive.fsyncs")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "kind")
                    {
                        _counts.AddOrUpdate((string)tag.Value!, value, (_, old) => old + value);
                    }
                }
            });
            _listener.Start();
        }

        public long Data => _counts.GetValueOrDefault("data");

        public (long Files, long Directories) Take()
        {
            var taken = (_counts.GetValueOrDefault("file"), _counts.GetValueOrDefault("directory"));
            _counts.Clear();
            return taken;
        }

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public async Task A_new_object_costs_one_file_sync_and_its_folder_syncs()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        using var syncs = new SyncListener();
        await archive.PutAsync(Samples.Content(30_000, 1));
        // Its fan-out folder, and objects/ because that folder was made on first use (the harness does not pre-create them).
        Assert.Equal((1, 2), syncs.Take());
    }

    [Fact]
    public async Task A_landed_object_costs_one_data_flush_and_nothing_else()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o =>
        {
            o.LandingSlots = 4;
            o.LandingSlotBytes = 64 * 1024;
            o.LandingIdleWork = false;
        });
        await archive.Store.Slots.MakeReadyAsync(1, TestContext.Current.CancellationToken);
        using var syncs = new SyncListener();
        await archive.PutAsync(Samples.Content(30_000, 4));
        Assert.Equal(1, syncs.Data);
        Assert.Equal((0, 0), syncs.Take());
    }

    [Fact]
    public async Task A_fan_out_folder_made_by_another_node_is_synced_into_objects_before_its_first_object_here()
    {
        // Regression: a folder found already made was taken as durable, though the node (or thread) that made it may
        // not have synced objects/ yet: a power cut could then take the folder, and the acknowledged object in it.
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(30_000, 3);
        Directory.CreateDirectory(archive.Store.Layout.FanOutDirectory(archive.Keys.NameObject(System.Security.Cryptography.SHA256.HashData(content))));
        using var syncs = new SyncListener();
        await archive.PutAsync(content);
        Assert.Equal((1, 2), syncs.Take());
        // Once synced by this process, the folder's entry is not synced again (a duplicate syncs its folder only).
        await archive.PutAsync(content);
        Assert.Equal((0, 1), syncs.Take());
    }

    [Fact]
    public async Task Regression_a_landed_object_moved_into_a_fan_out_folder_another_node_made_synced_only_that_folder()
    {
        // The move copied the twin of the commit's folder sync and synced objects/ only for a folder it made itself: a
        // folder another node had just made could then be lost to a power cut, with the moved object in it.
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o =>
        {
            o.LandingSlots = 4;
            o.LandingSlotBytes = 64 * 1024;
            o.LandingIdleWork = false;
        });
        await archive.Store.Slots.MakeReadyAsync(1, ct);
        var content = Samples.Content(30_000, 5);
        Directory.CreateDirectory(archive.Store.Layout.FanOutDirectory(archive.Keys.NameObject(System.Security.Cryptography.SHA256.HashData(content))));
        await archive.PutAsync(content);
        using var syncs = new SyncListener();

        Assert.Equal(1, await archive.Store.MoveLandedAsync(ct));

        // The copy, its fan-out folder, and objects/.
        Assert.Equal((1, 2), syncs.Take());
    }

    [Fact]
    public async Task A_duplicate_costs_its_folder_sync_only()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(30_000, 2);
        await archive.PutAsync(content);
        using var syncs = new SyncListener();
        var again = await archive.PutAsync(content);
        Assert.True(again.AlreadyStored);
        // Its own bytes are dropped: the first writer synced its file before the rename that made it visible.
        Assert.Equal((0, 1), syncs.Take());
    }
}
