using System.Buffers.Binary;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;

namespace Vigie.Inspection.Tests.Dicom;

/// <summary>
/// Inert DICOM threat samples built in the test: real headers and markers (MZ/PE, ELF, Mach-O, ZIP, PDF...), never a
/// working payload.
/// </summary>
internal static class DicomThreatSamples
{
    public static DicomDataset Image(int rows = 16, int columns = 16)
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.CTImageStorage);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.777");
        ds.SetString(DicomTags.Modality, DicomVR.CS, "CT");
        ds.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^THREAT");
        ds.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-T1");
        ds.SetUInt16(DicomTags.SamplesPerPixel, 1);
        ds.SetString(DicomTags.PhotometricInterpretation, DicomVR.CS, "MONOCHROME2");
        ds.SetUInt16(DicomTags.Rows, (ushort)rows);
        ds.SetUInt16(DicomTags.Columns, (ushort)columns);
        ds.SetUInt16(DicomTags.BitsAllocated, 16);
        ds.SetUInt16(DicomTags.BitsStored, 12);
        ds.SetUInt16(DicomTags.HighBit, 11);
        ds.SetUInt16(DicomTags.PixelRepresentation, 0);
        ds.SetBytes(DicomTags.PixelData, DicomVR.OW, Enumerable.Range(0, rows * columns * 2).Select(i => (byte)(i * 13)).ToArray());
        return ds;
    }

    public static byte[] File(DicomDataset ds, byte[]? preamble = null, TransferSyntax? syntax = null)
    {
        using var stream = new MemoryStream();
        DicomWriter.WriteFileAsync(stream, new DicomFile(new DicomDataset(), ds, syntax ?? TransferSyntax.ExplicitVRLittleEndian),
            new DicomWriteOptions { Preamble = preamble, TransferSyntax = syntax }, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return stream.ToArray();
    }

    /// <summary>An inert PE header: MZ, e_lfanew at 0x3C pointing at "PE\0\0" and an i386 COFF header. No code.</summary>
    public static byte[] PeHeader(int length = 128, int peOffset = 0x40)
    {
        var bytes = new byte[length];
        bytes[0] = (byte)'M';
        bytes[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(0x3C), (uint)peOffset);
        "PE\0\0"u8.CopyTo(bytes.AsSpan(peOffset));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(peOffset + 4), 0x014C);
        return bytes;
    }

    public static byte[] ElfHeader(int length = 128)
    {
        var bytes = new byte[length];
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1 }.CopyTo(bytes, 0);
        return bytes;
    }

    public static byte[] Preamble(byte[] start)
    {
        var preamble = new byte[128];
        start.AsSpan(0, Math.Min(128, start.Length)).CopyTo(preamble);
        return preamble;
    }

    public static byte[] Ascii(string text, int length = 128)
    {
        var bytes = new byte[Math.Max(length, text.Length)];
        Encoding.ASCII.GetBytes(text).CopyTo(bytes, 0);
        return bytes;
    }

    /// <summary>A stored (not compressed) ZIP local file header with an inert entry name.</summary>
    public static byte[] ZipHeader()
    {
        var bytes = new byte[64];
        "PK\u0003\u0004"u8.CopyTo(bytes);
        bytes[4] = 20;
        "marker.txt"u8.CopyTo(bytes.AsSpan(30));
        return bytes;
    }

    public static byte[] Append(byte[] file, byte[] tail) => [.. file, .. tail];
}
