using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Mail;

/// <summary>Mails that hid behind their own first bytes, a lax header, or a container's member names (review of 2026-12-07).</summary>
public sealed class MailIdentificationTests
{
    private static string PeBase64 => Convert.ToBase64String(ExecutableSamples.Pe(), Base64FormattingOptions.InsertLineBreaks).Replace("\n", "\r\n", StringComparison.Ordinal);

    /// <summary>A multipart mail with a text part and an octet-stream attachment holding an inert PE, after the given headers.</summary>
    private static byte[] MailWithPe(string headers, string attachmentName = "a.bin") => Encoding.ASCII.GetBytes(
        headers + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
        + "--B\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n"
        + $"--B\r\nContent-Type: application/octet-stream; name=\"{attachmentName}\"\r\nContent-Disposition: attachment; filename=\"{attachmentName}\"\r\n"
        + "Content-Transfer-Encoding: base64\r\n\r\n" + PeBase64 + "\r\n--B--\r\n");

    [Theory]
    [InlineData("GIF89a: 1")]
    [InlineData("{\\rtf1: 1")]
    [InlineData("%PDF-1.4: 1")]
    [InlineData("BZh91AY&SY: 1")]
    public async Task Mail_whose_first_header_is_named_like_another_format_is_read_as_a_mail(string firstHeader)
    {
        var mail = MailWithPe(firstHeader + "\r\nFrom: a@ext.example\r\nTo: b@hospital.example\r\nSubject: rapport\r\n");
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.IsMalicious();
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Mail_whose_header_block_is_also_a_tar_header_is_read_as_a_mail()
    {
        var prefix = "From: a@ext.example\r\nTo: b@hospital.example\r\nX-Ref: ";
        var headers = prefix + new string('a', 257 - prefix.Length) + "ustar00 and more\r\nSubject: rapport\r\n";
        var mail = MailWithPe(headers);
        Assert.Equal("ustar", Encoding.ASCII.GetString(mail, 257, 5));
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.IsMalicious();
        verdict.Has("executable.pe");
    }

    [Theory]
    [InlineData("Received : from relay.example\r\nFrom: a@ext.example\r\nTo: b@hospital.example\r\n")]
    [InlineData("X-Ré: 1\r\nFrom: a@ext.example\r\nTo: b@hospital.example\r\n")]
    [InlineData("")]
    public async Task Mail_with_a_spaced_colon_an_8bit_name_or_only_mime_headers_is_read_as_a_mail(string headers)
    {
        var mail = MailWithPe(headers);
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        Assert.Equal("Mime", verdict.ContentType);
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Forwarded_message_with_only_a_content_type_is_read_as_a_mail()
    {
        var inner = "Content-Type: multipart/mixed; boundary=\"I\"\r\n\r\n--I\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + PeBase64 + "\r\n--I--\r\n";
        var mail = Encoding.ASCII.GetBytes("From: a@ext.example\r\nTo: b@hospital.example\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
            + "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nVoir ci-dessous\r\n"
            + "--B\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--B--\r\n");
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.IsMalicious();
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Forwarded_message_named_with_a_double_extension_is_flagged()
    {
        var inner = "From: c@ext.example\r\nSubject: x\r\n\r\nhello\r\n";
        var mail = Encoding.ASCII.GetBytes("From: a@ext.example\r\nTo: b@hospital.example\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
            + "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nci-joint\r\n"
            + "--B\r\nContent-Type: message/rfc822; name=\"facture.pdf.js\"\r\nContent-Disposition: attachment; filename=\"facture.pdf.js\"\r\n\r\n" + inner + "\r\n--B--\r\n");
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.Has("mail.double-extension");
    }

    [Theory]
    [InlineData("facture.pdf.js")]
    [InlineData("relance.vbs")]
    [InlineData("scan.lnk")]
    [InlineData("dossier.iso")]
    [InlineData("connexion.rdp")]
    public async Task Zipped_script_or_shortcut_attached_to_a_mail_is_dangerous(string entry)
    {
        var zip = new ZipBuilder().Add(entry, "WScript.Echo \"synthetic\"").Build();
        var message = MailSamples.WithAttachments(MailSamples.Message(), ("documents.zip", zip, "application/zip"));
        var verdict = await TestInspection.InspectAsync(MailSamples.Bytes(message), "m.eml");
        verdict.IsMalicious();
    }

    [Fact]
    public async Task Script_in_a_zip_on_its_own_is_noted_by_its_disguise_only()
    {
        var plain = await TestInspection.InspectAsync(new ZipBuilder().Add("tools/install.vbs", "WScript.Echo \"synthetic\"").Build(), "tools.zip");
        plain.HasNo("mail.dangerous-extension");
        var disguised = await TestInspection.InspectAsync(new ZipBuilder().Add("facture.pdf.js", "WScript.Echo \"synthetic\"").Build(), "f.zip");
        disguised.Has("mail.double-extension");
    }

    [Theory]
    [InlineData("a.ws")]
    [InlineData("a.appref-ms")]
    [InlineData("a.search-ms")]
    [InlineData("a.jnlp")]
    [InlineData("a.mst")]
    public async Task Extensions_on_outlooks_blocked_list_are_dangerous(string name)
    {
        var message = MailSamples.WithAttachments(MailSamples.Message(), (name, "[shortcut]\r\nsynthetic=1\r\n"u8.ToArray(), "application/octet-stream"));
        var verdict = await TestInspection.InspectAsync(MailSamples.Bytes(message), "m.eml");
        verdict.Has("mail.dangerous-extension");
    }

    [Theory]
    [InlineData("resultats.csv", "application/vnd.ms-excel")]
    [InlineData("export.xls", "application/vnd.ms-excel")]
    [InlineData("photo.jpg", "image/png")]
    public async Task Files_declared_with_legacy_office_types_or_names_are_not_mismatches(string name, string mimeType)
    {
        byte[] data = name switch
        {
            "resultats.csv" => "patient;resultat\r\nSYNTH1;4.2\r\n"u8.ToArray(),
            "export.xls" => "<html><body><table><tr><td>SYNTH1</td><td>4.2</td></tr></table></body></html>"u8.ToArray(),
            _ => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, (byte)'I', (byte)'H', (byte)'D', (byte)'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xDE],
        };
        var message = MailSamples.WithAttachments(MailSamples.Message(), (name, data, mimeType));
        var verdict = await TestInspection.InspectAsync(MailSamples.Bytes(message), "m.eml");
        verdict.HasNo("mail.attachment-type-mismatch");
    }

    [Fact]
    public async Task Note_that_starts_with_one_header_line_is_still_clean()
    {
        var verdict = await TestInspection.InspectAsync("To: Dr Martin\r\n\r\nBonjour, le compte rendu suit.\r\n"u8.ToArray(), "note.txt");
        verdict.IsClean();
    }
}

/// <summary>Mail content Vigie cannot open was clean; opaque-signed S/MIME was not opened (review of 2026-12-07).</summary>
public sealed class MailWrappedContentTests
{
    private static string Base64Lines(byte[] data) => Convert.ToBase64String(data, Base64FormattingOptions.InsertLineBreaks).Replace("\n", "\r\n", StringComparison.Ordinal);

    private static byte[] Wrap(string contentType, string body) => Encoding.ASCII.GetBytes(
        "From: a@ext.example\r\nTo: b@hospital.example\r\nSubject: pli\r\nMIME-Version: 1.0\r\n" + contentType + "\r\n\r\n" + body);

    internal static byte[] SignedDataFor(byte[] content) => SignedData(content);

    /// <summary>Opaque-signed data (the content inside the CMS structure), signed by a throw-away self-signed key.</summary>
    private static byte[] SignedData(byte[] content)
    {
        var generator = new Org.BouncyCastle.Crypto.Generators.RsaKeyPairGenerator();
        generator.Init(new Org.BouncyCastle.Crypto.KeyGenerationParameters(new Org.BouncyCastle.Security.SecureRandom(), 1024));
        var keys = generator.GenerateKeyPair();
        var name = new Org.BouncyCastle.Asn1.X509.X509Name("CN=Synthetic Signer");
        var certificates = new Org.BouncyCastle.X509.X509V3CertificateGenerator();
        certificates.SetSerialNumber(Org.BouncyCastle.Math.BigInteger.One);
        certificates.SetIssuerDN(name);
        certificates.SetSubjectDN(name);
        certificates.SetNotBefore(DateTime.UtcNow.AddDays(-1));
        certificates.SetNotAfter(DateTime.UtcNow.AddDays(1));
        certificates.SetPublicKey(keys.Public);
        var certificate = certificates.Generate(new Org.BouncyCastle.Crypto.Operators.Asn1SignatureFactory("SHA256WithRSA", keys.Private));
        var cms = new Org.BouncyCastle.Cms.CmsSignedDataGenerator();
        cms.AddSigner(keys.Private, certificate, Org.BouncyCastle.Cms.CmsSignedGenerator.DigestSha256);
        return cms.Generate(new Org.BouncyCastle.Cms.CmsProcessableByteArray(content), true).GetEncoded();
    }

    private static byte[] InnerWithPe() => Encoding.ASCII.GetBytes(
        "Content-Type: multipart/mixed; boundary=\"I\"\r\n\r\n--I\r\nContent-Type: text/plain\r\n\r\nCompte rendu\r\n"
        + "--I\r\nContent-Type: application/octet-stream; name=\"cr.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + Base64Lines(ExecutableSamples.Pe()) + "\r\n--I--\r\n");

    [Fact]
    public async Task Opaque_signed_smime_is_unwrapped_and_its_attachment_inspected()
    {
        var mail = Wrap("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64",
            Base64Lines(SignedData(InnerWithPe())) + "\r\n");
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.IsMalicious();
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Opaque_signed_smime_report_is_clean()
    {
        var inner = Encoding.ASCII.GetBytes("Content-Type: text/plain; charset=utf-8\r\n\r\nCompte rendu de consultation (synthetique).\r\n");
        var mail = Wrap("Content-Type: application/x-pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64",
            Base64Lines(SignedData(inner)) + "\r\n");
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.IsClean();
    }

    [Theory]
    [InlineData("Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64", "MIAGCSqGSIb3DQEHA6CAMIACAQAxggFKMIIBRgIBADAuMBoxGDAWBgNVBAMMD1N5bnRoZXRpYw==\r\n", "mail.encrypted")]
    [InlineData("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"P\"",
        "--P\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--P\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA5ynthetic\r\n-----END PGP MESSAGE-----\r\n--P--\r\n", "mail.encrypted")]
    [InlineData("Content-Type: message/partial; id=\"frag@ext.example\"; number=2; total=2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", "mail.partial")]
    public async Task Mail_content_that_cannot_be_opened_is_not_called_clean(string contentType, string body, string rule)
    {
        var verdict = await TestInspection.InspectAsync(Wrap(contentType, body), "m.eml");
        Assert.Equal(Severity.Medium, verdict.Has(rule).Severity);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);
    }
}

/// <summary>Script-less smuggling through a meta refresh (review of 2026-12-07).</summary>
public sealed class MetaRefreshSmugglingTests
{
    [Theory]
    [InlineData("<meta http-equiv=\"refresh\" content=\"0;url=data:application/octet-stream;base64,{0}\">")]
    [InlineData("<META CONTENT='1; URL=data:application/x-msdownload;name=f.exe;base64,{0}' HTTP-EQUIV='Refresh'>")]
    public async Task Meta_refresh_to_a_data_url_is_smuggling_and_its_file_is_inspected(string tag)
    {
        var page = "<html><head>" + string.Format(System.Globalization.CultureInfo.InvariantCulture, tag, Convert.ToBase64String(ExecutableSamples.Pe())) + "</head><body>Chargement...</body></html>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(page), "portail.html");
        verdict.Has("html.smuggling");
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Meta_refresh_to_a_page_or_an_image_is_not_smuggling()
    {
        var page = "<html><head><meta http-equiv=\"refresh\" content=\"30;url=https://intranet.hospital.example/\"><meta name=x content=\"url=data:image/png;base64,iVBORw0KGgo= refresh\"></head><body>ok</body></html>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(page), "p.html");
        verdict.IsClean();
    }
}

/// <summary>Mails that read differently to different clients (review of 2026-12-07).</summary>
public sealed class MailAmbiguityTests
{
    private static string Pe => Convert.ToBase64String(ExecutableSamples.Pe());

    private static byte[] Mail(string part) => Encoding.ASCII.GetBytes(
        "From: a@ext.example\r\nTo: b@hospital.example\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
        + "--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\n" + part + "\r\n--B--\r\n");

    [Theory]
    [InlineData("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\n{0}")]
    [InlineData("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"notes.txt\"; filename=\"run.js\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{0}")]
    [InlineData("Content-Type: text/plain\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{0}")]
    public async Task Header_or_parameter_given_twice_is_ambiguous(string part)
    {
        var verdict = await TestInspection.InspectAsync(Mail(string.Format(System.Globalization.CultureInfo.InvariantCulture, part, Pe)), "m.eml");
        verdict.Has("mail.ambiguous-header");
    }

    [Fact]
    public async Task Part_named_differently_in_its_type_and_its_disposition_has_both_names_checked()
    {
        var part = "Content-Type: application/octet-stream; name=\"run.js\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + Convert.ToBase64String("WScript.Echo 1"u8.ToArray());
        var verdict = await TestInspection.InspectAsync(Mail(part), "m.eml");
        verdict.Has("mail.ambiguous-header");
        verdict.Has("mail.dangerous-extension");
    }

    [Fact]
    public async Task Rfc2231_sections_a_fallback_name_and_a_short_name_are_not_ambiguous()
    {
        var part = "Content-Type: application/pdf; name=\"COMPTE~1.PDF\"\r\nContent-Disposition: attachment; filename=\"cr.pdf\"; filename*0*=UTF-8''compte%20; filename*1*=rendu.pdf\r\n"
            + "Content-Transfer-Encoding: base64\r\n\r\n" + Convert.ToBase64String(PdfBuilder.Document().Build());
        var verdict = await TestInspection.InspectAsync(Mail(part), "m.eml");
        verdict.HasNo("mail.ambiguous-header");
    }

    [Fact]
    public async Task Mail_with_bare_cr_line_ends_is_read_as_a_mail()
    {
        var mail = Encoding.ASCII.GetString(Mail("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Pe)).Replace("\r\n", "\r", StringComparison.Ordinal);
        var verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(mail), "m.eml");
        Assert.Equal("Mime", verdict.ContentType);
        verdict.Has("executable.pe");
    }
}

/// <summary>Ways around the first fixes found by the second review of 2026-12-07.</summary>
public sealed class MailSecondReviewTests
{
    private static readonly Inspector Hospital = TestInspection.Create(mail: m =>
    {
        m.InternalDomains = ["hosp.example"];
        m.InternalDisplayNames = ["Hélène Dupré", "Jean Martin"];
        m.ProtectedDomains = ["hosp.example"];
    });

    private static string Base64Lines(byte[] data) => Convert.ToBase64String(data, Base64FormattingOptions.InsertLineBreaks).Replace("\n", "\r\n", StringComparison.Ordinal);

    private static byte[] Mail(string part, string from = "Service <it@ext.example>") => Encoding.UTF8.GetBytes(
        $"From: {from}\r\nTo: b@hosp.example\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
        + "--B\r\nContent-Type: text/plain\r\n\r\nci-joint\r\n--B\r\n" + part + "\r\n--B--\r\n");

    [Fact]
    public async Task Mail_padded_past_the_head_is_still_read_as_a_mail()
    {
        var padding = string.Concat(Enumerable.Range(0, 260).Select(i => $"X-Pad-{i:D3}: {new string('p', 20)}\r\n"));
        var mail = Encoding.ASCII.GetBytes("GIF89a: x\r\n" + padding + Encoding.ASCII.GetString(Mail(
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(ExecutableSamples.Pe()))));
        var verdict = await TestInspection.InspectAsync(mail, "m.eml");
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Smime_p7m_labelled_octet_stream_is_unwrapped()
    {
        var inner = Encoding.ASCII.GetBytes("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(ExecutableSamples.Pe()) + "\r\n");
        var signed = MailWrappedContentTests.SignedDataFor(inner);
        var verdict = await TestInspection.InspectAsync(Mail(
            "Content-Type: application/octet-stream; name=\"smime.p7m\"\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + Base64Lines(signed)), "m.eml");
        verdict.Has("executable.pe");
    }

    [Fact]
    public async Task Meta_refresh_written_with_a_character_reference_is_smuggling()
    {
        var page = "<html><head><meta http-equiv=\"refresh\" content=\"0;url=&#100;ata:application/octet-stream;base64," + Convert.ToBase64String(ExecutableSamples.Pe()) + "\"></head></html>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(page), "p.html");
        verdict.Has("html.smuggling");
    }

    [Fact]
    public async Task Page_framed_from_a_data_url_is_read()
    {
        var framed = "<html><body><script>var b=new Blob([atob('" + Convert.ToBase64String(new byte[3000]) + "')]);var a=document.createElement('a');a.href=URL.createObjectURL(b);a.download='f.exe';a.click();</script></body></html>";
        var page = "<html><body><iframe src=\"data:text/html;base64," + Convert.ToBase64String(Encoding.UTF8.GetBytes(framed)) + "\"></iframe></body></html>";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(page), "p.html");
        Assert.Contains(verdict.Findings, f => f.Rule == "html.smuggling" && f.InnerPath.Contains("data-url", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("a.bas")]
    [InlineData("a.htc")]
    [InlineData("a.iqy")]
    [InlineData("a.slk")]
    [InlineData("a.appinstaller")]
    public async Task More_extensions_windows_runs_are_dangerous(string name)
    {
        var verdict = await TestInspection.InspectAsync(Mail($"Content-Type: application/octet-stream; name=\"{name}\"\r\n\r\nsynthetic\r\n"), "m.eml");
        verdict.Has("mail.dangerous-extension");
    }

    [Theory]
    [InlineData("facture.pdf\u00A0\u00A0\u00A0.js")]
    [InlineData("facture.pdf\u3000.js")]
    [InlineData("facture.pdf\u200B.js")]
    [InlineData("rdv.ics.js")]
    [InlineData("photo.heic.exe")]
    public async Task Double_extension_hidden_by_unicode_spacing_or_another_document_type_is_found(string name)
    {
        var verdict = await TestInspection.InspectAsync(new ZipBuilder().Add(name, "WScript.Echo 1").Build(), "z.zip");
        verdict.Has("mail.double-extension");
    }

    [Fact]
    public async Task Zip_member_renamed_by_its_unicode_path_field_is_checked_under_that_name()
    {
        var zip = new ZipBuilder().Add("facture.pdf", "WScript.Echo 1", tweak: e => e.UnicodePath("facture.pdf.js")).Build();
        var verdict = await TestInspection.InspectAsync(zip, "z.zip");
        verdict.Has("mail.double-extension");
    }

    [Fact]
    public async Task Lookalike_link_in_a_zipped_page_or_an_svg_is_checked()
    {
        const string page = "<html><body><a href=\"https://h0sp.example/login\">Portail</a></body></html>";
        var zip = new ZipBuilder().Add("portail.html", page).Build();
        var zipped = await Hospital.InspectAsync(Mail("Content-Type: application/zip; name=\"p.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(zip)), "m.eml");
        zipped.Has("mail.link-lookalike");
        const string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\"><a xlink:href=\"https://h0sp.example/login\"><text>Ouvrir</text></a></svg>";
        var drawn = await Hospital.InspectAsync(Mail("Content-Type: image/svg+xml; name=\"plan.svg\"\r\n\r\n" + svg), "m.eml");
        drawn.Has("mail.link-lookalike");
    }

    /// <summary>Regression: a look-alike of the hospital's domain behind a mailed PDF's link passed (the mail checked its text and HTML parts only).</summary>
    [Fact]
    public async Task Regression_lookalike_link_in_a_mailed_pdf_was_not_checked()
    {
        static byte[] Report(string uri)
        {
            var pdf = Samples.PdfBuilder.Document();
            var link = pdf.Add($"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A << /S /URI /URI ({uri}) >> >>");
            pdf.PageExtra += $" /Annots [{link} 0 R]";
            return pdf.Build();
        }

        var attached = await Hospital.InspectAsync(Mail("Content-Type: application/pdf; name=\"cr.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + Base64Lines(Report("https://h0sp.example/resultats"))), "m.eml");
        attached.Has("mail.link-lookalike");
        var zip = new ZipBuilder().Add("cr.pdf", Report("https://h0sp.example/resultats")).Build();
        var zipped = await Hospital.InspectAsync(Mail("Content-Type: application/zip; name=\"cr.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + Base64Lines(zip)), "m.eml");
        zipped.Has("mail.link-lookalike");

        // The hospital's own link is clean, and a PDF that did not come by mail keeps the PDF checks only.
        (await Hospital.InspectAsync(Mail("Content-Type: application/pdf; name=\"cr.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + Base64Lines(Report("https://hosp.example/resultats"))), "m.eml")).HasNo("mail.link-lookalike");
        (await Hospital.InspectAsync(Report("https://h0sp.example/resultats"), "cr.pdf")).HasNo("mail.link-lookalike");
    }

    [Theory]
    [InlineData("Helene Dupre <h@ext.example>")]
    [InlineData("Dr Jean Martin <j@ext.example>")]
    [InlineData("Jean-Martin <j@ext.example>")]
    [InlineData("\"Jean.Martin\" <j@ext.example>")]
    [InlineData("\"IT h\u0585sp.example\" <it@ext.example>")]
    public async Task Display_name_spoof_without_accents_with_a_title_or_other_lookalikes_is_found(string from)
    {
        var verdict = await Hospital.InspectAsync(Mail("Content-Type: text/plain\r\n\r\nbonjour\r\n", from), "m.eml");
        verdict.Has("mail.display-name-spoof");
    }

    [Fact]
    public async Task Second_content_disposition_names_are_checked()
    {
        var verdict = await TestInspection.InspectAsync(Mail(
            "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"facture.pdf\"\r\nContent-Disposition: attachment; filename=\"facture.js\"\r\n\r\nWScript.Echo 1\r\n"), "m.eml");
        verdict.Has("mail.dangerous-extension");
    }

    [Theory]
    [InlineData("Content-Type: application/octet-stream; name=\"facture.gpg\"\r\n\r\n\u0085\u0001synthetic")]
    [InlineData("Content-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA5ynthetic\r\n-----END PGP MESSAGE-----\r\n")]
    public async Task Inline_or_attached_openpgp_data_is_not_called_clean(string part)
    {
        var verdict = await TestInspection.InspectAsync(Mail(part), "m.eml");
        verdict.Has("mail.encrypted");
    }

    [Fact]
    public async Task Forwarded_message_named_in_its_content_type_is_checked()
    {
        var verdict = await TestInspection.InspectAsync(Mail("Content-Type: message/rfc822; name=\"facture.pdf.js\"\r\n\r\nFrom: c@ext.example\r\nSubject: x\r\n\r\nhello\r\n"), "m.eml");
        verdict.Has("mail.double-extension");
    }

    [Fact]
    public async Task Attached_log_full_of_intranet_links_does_not_make_the_mail_suspicious()
    {
        var log = string.Concat(Enumerable.Range(0, 2500).Select(i => $"2026-12-07 10:00:{i % 60:D2} GET http://pacs.hosp.example/wado?studyUID=2.25.{i} 200\r\n"));
        var verdict = await TestInspection.InspectAsync(Mail("Content-Type: text/plain; name=\"gateway.log\"\r\nContent-Disposition: attachment; filename=\"gateway.log\"\r\n\r\n" + log), "m.eml");
        Assert.Equal(VerdictKind.Clean, verdict.Kind);
    }

    [Fact]
    public async Task Scanner_name_without_an_extension_is_not_ambiguous()
    {
        var verdict = await TestInspection.InspectAsync(Mail("Content-Type: application/pdf; name=\"CR_IRM\"\r\nContent-Disposition: attachment; filename=\"CR_IRM.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + Base64Lines(PdfBuilder.Document().Build())), "m.eml");
        verdict.HasNo("mail.ambiguous-header");
    }
}
