using Microsoft.Extensions.DependencyInjection;
using Vigie.Inspection.Engine;
using Vigie.Inspection.Tests.Dicom;
using Vigie.Inspection.Tests.Resources;

namespace Vigie.Inspection.Tests.Engine;

public sealed class ChunkedSpillTests
{
    /// <summary>
    /// Review 23: the inflated data set of a deflated object is counted in the node's inspection memory (the budget the
    /// gateway's plaintext copies share, Gateway:InMemoryInspectionTotal). Past that budget it goes to a temporary file,
    /// so the node never holds more than the budget whatever it inflates to, and all of it is given back afterwards.
    /// </summary>
    [Fact]
    public async Task A_deflated_data_set_is_held_within_the_node_s_inspection_memory_and_given_back()
    {
        var node = new InspectionMemory(() => 2 << 20);
        var inspector = TestInspection.Create(extra: services => services.AddSingleton(node));
        var verdict = await inspector.InspectAsync(ResourceTests.DeflatedZeros(8), "deflated.dcm");
        verdict.IsClean();
        Assert.InRange(node.Peak, 1, 2 << 20);
        Assert.Equal(0, node.Used);

        // With room for it, the same data set stays in memory, counted, and is given back too.
        var roomy = new InspectionMemory(() => 64 << 20);
        var inMemory = TestInspection.Create(extra: services => services.AddSingleton(roomy));
        (await inMemory.InspectAsync(ResourceTests.DeflatedZeros(8), "deflated.dcm")).IsClean();
        Assert.InRange(roomy.Peak, 8 << 20, 16 << 20);
        Assert.Equal(0, roomy.Used);
    }

    [Fact]
    public void Bytes_read_back_by_ranges_across_chunks_are_the_bytes_written()
    {
        var data = new byte[ChunkedSpill.ChunkSize * 3 + 123];
        new Random(23).NextBytes(data);
        using var spill = new ChunkedSpill(new RecordingContext());
        spill.Write(data.AsSpan(0, 1000));
        spill.Write(data.AsSpan(1000));
        using var source = spill.Detach();
        Assert.Equal(data.Length, source.Length);
        var range = new byte[ChunkedSpill.ChunkSize + 10];
        Assert.Equal(range.Length, source.ReadAt(ChunkedSpill.ChunkSize - 5, range));
        Assert.Equal(data.AsSpan(ChunkedSpill.ChunkSize - 5, range.Length).ToArray(), range);
        var tail = new byte[500];
        Assert.Equal(123, source.ReadAt(data.Length - 123, tail));
    }
}
