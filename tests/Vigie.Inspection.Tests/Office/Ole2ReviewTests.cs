using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Vigie.Inspection.Office;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Regressions from the first review of the OLE2 analyser (2026-12-07).</summary>
public sealed class Ole2ReviewTests
{
    [Fact]
    public async Task A_vba_storage_past_max_entries_is_not_called_clean()
    {
        var builder = new Ole2Builder().Stream("WordDocument", new byte[600]);
        for (var i = 0; i < 30; i++)
        {
            builder.Stream($"Pad{i}/x", new byte[10]);
        }

        var doc = VbaSamples.AddProject(builder, "Macros").Build();
        var verdict = await TestInspection.Create(limits: l => l.MaxEntries = 20).InspectAsync(doc, "padded.doc");
        Assert.Equal(Severity.Medium, verdict.Has("ole2.too-many-entries").Severity);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);

        // The same file read whole has no such finding.
        (await TestInspection.InspectAsync(doc, "padded.doc")).HasNo("ole2.too-many-entries");
    }

    [Fact]
    public async Task Ole10Native_stream_named_in_lower_case_is_a_package()
    {
        var native = VbaSamples.Ole10Native("invoice.exe", ExecutableSamples.Pe());
        var bytes = new Ole2Builder().Stream("\u0001ole10native", native).Stream("\u0001compobj", Encoding.ASCII.GetBytes("Equation.3\0")).Build();
        var verdict = await TestInspection.InspectAsync(bytes, "object.bin");
        verdict.Has("office.ole-package");
        verdict.Has("executable.pe");
        verdict.Has("office.equation-editor");
    }

    [Fact]
    public async Task Dde_field_in_a_worddocument_stream_named_in_lower_case_is_found()
    {
        var text = Encoding.Unicode.GetBytes(new string(' ', 3000) + "\u0013 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k echo inert\" \u0014x\u0015");
        var verdict = await TestInspection.InspectAsync(new Ole2Builder().Stream("worddocument", text).Build(), "letter.doc");
        verdict.Has("office.dde");
    }

    [Fact]
    public async Task Vba_streams_named_dir_and_DIR_are_both_read_without_an_analyser_error()
    {
        var doc = VbaSamples.AddProject(new Ole2Builder().Stream("WordDocument", new byte[600]), "Macros")
            .Stream("Macros/VBA/DIR", [0x01, 0x02, 0x03]).Build();
        var verdict = await TestInspection.InspectAsync(doc, "twice.doc");
        verdict.HasNo("inspection.analyser-error");
        verdict.Has("office.vba-macro");
        verdict.Has("office.vba-autoexec");
        Assert.Contains(verdict.Findings, f => f.Rule == "ole2.malformed" && f.Message.Contains("differing only by case", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Encrypted_binary_workbook_document_and_presentation_are_not_clean()
    {
        var workbook = new MemoryStream();
        void Record(ushort type, byte[] data)
        {
            workbook.Write(BitConverter.GetBytes(type));
            workbook.Write(BitConverter.GetBytes((ushort)data.Length));
            workbook.Write(data);
        }

        Record(0x0809, [0, 6, 5, 0, 0x75, 0x27, 0xCD, 0x07, 0, 0, 0, 0, 6, 0, 0, 0]);
        Record(0x002F, [1, 0, 4, 0, 2, 0, .. new byte[200]]);
        // A BoundSheet8 whose encrypted body happens to read as a macro sheet: not an XLM finding.
        Record(0x0085, [0, 0, 0, 0, 0x5A, 0x01, 0x11, 0x97, 0x8E, 0x22]);
        Record(0x000A, []);
        workbook.Write(new byte[5000]);
        var verdict = await TestInspection.InspectAsync(new Ole2Builder().Stream("Workbook", workbook.ToArray()).Build(), "velvet.xls");
        Assert.Equal(Severity.Medium, verdict.Has("office.encrypted").Severity);
        verdict.HasNo("office.xlm-macro");

        var fib = new byte[1500];
        BinaryPrimitives.WriteUInt16LittleEndian(fib, 0xA5EC);
        BinaryPrimitives.WriteUInt16LittleEndian(fib.AsSpan(10), 0x0100);
        verdict = await TestInspection.InspectAsync(new Ole2Builder().Stream("WordDocument", fib).Stream("1Table", new byte[600]).Build(), "secret.doc");
        verdict.Has("office.encrypted");

        BinaryPrimitives.WriteUInt16LittleEndian(fib.AsSpan(10), 0x0000);
        (await TestInspection.InspectAsync(new Ole2Builder().Stream("WordDocument", fib).Stream("1Table", new byte[600]).Build(), "plain.doc")).IsClean();

        var ppt = new Ole2Builder().Stream("PowerPoint Document", new byte[600]).Stream("EncryptedSummary", new byte[100]).Build();
        (await TestInspection.InspectAsync(ppt, "secret.ppt")).Has("office.encrypted");
    }

    [Fact]
    public async Task Ole2Link_object_in_a_compound_file_is_high_and_names_its_url()
    {
        var url = Encoding.Unicode.GetBytes("http://example.invalid/x.hta\0");
        var moniker = new MemoryStream();
        moniker.Write(new Guid("79EAC9E0-BAF9-11CE-8C82-00AA004BA90B").ToByteArray());
        moniker.Write(BitConverter.GetBytes(url.Length));
        moniker.Write(url);
        var ole = new MemoryStream();
        foreach (var value in new[] { 0x02000001, 1, 0, 0, (int)moniker.Length })
        {
            ole.Write(BitConverter.GetBytes(value));
        }

        ole.Write(moniker.ToArray());
        var doc = new Ole2Builder().Stream("WordDocument", new byte[600]).Stream("ObjectPool/_1/\u0001Ole", ole.ToArray())
            .Storage("ObjectPool/_1", new Guid("00000300-0000-0000-C000-000000000046")).Build();
        var verdict = await TestInspection.InspectAsync(doc, "link.doc");
        var finding = verdict.Has("office.external-ole-link");
        Assert.Equal(Severity.High, finding.Severity);
        Assert.Contains("http://example.invalid/x.hta", finding.Message, StringComparison.Ordinal);
    }

    private static byte[] PowerPointRecord(ushort verInstance, ushort type, byte[] body) =>
        [.. BitConverter.GetBytes(verInstance), .. BitConverter.GetBytes(type), .. BitConverter.GetBytes(body.Length), .. body];

    [Fact]
    public async Task Ppt_vba_project_in_an_ExOleObjStg_record_is_inspected()
    {
        var project = VbaSamples.VbaProjectBin();
        var zipped = new MemoryStream();
        using (var zlib = new ZLibStream(zipped, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(project);
        }

        var document = PowerPointRecord(0x000F, 0x03E8, PowerPointRecord(0x0000, 0x03E9, new byte[40]));
        foreach (var storage in new[]
        {
            PowerPointRecord(0x0010, 0x1011, [.. BitConverter.GetBytes(project.Length), .. zipped.ToArray()]),
            PowerPointRecord(0x0000, 0x1011, project),
        })
        {
            // Inside a container too, as a real file's ExObjList holds it.
            byte[] stream = [.. document, .. PowerPointRecord(0x000F, 0x0409, storage), .. new byte[5000]];
            var ppt = new Ole2Builder().Stream("PowerPoint Document", stream).Stream("Current User", new byte[40]).Build();
            var verdict = await TestInspection.InspectAsync(ppt, "deck.ppt");
            verdict.Has("office.vba-macro");
            verdict.Has("office.vba-autoexec");
        }
    }

    [Fact]
    public async Task Vba_module_named_in_the_project_code_page_is_found()
    {
        var cp1251 = CodePagesEncodingProvider.Instance.GetEncoding(1251)!;
        const string Name = "\u041C\u043E\u0434\u0443\u043B\u044C1";
        var dir = new MemoryStream();
        void Record(ushort id, byte[] data)
        {
            dir.Write(BitConverter.GetBytes(id));
            dir.Write(BitConverter.GetBytes(data.Length));
            dir.Write(data);
        }

        Record(0x0001, [1, 0, 0, 0]);
        Record(0x0003, BitConverter.GetBytes((ushort)1251));
        Record(0x0004, Encoding.ASCII.GetBytes("Project"));
        Record(0x000F, BitConverter.GetBytes((ushort)1));
        Record(0x0019, cp1251.GetBytes(Name));
        Record(0x001A, cp1251.GetBytes(Name));
        Record(0x0032, []);
        Record(0x0031, [0, 0, 0, 0]);
        Record(0x002B, []);
        Record(0x0010, []);
        var doc = new Ole2Builder().Stream("WordDocument", new byte[600])
            .Stream("Macros/VBA/dir", VbaSamples.Compress(dir.ToArray()))
            .Stream($"Macros/VBA/{Name}", VbaSamples.Compress(Encoding.ASCII.GetBytes(VbaSamples.AutoOpenSource)))
            .Stream("Macros/PROJECT", Encoding.ASCII.GetBytes("Module=Module1\r\n")).Build();
        var verdict = await TestInspection.InspectAsync(doc, "cyrillic.doc");
        Assert.Contains(Name, verdict.Has("office.vba-autoexec").Message, StringComparison.Ordinal);

        var modules = Vba.ParseDirectory(dir.ToArray(), out var codePage);
        Assert.Equal(1251, codePage);
        Assert.Equal(Name, Assert.Single(modules).Name);
    }

    [Fact]
    public async Task Ppt_record_walk_survives_hostile_lengths_and_nesting()
    {
        var stream = new MemoryStream();
        for (var i = 0; i < 200; i++)
        {
            // Containers nested deeper than followed, each declaring more than the stream holds.
            stream.Write(PowerPointRecord(0x000F, 0x0409, [])[..4]);
            stream.Write(BitConverter.GetBytes(uint.MaxValue));
        }

        stream.Write(PowerPointRecord(0x0010, 0x1011, [0xFF, 0xFF, 0xFF, 0xFF, 0x78, 0x9C, 0x01, 0x02]));
        stream.Write(new byte[5000]);
        var ppt = new Ole2Builder().Stream("PowerPoint Document", stream.ToArray()).Build();
        var verdict = await TestInspection.InspectAsync(ppt, "hostile.ppt");
        verdict.HasNo("inspection.analyser-error");
    }
}
