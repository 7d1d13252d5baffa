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

    [Fact]
    public async Task Regression_a_page_or_a_mail_with_a_pdf_header_in_its_first_kilobyte_was_read_as_a_pdf()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        var page = $"<!-- exported from %PDF-1.7 viewer --><html><body><a download=\"x.exe\" href=\"data:application/octet-stream;base64,{payload}\">x</a></body></html>";
        (await TestInspection.InspectAsync(System.Text.Encoding.UTF8.GetBytes(page), "page.html")).Has("html.smuggling");

        // A quoted-printable PDF attachment puts "%PDF-" in clear near the top; the program after it must still be seen.
        var report = PdfBuilder.Document("Compte rendu").Build();
        var mail = "From: labo@hospital.example\r\nTo: secretariat@hospital.example\r\nSubject: CR\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            + "--b\r\nContent-Type: application/pdf; name=\"cr.pdf\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + System.Text.Encoding.Latin1.GetString(report).Replace("=", "=3D", StringComparison.Ordinal) + "\r\n"
            + "--b\r\nContent-Type: application/octet-stream; name=\"facture.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Convert.ToBase64String(ExecutableSamples.Pe()) + "\r\n--b--\r\n";
        var verdict = await TestInspection.InspectAsync(System.Text.Encoding.Latin1.GetBytes(mail), "cr.eml");
        verdict.IsMalicious();
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Regression_a_tar_holding_a_docx_was_reported_as_a_zip_appended_to_it()
    {
        var reports = Tar(("cr.pdf", PdfBuilder.Document("Compte rendu").Build()), ("lettre.docx", OoxmlSamples.CleanDocx()));
        var verdict = await TestInspection.InspectAsync(reports, "rapports.tar");
        verdict.IsClean();
        Assert.DoesNotContain(verdict.Findings, f => f.Rule == "inspection.appended-archive");
    }

    [Fact]
    public async Task Regression_a_support_mail_quoting_a_pdf_s_first_lines_was_suspicious()
    {
        var mail = "From: support@vendor.example\r\nTo: it@hospital.example\r\nSubject: Re: fichier illisible\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
            + "Bonjour, le fichier commence par :\r\n%PDF-1.7\r\n1 0 obj\r\n<< /Type /Catalog >>\r\nIl semble tronque.\r\n";
        (await TestInspection.InspectAsync(System.Text.Encoding.UTF8.GetBytes(mail), "re.eml")).IsClean();
        (await TestInspection.InspectAsync(System.Text.Encoding.UTF8.GetBytes("Le fichier commence par %PDF-1.7 puis 1 0 obj.\n"), "notes.txt")).IsClean();
    }

    [Fact]
    public async Task Regression_a_page_starting_with_a_pdf_header_was_read_as_a_pdf_only()
    {
        var payload = Convert.ToBase64String(ExecutableSamples.Pe().Concat(new byte[3000]).ToArray());
        var page = $"%PDF-1.4\n<html><body><a download=\"x.exe\" href=\"data:application/octet-stream;base64,{payload}\">x</a></body></html>";
        var verdict = await TestInspection.InspectAsync(System.Text.Encoding.UTF8.GetBytes(page), "page.html");
        verdict.IsMalicious();
        Assert.Equal("[as a browser renders it]", verdict.Has("html.smuggling").InnerPath);
    }
}
