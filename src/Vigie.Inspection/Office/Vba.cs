using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Office;

/// <summary>One module declared by a VBA project's dir stream.</summary>
internal sealed record VbaModule(string Name, string StreamName, uint SourceOffset, string? UnicodeStreamName = null);

/// <summary>MS-OVBA: the compression used by VBA projects, and the dir stream that lists their modules.</summary>
internal static class Vba
{
    static Vba() => Encoding.RegisterProvider(CodePagesEncodingProvider.Instance);

    /// <summary>Decompresses a CompressedContainer; stops at <paramref name="maxOutput"/> bytes or at the first inconsistency.</summary>
    public static byte[] Decompress(ReadOnlySpan<byte> data, int maxOutput, out string? error)
    {
        error = null;
        if (data.IsEmpty || data[0] != 0x01)
        {
            error = "missing the compressed container signature";
            return [];
        }

        var output = new List<byte>(Math.Min(maxOutput, data.Length * 3));
        var position = 1;
        while (position + 2 <= data.Length && output.Count < maxOutput)
        {
            var chunkStart = position;
            var header = BinaryPrimitives.ReadUInt16LittleEndian(data[position..]);
            position += 2;
            var chunkEnd = Math.Min(data.Length, chunkStart + (header & 0x0FFF) + 3);
            var decompressedStart = output.Count;
            if ((header & 0x8000) == 0)
            {
                var raw = Math.Min(4096, data.Length - position);
                for (var i = 0; i < raw && output.Count < maxOutput; i++)
                {
                    output.Add(data[position + i]);
                }

                position += raw;
                continue;
            }

            while (position < chunkEnd && output.Count < maxOutput)
            {
                var flags = data[position++];
                for (var bit = 0; bit < 8 && position < chunkEnd && output.Count < maxOutput; bit++)
                {
                    if ((flags & (1 << bit)) == 0)
                    {
                        output.Add(data[position++]);
                        continue;
                    }

                    if (position + 2 > chunkEnd)
                    {
                        error = "copy token cut by the end of its chunk";
                        return [.. output];
                    }

                    var token = BinaryPrimitives.ReadUInt16LittleEndian(data[position..]);
                    position += 2;
                    var difference = output.Count - decompressedStart;
                    var bitCount = Math.Max(4, difference <= 1 ? 0 : 32 - int.LeadingZeroCount(difference - 1));
                    var lengthMask = 0xFFFF >> bitCount;
                    var length = (token & lengthMask) + 3;
                    var offset = (token >> (16 - bitCount)) + 1;
                    var source = output.Count - offset;
                    if (source < decompressedStart)
                    {
                        error = "copy token points before its chunk";
                        return [.. output];
                    }

                    for (var i = 0; i < length && output.Count < maxOutput; i++)
                    {
                        output.Add(output[source + i]);
                    }
                }
            }

            position = Math.Max(position, chunkEnd);
        }

        return [.. output];
    }

    /// <summary>Module records from a decompressed dir stream.</summary>
    public static List<VbaModule> ParseDirectory(ReadOnlySpan<byte> dir, out int codePage)
    {
        codePage = 1252;
        var modules = new List<VbaModule>();
        string? name = null, stream = null, unicodeName = null, unicodeStream = null;
        uint offset = 0;
        var position = 0;
        while (position + 6 <= dir.Length && modules.Count < 10_000)
        {
            var id = BinaryPrimitives.ReadUInt16LittleEndian(dir[position..]);
            var size = BinaryPrimitives.ReadUInt32LittleEndian(dir[(position + 2)..]);
            position += 6;
            if (id == 0x0009)
            {
                // PROJECTVERSION: its size field says 4 but the record carries 6 bytes.
                position += 6;
                continue;
            }

            if (size > dir.Length - position)
            {
                break;
            }

            var data = dir.Slice(position, (int)size);
            position += (int)size;
            switch (id)
            {
                case 0x0003 when size >= 2:
                    codePage = BinaryPrimitives.ReadUInt16LittleEndian(data);
                    break;
                case 0x0019:
                    // Names are in the project's code page (PROJECTCODEPAGE comes first); the Unicode records, when filled, win.
                    name = Decode(data, codePage);
                    stream = null;
                    unicodeName = null;
                    unicodeStream = null;
                    offset = 0;
                    break;
                case 0x0047 when size >= 2:
                    unicodeName = Encoding.Unicode.GetString(data[..(data.Length & ~1)]);
                    break;
                case 0x001A:
                    stream = Decode(data, codePage);
                    break;
                case 0x0032 when size >= 2:
                    unicodeStream = Encoding.Unicode.GetString(data[..(data.Length & ~1)]);
                    break;
                case 0x0031 when size >= 4:
                    offset = BinaryPrimitives.ReadUInt32LittleEndian(data);
                    break;
                case 0x002B:
                    if (name is not null)
                    {
                        var streamName = stream ?? unicodeStream ?? name;
                        modules.Add(new VbaModule(unicodeName ?? name, streamName, offset, unicodeStream));
                    }

                    name = null;
                    break;
                default:
                    break;
            }
        }

        return modules;
    }

    private static string Decode(ReadOnlySpan<byte> data, int codePage)
    {
        try
        {
            return Encoding.GetEncoding(codePage).GetString(data);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException)
        {
            return Encoding.Latin1.GetString(data);
        }
    }

    public static readonly string[] AutoExecNames =
    [
        "AutoOpen", "AutoExec", "AutoClose", "AutoNew", "AutoExit", "Auto_Open", "Auto_Close", "Document_Open", "Document_Close",
        "Document_New", "Document_ContentControlOnEnter", "DocumentOpen", "Workbook_Open", "Workbook_Activate", "Workbook_BeforeClose",
        "Worksheet_Activate", "Worksheet_Change", "Presentation_Open", "App_DocumentOpen", "InkPicture1_Painted", "UserForm_Initialize",
    ];

    public static readonly string[] SuspiciousCalls =
    [
        "Shell", "WScript.Shell", "CreateObject", "GetObject", "URLDownloadToFile", "XMLHTTP", "WinHttp", "ADODB.Stream", "CallByName",
        "PowerShell", "cmd.exe", "Environ", "Kill", "Lib \"kernel32\"", "VirtualAlloc", "RtlMoveMemory", "CreateThread", "ExecuteExcel4Macro",
        "StrReverse", "Scripting.FileSystemObject", "SaveToFile", "ShellExecute", "MacScript", "regsvr32", "mshta", "certutil",
    ];
}
