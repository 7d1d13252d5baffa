using System.Text;
using MimeKit;
using MimeKit.Tnef;
using Vigie.Inspection.Mail;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Mail;

public sealed class MailAnalyserTests
{
    private static readonly Inspector Hospital = TestInspection.Create(mail: m =>
    {
        m.InternalDomains = ["hospital.example"];
        m.InternalDisplayNames = ["Claire Martin", "Direction des Soins"];
        m.ProtectedDomains = ["bank.example"];
    });

    [Fact]
    public async Task Ordinary_mail_is_clean()
    {
        var message = MailSamples.Message(html: "<p>See <a href=\"https://www.hospital.example/portal\">the portal</a> or https://bank.example/login.</p>");
        MailSamples.WithAttachments(message,
            ("report.pdf", PdfBuilder.Document().Build(), "application/pdf"),
            ("notes.txt", "first line\nsecond line\n"u8.ToArray(), "text/plain"),
            ("letter.docx", OoxmlSamples.CleanDocx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("scan.zip", new ZipBuilder().Add("page1.txt", "page one").Build(), "application/zip"));
        message.Headers.Add("Authentication-Results", "mx.hospital.example; spf=pass smtp.mailfrom=hospital.example; dkim=pass header.d=hospital.example; dmarc=pass");
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(message), "message.eml");
        verdict.IsClean();
        Assert.Equal("Mime", verdict.ContentType);
        Assert.True(verdict.Objects >= 7, verdict.Describe());
    }

    [Fact]
    public async Task Attachments_are_inspected_at_any_depth()
    {
        var inner = new ZipBuilder().Add("docs/tool.exe", ExecutableSamples.Pe()).Build();
        var message = MailSamples.WithAttachments(MailSamples.Message(), ("archive.zip", new ZipBuilder().Add("nested.zip", inner).Build(), "application/zip"));
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(message));
        verdict.Has("executable.pe", "attachment[3]:archive.zip/nested.zip/docs/tool.exe");
    }

    [Theory]
    [InlineData(20)]
    [InlineData(40)]
    [InlineData(1000)]
    public async Task Regression_an_attachment_nested_past_the_mime_depth_limit_was_dropped_and_the_mail_called_clean(int levels)
    {
        var body = "Content-Type: application/octet-stream; name=\"tool.exe\"\r\nContent-Disposition: attachment; filename=\"tool.exe\"\r\n"
            + "Content-Transfer-Encoding: base64\r\n\r\n" + Convert.ToBase64String(ExecutableSamples.Pe(), Base64FormattingOptions.InsertLineBreaks) + "\r\n";
        for (var i = 0; i < levels; i++)
        {
            body = $"Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain\r\n\r\nlevel\r\n--b{i}\r\n{body}\r\n--b{i}--\r\n";
        }

        var mail = "From: a@example.org\r\nTo: b@hospital.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body;
        var verdict = await Hospital.InspectAsync(Encoding.ASCII.GetBytes(mail), "deep.eml");
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);
        Assert.True(verdict.Findings.Any(f => f.Rule == "executable.pe") || verdict.Findings.Any(f => f.Rule == "inspection.depth-limit"), verdict.Describe());
    }

    [Fact]
    public async Task Names_and_declared_types_that_disagree_with_the_bytes_are_found()
    {
        var message = MailSamples.WithAttachments(MailSamples.Message(),
            ("invoice.pdf", ExecutableSamples.Pe(), "application/pdf"),
            ("scan.pdf.exe", ExecutableSamples.Pe(), "application/octet-stream"),
            ("photo.jpg", new ZipBuilder().Add("a.txt", "x").Build(), "image/jpeg"),
            ("update.js", "var x = 1;"u8.ToArray(), "text/plain"),
            ("report\u202Efdp.exe", ExecutableSamples.Pe(), "application/octet-stream"));
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(message));
        Assert.Contains(verdict.Findings, f => f.Rule == "mail.attachment-type-mismatch" && f.Severity == Severity.High && f.Message.Contains("invoice.pdf", StringComparison.Ordinal));
        Assert.Contains(verdict.Findings, f => f.Rule == "mail.attachment-type-mismatch" && f.Message.Contains("photo.jpg", StringComparison.Ordinal));
        Assert.Contains(".pdf", verdict.Has("mail.double-extension").Message);
        Assert.Contains(".js", verdict.Has("mail.dangerous-extension").Message);
        verdict.Has("mail.filename-rtlo");
    }

    [Fact]
    public async Task Html_smuggling_in_the_body_uses_the_mail_rule()
    {
        var payload = Convert.ToBase64String(new byte[4000]);
        var html = $"<html><body><script>const d = atob('{payload}'); const b = new Blob([d]); window.navigator.msSaveOrOpenBlob(b, 'scan.iso');</script></body></html>";
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(html: html)));
        verdict.Has("mail.html-smuggling");
        verdict.HasNo("html.smuggling");
    }

    /// <summary>
    /// Regression: identification read the first 8 KiB. A first header line longer than that, or 8 KiB of unknown
    /// headers, made the mail "text", and its attachments were never inspected; clamscan found them.
    /// </summary>
    [Theory]
    [InlineData("long-line")]
    [InlineData("many-headers")]
    public async Task Regression_a_long_header_block_made_the_mail_plain_text(string shape)
    {
        var mail = MailSamples.Bytes(MailSamples.WithAttachments(MailSamples.Message(), ("update.exe", ExecutableSamples.Pe(), "application/octet-stream")));
        var prefix = shape == "long-line"
            ? "X-Tracking: " + new string('a', 16_000) + "\r\n"
            : string.Concat(Enumerable.Range(0, 400).Select(i => $"X-Relay-{i}: hop {i}\r\n"));
        var verdict = await Hospital.InspectAsync([.. Encoding.ASCII.GetBytes(prefix), .. mail]);
        verdict.Has("mail.dangerous-extension");
        verdict.IsMalicious();
    }

    /// <summary>
    /// Regression: a header block still going at 1 MiB (19,000 unknown headers before the mail's own) made the file
    /// text, never read as mail; and one header folded over thousands of lines cost seconds of CPU per mail.
    /// </summary>
    [Fact]
    public async Task Regression_a_header_block_past_1_mib_was_text_and_thousands_of_folded_lines_cost_seconds()
    {
        var mail = MailSamples.Bytes(MailSamples.WithAttachments(MailSamples.Message(), ("update.exe", ExecutableSamples.Pe(), "application/octet-stream")));
        var padding = string.Concat(Enumerable.Range(0, 19_000).Select(i => $"X-Relay-{i}: hop {i} via relay-{i}.example\r\n"));
        var padded = await Hospital.InspectAsync([.. Encoding.ASCII.GetBytes(padding), .. mail]);
        padded.Has("mail.malformed");
        Assert.NotEqual(VerdictKind.Clean, padded.Kind);

        var folded = "X-Folded: start\r\n" + string.Concat(Enumerable.Range(0, 6000).Select(i => $" continuation {i} of a header folded for ever\r\n"));
        var verdict = await Hospital.InspectAsync([.. Encoding.ASCII.GetBytes(folded), .. mail]);
        Assert.Contains("more than 5000 lines", verdict.Has("mail.malformed").Message, StringComparison.Ordinal);
    }

    /// <summary>A long line of a log is not a mail: no header it knows.</summary>
    [Fact]
    public async Task A_long_log_line_stays_text()
    {
        var log = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 50).Select(i => $"2026-12-06T10:00:{i % 60:00} worker {new string('z', 400)}\n")));
        var verdict = await Hospital.InspectAsync(log);
        verdict.IsClean();
        verdict.HasNo("mail.malformed");
    }

    /// <summary>Regression: an mbox was read as one message, the later ones as its body's text: their attachments were never inspected.</summary>
    [Fact]
    public async Task Regression_the_second_message_of_an_mbox_was_not_inspected()
    {
        var first = MailSamples.Bytes(MailSamples.Message());
        var second = MailSamples.Bytes(MailSamples.WithAttachments(MailSamples.Message(), ("update.exe", ExecutableSamples.Pe(), "application/octet-stream")));
        byte[] mbox = [.. "From claire.martin@hospital.example Sun Dec  6 10:00:00 2026\n"u8, .. first, .. "\nFrom billing@partner.example Sun Dec  6 10:05:00 2026\n"u8, .. second];
        var verdict = await Hospital.InspectAsync(mbox, "inbox.mbox");
        verdict.Has("mail.dangerous-extension");
    }

    [Fact]
    public async Task Failed_authentication_results_are_reported()
    {
        var message = MailSamples.Message(from: "billing@partner.example");
        message.Headers.Add("Authentication-Results", "mx.hospital.example; spf=fail smtp.mailfrom=partner.example; dkim=fail header.d=partner.example; dmarc=fail header.from=partner.example");
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(message));
        verdict.Has("mail.spf-fail");
        verdict.Has("mail.dkim-fail");
        verdict.Has("mail.dmarc-fail");
        verdict.IsMalicious();

        var softfail = MailSamples.Message(from: "billing@partner.example");
        softfail.Headers.Add("Received-SPF", "softfail (mx.hospital.example: domain of transitioning partner.example does not designate 192.0.2.1 as permitted sender)");
        (await Hospital.InspectAsync(MailSamples.Bytes(softfail))).Has("mail.spf-fail");
    }

    [Fact]
    public async Task Display_names_claiming_internal_senders_from_outside_are_spoofing()
    {
        (await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(from: "Claire Martin <claire.martin.hospital@freemail.example>")))).Has("mail.display-name-spoof");
        (await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(from: "\"it@hospital.example\" <helpdesk@evil.example>")))).Has("mail.display-name-spoof");
        (await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(from: "Claire Martin <claire.martin@hospital.example>")))).HasNo("mail.display-name-spoof");
        (await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(from: "Claire Martin <claire@lab.hospital.example>")))).HasNo("mail.display-name-spoof");
        (await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(from: "Jean Dupont <jean@partner.example>")))).HasNo("mail.display-name-spoof");
    }

    [Fact]
    public async Task Regression_an_internal_mail_linking_to_the_pacs_viewer_by_private_address_was_suspicious()
    {
        var html = "<p>Images: <a href=\"http://10.0.0.12:8080/pacs/viewer?study=1\">viewer</a></p>";
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(html: html)));
        verdict.IsClean();
        Assert.Equal(Severity.Info, verdict.Has("mail.link-ip").Severity);
    }

    [Fact]
    public async Task Links_to_raw_ips_punycode_mixed_scripts_and_lookalikes_are_found()
    {
        var html = "<a href=\"http://198.51.100.23/login\">portal</a> <a href=\"https://xn--hospitl-9ya.example/\">x</a>"
            + " <a href=\"https://h\u043Espital.example/reset\">reset</a> <a href=\"https://hospita1.example/pay\">pay</a>"
            + " <a href=\"https://hospital.example.attacker.example/\">sso</a> <a href=\"https://bnak.example/\">bank</a>";
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(MailSamples.Message(html: html)));
        verdict.Has("mail.link-ip");
        verdict.Has("mail.link-punycode");
        verdict.Has("mail.link-mixed-script");
        var lookalikes = verdict.Findings.Where(f => f.Rule == "mail.link-lookalike").Select(f => f.Message).ToList();
        Assert.Contains(lookalikes, m => m.Contains("hospita1.example", StringComparison.Ordinal));
        Assert.Contains(lookalikes, m => m.Contains("attacker.example", StringComparison.Ordinal));
        Assert.Contains(lookalikes, m => m.Contains("bnak.example", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attached_messages_are_inspected_recursively()
    {
        var inner = MailSamples.WithAttachments(MailSamples.Message(subject: "inner"), ("tool.exe", ExecutableSamples.Pe(), "application/octet-stream"));
        var outer = MailSamples.Message(subject: "Fwd: inner");
        var builder = new BodyBuilder { TextBody = "forwarded" };
        builder.Attachments.Add(new MessagePart { Message = inner });
        outer.Body = builder.ToMessageBody();
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(outer));
        Assert.Contains(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath.StartsWith("message[", StringComparison.Ordinal) && f.InnerPath.EndsWith("tool.exe", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Attachments_wrapped_in_winmail_dat_are_unwrapped_and_inspected()
    {
        var message = MailSamples.Message();
        var builder = new BodyBuilder { TextBody = "see attachment" };
        builder.Attachments.Add(new TnefPart { Content = new MimeContent(new MemoryStream(MailSamples.Tnef("report.pdf.exe", ExecutableSamples.Pe()))), FileName = "winmail.dat" });
        message.Body = builder.ToMessageBody();
        var verdict = await Hospital.InspectAsync(MailSamples.Bytes(message));
        verdict.Has("mail.double-extension");
        Assert.Contains(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath.EndsWith("report.pdf.exe", StringComparison.Ordinal));
    }

    /// <summary>
    /// Regression: a winmail.dat was unwrapped only when its part was typed application/ms-tnef. Sent as
    /// application/octet-stream (as many gateways relabel it), inside a ZIP, or scanned as a file on its own, its
    /// attachments went uninspected and the executable in it was called clean.
    /// </summary>
    [Fact]
    public async Task Regression_winmail_dat_was_unwrapped_only_under_its_own_mime_type()
    {
        var tnef = MailSamples.Tnef("report.pdf.exe", ExecutableSamples.Pe());
        var message = MailSamples.Message();
        var builder = new BodyBuilder { TextBody = "see attachment" };
        builder.Attachments.Add("winmail.dat", tnef, new MimeKit.ContentType("application", "octet-stream"));
        message.Body = builder.ToMessageBody();

        foreach (var verdict in new[]
                 {
                     await Hospital.InspectAsync(MailSamples.Bytes(message)),
                     await Hospital.InspectAsync(tnef, "winmail.dat"),
                     await Hospital.InspectAsync(new ZipBuilder().Add("winmail.dat", tnef).Build(), "mail.zip"),
                 })
        {
            verdict.Has("mail.double-extension");
            Assert.Single(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath.EndsWith("report.pdf.exe", StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// Regression: MimeKit built every part before the walk counted them, so a message of a million tiny parts took 2 GB
    /// and 48 s for a verdict the entries limit had settled. Past twice the limit in boundary lines it is not parsed.
    /// </summary>
    [Fact]
    public async Task Regression_a_message_of_very_many_parts_was_parsed_whole_before_the_limit_applied()
    {
        var text = new StringBuilder("From: a@b.example\r\nTo: c@d.example\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n");
        for (var i = 0; i < 250; i++)
        {
            text.Append("--x\r\nContent-Type: text/plain\r\n\r\npart\r\n");
        }

        text.Append("--x--\r\n");
        var inspector = TestInspection.Create(limits: l => l.MaxEntries = 100);
        var verdict = await inspector.InspectAsync(Encoding.ASCII.GetBytes(text.ToString()), "many.eml");
        Assert.Contains("MIME boundary lines: the message was not parsed", verdict.Has("inspection.object-limit").Message, StringComparison.Ordinal);

        // Under it, parsed as before.
        var few = await TestInspection.Create(limits: l => l.MaxEntries = 1000).InspectAsync(Encoding.ASCII.GetBytes(text.ToString()), "many.eml");
        Assert.DoesNotContain(few.Findings, f => f.Message.Contains("not parsed", StringComparison.Ordinal));
    }

    [Fact]
    public void Lookalike_checks_are_precise()
    {
        Assert.Null(LinkChecks.LookalikeReason("www.hospital.example", "hospital.example", 2));
        Assert.Null(LinkChecks.LookalikeReason("hospital.example", "hospital.example", 2));
        Assert.Null(LinkChecks.LookalikeReason("weather.example", "hospital.example", 2));
        Assert.NotNull(LinkChecks.LookalikeReason("hosiptal.example", "hospital.example", 2));
        Assert.NotNull(LinkChecks.LookalikeReason("mail.hospltal.example", "hospital.example", 2));
        Assert.Equal(1, LinkChecks.Distance("hosiptal", "hospital", 2));
    }

    [Fact]
    public async Task Malformed_mail_never_crashes()
    {
        var samples = new[]
        {
            "From: a@b.example\r\nTo: c@d.example\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nunterminated",
            "From: a@b.example\r\nTo: c@d.example\r\nContent-Type: application/octet-stream; name=a.exe\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
            "From: a@b.example\r\nTo: c@d.example\r\nSubject: " + new string('x', 100_000) + "\r\n\r\nbody",
            string.Concat(Enumerable.Repeat("From: a@b.example\r\nTo: c@d.example\r\nContent-Type: message/rfc822\r\n\r\n", 200)),
        };
        foreach (var sample in samples)
        {
            var verdict = await Hospital.InspectAsync(Encoding.ASCII.GetBytes(sample));
            verdict.HasNo("inspection.analyser-error");
        }
    }
}
