using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: the dictionary was the 2022 registry's, so storage classes and transfer syntaxes registered since
/// (Photoacoustic Image, Label Map Segmentation, Inventory; HTJ2K, JPEG XL) were refused at negotiation (result 3 or 4),
/// and modalities sending them could not store at all. dcmtk 3.6.7 knows none of them, so the PACS here is a second node.
/// </summary>
public sealed class RegistryEditionTests
{
    [Fact]
    public async Task Storage_classes_and_transfer_syntaxes_registered_since_2022_are_stored_found_and_forwarded()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var pacs = await VigieNode.StartAsync(cancellationToken: ct);
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"VIGIE@127.0.0.1:{pacs.DicomPort}"], cancellationToken: ct);

        (string SopClass, string Syntax)[] newer =
        [
            (DicomUids.PhotoacousticImageStorage, DicomUids.HTJ2KLossless),
            (DicomUids.LabelMapSegmentationStorage, DicomUids.JPEGXLLossless),
            (DicomUids.InventoryStorage, DicomUids.ExplicitVRLittleEndian),
        ];
        Assert.All(newer, n => Assert.True(SopClasses.IsStorage(n.SopClass) && TransferSyntax.TryLookup(n.Syntax, out var s) && s.IsExplicitVR, n.ToString()));

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         newer.Select((n, i) => new PresentationContext((byte)(2 * i + 1), n.SopClass, [n.Syntax])).ToList(), ct))
        {
            for (var i = 0; i < newer.Length; i++)
            {
                var (sopClass, syntax) = newer[i];
                var uid = $"2.25.20240400{i}";
                var data = DicomWriter.Encode(Object(sopClass, uid, syntax), TransferSyntax.Lookup(syntax));
                var result = await client.StoreAsync(sopClass, uid, syntax, new MemoryStream(data), ct);
                Assert.True(result.Status == DimseStatus.Success, $"{sopClass} in {syntax}: {result.Status:X4}");
            }

            await client.ReleaseAsync(ct);
        }

        Assert.Equal(3, (await node.StatsAsync()).GetProperty("instances").GetInt64());
        var forwarded = await Eventually.WaitForAsync(async () => (await pacs.StatsAsync()).GetProperty("instances").GetInt64(), n => n == 3, ct, TimeSpan.FromSeconds(60));
        Assert.Equal(3, forwarded);
        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"),
            ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID=2.25.20240401", "-k", "SeriesInstanceUID", "-k", "SOPClassUID", "-k",
                "SOPInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(find.ExitCode == 0, find.ToString());
        Assert.Contains(DicomUids.PhotoacousticImageStorage, find.StandardError + find.StandardOutput, StringComparison.Ordinal);

        Assert.Equal(0, (await node.VigieAsync("scrub")).ExitCode);
        Assert.Equal(0, (await pacs.VigieAsync("scrub")).ExitCode);
    }

    private static DicomDataset Object(string sopClass, string sopInstance, string syntax)
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, sopClass);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        ds.SetString(DicomTags.StudyDate, DicomVR.DA, "20260101");
        ds.SetString(DicomTags.Modality, DicomVR.CS, sopClass == DicomUids.InventoryStorage ? "OT" : sopClass == DicomUids.PhotoacousticImageStorage ? "PA" : "SEG");
        ds.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^NEWER");
        ds.SetString(DicomTags.PatientID, DicomVR.LO, "SYN2024");
        ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "2.25.20240401");
        ds.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "2.25.2024040" + sopInstance[^1..] + "9");
        if (syntax == DicomUids.ExplicitVRLittleEndian)
        {
            return ds;
        }

        ds.SetUInt16(DicomTags.SamplesPerPixel, 1);
        ds.SetString(DicomTags.PhotometricInterpretation, DicomVR.CS, "MONOCHROME2");
        ds.SetUInt16(DicomTags.Rows, 8);
        ds.SetUInt16(DicomTags.Columns, 8);
        ds.SetUInt16(DicomTags.BitsAllocated, 8);
        ds.SetUInt16(DicomTags.BitsStored, 8);
        ds.SetUInt16(DicomTags.HighBit, 7);
        ds.SetUInt16(DicomTags.PixelRepresentation, 0);
        var pixels = new DicomFragmentSequence(DicomTags.PixelData, DicomVR.OB);
        pixels.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, null, 0, -1));
        // Codestream starts only (inert): J2K SOC+SIZ for HTJ2K, the JPEG XL codestream signature for JPEG XL.
        byte[] frame = syntax == DicomUids.HTJ2KLossless ? [0xFF, 0x4F, 0xFF, 0x51, 0, 0x29, 0, 0x40, 0, 0, 0, 8, 0xFF, 0xD9] : [0xFF, 0x0A, 0xF8, 0x3F, 0, 0, 0, 0];
        pixels.Items.Add(new DicomFragment(frame, null, frame.Length, -1));
        ds.AddOrUpdate(pixels);
        return ds;
    }
}
