using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>Inert executable headers: enough structure for identification, no code.</summary>
internal static class ExecutableSamples
{
    public static byte[] Pe()
    {
        var bytes = new byte[512];
        bytes[0] = (byte)'M';
        bytes[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(60), 0x80);
        "PE\0\0"u8.CopyTo(bytes.AsSpan(0x80));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(0x84), 0x8664);
        Encoding.ASCII.GetBytes("This program cannot be run in DOS mode (inert test sample)").CopyTo(bytes, 0x40);
        return bytes;
    }

    /// <summary>MZ with an e_lfanew pointing nowhere useful: not a PE.</summary>
    public static byte[] BrokenMz()
    {
        var bytes = new byte[256];
        bytes[0] = (byte)'M';
        bytes[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(60), 0x7FFFFFF0);
        return bytes;
    }

    public static byte[] Elf()
    {
        var bytes = new byte[128];
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1, 0 }.CopyTo(bytes, 0);
        return bytes;
    }

    public static byte[] MachO()
    {
        var bytes = new byte[128];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, 0xCFFAEDFE);
        return bytes;
    }

    public static byte[] Script() => "#!/bin/sh\necho inert test sample\n"u8.ToArray();
}
