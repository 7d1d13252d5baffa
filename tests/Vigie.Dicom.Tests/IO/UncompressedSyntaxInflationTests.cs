using Vigie.Dicom.IO;
using Vigie.Dicom.Tests.Samples;

namespace Vigie.Dicom.Tests.IO;

/// <summary>
/// Regression: each retrieve (C-GET, C-MOVE) of a deflated object for a peer that takes only uncompressed syntaxes
/// inflated it into memory, up to 256 MiB, with no bound across the node: six at once of one 199 MB object took a node
/// from 186 MiB to 2.9 GiB, and it stayed there. Inflations for sending now share one budget and wait their turn past it.
/// </summary>
public sealed class UncompressedSyntaxInflationTests
{
    [Fact]
    public async Task Regression_inflations_for_sending_had_no_node_wide_bound_and_now_wait_their_turn()
    {
        var ct = TestContext.Current.CancellationToken;
        var budget = new InflationBudget(100);
        Assert.Equal(60, await budget.ReserveAsync(60, ct));
        var second = budget.ReserveAsync(60, ct).AsTask();
        var third = budget.ReserveAsync(30, ct).AsTask();
        await Task.Delay(100, ct);
        Assert.False(second.IsCompleted, "a second inflation went past the budget");
        Assert.False(third.IsCompleted, "a later, smaller one went ahead of the one waiting");

        // A waiter that gives up leaves nothing reserved behind it.
        using var cancel = new CancellationTokenSource();
        var abandoned = budget.ReserveAsync(10, cancel.Token).AsTask();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

        budget.Release(60);
        Assert.Equal(60, await second.WaitAsync(TimeSpan.FromSeconds(5), ct));
        Assert.Equal(30, await third.WaitAsync(TimeSpan.FromSeconds(5), ct));
        Assert.Equal(90, budget.Used);

        // What cannot fit the whole budget waits for all of it, instead of for ever.
        budget.GiveBackUnused(90);
        Assert.Equal(100, await budget.ReserveAsync(1_000, ct));
        budget.Release(100);
        Assert.Equal(0, budget.Used);
    }

    [Fact]
    public async Task Regression_a_deflated_data_set_converted_for_sending_holds_its_share_of_the_budget_until_disposed()
    {
        var ct = TestContext.Current.CancellationToken;
        var image = DicomSamples.SmallImage();
        image.AddOrUpdate(new DicomValueElement(DicomTags.PixelData, DicomVR.OB, new byte[8 << 20]));
        var deflated = DicomSamples.Deflate(DicomWriter.Encode(image, TransferSyntax.ExplicitVRLittleEndian));

        await using (var converted = await UncompressedSyntax.ConvertAsync(new MemoryStream(deflated), TransferSyntax.DeflatedExplicitVRLittleEndian,
            TransferSyntax.ImplicitVRLittleEndian, null, ct))
        {
            // Its values, not the 256 MiB it may take: small deflated objects do not wait behind the bound of large ones.
            Assert.InRange(UncompressedSyntax.InflatedInMemory, 8 << 20, UncompressedSyntax.MaxInflatedInMemoryTotal - UncompressedSyntax.MaxInflatedInMemory);
            using var sent = new MemoryStream();
            await converted.CopyToAsync(sent, ct);
            Assert.True(sent.Length > 8 << 20);
        }
    }
}
