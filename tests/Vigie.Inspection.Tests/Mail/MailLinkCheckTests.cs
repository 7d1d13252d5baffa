using System.Text;

namespace Vigie.Inspection.Tests.Mail;

/// <summary>Regressions of the mail analyser's link, sender and authentication checks (review of 2026-12-07).</summary>
public sealed class MailLinkCheckTests
{
    private static readonly Inspector Hospital = TestInspection.Create(mail: m =>
    {
        m.InternalDomains = ["hospital.example"];
        m.InternalDisplayNames = ["Claire Martin"];
        m.ProtectedDomains = ["bank.example"];
    });

    private const string Headers = "From: Service informatique <it@ext.example>\r\nTo: ward7@hospital.example\r\nSubject: mot de passe\r\n"
        + "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@ext.example>\r\nMIME-Version: 1.0\r\n";

    private const string BadPage = "<html><body><a href=\"https://h0spital.example/login\">Renouveler</a> <a href=\"http://198.51.100.7/login\">Portail</a></body></html>\r\n";

    private static byte[] Mail(string rest) => Encoding.UTF8.GetBytes(Headers + rest);

    [Theory]
    [InlineData("alternative")]
    [InlineData("name-parameter")]
    [InlineData("inline-filename")]
    [InlineData("html-attachment")]
    [InlineData("octet-stream-html-attachment")]
    public async Task Link_behind_a_named_html_body_is_checked(string shape)
    {
        var mail = shape switch
        {
            "alternative" => "Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nVoir la version HTML\r\n"
                + "--A\r\nContent-Type: text/html; charset=utf-8; name=\"b.htm\"\r\n\r\n" + BadPage + "--A--\r\n",
            "name-parameter" => "Content-Type: text/html; name=\"message.html\"\r\n\r\n" + BadPage,
            "inline-filename" => "Content-Type: text/html\r\nContent-Disposition: inline; filename=\"message.html\"\r\n\r\n" + BadPage,
            "html-attachment" => "Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nCi-joint le portail.\r\n"
                + "--M\r\nContent-Type: text/html; name=\"portail.html\"\r\nContent-Disposition: attachment; filename=\"portail.html\"\r\n\r\n" + BadPage + "--M--\r\n",
            _ => "Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nCi-joint le portail.\r\n"
                + "--M\r\nContent-Type: application/octet-stream; name=\"portail.htm\"\r\nContent-Disposition: attachment; filename=\"portail.htm\"\r\n"
                + "Content-Transfer-Encoding: base64\r\n\r\n" + Convert.ToBase64String(Encoding.UTF8.GetBytes(BadPage), Base64FormattingOptions.InsertLineBreaks) + "\r\n--M--\r\n",
        };
        var verdict = await Hospital.InspectAsync(Mail(mail), "named.eml");
        Assert.Contains("h0spital.example", verdict.Has("mail.link-lookalike").Message, StringComparison.Ordinal);
        verdict.Has("mail.link-ip");
        verdict.IsMalicious();
    }

    /// <summary>An attached text or page without links stays clean (control for the test above).</summary>
    [Fact]
    public async Task Link_behind_a_named_html_body_is_checked_and_ordinary_attachments_stay_clean()
    {
        var page = "<html><body><a href=\"https://www.hospital.example/portail\">Portail</a> <a href=\"#top\">haut</a> <img src=\"cid:logo@x\"></body></html>\r\n";
        var mail = "Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nCi-joint.\r\n"
            + "--M\r\nContent-Type: text/html; name=\"portail.html\"\r\nContent-Disposition: attachment; filename=\"portail.html\"\r\n\r\n" + page
            + "--M\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nvoir https://bank.example/releve\r\n--M--\r\n";
        (await Hospital.InspectAsync(Mail(mail), "ordinary.eml")).IsClean();
    }

    [Fact]
    public async Task Links_past_the_link_cap_were_skipped_silently()
    {
        var filler = string.Concat(Enumerable.Range(0, 2001).Select(i => $"<a href=\"https://www.has-sante.example/p{i}\">r</a>\r\n"));
        var verdict = await Hospital.InspectAsync(Mail("Content-Type: text/html\r\n\r\n<html><body><div style=\"display:none\">" + filler + "</div>" + BadPage), "filler.eml");
        var finding = verdict.Has("mail.links-unchecked");
        Assert.Equal(Severity.Medium, finding.Severity);
        Assert.Contains("MaxLinks (2000)", finding.Message, StringComparison.Ordinal);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);

        // Under the cap: no such finding, the links themselves are judged.
        var few = await Hospital.InspectAsync(Mail("Content-Type: text/html\r\n\r\n" + BadPage), "few.eml");
        few.HasNo("mail.links-unchecked");
        few.Has("mail.link-lookalike");
    }

    [Fact]
    public async Task Links_past_the_body_byte_cap_were_skipped_silently()
    {
        var inspector = TestInspection.Create(mail: m =>
        {
            m.ProtectedDomains = ["hospital.example"];
            m.MaxBodyBytes = 64 * 1024;
        });
        var html = "<html><body><!--" + new string('x', 64 * 1024 + 100) + "-->" + BadPage;
        var verdict = await inspector.InspectAsync(Mail("Content-Type: text/html\r\n\r\n" + html), "long.eml");
        var finding = verdict.Has("mail.links-unchecked");
        Assert.Equal(Severity.Medium, finding.Severity);
        Assert.Contains("MaxBodyBytes (65536 bytes)", finding.Message, StringComparison.Ordinal);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);

        (await inspector.InspectAsync(Mail("Content-Type: text/html\r\n\r\n<p>short</p>\r\n"), "short.eml")).IsClean();
    }

    /// <summary>A large log or export attached as text holds no link past the cap: nothing went unchecked.</summary>
    [Fact]
    public async Task Large_text_attachment_without_links_past_the_body_byte_cap_is_not_unchecked()
    {
        var inspector = TestInspection.Create(mail: m => m.MaxBodyBytes = 64 * 1024);
        var log = string.Concat(Enumerable.Repeat("2026-12-07 10:00:00 automate analyse echantillon SYNTH OK\r\n", 3000));
        var verdict = await inspector.InspectAsync(Mail("Content-Type: text/plain; name=\"automate.log\"\r\nContent-Disposition: attachment; filename=\"automate.log\"\r\n\r\n" + log), "log.eml");
        verdict.HasNo("mail.links-unchecked");
    }

    [Theory]
    [InlineData("http:\\\\198.51.100.11\\z")]
    [InlineData("http:/\\198.51.100.14/z")]
    [InlineData("https:198.51.100.15/z")]
    [InlineData("//198.51.100.10/z")]
    [InlineData("\\\\198.51.100.13\\share\\doc.lnk")]
    [InlineData("file:///\\\\198.51.100.12\\share\\a.rtf!x")]
    [InlineData("file://198.51.100.12/share/a.rtf")]
    [InlineData("http://\n198.51.100.7/x")]
    [InlineData("http://198.51&#10;.100.7/x")]
    [InlineData("http://198.51&Tab;.100.7/x")]
    [InlineData(" \thttp://198.51.100.7/x ")]
    [InlineData("http://198\u300251\u3002100\u30027/x")]
    [InlineData("http://198\uFF0E51\uFF61100.7/x")]
    [InlineData("http://\uFF11\uFF19\uFF18.51.100.7/x")]
    [InlineData("http://198%2E51.100.7/x")]
    public async Task Link_host_hidden_from_the_url_parser_is_checked(string url)
    {
        var verdict = await Hospital.InspectAsync(Mail("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body><a href=\"" + url + "\">Portail patient</a></body></html>\r\n"), "evasion.eml");
        Assert.Equal(Severity.Medium, verdict.Has("mail.link-ip").Severity);
    }

    [Theory]
    [InlineData("https://h0spital.ex\nample/login")]
    [InlineData("https:\\\\h0spital.example\\login")]
    [InlineData("https://h0spital\u3002example/login")]
    [InlineData("https://h0spital.ex\u00ADample/login")]
    public async Task Link_host_hidden_from_the_url_parser_is_checked_for_lookalikes(string url)
    {
        var verdict = await Hospital.InspectAsync(Mail("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<a href='" + url + "'>Portail</a>\r\n"), "lookalike.eml");
        verdict.Has("mail.link-lookalike");
        verdict.IsMalicious();
    }

    [Fact]
    public async Task Link_host_in_a_plain_text_unc_path_is_checked()
    {
        var verdict = await Hospital.InspectAsync(Mail("Content-Type: text/plain\r\n\r\nLe compte rendu est sur \\\\198.51.100.13\\partage\\cr.docx ce soir.\r\n"), "unc.eml");
        verdict.Has("mail.link-ip");
    }

    [Theory]
    [InlineData("http:\\\\198.51.100.11\\z", "198.51.100.11")]
    [InlineData("HTTPS:198.51.100.15", "198.51.100.15")]
    [InlineData("file:///\\\\198.51.100.12\\share\\a.rtf!x", "198.51.100.12")]
    [InlineData("\\\\Files.Hospital.example\\share", "files.hospital.example")]
    [InlineData("https://user:pw@www.bank.example:8443/a", "www.bank.example")]
    [InlineData("smb://198.51.100.9/share", "198.51.100.9")]
    [InlineData("www.bank.example/releve", "www.bank.example")]
    [InlineData("https://[2001:db8::1]/x", "2001:db8::1")]
    [InlineData("file:///C:/Users/claire/notes.txt", null)]
    [InlineData("/portail/index.html", null)]
    [InlineData("portail/index.html", null)]
    [InlineData("#top", null)]
    [InlineData("cid:logo@hospital.example", null)]
    [InlineData("mailto:claire.martin@hospital.example", null)]
    public void Link_host_hidden_from_the_url_parser_is_read_as_a_browser_reads_it(string url, string? host) =>
        Assert.Equal(host, Vigie.Inspection.Engine.UrlChecks.Host(url));

    [Theory]
    [InlineData("Direction hospital\u200B.example")]
    [InlineData("Direction h\u043Espital.example")]
    [InlineData("Direction hospital\u3002example")]
    [InlineData("Direction hos\u00ADpital.example")]
    [InlineData("Claire\u00A0Martin")]
    [InlineData("Claire\u202FMartin")]
    [InlineData("Claire Mar\u200Btin")]
    [InlineData("Claire Mar\u2060tin\uFEFF")]
    [InlineData("Cl\u0430ire M\u0430rtin")]
    [InlineData("\u041C\u0430rtin Claire")]
    [InlineData("Claire \u039Cartin")]
    [InlineData("\uFF23laire  Martin")]
    [InlineData("Martin, Claire")]
    [InlineData("MARTIN Claire")]
    public async Task Display_name_spoof_hidden_by_invisible_or_lookalike_characters_is_found(string display)
    {
        var from = "=?utf-8?b?" + Convert.ToBase64String(Encoding.UTF8.GetBytes(display)) + "?= <dir@evil.example>";
        var mail = "From: " + from + "\r\nTo: ward7@hospital.example\r\nSubject: virement urgent\r\nMIME-Version: 1.0\r\n"
            + "Content-Type: text/plain; charset=utf-8\r\n\r\nMerci de traiter aujourd'hui.\r\n";
        var verdict = await Hospital.InspectAsync(Encoding.ASCII.GetBytes(mail), "spoof.eml");
        Assert.Equal(Severity.High, verdict.Has("mail.display-name-spoof").Severity);
    }

    [Theory]
    [InlineData("Claire Martinez")]
    [InlineData("Jean Martin")]
    [InlineData("Claire")]
    [InlineData("\u041A\u043B\u044D\u0440 \u041C\u0430\u0440\u0442\u0438\u043D")]
    [InlineData("hospital-example.partner.example")]
    public async Task Display_name_spoof_hidden_by_invisible_or_lookalike_characters_is_found_but_other_names_are_not(string display)
    {
        var from = "=?utf-8?b?" + Convert.ToBase64String(Encoding.UTF8.GetBytes(display)) + "?= <someone@partner.example>";
        var mail = "From: " + from + "\r\nTo: ward7@hospital.example\r\nSubject: RCP\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n";
        (await Hospital.InspectAsync(Encoding.ASCII.GetBytes(mail), "other.eml")).HasNo("mail.display-name-spoof");
    }

    private const string AuthMail = "From: Dr A <a@ext.example>\r\nTo: ward7@hospital.example\r\nSubject: RCP\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        + "Message-ID: <1@ext.example>\r\nMIME-Version: 1.0\r\n";

    private static byte[] WithAuthentication(string headers) => Encoding.ASCII.GetBytes(AuthMail + headers + "Content-Type: text/plain\r\n\r\nBonjour\r\n");

    [Fact]
    public async Task Authentication_failure_outside_the_receiving_servers_verdict_was_reported()
    {
        // A list footer broke a third party's signature next to a passing aligned one: DMARC passed.
        var thirdParty = await Hospital.InspectAsync(WithAuthentication(
            "Authentication-Results: mx.hospital.example; dkim=pass header.d=ext.example; dkim=fail (body hash did not verify) header.d=lists.example;"
            + " spf=pass smtp.mailfrom=ext.example; dmarc=pass header.from=ext.example\r\n"), "list.eml");
        thirdParty.IsClean();
        Assert.Contains("lists.example", thirdParty.Has("mail.dkim-fail").Message, StringComparison.Ordinal);

        // A forwarder's SPF softfail recorded in ARC by an earlier hop; the border server's own verdict passed.
        var forwarded = await Hospital.InspectAsync(WithAuthentication(
            "ARC-Authentication-Results: i=1; mx.univ.example; spf=softfail smtp.mailfrom=ext.example; dkim=pass header.d=ext.example; dmarc=pass\r\n"
            + "Authentication-Results: mx.hospital.example; arc=pass (i=1); dkim=pass header.d=ext.example; spf=pass smtp.mailfrom=ext.example; dmarc=pass header.from=ext.example\r\n"), "arc.eml");
        forwarded.IsClean();
        Assert.Equal(Severity.Info, forwarded.Has("mail.spf-fail").Severity);

        // A DMARC failure the sender wrote below the border server's header is not the verdict either.
        var below = await Hospital.InspectAsync(WithAuthentication(
            "Authentication-Results: mx.hospital.example; spf=pass smtp.mailfrom=ext.example; dmarc=pass header.from=ext.example\r\n"
            + "Authentication-Results: relay.ext.example; dmarc=fail header.from=ext.example\r\n"
            + "Received-SPF: softfail (relay.ext.example: 192.0.2.1 is not permitted)\r\n"), "below.eml");
        below.IsClean();
    }

    [Fact]
    public async Task Authentication_failure_outside_the_receiving_servers_verdict_was_reported_but_its_own_failures_count()
    {
        var dmarcFail = await Hospital.InspectAsync(WithAuthentication(
            "Authentication-Results: mx.hospital.example; spf=softfail smtp.mailfrom=ext.example; dkim=fail header.d=ext.example; dmarc=fail header.from=ext.example\r\n"
            + "ARC-Authentication-Results: i=1; mx.univ.example; spf=pass; dkim=pass; dmarc=pass\r\n"), "fail.eml");
        Assert.Equal(Severity.High, dmarcFail.Has("mail.dmarc-fail").Severity);
        Assert.Equal(Severity.Medium, dmarcFail.Has("mail.spf-fail").Severity);
        Assert.Equal(Severity.Medium, dmarcFail.Has("mail.dkim-fail").Severity);
        dmarcFail.IsMalicious();

        // No DMARC result: the failures stand.
        var noDmarc = await Hospital.InspectAsync(WithAuthentication("Authentication-Results: mx.hospital.example; spf=fail smtp.mailfrom=ext.example\r\n"), "nodmarc.eml");
        Assert.Equal(Severity.Medium, noDmarc.Has("mail.spf-fail").Severity);

        var receivedSpf = await Hospital.InspectAsync(WithAuthentication("Received-SPF: fail (mx.hospital.example: 192.0.2.1 is not permitted)\r\n"), "spf.eml");
        Assert.Equal(Severity.Medium, receivedSpf.Has("mail.spf-fail").Severity);
    }
}
