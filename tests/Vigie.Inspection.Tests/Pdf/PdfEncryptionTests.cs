using Vigie.Inspection.Tests.Samples;
using Vigie.Testing;

namespace Vigie.Inspection.Tests.Pdf;

/// <summary>Encrypted PDFs made by qpdf, a real writer, with each standard handler revision.</summary>
public sealed class PdfEncryptionTests
{
    public static TheoryData<string> Protections => new()
    {
        "40",
        "128 --use-aes=n",
        "128 --use-aes=y",
        "256 --print=none",
        "256 -- --object-streams=generate",
    };

    private static async Task<byte[]> EncryptAsync(byte[] plain, string userPassword, string protection)
    {
        var qpdf = Peers.Require("qpdf", "qpdf");
        using var folder = new TempDirectory();
        var input = folder.Combine("in.pdf");
        var output = folder.Combine("out.pdf");
        await File.WriteAllBytesAsync(input, plain, TestContext.Current.CancellationToken);
        var options = protection.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
        if (!options.Contains("--"))
        {
            options.Add("--");
        }

        string[] arguments = ["--allow-weak-crypto", "--encrypt", userPassword, "owner-secret", .. options, input, output];
        var result = await Peers.RunAsync(qpdf, arguments, TimeSpan.FromSeconds(30), cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(result.ExitCode is 0 or 3, result.ToString());
        return await File.ReadAllBytesAsync(output, TestContext.Current.CancellationToken);
    }

    private static PdfBuilder ScriptedReport()
    {
        var pdf = PdfBuilder.Document();
        var script = pdf.AddStream("", "app.alert('inert test marker');"u8.ToArray(), flate: true);
        var action = pdf.Add($"<< /S /JavaScript /JS {script} 0 R >>");
        pdf.CatalogExtra = $"/OpenAction {action} 0 R";
        pdf.TrailerExtra = "/Info << /Title (Compte rendu) >>";
        return pdf;
    }

    [Theory]
    [MemberData(nameof(Protections))]
    public async Task Owner_password_only_pdf_was_quarantined_as_encrypted(string protection)
    {
        var report = PdfBuilder.Document("Compte rendu d'examen synthetique");
        var link = report.Add("<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI (https://www.hospital.example/results) >> >>");
        report.PageExtra += $" /Annots [{link} 0 R]";
        var verdict = await TestInspection.InspectAsync(await EncryptAsync(report.Build(), "", protection), "report.pdf");

        verdict.IsClean();
        var finding = verdict.Has("pdf.encrypted");
        Assert.Equal(Severity.Info, finding.Severity);
        Assert.Contains("opens without a password", finding.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Protections))]
    public async Task Script_in_an_owner_password_pdf_is_decrypted_and_found(string protection)
    {
        var verdict = await TestInspection.InspectAsync(await EncryptAsync(ScriptedReport().Build(), "", protection), "report.pdf");

        verdict.IsMalicious();
        Assert.Contains("inert test marker", verdict.Has("pdf.javascript").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_an_encryption_dictionary_no_cross_reference_reaches_hid_a_plain_document_s_script()
    {
        var qpdf = Peers.Require("qpdf", "qpdf");
        using var folder = new TempDirectory();
        await File.WriteAllBytesAsync(folder.Combine("in.pdf"), ScriptedReport().Build(), TestContext.Current.CancellationToken);
        // The catalog and its script packed in an object stream, reached through a cross-reference stream.
        var packed = await Peers.RunAsync(qpdf, ["--object-streams=generate", folder.Combine("in.pdf"), folder.Combine("packed.pdf")], TimeSpan.FromSeconds(30),
            cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(packed.ExitCode is 0 or 3, packed.ToString());
        var plain = await File.ReadAllBytesAsync(folder.Combine("packed.pdf"), TestContext.Current.CancellationToken);

        // A valid owner-only encryption dictionary, and a trailer naming it that nothing reaches, appended after %%EOF.
        var encrypted = System.Text.Encoding.Latin1.GetString(await EncryptAsync(plain, "", "128 --use-aes=n"));
        var dictionary = System.Text.RegularExpressions.Regex.Match(encrypted, @"obj\s*(<<\s*/Filter\s*/Standard.*?>>)\s*endobj", System.Text.RegularExpressions.RegexOptions.Singleline).Groups[1].Value;
        var id = System.Text.RegularExpressions.Regex.Match(encrypted, @"/ID\s*\[\s*<[0-9a-fA-F]+>\s*<[0-9a-fA-F]+>\s*\]").Value;
        Assert.False(string.IsNullOrEmpty(dictionary) || string.IsNullOrEmpty(id), "no encryption dictionary or ID in qpdf's output");
        var orphan = System.Text.Encoding.Latin1.GetBytes($"\n9999 0 obj\n{dictionary}\nendobj\ntrailer\n<< /Encrypt 9999 0 R {id} >>\n");

        var verdict = await TestInspection.InspectAsync([.. plain, .. orphan], "report.pdf");
        verdict.IsMalicious();
        Assert.Contains("inert test marker", verdict.Has("pdf.javascript").Message, StringComparison.Ordinal);
        Assert.DoesNotContain(verdict.Findings, f => f.Rule == "pdf.encrypted");
    }

    [Fact]
    public async Task Regression_a_mail_with_an_owner_password_pdf_in_quoted_printable_was_suspicious()
    {
        var pdf = await EncryptAsync(PdfBuilder.Document("Resultats de laboratoire").Build(), "", "256 --print=none");
        var message = MailSamples.Message();
        var attachment = new MimeKit.MimePart("application", "pdf")
        {
            Content = new MimeKit.MimeContent(new MemoryStream(pdf)),
            ContentTransferEncoding = MimeKit.ContentEncoding.QuotedPrintable,
            FileName = "resultats.pdf",
        };
        message.Body = new MimeKit.Multipart("mixed") { new MimeKit.TextPart("plain") { Text = "Ci-joint les resultats." }, attachment };
        // The mail itself, read again as the PDF a reader would open, meets the attachment's dictionary mangled by the encoding.
        (await TestInspection.InspectAsync(MailSamples.Bytes(message), "resultats.eml")).IsClean();
    }

    [Fact]
    public async Task A_pdf_that_needs_a_password_to_open_stays_opaque_and_suspicious()
    {
        var plain = PdfBuilder.Document("Compte rendu").Build();
        var verdict = await TestInspection.InspectAsync(await EncryptAsync(plain, "user-secret", "256"), "report.pdf");

        var finding = verdict.Has("pdf.encrypted");
        Assert.Equal(Severity.Medium, finding.Severity);
        Assert.Contains("needs a password to open", finding.Message, StringComparison.Ordinal);
    }
}
