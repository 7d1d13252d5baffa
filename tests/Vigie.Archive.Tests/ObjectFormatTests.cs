using System.Security.Cryptography;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Tests;

public sealed class ObjectFormatTests
{
    private const int Segment = 4096;

    public static TheoryData<int> Sizes => new(0, 1, Segment - 1, Segment, Segment + 1, 2 * Segment, 3 * 1024 * 1024 + 17);

    [Theory]
    [MemberData(nameof(Sizes))]
    public async Task Round_trip_returns_the_same_bytes_and_length(int size)
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(size, size);
        var committed = await archive.PutAsync(content);

        Assert.Equal(size, committed.Length);
        Assert.False(committed.AlreadyStored);
        Assert.Equal(content, await archive.ReadAllAsync(committed.Id));
        var expectedFile = ObjectFormat.HeaderSize + Math.Max(1, (size + Segment - 1) / Segment) * ObjectFormat.TagSize + size + ObjectFormat.TrailerSize;
        Assert.Equal(expectedFile, new FileInfo(archive.Store.Layout.ObjectPath(committed.Id)).Length);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(Segment)]
    [InlineData(Segment + 3)]
    [InlineData(100_000)]
    public async Task Any_write_chunking_gives_the_same_object(int chunk)
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(5 * Segment + 123, 3);
        await using var spool = await archive.SpoolAsync(content, chunk);
        var reference = await archive.SpoolAsync(content, 1000);
        await using (reference)
        {
            Assert.Equal(reference.Id, spool.Id);
        }

        var committed = await archive.Store.CommitAsync(spool, TestContext.Current.CancellationToken);
        Assert.Equal(content, await archive.ReadAllAsync(committed.Id));
    }

    [Fact]
    public async Task Random_access_reads_return_the_right_ranges()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(10 * Segment + 555, 11);
        var committed = await archive.PutAsync(content);
        await using var reader = await archive.Store.OpenReadAsync(committed.Id, ct);
        var random = new Random(5);
        for (var i = 0; i < 200; i++)
        {
            var offset = random.Next(0, content.Length + 10);
            var length = random.Next(0, 3 * Segment);
            var buffer = new byte[length];
            var read = await reader.ReadAsync(offset, buffer, ct);
            var expected = Math.Max(0, Math.Min(length, content.Length - offset));
            Assert.Equal(expected, read);
            Assert.Equal(content.AsSpan(Math.Min(offset, content.Length), expected).ToArray(), buffer.AsSpan(0, read).ToArray());
        }
    }

    [Fact]
    public async Task Concurrent_sync_and_async_range_reads_on_one_reader_are_correct()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(40 * Segment + 77, 21);
        var committed = await archive.PutAsync(content);
        await using var reader = await archive.Store.OpenReadAsync(committed.Id, ct);
        await Parallel.ForAsync(0, 8, ct, async (worker, token) =>
        {
            var random = new Random(worker);
            var buffer = new byte[2 * Segment];
            for (var i = 0; i < 100; i++)
            {
                var offset = random.Next(0, content.Length);
                var length = random.Next(1, buffer.Length);
                var read = worker % 2 == 0
                    ? reader.Read(offset, buffer.AsSpan(0, length))
                    : await reader.ReadAsync(offset, buffer.AsMemory(0, length), token);
                Assert.Equal(Math.Min(length, content.Length - offset), read);
                Assert.True(content.AsSpan(offset, read).SequenceEqual(buffer.AsSpan(0, read)));
            }
        });
    }

    [Fact]
    public async Task Seekable_stream_reads_ranges_without_the_whole_object()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(6 * Segment, 12);
        var committed = await archive.PutAsync(content);
        await using var reader = await archive.Store.OpenReadAsync(committed.Id, ct);
        await using var stream = reader.OpenStream();
        stream.Seek(4 * Segment + 10, SeekOrigin.Begin);
        var buffer = new byte[100];
        await stream.ReadExactlyAsync(buffer, ct);
        Assert.Equal(content.AsSpan(4 * Segment + 10, 100).ToArray(), buffer);
        Assert.Equal(content.Length, stream.Length);
    }

    [Fact]
    public async Task Equal_content_gets_one_id_and_a_second_commit_is_idempotent()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(20_000, 4);
        var first = await archive.PutAsync(content);
        var second = await archive.PutAsync(content);
        Assert.Equal(first.Id, second.Id);
        Assert.False(first.AlreadyStored);
        Assert.True(second.AlreadyStored);
        Assert.Single(Directory.EnumerateFiles(archive.Store.Layout.Objects, "*", SearchOption.AllDirectories));
        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool));
    }

    [Fact]
    public async Task Object_id_is_keyed_and_never_the_plain_sha256()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        await using var other = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(1000, 9);
        var id = (await archive.PutAsync(content)).Id;
        var otherId = (await other.PutAsync(content)).Id;
        Assert.NotEqual(id, otherId);
        Assert.NotEqual(Convert.ToHexStringLower(SHA256.HashData(content)), id.ToString());
    }

    [Fact]
    public async Task Spool_reads_back_decrypted_for_inspection_before_the_decision()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(3 * Segment + 1, 13);
        await using var spool = await archive.SpoolAsync(content);
        Assert.Equal(SHA256.HashData(content), spool.ContentSha256.ToArray());
        await using (var reader = await spool.OpenReaderAsync(ct))
        {
            await using var stream = reader.OpenStream();
            using var copy = new MemoryStream();
            await stream.CopyToAsync(copy, ct);
            Assert.Equal(content, copy.ToArray());
            Assert.Equal(spool.Id, reader.Id);
        }

        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Objects, "*", SearchOption.AllDirectories));
        var committed = await archive.Store.CommitAsync(spool, ct);
        Assert.Equal(spool.Id, committed.Id);
        Assert.Equal(SpoolState.Committed, spool.State);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.Store.CommitAsync(spool, ct));
    }

    [Fact]
    public async Task Quarantine_keeps_the_object_encrypted_with_its_reason()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(5000, 14);
        await using var spool = await archive.SpoolAsync(content);
        var quarantined = await archive.Store.QuarantineAsync(spool, "preamble polyglot: PE header (rule dicom.preamble.pe)", ct);

        Assert.Equal(SpoolState.Quarantined, spool.State);
        Assert.Equal(spool.Id, quarantined.Id);
        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Objects, "*", SearchOption.AllDirectories));
        Assert.Equal("preamble polyglot: PE header (rule dicom.preamble.pe)", await archive.Store.ReadQuarantineReasonAsync(quarantined.QuarantineId, ct));
        await using var reader = await archive.Store.OpenQuarantinedAsync(quarantined.QuarantineId, ct);
        var buffer = new byte[content.Length];
        Assert.Equal(content.Length, await reader.ReadAsync(0, buffer, ct));
        Assert.Equal(content, buffer);
        var raw = await File.ReadAllBytesAsync(archive.Store.Layout.QuarantinePath(quarantined.QuarantineId), ct);
        Assert.Equal(-1, raw.AsSpan().IndexOf(content.AsSpan(0, 64)));
    }

    [Fact]
    public async Task Disposing_an_unfinished_spool_deletes_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        await using (var writer = await archive.Store.CreateSpoolAsync(ct))
        {
            await writer.WriteAsync(Samples.Content(50_000, 1), ct);
            Assert.Single(Directory.EnumerateFiles(archive.Store.Layout.Spool));
        }

        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool));
        await using (var spool = await archive.SpoolAsync(Samples.Content(100, 2)))
        {
            Assert.Single(Directory.EnumerateFiles(archive.Store.Layout.Spool));
        }

        Assert.Empty(Directory.EnumerateFiles(archive.Store.Layout.Spool));
    }

    [Fact]
    public async Task A_spool_past_the_size_limit_fails_with_a_typed_error()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.MaxObjectBytes = 10_000);
        await using var writer = await archive.Store.CreateSpoolAsync(ct);
        await writer.WriteAsync(new byte[9_000], ct);
        var error = await Assert.ThrowsAsync<ObjectFormatException>(async () => await writer.WriteAsync(new byte[2_000], ct));
        Assert.Equal(ObjectProblem.TooLarge, error.Problem);
    }

    [Fact]
    public async Task Objects_use_the_configured_segment_size_and_old_sizes_stay_readable()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.SegmentSize = 64 * 1024);
        var content = Samples.Content(200_000, 15);
        var id = (await archive.PutAsync(content)).Id;
        await using var reopened = await archive.ReopenAsync(o => o.SegmentSize = 1024);
        Assert.Equal(content, await reopened.ReadAllAsync(id));
        var small = Samples.Content(5000, 16);
        var smallId = (await reopened.PutAsync(small)).Id;
        await using var reader = await reopened.Store.OpenReadAsync(smallId, TestContext.Current.CancellationToken);
        Assert.Equal(1024, reader.SegmentSize);
        Assert.Equal(5, reader.SegmentCount);
    }
}
