using System.Buffers.Binary;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Tests.Interop;

public sealed class BigEndianConversionTests
{
    /// <summary>
    /// Regression: an object received in Explicit VR Big Endian was stored, but a C-GET, C-MOVE or forward to a peer
    /// that takes only little endian (most, and Implicit VR Little Endian is the one every node must take) failed its
    /// sub-operation (A702): big endian had no alternative syntax.
    /// </summary>
    [Theory]
    [InlineData(DicomUids.ImplicitVRLittleEndian)]
    [InlineData(DicomUids.ExplicitVRLittleEndian)]
    public async Task Regression_a_big_endian_object_could_not_be_sent_to_a_little_endian_peer(string targetUid)
    {
        var ct = TestContext.Current.CancellationToken;
        var pixels = new byte[512 * 512 * 2];
        new Random(7).NextBytes(pixels);
        // Vigie writes no big endian: the data set is encoded here, element by element (PS3.5 7.3).
        var swapped = pixels.ToArray();
        for (var i = 0; i < swapped.Length; i += 2)
        {
            (swapped[i], swapped[i + 1]) = (swapped[i + 1], swapped[i]);
        }

        using var encoded = new MemoryStream();
        void Element(ushort group, ushort element, string vr, byte[] value)
        {
            Span<byte> header = stackalloc byte[12];
            BinaryPrimitives.WriteUInt16BigEndian(header, group);
            BinaryPrimitives.WriteUInt16BigEndian(header[2..], element);
            header[4] = (byte)vr[0];
            header[5] = (byte)vr[1];
            if (vr is "OW" or "OB")
            {
                BinaryPrimitives.WriteUInt32BigEndian(header[8..], (uint)value.Length);
                encoded.Write(header);
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(header[6..], (ushort)value.Length);
                encoded.Write(header[..8]);
            }

            encoded.Write(value);
        }

        static byte[] Text(string value) => System.Text.Encoding.ASCII.GetBytes(value.Length % 2 == 0 ? value : value + "\0");
        static byte[] UShort(ushort value) => [(byte)(value >> 8), (byte)value];
        Element(0x0008, 0x0016, "UI", Text(DicomUids.CTImageStorage));
        Element(0x0008, 0x0018, "UI", Text("2.25.6161616161"));
        Element(0x0010, 0x0020, "LO", Text("SYN-BE-1"));
        Element(0x0028, 0x0002, "US", UShort(1));
        Element(0x0028, 0x0010, "US", UShort(512));
        Element(0x0028, 0x0011, "US", UShort(512));
        Element(0x0028, 0x0100, "US", UShort(16));
        Element(0x7FE0, 0x0010, "OW", swapped);
        var bigEndian = encoded.ToArray();
        Assert.Equal(targetUid, UncompressedSyntax.Choose(DicomUids.ExplicitVRBigEndian, syntax => syntax == targetUid));

        await using var converted = await UncompressedSyntax.ConvertAsync(new MemoryStream(bigEndian), TransferSyntax.ExplicitVRBigEndian,
            TransferSyntax.Lookup(targetUid), null, ct);
        using var output = new MemoryStream();
        await converted.CopyToAsync(output, ct);

        var read = await DicomReader.ReadDatasetAsync(output.ToArray(), TransferSyntax.Lookup(targetUid), new DicomReadOptions { LoadLargeValues = true }, ct);
        Assert.True(read.TryGetInt64(DicomTags.Rows, out var rows) && rows == 512);
        Assert.Equal("2.25.6161616161", read.GetString(DicomTags.SOPInstanceUID));
        Assert.True(((DicomValueElement)read[DicomTags.PixelData]!).Value.Span.SequenceEqual(pixels));
    }
}
