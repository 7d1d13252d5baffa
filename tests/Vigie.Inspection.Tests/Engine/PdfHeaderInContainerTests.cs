using System.Formats.Tar;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Engine;

/// <summary>PDF readers open a file whose header is anywhere in its first kilobyte; containers starting so are still containers.</summary>
public sealed class PdfHeaderInContainerTests
{
    private static byte[] Tar(params (string Name, byte[] Data)[] files)
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true))
        {
            foreach (var (name, data) in files)
            {
                writer.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
            }
        }

        return output.ToArray();
    }

    [Fact]
    public async Task Regression_a_tar_whose_first_member_is_a_pdf_was_read_as_a_pdf_and_its_program_unseen()
    {
        var reports = Tar(("rapports/cr.pdf", PdfBuilder.Document("Compte rendu").Build()), ("rapports/cr2.pdf", PdfBuilder.Document("Lettre").Build()));
        var clean = await TestInspection.InspectAsync(Archives.ArchiveAnalyserTests.Gzip(reports), "rapports.tar.gz");
        clean.IsClean();
        Assert.DoesNotContain(clean.Findings, f => f.Rule == "pdf.header-offset");

        var withProgram = Tar(("rapports/cr.pdf", PdfBuilder.Document("Compte rendu").Build()), ("rapports/viewer.exe", ExecutableSamples.Pe()));
        var verdict = await TestInspection.InspectAsync(withProgram, "rapports.tar");
        verdict.IsMalicious();
        Assert.Contains("viewer.exe", verdict.Has("executable.pe").InnerPath, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_a_winmail_dat_whose_attachment_is_a_pdf_was_read_as_a_pdf()
    {
        var winmail = MailSamples.Tnef("compte-rendu.pdf", PdfBuilder.Document("Compte rendu").Build());
        (await TestInspection.InspectAsync(winmail, "winmail.dat")).IsClean();
    }

    [Fact]
    public async Task A_tar_that_is_also_a_pdf_is_read_as_the_pdf_a_reader_opens_too()
    {
        // The first member is a clean report; a later member, named as notes, holds a catalog that runs a script. A reader
        // opening the file as a PDF (header at 512) takes the later catalog.
        var update = "7 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction 8 0 R >> endobj\n8 0 obj << /S /JavaScript /JS (app.alert\\('inert marker'\\)) >> endobj\ntrailer << /Root 7 0 R >>\n%%EOF\n"u8.ToArray();
        var polyglot = Tar(("cr.pdf", PdfBuilder.Document("Compte rendu").Build()), ("notes.txt", update));

        var verdict = await TestInspection.InspectAsync(polyglot, "cr.pdf");
        verdict.IsMalicious();
        Assert.StartsWith("[as a PDF reader opens it, from offset 512]", verdict.Has("pdf.javascript").InnerPath, StringComparison.Ordinal);
    }
}
