using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Tests.Samples;

/// <summary>Synthetic DICOM samples built in the tests: valid ones in every syntax, and hand-made hostile byte layouts.</summary>
internal static class DicomSamples
{
    /// <summary>A small image dataset with nested sequences of both length forms, private tags and a text value.</summary>
    public static DicomDataset SmallImage(string patientName = "SYNTH^PATIENT", int rows = 8, int columns = 8)
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SpecificCharacterSet, DicomVR.CS, "ISO_IR 192");
        ds.SetStrings(DicomTags.ImageType, DicomVR.CS, ["ORIGINAL", "PRIMARY"]);
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.CTImageStorage);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.1234567890");
        ds.SetString(DicomTags.StudyDate, DicomVR.DA, "20240101");
        ds.SetString(DicomTags.Modality, DicomVR.CS, "CT");
        ds.SetString(DicomTags.PatientName, DicomVR.PN, patientName);
        ds.SetString(DicomTags.PatientID, DicomVR.LO, "SYN0001");
        ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "2.25.1");
        ds.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "2.25.2");
        ds.SetStrings(DicomTags.ImagePositionPatient, DicomVR.DS, ["-250.0", "-250", "1e2"]);
        var referenced = new DicomSequence(DicomTags.ReferencedImageSequence, undefinedLength: false);
        var item = new DicomDataset();
        item.SetString(DicomTags.ReferencedSOPClassUID, DicomVR.UI, DicomUids.CTImageStorage);
        item.SetString(DicomTags.ReferencedSOPInstanceUID, DicomVR.UI, "2.25.99");
        var nested = new DicomSequence(DicomTags.PurposeOfReferenceCodeSequence, undefinedLength: true);
        var code = new DicomDataset();
        code.SetString(DicomTags.CodeValue, DicomVR.SH, "121311");
        code.SetString(DicomTags.CodingSchemeDesignator, DicomVR.SH, "DCM");
        code.SetString(DicomTags.CodeMeaning, DicomVR.LO, "Localizer");
        nested.Items.Add(code);
        item.AddOrUpdate(nested);
        referenced.Items.Add(item);
        ds.AddOrUpdate(referenced);
        ds.SetString(new DicomTag(0x0009, 0x0010), DicomVR.LO, "VIGIE TEST");
        ds.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.UN, "private\0"u8.ToArray());
        ds.SetString(DicomTags.ImageComments, DicomVR.LT, "line one\r\nline two");
        ds.SetUInt16(DicomTags.SamplesPerPixel, 1);
        ds.SetString(DicomTags.PhotometricInterpretation, DicomVR.CS, "MONOCHROME2");
        ds.SetUInt16(DicomTags.Rows, (ushort)rows);
        ds.SetUInt16(DicomTags.Columns, (ushort)columns);
        ds.SetUInt16(DicomTags.BitsAllocated, 16);
        ds.SetUInt16(DicomTags.BitsStored, 12);
        ds.SetUInt16(DicomTags.HighBit, 11);
        ds.SetUInt16(DicomTags.PixelRepresentation, 0);
        var pixels = new byte[rows * columns * 2];
        for (var i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)(i * 7);
        }

        ds.SetBytes(DicomTags.PixelData, DicomVR.OW, pixels);
        return ds;
    }

    public static byte[] File(DicomDataset dataset, TransferSyntax syntax)
    {
        var file = new DicomFile(new DicomDataset(), dataset, syntax);
        using var stream = new MemoryStream();
        DicomWriter.WriteFileAsync(stream, file, new DicomWriteOptions { TransferSyntax = syntax }, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return stream.ToArray();
    }

    /// <summary>A JPEG-like encapsulated file: empty offset table and two fragments.</summary>
    public static byte[] Encapsulated()
    {
        var ds = SmallImage();
        ds.Remove(DicomTags.PixelData);
        var fragments = new DicomFragmentSequence(DicomTags.PixelData, DicomVR.OB);
        fragments.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, null, 0, -1));
        fragments.Items.Add(new DicomFragment(new byte[] { 0xFF, 0xD8, 0xFF, 0xE0, 1, 2 }, null, 6, -1));
        fragments.Items.Add(new DicomFragment(new byte[] { 3, 4, 0xFF, 0xD9 }, null, 4, -1));
        ds.AddOrUpdate(fragments);
        return File(ds, TransferSyntax.Lookup(DicomUids.JPEGBaseline8Bit));
    }

    /// <summary>Every valid seed the fuzzer mutates.</summary>
    public static IReadOnlyList<byte[]> Seeds() =>
    [
        File(SmallImage(), TransferSyntax.ExplicitVRLittleEndian),
        File(SmallImage("Yamada^Tarou=山田^太郎"), TransferSyntax.ImplicitVRLittleEndian),
        File(SmallImage(), TransferSyntax.DeflatedExplicitVRLittleEndian),
        Encapsulated(),
        BigEndian(),
        Headerless(),
    ];

    /// <summary>Explicit VR big endian, written by hand (Vigie only reads this retired syntax).</summary>
    public static byte[] BigEndian()
    {
        var meta = new MemoryStream();
        var be = new List<byte>();
        void Element(ushort group, ushort element, string vr, byte[] value)
        {
            var header = new byte[8];
            BinaryPrimitives.WriteUInt16BigEndian(header, group);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(2), element);
            header[4] = (byte)vr[0];
            header[5] = (byte)vr[1];
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), (ushort)value.Length);
            be.AddRange(header);
            be.AddRange(value);
        }

        Element(0x0008, 0x0016, "UI", Encoding.ASCII.GetBytes(DicomUids.CTImageStorage));
        Element(0x0010, 0x0010, "PN", Encoding.ASCII.GetBytes("BIG^ENDIAN"));
        Element(0x0028, 0x0010, "US", [0x01, 0x02]);
        Element(0x0028, 0x0030, "DS", Encoding.ASCII.GetBytes("0.5\\0.5 "));
        var metaSet = new DicomDataset();
        metaSet.SetString(DicomTags.TransferSyntaxUID, DicomVR.UI, DicomUids.ExplicitVRBigEndian);
        var result = new List<byte>(new byte[128]);
        result.AddRange("DICM"u8.ToArray());
        var encodedMeta = DicomWriter.Encode(metaSet, TransferSyntax.ExplicitVRLittleEndian);
        var groupLength = new byte[12];
        BinaryPrimitives.WriteUInt16LittleEndian(groupLength, 0x0002);
        groupLength[4] = (byte)'U';
        groupLength[5] = (byte)'L';
        BinaryPrimitives.WriteUInt16LittleEndian(groupLength.AsSpan(6), 4);
        BinaryPrimitives.WriteUInt32LittleEndian(groupLength.AsSpan(8), (uint)encodedMeta.Length);
        result.AddRange(groupLength);
        result.AddRange(encodedMeta);
        result.AddRange(be);
        meta.Dispose();
        return [.. result];
    }

    /// <summary>A bare implicit VR dataset with no preamble and no meta information.</summary>
    public static byte[] Headerless() => DicomWriter.Encode(SmallImage(), TransferSyntax.ImplicitVRLittleEndian);

    /// <summary>Explicit VR little endian element bytes, for hand-made hostile layouts.</summary>
    public static byte[] Explicit(ushort group, ushort element, string vr, uint length, ReadOnlySpan<byte> value = default)
    {
        var longForm = DicomVRInfo.HasLongLength(DicomVRInfo.Parse(vr));
        var bytes = new byte[(longForm ? 12 : 8) + value.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, group);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), element);
        bytes[4] = (byte)vr[0];
        bytes[5] = (byte)vr[1];
        if (longForm)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), length);
            value.CopyTo(bytes.AsSpan(12));
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), (ushort)length);
            value.CopyTo(bytes.AsSpan(8));
        }

        return bytes;
    }

    public static byte[] Item(uint length) => TagLength(0xFFFE, 0xE000, length);

    public static byte[] ItemEnd() => TagLength(0xFFFE, 0xE00D, 0);

    public static byte[] SequenceEnd() => TagLength(0xFFFE, 0xE0DD, 0);

    public static byte[] TagLength(ushort group, ushort element, uint length)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, group);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), element);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), length);
        return bytes;
    }

    /// <summary>A Part 10 file with the given transfer syntax and dataset bytes.</summary>
    public static byte[] Part10(string transferSyntax, params byte[][] dataset)
    {
        var meta = new DicomDataset();
        meta.SetString(DicomTags.TransferSyntaxUID, DicomVR.UI, transferSyntax);
        var encoded = DicomWriter.Encode(meta, TransferSyntax.ExplicitVRLittleEndian);
        var result = new List<byte>(new byte[128]);
        result.AddRange("DICM"u8.ToArray());
        result.AddRange(encoded);
        foreach (var part in dataset)
        {
            result.AddRange(part);
        }

        return [.. result];
    }

    public static byte[] Deflate(byte[] raw)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.SmallestSize))
        {
            deflate.Write(raw);
        }

        return output.ToArray();
    }
}
