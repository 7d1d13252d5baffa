using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Regressions from the second review of the OLE2 analyser (2026-12-07).</summary>
public sealed class Ole2SecondReviewTests
{
    private static byte[] Record(ushort verInstance, ushort type, byte[] body) =>
        [.. BitConverter.GetBytes(verInstance), .. BitConverter.GetBytes(type), .. BitConverter.GetBytes(body.Length), .. body];

    private static readonly byte[] DocumentContainer = Record(0x000F, 0x03E8, Record(0x0000, 0x03E9, new byte[40]));

    private static byte[] ZippedVbaObject()
    {
        var project = VbaSamples.VbaProjectBin();
        var zipped = new MemoryStream();
        using (var zlib = new ZLibStream(zipped, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(project);
        }

        return Record(0x0010, 0x1011, [.. BitConverter.GetBytes(project.Length), .. zipped.ToArray()]);
    }

    private static Task<Verdict> InspectPptAsync(byte[] stream) =>
        TestInspection.InspectAsync(new Ole2Builder().Stream("PowerPoint Document", stream).Stream("Current User", new byte[40]).Build(), "deck.ppt");

    private static void NotClean(Verdict verdict, string rule, string says)
    {
        var finding = verdict.Has(rule);
        Assert.Equal(Severity.Medium, finding.Severity);
        Assert.Contains(says, finding.Message, StringComparison.Ordinal);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);
    }

    [Fact]
    public async Task Ppt_object_limit_is_reported()
    {
        var benign = Record(0x0000, 0x1011, Encoding.ASCII.GetBytes("harmless embedded object data"));
        var stream = new MemoryStream();
        stream.Write(DocumentContainer);
        for (var i = 0; i < 256; i++)
        {
            stream.Write(benign);
        }

        stream.Write(ZippedVbaObject());
        NotClean(await InspectPptAsync(stream.ToArray()), "inspection.object-limit", "256 embedded objects");
    }

    [Fact]
    public async Task Ppt_record_limit_is_reported()
    {
        var stream = new MemoryStream();
        stream.Write(DocumentContainer);
        var empty = Record(0x0000, 0x0FBA, []);
        for (var i = 0; i < 1_000_001; i++)
        {
            stream.Write(empty);
        }

        stream.Write(ZippedVbaObject());
        NotClean(await InspectPptAsync(stream.ToArray()), "inspection.object-limit", "1000000 records");
    }

    [Fact]
    public async Task Ppt_depth_limit_is_reported()
    {
        var body = ZippedVbaObject();
        for (var i = 0; i < 33; i++)
        {
            body = Record(0x000F, 0x0FF0, body);
        }

        NotClean(await InspectPptAsync([.. DocumentContainer, .. body]), "inspection.depth-limit", "depth limit of 32");

        // 32 levels are followed: the project inside is read.
        body = ZippedVbaObject();
        for (var i = 0; i < 31; i++)
        {
            body = Record(0x000F, 0x0FF0, body);
        }

        var verdict = await InspectPptAsync([.. DocumentContainer, .. body]);
        verdict.Has("office.vba-macro");
        verdict.HasNo("inspection.depth-limit");
    }

    [Fact]
    public async Task Ppt_cryptsession_container_is_encrypted()
    {
        byte[] encryptionInfo = [4, 0, 2, 0, 4, 0, 0, 0, .. new byte[40]];
        byte[] stream = [.. DocumentContainer, .. Record(0x000F, 0x2F14, encryptionInfo), .. new byte[3000]];
        Assert.Equal(Severity.Medium, (await InspectPptAsync(stream)).Has("office.encrypted").Severity);
    }

    [Fact]
    public async Task Ppt_exoleobjstg_reached_only_through_the_persist_directory_is_inspected()
    {
        var storage = ZippedVbaObject();
        var hidden = Record(0x0000, 0x0FBA, [0, 0, 0, 0, .. storage]);
        var offset = DocumentContainer.Length + 8 + 4;
        byte[] persist = [.. BitConverter.GetBytes((1u << 20) | 1), .. BitConverter.GetBytes(offset)];
        var verdict = await InspectPptAsync([.. DocumentContainer, .. hidden, .. Record(0x0000, 0x1772, persist)]);
        verdict.Has("office.vba-macro");
        verdict.Has("office.vba-autoexec");

        // Offsets past the stream or at other records are ignored.
        byte[] wild = [.. BitConverter.GetBytes((3u << 20) | 1), .. BitConverter.GetBytes(uint.MaxValue), .. BitConverter.GetBytes(0), .. BitConverter.GetBytes(7)];
        verdict = await InspectPptAsync([.. DocumentContainer, .. Record(0x0000, 0x1772, wild), .. new byte[100]]);
        verdict.HasNo("inspection.analyser-error");
    }

    [Theory]
    [InlineData(1024 * 1024 - 3)]
    [InlineData(2 * 1024 * 1024 + 5000)]
    public async Task Doc_dde_past_the_first_chunk_is_found(int at)
    {
        var text = new byte[at + 200];
        text.AsSpan().Fill((byte)'a');
        Encoding.ASCII.GetBytes("\u0013 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo\" \u0014x\u0015").CopyTo(text, at);
        text[0] = 0xEC;
        text[1] = 0xA5;
        var doc = new Ole2Builder().Stream("WordDocument", text).Stream("1Table", new byte[600]).Build();
        Assert.Contains($"offset {at}", (await TestInspection.InspectAsync(doc, "long.doc")).Has("office.dde").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Doc_word95_encrypted_fib_is_encrypted()
    {
        var fib = new byte[1500];
        BinaryPrimitives.WriteUInt16LittleEndian(fib, 0xA5DC);
        BinaryPrimitives.WriteUInt16LittleEndian(fib.AsSpan(2), 0x65);
        BinaryPrimitives.WriteUInt16LittleEndian(fib.AsSpan(10), 0x0100);
        (await TestInspection.InspectAsync(new Ole2Builder().Stream("WordDocument", fib).Build(), "old.doc")).Has("office.encrypted");

        BinaryPrimitives.WriteUInt16LittleEndian(fib.AsSpan(10), 0);
        (await TestInspection.InspectAsync(new Ole2Builder().Stream("WordDocument", fib).Build(), "old.doc")).HasNo("office.encrypted");
    }

    private static byte[] OleStream(int flags)
    {
        var url = Encoding.Unicode.GetBytes("http://example.invalid/x.hta\0");
        byte[] moniker = [.. new Guid("79EAC9E0-BAF9-11CE-8C82-00AA004BA90B").ToByteArray(), .. BitConverter.GetBytes(url.Length), .. url];
        return [.. BitConverter.GetBytes(0x02000001), .. BitConverter.GetBytes(flags), .. new byte[8], .. BitConverter.GetBytes(moniker.Length), .. moniker];
    }

    private static byte[] CompObj(string progId)
    {
        static byte[] Ansi(string s) => [.. BitConverter.GetBytes(s.Length + 1), .. Encoding.ASCII.GetBytes(s), 0];
        return [.. BitConverter.GetBytes(0xFFFE0001), .. BitConverter.GetBytes(0x0A03), .. BitConverter.GetBytes(-1), .. new byte[20],
            .. Ansi(progId), .. Ansi(""), .. Ansi(progId), .. BitConverter.GetBytes(0x71B239F4)];
    }

    [Fact]
    public async Task Ole2_link_declared_by_progid_or_ole_stream_flags_is_external_link()
    {
        var doc = new Ole2Builder().Stream("WordDocument", new byte[600]).Stream("ObjectPool/_1/\u0001Ole", OleStream(1))
            .Stream("ObjectPool/_1/\u0001CompObj", CompObj("OLE2Link")).Build();
        var finding = (await TestInspection.InspectAsync(doc, "link.doc")).Has("office.external-ole-link");
        Assert.Equal(Severity.High, finding.Severity);
        Assert.Contains("http://example.invalid/x.hta", finding.Message, StringComparison.Ordinal);

        // Either sign alone is enough.
        doc = new Ole2Builder().Stream("WordDocument", new byte[600]).Stream("ObjectPool/_1/\u0001Ole", OleStream(1)).Build();
        (await TestInspection.InspectAsync(doc, "link.doc")).Has("office.external-ole-link");
        doc = new Ole2Builder().Stream("WordDocument", new byte[600]).Stream("ObjectPool/_1/\u0001CompObj", CompObj("OLE2Link")).Build();
        (await TestInspection.InspectAsync(doc, "link.doc")).Has("office.external-ole-link");

        // An embedded (not linked) object is no link.
        doc = new Ole2Builder().Stream("WordDocument", new byte[600]).Stream("ObjectPool/_1/\u0001Ole", OleStream(0))
            .Stream("ObjectPool/_1/\u0001CompObj", CompObj("Excel.Sheet.8")).Build();
        (await TestInspection.InspectAsync(doc, "embedded.doc")).HasNo("office.external-ole-link");
    }
}
