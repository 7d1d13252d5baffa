using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Dump;

public sealed class DumpCommandTests
{
    [Fact]
    public async Task Dumping_a_2_GB_multiframe_file_stays_under_100_MB()
    {
        var ct = TestContext.Current.CancellationToken;
        var time = Peers.Require("/usr/bin/time", "time");
        using var dir = new TempDirectory();
        var path = dir.Combine("multiframe.dcm");
        const long frames = 3814;
        const long pixelBytes = frames * 512 * 512 * 2;
        WriteSparseMultiframe(path, frames, pixelBytes);
        Assert.True(new FileInfo(path).Length > 2_000_000_000 - 1_000_000);

        foreach (var mode in new[] { "--json", null })
        {
            string[] arguments = mode is null ? ["dump", path] : ["dump", mode, path];
            var result = await Peers.RunAsync(time, ["-f", "maxrss_kb=%M", "dotnet", VigieProcess.DllPath, .. arguments], TimeSpan.FromMinutes(2), cancellationToken: ct);
            Assert.True(result.ExitCode == 0, result.ToString());
            var maxRss = long.Parse(result.StandardError.Split("maxrss_kb=")[1].Trim(), CultureInfo.InvariantCulture);
            Assert.True(maxRss < 100 * 1024, $"vigie dump {mode} used {maxRss} KB");
            if (mode is not null)
            {
                var json = JsonDocument.Parse(result.StandardOutput).RootElement;
                var uri = json.GetProperty("7FE00010").GetProperty("BulkDataURI").GetString()!;
                Assert.Contains($"length={pixelBytes}", uri, StringComparison.Ordinal);
                Assert.Equal("3814", json.GetProperty("00280008").GetProperty("Value")[0].ToString());
            }
        }
    }

    [Fact]
    public async Task A_truncated_file_exits_2_with_a_one_line_reason()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        var path = dir.Combine("truncated.dcm");
        WriteSparseMultiframe(path, 1, 512 * 512 * 2);
        await using (var stream = File.OpenWrite(path))
        {
            stream.SetLength(stream.Length - 1000);
        }

        var result = await VigieProcess.RunAsync(["dump", "--json", path], cancellationToken: ct);
        Assert.Equal(2, result.ExitCode);
        Assert.Empty(result.StandardOutput);
        var reason = result.StandardError.Trim();
        Assert.DoesNotContain('\n', reason);
        Assert.Contains("(7FE0,0010)", reason, StringComparison.Ordinal);
        Assert.Contains("exceeds", reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_file_and_bad_arguments_exit_2()
    {
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(2, (await VigieProcess.RunAsync(["dump", "/nonexistent/file.dcm"], cancellationToken: ct)).ExitCode);
        Assert.Equal(2, (await VigieProcess.RunAsync(["dump"], cancellationToken: ct)).ExitCode);
        Assert.Equal(2, (await VigieProcess.RunAsync(["no-such-command"], cancellationToken: ct)).ExitCode);
    }

    [Fact]
    public async Task Help_lists_the_commands()
    {
        var result = await VigieProcess.RunAsync(["--help"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("dump", result.StandardOutput, StringComparison.Ordinal);
    }

    /// <summary>A Part 10 multi-frame CT whose pixel data is a sparse hole: gigabytes on paper, nothing on disk.</summary>
    private static void WriteSparseMultiframe(string path, long frames, long pixelBytes)
    {
        var header = new List<byte>(new byte[128]);
        header.AddRange("DICM"u8.ToArray());
        var meta = new List<byte>();
        meta.AddRange(Element(0x0002, 0x0001, "OB", [0, 1]));
        meta.AddRange(Element(0x0002, 0x0002, "UI", Uid(Dicom.DicomUids.EnhancedCTImageStorage)));
        meta.AddRange(Element(0x0002, 0x0003, "UI", Uid("2.25.42")));
        meta.AddRange(Element(0x0002, 0x0010, "UI", Uid(Dicom.DicomUids.ExplicitVRLittleEndian)));
        var groupLength = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(groupLength, (uint)meta.Count);
        header.AddRange(Element(0x0002, 0x0000, "UL", groupLength));
        header.AddRange(meta);
        header.AddRange(Element(0x0008, 0x0016, "UI", Uid(Dicom.DicomUids.EnhancedCTImageStorage)));
        header.AddRange(Element(0x0008, 0x0018, "UI", Uid("2.25.42")));
        header.AddRange(Element(0x0010, 0x0010, "PN", Encoding.ASCII.GetBytes("SYNTH^BIG ")));
        header.AddRange(Element(0x0028, 0x0008, "IS", Encoding.ASCII.GetBytes(frames.ToString(CultureInfo.InvariantCulture).PadRight(4))));
        header.AddRange(Element(0x0028, 0x0010, "US", [0, 2]));
        header.AddRange(Element(0x0028, 0x0011, "US", [0, 2]));
        header.AddRange(Element(0x0028, 0x0100, "US", [16, 0]));
        var pixel = new byte[12];
        BinaryPrimitives.WriteUInt16LittleEndian(pixel, 0x7FE0);
        BinaryPrimitives.WriteUInt16LittleEndian(pixel.AsSpan(2), 0x0010);
        pixel[4] = (byte)'O';
        pixel[5] = (byte)'W';
        BinaryPrimitives.WriteUInt32LittleEndian(pixel.AsSpan(8), (uint)pixelBytes);
        header.AddRange(pixel);
        using var stream = File.Create(path);
        stream.Write(header.ToArray());
        stream.SetLength(stream.Length + pixelBytes);
    }

    private static byte[] Uid(string uid) => Encoding.ASCII.GetBytes(uid.Length % 2 == 0 ? uid : uid + "\0");

    private static byte[] Element(ushort group, ushort element, string vr, byte[] value)
    {
        var bytes = new byte[8 + value.Length + (vr == "OB" ? 4 : 0)];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, group);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), element);
        bytes[4] = (byte)vr[0];
        bytes[5] = (byte)vr[1];
        if (vr == "OB")
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)value.Length);
            value.CopyTo(bytes, 12);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), (ushort)value.Length);
            value.CopyTo(bytes, 8);
        }

        return bytes;
    }
}
