using Vigie.Archive.Storage;

namespace Vigie.Archive.Tests;

/// <summary>Files placed under objects/ by someone else: every one is a typed error, never a crash, a hang or a huge allocation.</summary>
public sealed class HostileObjectTests
{
    [Fact]
    public async Task Random_and_half_valid_files_fail_with_typed_errors()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var valid = await File.ReadAllBytesAsync(archive.Store.Layout.ObjectPath((await archive.PutAsync(Samples.Content(20_000, 1))).Id), ct);
        var random = new Random(42);
        var target = Samples.Content(10, 2);
        var id = (await archive.PutAsync(target)).Id;
        var path = archive.Store.Layout.ObjectPath(id);
        for (var round = 0; round < 300; round++)
        {
            byte[] bytes;
            switch (round % 4)
            {
                case 0:
                    bytes = new byte[random.Next(0, 3000)];
                    random.NextBytes(bytes);
                    break;
                case 1:
                    // Our magic and version, then noise: lengths and slots mean nothing.
                    bytes = new byte[random.Next(ObjectFormat.HeaderSize - 10, 5000)];
                    random.NextBytes(bytes);
                    valid.AsSpan(0, 10).CopyTo(bytes);
                    break;
                case 2:
                    // A valid object with a few random bytes changed.
                    bytes = (byte[])valid.Clone();
                    for (var i = 0; i < 1 + random.Next(4); i++)
                    {
                        bytes[random.Next(bytes.Length)] ^= (byte)(1 + random.Next(255));
                    }

                    break;
                default:
                    // A valid header with a declared segment size of 16 MiB and a short body.
                    bytes = valid.AsSpan(0, random.Next(ObjectFormat.HeaderSize, valid.Length)).ToArray();
                    bytes[12] = 0x01;
                    break;
            }

            await File.WriteAllBytesAsync(path, bytes, ct);
            var error = await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.ReadAllAsync(id));
            Assert.True(Enum.IsDefined(error.Problem));
        }
    }

    [Fact]
    public void Header_parsing_checks_every_field()
    {
        var prefix = ObjectFormat.BuildPrefix(4096, new byte[7]);
        var header = new byte[ObjectFormat.HeaderSize];
        prefix.CopyTo(header, 0);
        Assert.All(ObjectFormat.ParseHeader(header, "t").Slots, s => Assert.False(s.Used));

        var badSegment = (byte[])header.Clone();
        badSegment[12] = 0x7F;
        Assert.Equal(ObjectProblem.InvalidHeader, Assert.Throws<ObjectFormatException>(() => ObjectFormat.ParseHeader(badSegment, "t")).Problem);
        var reserved = (byte[])header.Clone();
        reserved[30] = 1;
        Assert.Equal(ObjectProblem.InvalidHeader, Assert.Throws<ObjectFormatException>(() => ObjectFormat.ParseHeader(reserved, "t")).Problem);
        var version = (byte[])header.Clone();
        version[8] = 2;
        Assert.Equal(ObjectProblem.UnsupportedVersion, Assert.Throws<ObjectFormatException>(() => ObjectFormat.ParseHeader(version, "t")).Problem);
        Assert.Equal(ObjectProblem.Truncated, Assert.Throws<ObjectFormatException>(() => ObjectFormat.ParseHeader(header.AsSpan(0, 100), "t")).Problem);
        Assert.Equal(ObjectProblem.NotOurFormat, Assert.Throws<ObjectFormatException>(() => ObjectFormat.ParseHeader("%PDF-1.7"u8, "t")).Problem);

        var slotTooLong = (byte[])header.Clone();
        slotTooLong[ObjectFormat.SlotOffset(0)] = ObjectFormat.SlotUsed;
        slotTooLong[ObjectFormat.SlotOffset(0) + 2] = 0xFF;
        Assert.False(ObjectFormat.ParseHeader(slotTooLong, "t").Slots[0].Used);
    }

    [Theory]
    [InlineData(0L, 4096)]
    [InlineData(ObjectFormat.HeaderSize + ObjectFormat.TrailerSize + 15L, 4096)]
    [InlineData(ObjectFormat.HeaderSize + ObjectFormat.TrailerSize + 4112L + 16, 4096)]
    [InlineData(long.MaxValue, 1024)]
    public void Impossible_file_lengths_have_no_layout(long length, int segmentSize) => Assert.Null(ObjectFormat.LayoutFor(length, segmentSize));

    [Fact]
    public void Object_ids_parse_strictly()
    {
        var id = new ObjectId(Samples.Content(32, 1));
        Assert.True(ObjectId.TryParse(id.ToString(), out var back));
        Assert.Equal(id, back);
        Assert.False(ObjectId.TryParse(id.ToString().ToUpperInvariant(), out _));
        Assert.False(ObjectId.TryParse(id + "0", out _));
        Assert.False(ObjectId.TryParse("../" + id.ToString()[3..], out _));
        Assert.Equal(id.ToString()[..3], id.FanOut);
    }
}
