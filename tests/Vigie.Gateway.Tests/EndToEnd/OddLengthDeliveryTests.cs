using System.Buffers.Binary;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: a data set with odd-length values (a 3-byte UN private element, as legacy modalities send, and 13- and 7-byte
/// text values) was acknowledged 0000, then sent back unpadded: its total length was odd, dcmtk aborted ("DIMSE: Odd
/// Fragment Length"), the C-MOVE ended A702, getscu received nothing, and forwarding failed for ever. Values are now
/// padded to even length (PS3.5 7.1.1) as they are sent, on each of the three outbound paths.
/// </summary>
public sealed class OddLengthDeliveryTests
{
    private const string Study = "1.2.826.0.1.3680043.8.498.77001";
    private const string Series = "1.2.826.0.1.3680043.8.498.77001.1";
    private const string Instance = "1.2.826.0.1.3680043.8.498.77001.1.10";

    [Fact]
    public async Task Regression_an_object_with_odd_length_values_was_acknowledged_then_never_delivered()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-odd-length");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        await using var destination = await StoreScp.StartAsync("DEST", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"PACS@127.0.0.1:{pacs.Port}", "--destination", $"DEST@127.0.0.1:{destination.Port}"],
            cancellationToken: ct);

        var dataSet = OddDataSet();
        Assert.Equal(1, dataSet.Length % 2);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "LEGACYMOD", CalledAE = "VIGIE" },
            [new PresentationContext(1, DicomUids.CTImageStorage, [DicomUids.ExplicitVRLittleEndian])], ct))
        {
            var stored = await client.StoreAsync(DicomUids.CTImageStorage, Instance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(dataSet), ct);
            Assert.Equal(DimseStatus.Success, stored.Status);
            await client.ReleaseAsync(ct);
        }

        // Forwarding to a dcmtk PACS.
        await pacs.WaitForFilesAsync(1, TimeSpan.FromMinutes(1));
        Assert.True(pacs.Files == 1, string.Join('\n', pacs.Lines) + "\n--- node\n" + node.Output);

        // C-MOVE to a dcmtk storescp.
        string[] keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={Study}"];
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "DEST", "-S", .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(move.ExitCode == 0 && !move.StandardError.Contains("E:", StringComparison.Ordinal), move + "\n--- destination\n" + string.Join('\n', destination.Lines));
        await destination.WaitForFilesAsync(1, TimeSpan.FromSeconds(30));
        Assert.Equal(1, destination.Files);

        // C-GET by dcmtk's getscu.
        var got = work.Combine("got");
        Directory.CreateDirectory(got);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-od", got, .. keys, "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(get.ExitCode == 0 && !get.StandardError.Contains("E:", StringComparison.Ordinal), get.ToString());

        var received = Directory.GetFiles(pacs.Folder).Concat(Directory.GetFiles(destination.Folder)).Concat(Directory.GetFiles(got)).ToList();
        Assert.Equal(3, received.Count);
        foreach (var path in received)
        {
            var dump = await Peers.RunAsync(Peers.Require("dcmdump", "dcmtk"), [path], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(dump.ExitCode == 0 && !dump.StandardError.Contains("E:", StringComparison.Ordinal), dump.ToString());
            Assert.Contains("(0009,1002) UN 01\\02\\03\\00", dump.StandardOutput, StringComparison.Ordinal);
            Assert.Contains("DUPONT^JEANNE", dump.StandardOutput, StringComparison.Ordinal);
            Assert.Contains("ODD0001", dump.StandardOutput, StringComparison.Ordinal);

            // Padded with the VR's own byte: NUL for UN, a space for PN; every value even.
            var file = await DicomReader.ReadFileAsync(path, new DicomReadOptions { LoadLargeValues = true }, ct);
            Assert.Equal(new byte[] { 1, 2, 3, 0 }, ((DicomValueElement)file.Dataset[new DicomTag(0x0009, 0x1002)]!).Span.ToArray());
            Assert.Equal("DUPONT^JEANNE ", Encoding.ASCII.GetString(((DicomValueElement)file.Dataset[DicomTags.PatientName]!).Span));
            Assert.Equal("ODD0001 ", Encoding.ASCII.GetString(((DicomValueElement)file.Dataset[DicomTags.PatientID]!).Span));
            Assert.DoesNotContain(file.Warnings, w => w.Kind == DicomWarningKind.OddLength);
        }
    }

    /// <summary>The data set in explicit VR little endian, written by hand: Vigie's own writer would pad it.</summary>
    private static byte[] OddDataSet()
    {
        using var output = new MemoryStream();
        void Element(ushort group, ushort element, string vr, byte[] value)
        {
            Span<byte> header = stackalloc byte[12];
            BinaryPrimitives.WriteUInt16LittleEndian(header, group);
            BinaryPrimitives.WriteUInt16LittleEndian(header[2..], element);
            header[4] = (byte)vr[0];
            header[5] = (byte)vr[1];
            if (vr is "UN" or "OB")
            {
                BinaryPrimitives.WriteUInt32LittleEndian(header[8..], (uint)value.Length);
                output.Write(header);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(header[6..], (ushort)value.Length);
                output.Write(header[..8]);
            }

            output.Write(value);
        }

        static byte[] Uid(string uid) => Encoding.ASCII.GetBytes(uid.Length % 2 == 0 ? uid : uid + "\0");
        Element(0x0008, 0x0016, "UI", Uid(DicomUids.CTImageStorage));
        Element(0x0008, 0x0018, "UI", Uid(Instance));
        Element(0x0008, 0x0060, "CS", "CT"u8.ToArray());
        Element(0x0009, 0x1002, "UN", [1, 2, 3]);
        Element(0x0010, 0x0010, "PN", "DUPONT^JEANNE"u8.ToArray());
        Element(0x0010, 0x0020, "LO", "ODD0001"u8.ToArray());
        Element(0x0020, 0x000D, "UI", Uid(Study));
        Element(0x0020, 0x000E, "UI", Uid(Series));
        return output.ToArray();
    }
}
