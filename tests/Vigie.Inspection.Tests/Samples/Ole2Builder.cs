using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>
/// Writes version 3 compound files (512-byte sectors): storages, streams (small ones in the mini stream),
/// class ids; and records where things landed so tests can corrupt them.
/// </summary>
internal sealed class Ole2Builder
{
    private const uint EndOfChain = 0xFFFFFFFE;
    private const uint Free = 0xFFFFFFFF;
    private const uint FatSector = 0xFFFFFFFD;
    private const uint NoStream = 0xFFFFFFFF;

    private sealed class Node
    {
        public required string Name { get; init; }

        public bool IsStorage { get; init; }

        public byte[] Data { get; set; } = [];

        public Guid ClassId { get; set; }

        public List<Node> Children { get; } = [];

        public int Id { get; set; }

        public uint Start { get; set; } = EndOfChain;
    }

    private readonly Node _root = new() { Name = "Root Entry", IsStorage = true };

    /// <summary>Offset of the first directory sector in the built file.</summary>
    public long DirectoryOffset { get; private set; }

    /// <summary>Offset of the first FAT sector in the built file.</summary>
    public long FatOffset { get; private set; }

    public Dictionary<string, int> Ids { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, uint> StartSectors { get; } = new(StringComparer.Ordinal);

    public Ole2Builder Stream(string path, byte[] data)
    {
        var parts = path.Split('/');
        var node = _root;
        foreach (var part in parts[..^1])
        {
            var next = node.Children.FirstOrDefault(c => c.Name == part);
            if (next is null)
            {
                next = new Node { Name = part, IsStorage = true };
                node.Children.Add(next);
            }

            node = next;
        }

        node.Children.Add(new Node { Name = parts[^1], Data = data });
        return this;
    }

    public Ole2Builder Storage(string path, Guid classId)
    {
        var node = _root;
        foreach (var part in path.Split('/'))
        {
            var next = node.Children.FirstOrDefault(c => c.Name == part);
            if (next is null)
            {
                next = new Node { Name = part, IsStorage = true };
                node.Children.Add(next);
            }

            node = next;
        }

        node.ClassId = classId;
        return this;
    }

    public byte[] Build()
    {
        var nodes = new List<(Node Node, string Path)>();
        void Flatten(Node node, string path)
        {
            node.Id = nodes.Count;
            nodes.Add((node, path));
            foreach (var child in node.Children)
            {
                Flatten(child, path.Length == 0 ? child.Name : path + "/" + child.Name);
            }
        }

        Flatten(_root, "");
        foreach (var (node, path) in nodes)
        {
            Ids[path] = node.Id;
        }

        // Mini stream for streams under 4096 bytes.
        var mini = new MemoryStream();
        var miniFat = new List<uint>();
        foreach (var (node, _) in nodes.Where(n => !n.Node.IsStorage && n.Node.Data.Length < 4096 && n.Node.Data.Length > 0))
        {
            var first = (uint)miniFat.Count;
            var count = (node.Data.Length + 63) / 64;
            for (var i = 0; i < count; i++)
            {
                miniFat.Add(i == count - 1 ? EndOfChain : first + (uint)i + 1);
            }

            node.Start = first;
            mini.Write(node.Data);
            mini.Write(new byte[count * 64 - node.Data.Length]);
        }

        var sectors = new List<byte[]>();
        var fat = new List<uint>();
        uint AddChain(byte[] data)
        {
            if (data.Length == 0)
            {
                return EndOfChain;
            }

            var first = (uint)sectors.Count;
            var count = (data.Length + 511) / 512;
            for (var i = 0; i < count; i++)
            {
                var sector = new byte[512];
                data.AsSpan(i * 512, Math.Min(512, data.Length - i * 512)).CopyTo(sector);
                sectors.Add(sector);
                fat.Add(i == count - 1 ? EndOfChain : first + (uint)i + 1);
            }

            return first;
        }

        foreach (var (node, _) in nodes.Where(n => !n.Node.IsStorage && n.Node.Data.Length >= 4096))
        {
            node.Start = AddChain(node.Data);
        }

        var miniStart = AddChain(mini.ToArray());
        var miniFatBytes = new byte[miniFat.Count * 4];
        for (var i = 0; i < miniFat.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(miniFatBytes.AsSpan(i * 4), miniFat[i]);
        }

        var miniFatStart = AddChain(miniFatBytes);
        foreach (var (node, path) in nodes)
        {
            StartSectors[path] = node.Start;
        }

        var directory = new byte[((nodes.Count + 3) / 4) * 4 * 128];
        for (var i = 0; i < directory.Length / 128; i++)
        {
            var entry = directory.AsSpan(i * 128, 128);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[68..], NoStream);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[72..], NoStream);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[76..], NoStream);
        }

        foreach (var (node, _) in nodes)
        {
            var entry = directory.AsSpan(node.Id * 128, 128);
            var name = Encoding.Unicode.GetBytes(node.Name + "\0");
            name.AsSpan(0, Math.Min(64, name.Length)).CopyTo(entry);
            BinaryPrimitives.WriteUInt16LittleEndian(entry[64..], (ushort)Math.Min(64, name.Length));
            entry[66] = (byte)(node.Id == 0 ? 5 : node.IsStorage ? 1 : 2);
            entry[67] = 1;
            if (node.Children.Count > 0)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(entry[76..], (uint)node.Children[0].Id);
                for (var c = 0; c < node.Children.Count - 1; c++)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(directory.AsSpan(node.Children[c].Id * 128 + 72), (uint)node.Children[c + 1].Id);
                }
            }

            node.ClassId.TryWriteBytes(entry[80..]);
            if (node.Id == 0)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(entry[116..], miniStart);
                BinaryPrimitives.WriteUInt32LittleEndian(entry[120..], (uint)mini.Length);
            }
            else if (!node.IsStorage)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(entry[116..], node.Start);
                BinaryPrimitives.WriteUInt32LittleEndian(entry[120..], (uint)node.Data.Length);
            }
        }

        var directoryStart = AddChain(directory);
        // Past 109 FAT sectors (about 7 MB) the header's DIFAT continues in DIFAT sectors of 127 entries and a next link.
        var fatSectors = 1;
        static int DifatFor(int fatCount) => fatCount <= 109 ? 0 : (fatCount - 109 + 126) / 127;
        while ((sectors.Count + fatSectors + DifatFor(fatSectors)) > fatSectors * 128)
        {
            fatSectors++;
        }

        var difatSectors = DifatFor(fatSectors);
        var firstFat = (uint)sectors.Count;
        for (var i = 0; i < fatSectors; i++)
        {
            sectors.Add(new byte[512]);
            fat.Add(FatSector);
        }

        var firstDifat = (uint)sectors.Count;
        for (var d = 0; d < difatSectors; d++)
        {
            var sector = new byte[512];
            for (var k = 0; k < 127; k++)
            {
                var index = 109 + d * 127 + k;
                BinaryPrimitives.WriteUInt32LittleEndian(sector.AsSpan(k * 4), index < fatSectors ? firstFat + (uint)index : Free);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(sector.AsSpan(508), d == difatSectors - 1 ? EndOfChain : firstDifat + (uint)d + 1);
            sectors.Add(sector);
            fat.Add(0xFFFFFFFC);
        }

        while (fat.Count < fatSectors * 128)
        {
            fat.Add(Free);
        }

        for (var i = 0; i < fat.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(sectors[(int)firstFat + i / 128].AsSpan((i % 128) * 4), fat[i]);
        }

        var header = new byte[512];
        new byte[] { 0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1 }.CopyTo(header, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(24), 0x3E);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(26), 3);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(28), 0xFFFE);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(30), 9);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(32), 6);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(44), (uint)fatSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(48), directoryStart);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(56), 4096);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(60), miniFat.Count > 0 ? miniFatStart : EndOfChain);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(64), (uint)((miniFatBytes.Length + 511) / 512));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(68), difatSectors > 0 ? firstDifat : EndOfChain);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(72), (uint)difatSectors);
        for (var i = 0; i < 109; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(76 + i * 4), i < fatSectors ? firstFat + (uint)i : Free);
        }

        DirectoryOffset = (directoryStart + 1L) * 512;
        FatOffset = (firstFat + 1L) * 512;
        var output = new MemoryStream();
        output.Write(header);
        foreach (var sector in sectors)
        {
            output.Write(sector);
        }

        return output.ToArray();
    }
}

/// <summary>VBA projects as Office stores them: MS-OVBA compression, a dir stream, module streams.</summary>
internal static class VbaSamples
{
    /// <summary>MS-OVBA compression with copy tokens (greedy longest match), the inverse of the analyser's decompressor.</summary>
    public static byte[] Compress(byte[] data)
    {
        var output = new List<byte> { 0x01 };
        for (var chunkStart = 0; chunkStart < data.Length || chunkStart == 0; chunkStart += 4096)
        {
            var chunk = data.AsSpan(chunkStart, Math.Min(4096, data.Length - chunkStart));
            var body = new List<byte>();
            var position = 0;
            while (position < chunk.Length)
            {
                var flagIndex = body.Count;
                body.Add(0);
                for (var bit = 0; bit < 8 && position < chunk.Length; bit++)
                {
                    var bitCount = Math.Max(4, position <= 1 ? 0 : 32 - int.LeadingZeroCount(position - 1));
                    var maxLength = (0xFFFF >> bitCount) + 3;
                    var maxOffset = 1 << bitCount;
                    int bestLength = 0, bestOffset = 0;
                    for (var offset = 1; offset <= Math.Min(position, maxOffset); offset++)
                    {
                        var length = 0;
                        while (length < maxLength && position + length < chunk.Length && chunk[position + length - offset] == chunk[position + length])
                        {
                            length++;
                        }

                        if (length > bestLength)
                        {
                            bestLength = length;
                            bestOffset = offset;
                        }
                    }

                    if (bestLength >= 3)
                    {
                        var token = (ushort)(((bestOffset - 1) << (16 - bitCount)) | (bestLength - 3));
                        body[flagIndex] |= (byte)(1 << bit);
                        body.Add((byte)token);
                        body.Add((byte)(token >> 8));
                        position += bestLength;
                    }
                    else
                    {
                        body.Add(chunk[position++]);
                    }
                }
            }

            var header = (ushort)(0xB000 | (body.Count + 2 - 3));
            output.Add((byte)header);
            output.Add((byte)(header >> 8));
            output.AddRange(body);
            if (data.Length == 0)
            {
                break;
            }
        }

        return [.. output];
    }

    private static void Record(MemoryStream s, ushort id, byte[] data)
    {
        Span<byte> h = stackalloc byte[6];
        BinaryPrimitives.WriteUInt16LittleEndian(h, id);
        BinaryPrimitives.WriteUInt32LittleEndian(h[2..], (uint)data.Length);
        s.Write(h);
        s.Write(data);
    }

    public static byte[] DirStream(params string[] modules)
    {
        var s = new MemoryStream();
        Record(s, 0x0001, [1, 0, 0, 0]);
        Record(s, 0x0002, [0x09, 0x04, 0, 0]);
        Record(s, 0x0003, [0xE4, 0x04]);
        Record(s, 0x0004, Encoding.ASCII.GetBytes("Project"));
        // PROJECTVERSION: size field 4, then 6 bytes.
        s.Write([0x09, 0x00, 0x04, 0x00, 0x00, 0x00, 1, 0, 0, 0, 0, 0]);
        Record(s, 0x000F, BitConverter.GetBytes((ushort)modules.Length));
        Record(s, 0x0013, [0xFF, 0xFF]);
        foreach (var module in modules)
        {
            Record(s, 0x0019, Encoding.ASCII.GetBytes(module));
            Record(s, 0x0047, Encoding.Unicode.GetBytes(module));
            Record(s, 0x001A, Encoding.ASCII.GetBytes(module));
            Record(s, 0x0032, Encoding.Unicode.GetBytes(module));
            Record(s, 0x0031, [0, 0, 0, 0]);
            Record(s, 0x0021, []);
            Record(s, 0x002B, []);
        }

        Record(s, 0x0010, []);
        return Compress(s.ToArray());
    }

    public const string AutoOpenSource = "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n  ' inert test macro\r\n  Dim s As String\r\n  s = \"calc\"\r\n  ' Shell s\r\nEnd Sub\r\n";

    public const string HarmlessSource = "Attribute VB_Name = \"Module1\"\r\nFunction Twice(x As Integer) As Integer\r\n  Twice = x * 2\r\nEnd Function\r\n";

    /// <summary>Adds a VBA project under <paramref name="prefix"/> ("" for vbaProject.bin, "Macros" for Word, "_VBA_PROJECT_CUR" for Excel).</summary>
    public static Ole2Builder AddProject(Ole2Builder builder, string prefix, string source = AutoOpenSource)
    {
        var root = prefix.Length == 0 ? "" : prefix + "/";
        builder.Stream($"{root}VBA/dir", DirStream("Module1"));
        builder.Stream($"{root}VBA/_VBA_PROJECT", [0xCC, 0x61, 0xFF, 0xFF, 0x00, 0x00, 0x00]);
        builder.Stream($"{root}VBA/Module1", Compress(Encoding.ASCII.GetBytes(source)));
        builder.Stream($"{root}PROJECT", Encoding.ASCII.GetBytes("ID=\"{00000000-0000-0000-0000-000000000000}\"\r\nModule=Module1\r\nName=\"Project\"\r\n"));
        return builder;
    }

    public static byte[] VbaProjectBin(string source = AutoOpenSource) => AddProject(new Ole2Builder(), "", source).Build();

    /// <summary>Ole10Native stream content wrapping a file the way the Packager does.</summary>
    public static byte[] Ole10Native(string fileName, byte[] data)
    {
        var body = new MemoryStream();
        body.Write([2, 0]);
        body.Write(Encoding.ASCII.GetBytes(fileName + "\0"));
        body.Write(Encoding.ASCII.GetBytes(@"C:\Users\test\" + fileName + "\0"));
        body.Write([0, 0, 3, 0]);
        var temp = Encoding.ASCII.GetBytes(@"C:\Temp\" + fileName + "\0");
        body.Write(BitConverter.GetBytes(temp.Length));
        body.Write(temp);
        body.Write(BitConverter.GetBytes(data.Length));
        body.Write(data);
        var native = body.ToArray();
        return [.. BitConverter.GetBytes(native.Length), .. native];
    }

    public static byte[] OleObjectWithPackage(string fileName, byte[] data) =>
        new Ole2Builder().Stream("\u0001Ole10Native", Ole10Native(fileName, data)).Stream("\u0001CompObj", Encoding.ASCII.GetBytes("Package\0")).Build();
}

internal static class RtfSamples
{
    public const string Clean = "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0\\fswiss Helvetica;}}\\f0\\pard Discharge summary (synthetic)\\par Temp\\'e9rature normale\\par}";

    public static string ObjectRtf(string className, byte[] nativeData, bool autoUpdate = false, bool obfuscate = false)
    {
        var header = new MemoryStream();
        header.Write(BitConverter.GetBytes(0x00000501));
        header.Write(BitConverter.GetBytes(2));
        var name = Encoding.ASCII.GetBytes(className + "\0");
        header.Write(BitConverter.GetBytes(name.Length));
        header.Write(name);
        header.Write(BitConverter.GetBytes(0));
        header.Write(BitConverter.GetBytes(0));
        header.Write(BitConverter.GetBytes(nativeData.Length));
        header.Write(nativeData);
        var hex = Convert.ToHexString(header.ToArray()).ToLowerInvariant();
        if (obfuscate)
        {
            // Whitespace, line breaks and ignorable groups inside the hex, as exploit kits do.
            var builder = new StringBuilder();
            for (var i = 0; i < hex.Length; i++)
            {
                builder.Append(hex[i]);
                if (i % 7 == 3)
                {
                    builder.Append("\r\n ");
                }

                if (i % 50 == 10)
                {
                    builder.Append("{\\*\\comment}");
                }
            }

            hex = builder.ToString();
        }

        return "{\\rtf1\\ansi{\\object\\objemb" + (autoUpdate ? "\\objupdate" : "") + "{\\*\\objclass " + className + "}\\objw100\\objh100{\\*\\objdata " + hex + "}{\\result {\\pict}}}}";
    }

    /// <summary>Package native data (no size prefix): the layout of an RTF "Package" object.</summary>
    public static byte[] PackageNative(string fileName, byte[] data) => VbaSamples.Ole10Native(fileName, data)[4..];
}
