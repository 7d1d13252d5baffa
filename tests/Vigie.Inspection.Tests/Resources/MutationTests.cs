using System.Text;
using Vigie.Inspection.Tests.Archives;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Resources;

/// <summary>
/// Every analyser on thousands of damaged samples (deterministic mutations of every sample kind): no analyser may
/// fail with an exception (inspection.analyser-error), hang or crash; damage becomes findings.
/// </summary>
public sealed class MutationTests
{
    private static IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        var pdf = PdfBuilder.Document();
        var script = pdf.AddStream("/Filter [/ASCIIHexDecode /FlateDecode]", PdfEncoders.AsciiHex(PdfBuilder.Zlib(Encoding.ASCII.GetBytes("eval(1)"))));
        pdf.CatalogExtra = $"/OpenAction << /S /JavaScript /JS {script} 0 R >>";
        pdf.AddPacked("<< /S /Launch /F (x.exe) >>");
        var file = pdf.AddStream("/Type /EmbeddedFile /Filter /LZWDecode", PdfEncoders.Lzw(ExecutableSamples.Pe()));
        pdf.Add($"<< /Type /Filespec /F (a.exe) /EF << /F {file} 0 R >> >>");
        yield return ("pdf", pdf.Build());
        yield return ("docm", OoxmlBuilder.Word(mainType: OoxmlBuilder.WordMacroMain).Part("word/vbaProject.bin", OoxmlBuilder.VbaProjectType, VbaSamples.VbaProjectBin()).Build());
        yield return ("doc", VbaSamples.AddProject(new Ole2Builder().Stream("WordDocument", new byte[5000]).Stream("ObjectPool/_1/\u0001Ole10Native", VbaSamples.Ole10Native("a.exe", ExecutableSamples.Pe())), "Macros").Build());
        yield return ("rtf", Encoding.ASCII.GetBytes(RtfSamples.ObjectRtf("Package", RtfSamples.PackageNative("a.exe", ExecutableSamples.Pe()), autoUpdate: true)));
        yield return ("zip", new ZipBuilder().Add("a.txt", "alpha").Add("../b.exe", ExecutableSamples.Pe()).Add("c.zip", new ZipBuilder().Add("d.txt", "delta").Build()).Build());
        yield return ("tgz", ArchiveAnalyserTests.Gzip(ArchiveAnalyserTests.Tar(("a.txt", "alpha"), ("b.txt", new string('b', 2000)))));
        yield return ("7z", ArchiveAnalyserTests.SevenZip(("a.txt", Encoding.ASCII.GetBytes(new string('a', 3000))), ("b.exe", ExecutableSamples.Pe())));
        var message = MailSamples.WithAttachments(MailSamples.Message(html: "<a href=\"http://192.0.2.1/\">x</a><script>new Blob([1]); URL.createObjectURL(b); a.click()</script>"),
            ("a.pdf.exe", ExecutableSamples.Pe(), "application/pdf"), ("z.zip", new ZipBuilder().Add("x.txt", "x").Build(), "application/zip"));
        yield return ("eml", MailSamples.Bytes(message));
        var tnef = MailSamples.Message();
        var tnefBody = new MimeKit.BodyBuilder { TextBody = "x" };
        tnefBody.Attachments.Add(new MimeKit.Tnef.TnefPart { Content = new MimeKit.MimeContent(new MemoryStream(MailSamples.Tnef("a.exe", ExecutableSamples.Pe()))), FileName = "winmail.dat" });
        tnef.Body = tnefBody.ToMessageBody();
        yield return ("tnef", MailSamples.Bytes(tnef));
        yield return ("csv", Encoding.ASCII.GetBytes("a,b\n1,=cmd|' /C calc'!A0\n"));
    }

    private static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = (byte[])seed.Clone();
        switch (random.Next(5))
        {
            case 0:
                for (var i = 0; i < 1 + random.Next(16); i++)
                {
                    bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                }

                return bytes;
            case 1:
                return bytes[..random.Next(1, bytes.Length)];
            case 2:
                var at = random.Next(bytes.Length);
                var junk = new byte[random.Next(1, 512)];
                random.NextBytes(junk);
                return [.. bytes[..at], .. junk, .. bytes[at..]];
            case 3:
                // Integers replaced by extremes, where lengths and offsets live.
                for (var i = 0; i < 4; i++)
                {
                    var p = random.Next(Math.Max(1, bytes.Length - 4));
                    BitConverter.GetBytes(random.Next(3) switch { 0 => int.MaxValue, 1 => -1, _ => random.Next() }).CopyTo(bytes, p);
                }

                return bytes;
            default:
                var start = random.Next(bytes.Length);
                var length = Math.Min(bytes.Length - start, random.Next(1, 256));
                var copyTo = random.Next(bytes.Length - length + 1);
                Array.Copy(bytes, start, bytes, copyTo, length);
                return bytes;
        }
    }

    /// <summary>Mutations per seed; VIGIE_MUTATIONS raises it for a longer hunt.</summary>
    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("VIGIE_MUTATION_SEED"), out var n) ? n : 0;

    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("VIGIE_MUTATIONS"), out var n) && n > 0 ? n : 300;

    [Fact]
    public async Task Damaged_samples_never_make_an_analyser_fail()
    {
        var inspector = TestInspection.Create(l => l.Timeout = TimeSpan.FromSeconds(30));
        var failures = new List<string>();
        var kinds = new Dictionary<VerdictKind, int>();
        foreach (var (name, seed) in Seeds())
        {
            var random = new Random(name.Sum(c => c) * 7919 + Seed);
            for (var i = 0; i < Rounds; i++)
            {
                var sample = Mutate(seed, random);
                var verdict = await inspector.InspectAsync(sample, name);
                kinds[verdict.Kind] = kinds.GetValueOrDefault(verdict.Kind) + 1;
                foreach (var finding in verdict.Findings.Where(f => f.Rule is "inspection.analyser-error" or "inspection.timeout"))
                {
                    failures.Add($"{name} #{i}: {finding.Rule} at {finding.InnerPath}: {finding.Message}");
                }
            }
        }

        TestContext.Current.TestOutputHelper?.WriteLine(string.Join(", ", kinds.Select(k => $"{k.Key}: {k.Value}")));
        Assert.True(failures.Count == 0, string.Join("\n", failures.Distinct().Take(40)));
    }
}
