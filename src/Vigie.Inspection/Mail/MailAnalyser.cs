using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using MimeKit;
using MimeKit.Cryptography;
using MimeKit.Tnef;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Mail;

/// <summary>
/// MIME mail through MimeKit (parsed in place, never copied whole): authentication results, display-name spoofing
/// of internal senders, links (raw IPs, punycode, mixed scripts, look-alikes of protected domains), and every part
/// (bodies, inline parts, attachments, attached messages) decoded under the limits and inspected as a child, after
/// comparing what its name and declared type promise with what its bytes are.
/// </summary>
internal sealed partial class MailAnalyser(IOptions<MailInspectionOptions> options) : IContentAnalyser
{
    private const long MaxHeaderBlock = 1024 * 1024;

    static MailAnalyser()
    {
        // Mail arrives in windows-125x and ISO-8859-x charsets, and MimeKit's TNEF reader needs them too.
        Encoding.RegisterProvider(CodePagesEncodingProvider.Instance);
    }

    private const long MaxTnef = 64L * 1024 * 1024;

    public string Name => "mail";

    public bool CanAnalyse(ContentType type) => type is ContentType.Mime or ContentType.Tnef;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (context.ContentType == ContentType.Tnef)
        {
            // Wherever it comes from (a part typed application/octet-stream, a ZIP, a file on its own), a winmail.dat is
            // unwrapped, and its attachments get the checks a mail's attachments get.
            var tnefReporter = new CappedReporter(context);
            await new PartWalk(context, tnefReporter, settings).InspectTnefAsync(content, cancellationToken).ConfigureAwait(false);
            tnefReporter.Flush();
            return;
        }

        // MimeKit reads lines ending in LF or CRLF only: a mail written with bare CRs was one header line to it, its
        // attachment unseen (until 2026-12-07). Such a mail is read through a copy with CRLF line ends.
        using var normalised = await BareCrToCrlfAsync(context, content, cancellationToken).ConfigureAwait(false);
        if (normalised is not null)
        {
            content = normalised;
        }

        var headerLines = HeaderBlockLines(content);
        if (headerLines is null)
        {
            context.Report(Rules.MailMalformed, Severity.Medium, $"the header block does not end within {MaxHeaderBlock} bytes: not parsed", 0);
            return;
        }

        // Parsing a header folded over thousands of lines costs time that grows with its square (14,000 lines of one
        // header took 7 s; eight such mails in a ZIP, half a minute): no real mail comes near this.
        if (headerLines > MaxHeaderLines)
        {
            context.Report(Rules.MailMalformed, Severity.Medium, $"the header block has more than {MaxHeaderLines} lines: not parsed", 0);
            return;
        }

        // MimeKit builds every part before the walk can count them: a million tiny parts took 2 GB. Past twice the
        // entries limit in boundary-like lines, the verdict is the limit's anyway, so the message is not parsed.
        var maxBoundaryLines = 2L * context.Limits.MaxEntries;
        if (CountBoundaryLines(content, maxBoundaryLines, cancellationToken) > maxBoundaryLines)
        {
            context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {maxBoundaryLines} MIME boundary lines: the message was not parsed");
            return;
        }

        await using var stream = content.OpenStream();
        // An mbox (a "From " line first) holds messages one after the other; read as one message, the later ones were
        // its body's text, and their attachments never looked at (before 2026-12-06).
        Span<byte> start = stackalloc byte[5];
        var mbox = content.ReadAt(0, start) == 5 && start.SequenceEqual("From "u8);
        var parser = new MimeParser(new ParserOptions { MaxMimeDepth = MaxMimeDepth(context) }, stream, mbox ? MimeFormat.Mbox : MimeFormat.Entity, persistent: true);
        var reporter = new CappedReporter(context);
        for (var count = 0; count == 0 || (mbox && !parser.IsEndOfStream); count++)
        {
            if (count == context.Limits.MaxEntries)
            {
                context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {context.Limits.MaxEntries} messages in the mailbox: the rest was not inspected");
                break;
            }

            MimeMessage message;
            try
            {
                message = await parser.ParseMessageAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (FormatException ex)
            {
                context.Report(Rules.MailMalformed, Severity.Medium, $"the message cannot be parsed: {ex.Message}", mbox ? parser.Position : 0);
                break;
            }

            using (message)
            {
                CheckAuthentication(reporter, message);
                CheckSender(reporter, message, settings);
                var walk = new PartWalk(context, reporter, settings);
                await walk.VisitAsync(message.Body, 0, cancellationToken).ConfigureAwait(false);
            }
        }

        reporter.Flush();
    }

    /// <summary>
    /// A copy of a mail whose lines end in bare CRs, with CRLF instead (under the inner size limit); null when the mail's
    /// first line ends in LF or CRLF, or when the copy would exceed the limit (then read as it is).
    /// </summary>
    private static async ValueTask<ContentSource?> BareCrToCrlfAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        Span<byte> head = stackalloc byte[4096];
        head = head[..content.ReadAt(0, head)];
        var end = head.IndexOfAny((byte)'\r', (byte)'\n');
        if (end < 0 || head[end] != '\r' || end + 1 >= head.Length || head[end + 1] == '\n')
        {
            return null;
        }

        var buffer = new SpillBuffer(context);
        try
        {
            await using (var writer = new SpillWriteStream(buffer, context.Limits.MaxInnerSize))
            await using (var reader = content.OpenStream())
            {
                var input = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
                var output = System.Buffers.ArrayPool<byte>.Shared.Rent(128 * 1024 + 1);
                try
                {
                    var pendingCr = false;
                    int read;
                    while ((read = await reader.ReadAsync(input.AsMemory(0, 64 * 1024), cancellationToken).ConfigureAwait(false)) > 0)
                    {
                        var written = 0;
                        for (var i = 0; i < read; i++)
                        {
                            var b = input[i];
                            if (pendingCr && b != '\n')
                            {
                                output[written++] = (byte)'\n';
                            }

                            output[written++] = b;
                            pendingCr = b == '\r';
                        }

                        await writer.WriteAsync(output.AsMemory(0, written), cancellationToken).ConfigureAwait(false);
                    }

                    if (pendingCr)
                    {
                        await writer.WriteAsync("\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(input);
                    System.Buffers.ArrayPool<byte>.Shared.Return(output);
                }
            }

            return buffer.Detach();
        }
        catch (InnerSizeExceededException)
        {
            buffer.Dispose();
            return null;
        }
    }

    /// <summary>Lines that start with "--" (a boundary, or a signature), counted up to one past <paramref name="max"/>.</summary>
    private static long CountBoundaryLines(ContentSource content, long max, CancellationToken cancellationToken)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            long count = 0;
            for (long offset = 0; offset < content.Length; offset += buffer.Length - 2)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var read = content.ReadAt(offset, buffer);
                var span = buffer.AsSpan(0, read);
                int at;
                while ((at = span.IndexOf("\n--"u8)) >= 0)
                {
                    if (++count > max)
                    {
                        return count;
                    }

                    span = span[(at + 3)..];
                }

                if (read < buffer.Length)
                {
                    break;
                }
            }

            return count;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static int MaxMimeDepth(InspectionContext context) => Math.Max(4, context.Limits.MaxDepth * 4);

    private const int MaxHeaderLines = 5000;

    /// <summary>The header block's line count, or null when it does not end within <see cref="MaxHeaderBlock"/> bytes.</summary>
    private static int? HeaderBlockLines(ContentSource content)
    {
        var length = (int)Math.Min(content.Length, MaxHeaderBlock);
        var head = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        try
        {
            var span = head.AsSpan(0, content.ReadAt(0, head.AsSpan(0, length)));
            var lf = span.IndexOf("\n\n"u8);
            var crlf = span.IndexOf("\n\r\n"u8);
            var end = lf < 0 ? crlf : crlf < 0 ? lf : Math.Min(lf, crlf);
            if (end < 0 && length < content.Length)
            {
                return null;
            }

            return span[..(end < 0 ? span.Length : end)].Count((byte)'\n');
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(head);
        }
    }

    /// <summary>
    /// Judges the receiving server's own verdict: the topmost Authentication-Results, added last (by the border server).
    /// Those below it and ARC's copies were written by earlier hops, or by the sender, and are context (Info): every
    /// "fail" anywhere was reported until 2026-12-07, and a list footer breaking a third party's signature, or a
    /// forwarder's SPF softfail, made a mail that passed DMARC suspicious. Under a DMARC pass SPF and DKIM failures are Info.
    /// </summary>
    private static void CheckAuthentication(CappedReporter reporter, MimeMessage message)
    {
        List<(string Method, string Result, string Detail)>? verdict = null;
        var earlier = new List<(string Method, string Result, string Detail, string Source)>();
        string? receivedSpf = null;
        var earlierSpf = new List<string>();
        foreach (var header in message.Headers)
        {
            if (header.Id == HeaderId.AuthenticationResults)
            {
                if (verdict is null)
                {
                    verdict = AuthenticationResultsOf(header);
                }
                else
                {
                    earlier.AddRange(AuthenticationResultsOf(header).Select(r => (r.Method, r.Result, r.Detail, "an earlier Authentication-Results header")));
                }
            }
            else if (header.Field.Equals("ARC-Authentication-Results", StringComparison.OrdinalIgnoreCase))
            {
                earlier.AddRange(AuthenticationResultsOf(header).Select(r => (r.Method, r.Result, r.Detail, "an earlier hop's ARC-Authentication-Results")));
            }
            else if (header.Id == HeaderId.ReceivedSPF)
            {
                var value = header.Value.TrimStart().ToLowerInvariant();
                if (!value.StartsWith("fail", StringComparison.Ordinal) && !value.StartsWith("softfail", StringComparison.Ordinal))
                {
                    receivedSpf ??= "";
                }
                else if (receivedSpf is null)
                {
                    receivedSpf = header.Value.Trim();
                }
                else
                {
                    earlierSpf.Add(header.Value.Trim());
                }
            }
        }

        verdict ??= [];
        var dmarcPass = verdict.Any(r => r is { Method: "dmarc", Result: "pass" }) && !verdict.Any(r => r is { Method: "dmarc", Result: "fail" });
        const string passed = ", but DMARC passed at the receiving server: the From domain is authenticated";
        foreach (var (method, result, detail) in verdict)
        {
            switch (method)
            {
                case "spf" when result is "fail" or "softfail":
                    reporter.Report(Rules.MailSpfFail, dmarcPass ? Severity.Info : Severity.Medium,
                        $"SPF {result}{detail}: the sending server is not allowed to send for the sender's domain{(dmarcPass ? passed : "")}");
                    break;
                case "dkim" when result is "fail":
                    reporter.Report(Rules.MailDkimFail, dmarcPass ? Severity.Info : Severity.Medium,
                        $"DKIM fail{detail}: the signature does not verify (altered or forged){(dmarcPass ? passed : "")}");
                    break;
                case "dmarc" when result is "fail":
                    reporter.Report(Rules.MailDmarcFail, Severity.High, $"DMARC fail{detail}: the From domain's own policy rejects this message");
                    break;
                default:
                    break;
            }
        }

        if (!string.IsNullOrEmpty(receivedSpf))
        {
            reporter.Report(Rules.MailSpfFail, dmarcPass ? Severity.Info : Severity.Medium,
                $"Received-SPF: {Inspector.Truncate(receivedSpf, 120)}{(dmarcPass ? passed : "")}");
        }

        foreach (var (method, result, detail, source) in earlier)
        {
            var rule = method switch
            {
                "spf" when result is "fail" or "softfail" => Rules.MailSpfFail,
                "dkim" when result is "fail" => Rules.MailDkimFail,
                "dmarc" when result is "fail" => Rules.MailDmarcFail,
                _ => null,
            };
            if (rule is not null)
            {
                reporter.Report(rule, Severity.Info, $"{method.ToUpperInvariant()} {result}{detail} in {source}: context, not the receiving server's verdict");
            }
        }

        foreach (var value in earlierSpf)
        {
            reporter.Report(Rules.MailSpfFail, Severity.Info, $"Received-SPF of an earlier hop: {Inspector.Truncate(value, 120)}: context, not the receiving server's verdict");
        }
    }

    /// <summary>The method results of one Authentication-Results header, lower case, each with the domain it concerns (" (header.d=x)").</summary>
    private static List<(string Method, string Result, string Detail)> AuthenticationResultsOf(Header header)
    {
        var results = new List<(string Method, string Result, string Detail)>();
        if (AuthenticationResults.TryParse(header.RawValue, out var parsed))
        {
            foreach (var r in parsed.Results)
            {
                var domain = r.Properties.FirstOrDefault(p => p.Property.Equals("d", StringComparison.OrdinalIgnoreCase) || p.Property.Equals("from", StringComparison.OrdinalIgnoreCase) || p.Property.Equals("mailfrom", StringComparison.OrdinalIgnoreCase));
                var detail = domain is null ? "" : $" ({Inspector.Printable(Inspector.Truncate($"{domain.PropertyType}.{domain.Property}={domain.Value}", 100))})";
                results.Add((r.Method.ToLowerInvariant(), r.Result.ToLowerInvariant(), detail));
            }
        }
        else
        {
            foreach (Match match in AuthenticationPair().Matches(header.Value))
            {
                results.Add((match.Groups[1].Value.ToLowerInvariant(), match.Groups[2].Value.ToLowerInvariant(), ""));
            }
        }

        return results;
    }

    private static void CheckSender(CappedReporter reporter, MimeMessage message, MailInspectionOptions settings)
    {
        if (settings.InternalDomains.Count == 0)
        {
            return;
        }

        foreach (var mailbox in message.From.Mailboxes.Concat(message.Sender is null ? [] : [message.Sender]))
        {
            var domain = mailbox.Domain ?? "";
            if (settings.InternalDomains.Any(d => LinkChecks.IsSameOrSubdomain(domain, d.Trim())))
            {
                continue;
            }

            var display = (mailbox.Name ?? "").Trim();
            if (display.Length == 0)
            {
                continue;
            }

            // Compared as they read: a zero-width space, a no-break space or a Cyrillic о evaded the check until 2026-12-07.
            var normalised = LinkChecks.NameSkeleton(display);
            var claimsDomain = settings.InternalDomains.FirstOrDefault(d => LinkChecks.NameSkeleton(d) is { Length: > 0 } skeleton && normalised.Contains(skeleton, StringComparison.Ordinal));
            var claimsPerson = settings.InternalDisplayNames.FirstOrDefault(n => SameName(LinkChecks.NameSkeleton(n), normalised));
            if (claimsDomain is not null || claimsPerson is not null)
            {
                reporter.Report(Rules.MailDisplayNameSpoof, Severity.High,
                    $"the display name '{Inspector.Truncate(display, 80)}' claims {(claimsPerson is not null ? "an internal person" : "the internal domain " + claimsDomain)} but the address is external ({Inspector.Truncate(mailbox.Address, 120)})");
            }
        }
    }

    /// <summary>The first parameter name given twice in a header value (RFC 2231 sections "name*0*" are parts of one).</summary>
    private static string? DuplicateParameter(string value)
    {
        HashSet<string>? seen = null;
        foreach (Match match in ParameterName().Matches(value))
        {
            var name = match.Groups[1].Value.ToLowerInvariant() + (match.Groups[2].Success ? "*" : string.Empty);
            if (!(seen ??= []).Add(name))
            {
                return match.Groups[1].Value;
            }
        }

        return null;
    }

    /// <summary>A parameter's name after a ';': plain (name=) or RFC 2231 extended (name*=); sections (name*0=) are not counted.</summary>
    [GeneratedRegex(@";\s*([A-Za-z0-9!#$%&'+\-.^_`|~]+)(\*)?\s*=", RegexOptions.NonBacktracking)]
    private static partial Regex ParameterName();

    /// <summary>
    /// The same name, the same words in another order ("Martin, Jean", "MARTIN Jean"), or with others around them ("Dr Jean
    /// Martin", "Jean-Martin", "Jean.Martin"): every word of the internal name is in the display name.
    /// </summary>
    private static bool SameName(string name, string display)
    {
        if (name.Length == 0 || name == display)
        {
            return name.Length > 0;
        }

        static string[] Words(string text) => text.Split([' ', ',', '-', '.', '_', '\'', '(', ')'], StringSplitOptions.RemoveEmptyEntries);
        var shown = Words(display).ToHashSet(StringComparer.Ordinal);
        var words = Words(name);
        return words.Length > 0 && words.All(shown.Contains);
    }

    [GeneratedRegex(@"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex AuthenticationPair();

    // A quoted attribute is read whole: a browser drops the newlines and tabs in it ("http://\n198.51.100.7/").
    // Bare, a web or file URL, or a UNC path (\\server\share), which Outlook makes a link.
    [GeneratedRegex(@"(?:href|src|action)\s*=\s*(?:""(?<url>[^""]*)""|'(?<url>[^']*)'|(?<url>[^""'\s>]+))|(?:(?:https?|ftp|file):[/\\]{2}|www\.)[^\s<>""']+|\\\\[^\s<>""'\\/]+[\\/][^\s<>""']*", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    internal static partial Regex Links();

    /// <summary>
    /// Checks the links of a text a reader sees: raw IPs, punycode, mixed scripts, look-alikes of protected and internal
    /// domains; <paramref name="links"/> counts them against MaxLinks, and reaching it is a finding of <paramref name="capSeverity"/>.
    /// </summary>
    internal static void CheckLinksIn(string text, CappedReporter reporter, MailInspectionOptions settings, ref int links, Severity capSeverity, string where)
    {
        var protectedDomains = settings.ProtectedDomains.Concat(settings.InternalDomains).Select(d => d.Trim()).Where(d => d.Length > 0).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        foreach (Match match in Links().Matches(text))
        {
            if (++links > settings.MaxLinks)
            {
                reporter.Report(Rules.MailLinksUnchecked, capSeverity,
                    $"more than Inspection:Mail:MaxLinks ({settings.MaxLinks}) links in {where}: the first {settings.MaxLinks} were checked, the rest were not");
                return;
            }

            var url = match.Groups["url"].Success ? match.Groups["url"].Value : match.Value;
            if (url.Contains('&', StringComparison.Ordinal))
            {
                // HTML5's &Tab; and &NewLine;, which WebUtility does not know, are dropped from URLs like a raw tab or newline.
                url = System.Net.WebUtility.HtmlDecode(url.Replace("&Tab;", "\t", StringComparison.Ordinal).Replace("&NewLine;", "\n", StringComparison.Ordinal));
            }

            if (UrlChecks.Host(url) is not { } host)
            {
                continue;
            }

            var shown = Inspector.Truncate(Inspector.Printable(UrlChecks.Clean(url)), 160);
            if (UrlChecks.IsRawIp(host))
            {
                // As in reports: a link to an intranet viewer by address is noted (it was Medium until 2026-12-07).
                var intranet = UrlChecks.IsPrivateAddress(host);
                reporter.Report(Rules.MailLinkIp, intranet ? Severity.Info : Severity.Medium,
                    $"link to a raw IP address{(intranet ? " on a private network" : string.Empty)}: {shown}");
                continue;
            }

            var unicode = LinkChecks.Unicode(host);
            if (LinkChecks.IsMixedScript(unicode))
            {
                reporter.Report(Rules.MailLinkMixedScript, Severity.High, $"link host '{unicode}' mixes alphabets: {shown}");
            }
            else if (LinkChecks.IsPunycode(host))
            {
                reporter.Report(Rules.MailLinkPunycode, Severity.Medium, $"link host '{host}' is punycode for '{unicode}': {shown}");
            }

            foreach (var domain in protectedDomains)
            {
                if (LinkChecks.LookalikeReason(host, domain, settings.LookalikeMaxDistance) is { } reason)
                {
                    reporter.Report(Rules.MailLinkLookalike, Severity.High, $"link host '{unicode}' {reason}: {shown}");
                    break;
                }
            }
        }
    }

    /// <summary>Walks the MIME tree, bounded in depth and count, numbering parts as it goes.</summary>
    private sealed class PartWalk(InspectionContext context, CappedReporter reporter, MailInspectionOptions settings)
    {
        private int _parts;
        private int _links;
        private int _attachmentLinks;

        public async ValueTask VisitAsync(MimeEntity? entity, int depth, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (entity is null || context.BombFound())
            {
                return;
            }

            if (++_parts > context.Limits.MaxEntries)
            {
                if (_parts == context.Limits.MaxEntries + 1)
                {
                    context.Report(Rules.ObjectLimit, Severity.Medium, $"more than {context.Limits.MaxEntries} MIME parts: the rest were not inspected");
                }

                return;
            }

            CheckAmbiguity(entity);

            switch (entity)
            {
                case MultipartEncrypted:
                    // Every other container that cannot be opened is Medium (an encrypted ZIP entry, an encrypted
                    // Office file); an encrypted mail was clean until 2026-12-07.
                    context.Report(Rules.MailEncrypted, Severity.Medium, $"MIME part {_parts} is PGP/MIME encrypted: its content cannot be inspected");
                    break;
                case Multipart multipart:
                    foreach (var child in multipart)
                    {
                        await VisitAsync(child, depth + 1, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case MessagePart messagePart:
                    await InspectMessagePartAsync(messagePart, cancellationToken).ConfigureAwait(false);
                    break;
                case MimePart part when part.ContentType.MediaType.Equals("multipart", StringComparison.OrdinalIgnoreCase):
                    // Past the parser's depth limit a multipart stays one opaque leaf: what it holds was not inspected,
                    // and decoding it as text would call its attachments clean.
                    context.Report(Rules.DepthLimit, Severity.Medium,
                        $"MIME part {_parts} is nested deeper than {MaxMimeDepth(context)} multipart levels: its content was not inspected");
                    break;
                case ApplicationPkcs7Mime pkcs7:
                    await InspectPkcs7Async(pkcs7, pkcs7.SecureMimeType, cancellationToken).ConfigureAwait(false);
                    break;
                case MimePart p7m when (p7m.FileName ?? p7m.ContentType.Name)?.EndsWith(".p7m", StringComparison.OrdinalIgnoreCase) == true:
                    // An S/MIME message labelled application/octet-stream (RFC 8551 3.2.1: clients go by the .p7m name)
                    // was inspected as an opaque file until 2026-12-07; one that is not signed data is read as any part.
                    if (!await InspectPkcs7Async(p7m, SecureMimeType.Unknown, cancellationToken).ConfigureAwait(false))
                    {
                        await InspectPartAsync(p7m, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case MessagePartial partial:
                    context.Report(Rules.MailPartial, Severity.Medium,
                        $"MIME part {_parts} is fragment {partial.Number?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} of a message split in parts (message/partial): the whole message is not here to inspect");
                    break;
                case MimePart pgp when IsPgpEncrypted(pgp):
                    // Every other container that cannot be opened is Medium; inline and attached OpenPGP data were clean
                    // until 2026-12-07 (PGP/MIME alone was caught).
                    context.Report(Rules.MailEncrypted, Severity.Medium,
                        $"MIME part {_parts} ({Inspector.SanitiseName(Inspector.Truncate(pgp.FileName ?? pgp.ContentType.MimeType, 80))}) is OpenPGP encrypted data: its content cannot be inspected");
                    await InspectPartAsync(pgp, cancellationToken).ConfigureAwait(false);
                    break;
                case MimePart part:
                    await InspectPartAsync(part, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    break;
            }
        }

        private async ValueTask InspectMessagePartAsync(MessagePart part, CancellationToken cancellationToken)
        {
            var index = _parts;
            var name = part.ContentDisposition?.FileName ?? "message.eml";
            if (part.Message is null)
            {
                return;
            }

            var buffer = new SpillBuffer(context);
            try
            {
                await using (var writer = new SpillWriteStream(buffer, context.Limits.MaxInnerSize))
                {
                    await part.Message.WriteToAsync(writer, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (InnerSizeExceededException)
            {
                buffer.Dispose();
                context.Report(Rules.InnerSizeLimit, Severity.Medium, $"attached message {index} exceeds the {context.Limits.MaxInnerSize}-byte inner object limit: not inspected");
                return;
            }

            // A forwarded message's name is a file name like any other ("facture.pdf.js" passed unchecked until
            // 2026-12-07), and its bytes are the message MimeKit parsed: read as a mail whatever its headers look like
            // (one with only a Content-Type was identified as text, its attachments unseen).
            if ((part.ContentDisposition?.FileName ?? part.ContentType.Name) is { } fileName)
            {
                CheckFileName(fileName, ContentType.Mime);
            }

            using var content = buffer.Detach();
            await context.InspectAsAsync($"message[{index}]:{name}", ContentType.Mime, content, cancellationToken).ConfigureAwait(false);
        }

        private async ValueTask InspectPartAsync(MimePart part, CancellationToken cancellationToken)
        {
            var index = _parts;
            if (part.Content is null)
            {
                return;
            }

            ExtractionResult result;
            await using (var decoded = part.Content.Open())
            {
                result = await Extraction.ExtractAsync(context, decoded, 0, cancellationToken).ConfigureAwait(false);
            }

            using var content = result.Content;
            var fileName = part.FileName;
            var label = fileName is not null ? $"attachment[{index}]:{fileName}" : part.IsAttachment ? $"attachment[{index}]" : $"part[{index}]:{part.ContentType.MimeType}";
            if (context.ReportExtractionProblem(result, label, Rules.InnerSizeLimit, Rules.MailMalformed, null) || content is null)
            {
                return;
            }

            var type = Inspector.Identify(content);
            if (ArmoredPgpMessage(content))
            {
                context.Report(Rules.MailEncrypted, Severity.Medium, $"MIME part {index} holds an OpenPGP encrypted message (-----BEGIN PGP MESSAGE-----): its content cannot be inspected");
            }

            if (ShowsLinks(part, fileName, type))
            {
                CheckLinks(content, part, index);
            }

            if (part is TextPart && fileName is null && !part.IsAttachment && part.ContentType.MediaType.Equals("text", StringComparison.OrdinalIgnoreCase))
            {
                await context.InspectChildAsync($"body[{index}].{(part.ContentType.MediaSubtype.Equals("html", StringComparison.OrdinalIgnoreCase) ? "html" : "txt")}", content, cancellationToken).ConfigureAwait(false);
                return;
            }

            if (fileName is not null)
            {
                CheckFileName(fileName, type);
            }

            CheckDeclaredType(label, part.ContentType.MimeType, type);
            // A TNEF part (winmail.dat) is unwrapped as the child's content type, however the part was labelled.
            await context.InspectChildAsync(label, content, cancellationToken).ConfigureAwait(false);
        }

        /// <summary>
        /// S/MIME in one part: opaque-signed data carries the message a mail client shows (a PE inside it passed clean
        /// until 2026-12-07), so it is unwrapped, without checking the signature, and read as a mail; enveloped
        /// (encrypted) data cannot be opened here, and says so.
        /// </summary>
        /// <returns>False when a part of unknown kind turned out not to be signed data (to be read as any other part).</returns>
        private async ValueTask<bool> InspectPkcs7Async(MimePart part, SecureMimeType kind, CancellationToken cancellationToken)
        {
            var index = _parts;
            if (kind is SecureMimeType.EnvelopedData or SecureMimeType.AuthEnvelopedData)
            {
                context.Report(Rules.MailEncrypted, Severity.Medium, $"MIME part {index} is S/MIME encrypted ({kind}): its content cannot be inspected");
                return true;
            }

            if (part.Content is null)
            {
                return true;
            }

            ExtractionResult result;
            await using (var decoded = part.Content.Open())
            {
                result = await Extraction.ExtractAsync(context, decoded, 0, cancellationToken).ConfigureAwait(false);
            }

            using var wrapped = result.Content;
            var label = $"part[{index}]:{part.ContentType.MimeType}";
            if (context.ReportExtractionProblem(result, label, Rules.InnerSizeLimit, Rules.MailMalformed, null) || wrapped is null)
            {
                return true;
            }

            ExtractionResult inner;
            try
            {
                await using var stream = wrapped.OpenStream();
                var parser = new Org.BouncyCastle.Cms.CmsSignedDataParser(stream);
                if (parser.GetSignedContent() is not { } signed)
                {
                    // Detached signature data only (a certs-only message): nothing a reader sees.
                    return true;
                }

                await using var content = signed.ContentStream;
                inner = await Extraction.ExtractAsync(context, content, 0, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is Org.BouncyCastle.Cms.CmsException or IOException or InvalidCastException or ArgumentException or InvalidOperationException)
            {
                if (part is not ApplicationPkcs7Mime)
                {
                    return false;
                }

                context.Report(kind == SecureMimeType.SignedData ? Rules.MailMalformed : Rules.MailEncrypted, Severity.Medium,
                    $"MIME part {index} ({Inspector.Truncate(part.ContentType.MimeType, 60)}, {kind}) is not signed data Vigie can open: its content cannot be inspected ({Inspector.Truncate(ex.Message, 120)})");
                return true;
            }

            using var message = inner.Content;
            if (context.ReportExtractionProblem(inner, label, Rules.InnerSizeLimit, Rules.MailMalformed, null) || message is null)
            {
                return true;
            }

            await context.InspectAsAsync($"{label}[signed content]", ContentType.Mime, message, cancellationToken).ConfigureAwait(false);
            return true;
        }

        /// <summary>Outlook's winmail.dat wraps the real attachments: unwrap them and walk them like any other part.</summary>
        public async ValueTask InspectTnefAsync(ContentSource content, CancellationToken cancellationToken)
        {
            if (content.Length > MaxTnef)
            {
                context.Report(Rules.InnerSizeLimit, Severity.Medium, $"the TNEF part (winmail.dat) is larger than {MaxTnef} bytes: its attachments were not unwrapped");
                return;
            }

            List<MimeEntity> attachments;
            try
            {
                await using var stream = content.OpenStream();
                using var tnef = new TnefPart { Content = new MimeContent(stream) };
                attachments = [.. tnef.ExtractAttachments()];
            }
            catch (Exception ex) when (ex is FormatException or InvalidDataException or ArgumentException or IOException or TnefException)
            {
                context.Report(Rules.MailMalformed, Severity.Medium, $"the TNEF part (winmail.dat) cannot be read: {ex.Message}");
                return;
            }

            foreach (var attachment in attachments)
            {
                await VisitAsync(attachment, 1, cancellationToken).ConfigureAwait(false);
            }
        }

        private void CheckFileName(string fileName, ContentType type)
        {
            var shown = Inspector.SanitiseName(fileName);
            foreach (var (rule, message) in NameChecks.DangerousNameReasons(fileName, delivered: true))
            {
                reporter.Report(rule, Severity.High, message);
            }

            var expected = AttachmentTypes.ForExtension(NameChecks.Extension(fileName));
            if (AttachmentTypes.IsExecutable(type) && (expected is null || !expected.Contains(type)))
            {
                reporter.Report(Rules.MailAttachmentTypeMismatch, Severity.High, $"'{shown}' is a {type} executable");
            }
            else if (expected is not null && !expected.Contains(type) && type != ContentType.Unknown)
            {
                reporter.Report(Rules.MailAttachmentTypeMismatch, Severity.Medium, $"'{shown}' is named like {string.Join(" or ", expected)} content but its bytes are {type}");
            }
        }

        /// <summary>
        /// Headers and parameters given twice, which readers resolve differently: MimeKit takes the first, another client
        /// may take the last (all were silent until 2026-12-07). A part named one thing in its Content-Type and another in
        /// its Content-Disposition has both names checked, since clients differ on which they show and save.
        /// </summary>
        private void CheckAmbiguity(MimeEntity entity)
        {
            foreach (var id in (ReadOnlySpan<HeaderId>)[HeaderId.ContentType, HeaderId.ContentTransferEncoding, HeaderId.ContentDisposition])
            {
                var count = 0;
                string? first = null;
                foreach (var header in entity.Headers)
                {
                    if (header.Id == id && ++count == 1)
                    {
                        first = header.Value;
                    }
                }

                if (count > 1)
                {
                    reporter.Report(Rules.MailAmbiguousHeader, Severity.Medium, $"MIME part {_parts} has {count} {id.ToHeaderName()} headers: mail clients may read different ones");
                }

                if (first is not null && DuplicateParameter(first) is { } parameter)
                {
                    reporter.Report(Rules.MailAmbiguousHeader, Severity.Medium,
                        $"MIME part {_parts}'s {id.ToHeaderName()} gives the parameter '{Inspector.Truncate(parameter, 40)}' more than once: mail clients may read different ones");
                }
            }

            // A Content-Disposition given twice: a client may save under the later one's name, so each name is checked.
            var dispositions = 0;
            foreach (var header in entity.Headers)
            {
                if (header.Id == HeaderId.ContentDisposition && ++dispositions > 1 && dispositions <= 8
                    && MimeKit.ContentDisposition.TryParse(header.RawValue, out var other) && other.FileName is { } otherName)
                {
                    CheckFileName(otherName, ContentType.Unknown);
                }
            }

            // Only a different extension matters (old clients put a short 8.3 name in the Content-Type, scanners none).
            if (entity.ContentType.Name is { } typeName && entity.ContentDisposition?.FileName is { } fileName
                && NameChecks.Extension(typeName) is not null
                && !string.Equals(NameChecks.Extension(typeName), NameChecks.Extension(fileName), StringComparison.OrdinalIgnoreCase))
            {
                reporter.Report(Rules.MailAmbiguousHeader, Severity.Medium,
                    $"MIME part {_parts} is named '{Inspector.SanitiseName(Inspector.Truncate(typeName, 80))}' in its Content-Type and '{Inspector.SanitiseName(Inspector.Truncate(fileName, 80))}' in its Content-Disposition");
                CheckFileName(typeName, ContentType.Unknown);
            }
        }

        private void CheckDeclaredType(string label, string mimeType, ContentType type)
        {
            var expected = AttachmentTypes.ForMimeType(mimeType);
            if (expected is not null && !expected.Contains(type) && type != ContentType.Unknown)
            {
                reporter.Report(Rules.MailAttachmentTypeMismatch, AttachmentTypes.IsExecutable(type) ? Severity.High : Severity.Medium,
                    $"{Inspector.SanitiseName(label)} is declared {mimeType} but its bytes are {type}");
            }
        }

        /// <summary>
        /// Whether a reader sees the part's links: a body, and also a page or text with a name or attached (a mail client
        /// renders a named HTML alternative; the user opens portail.html), which were not link-checked until 2026-12-07.
        /// </summary>
        private static bool IsPgpEncrypted(MimePart part)
        {
            var name = part.FileName ?? part.ContentType.Name;
            return part.ContentType.IsMimeType("application", "pgp-encrypted")
                || (name is not null && (name.EndsWith(".gpg", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".pgp", StringComparison.OrdinalIgnoreCase)));
        }

        private static bool ShowsLinks(MimePart part, string? fileName, ContentType type)
        {
            var declared = part.ContentType;
            if (declared.MediaType.Equals("text", StringComparison.OrdinalIgnoreCase)
                && ((fileName is null && !part.IsAttachment) || declared.MediaSubtype.Equals("html", StringComparison.OrdinalIgnoreCase) || declared.MediaSubtype.Equals("plain", StringComparison.OrdinalIgnoreCase)))
            {
                return true;
            }

            var extension = fileName is null ? null : NameChecks.Extension(fileName)?.ToLowerInvariant();
            return type == ContentType.Html || declared.MimeType.Equals("application/xhtml+xml", StringComparison.OrdinalIgnoreCase)
                || declared.MimeType.Equals("image/svg+xml", StringComparison.OrdinalIgnoreCase)
                || extension is "htm" or "html" or "xhtml" or "xht" or "shtml" or "svg";
        }

        /// <summary>An ASCII-armored OpenPGP message in the first 64 KiB (a body or an .asc attachment).</summary>
        private static bool ArmoredPgpMessage(ContentSource content)
        {
            var head = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                var read = content.ReadAt(0, head.AsSpan(0, (int)Math.Min(64 * 1024, content.Length)));
                return head.AsSpan(0, read).IndexOf("-----BEGIN PGP MESSAGE-----"u8) >= 0;
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(head);
            }
        }

        private static readonly string[] LinkMarkers = ["://", "href", "www.", "\\\\", "file:", "src=", "action="];

        /// <summary>Whether the bytes from <paramref name="offset"/> on hold something a link starts with (chunked, bounded memory).</summary>
        private static bool MentionsLinkPast(ContentSource content, long offset)
        {
            const int Chunk = 64 * 1024;
            const int Overlap = 16;
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(Chunk + Overlap);
            try
            {
                var carried = 0;
                for (var position = offset; position < content.Length;)
                {
                    var read = content.ReadAt(position, buffer.AsSpan(carried, (int)Math.Min(Chunk, content.Length - position)));
                    if (read <= 0)
                    {
                        return false;
                    }

                    var window = buffer.AsSpan(0, carried + read);
                    foreach (var marker in LinkMarkers)
                    {
                        if (AsciiSearch.ContainsIgnoreCase(window, marker))
                        {
                            return true;
                        }
                    }

                    position += read;
                    carried = Math.Min(Overlap, window.Length);
                    window[^carried..].CopyTo(buffer);
                }

                return false;
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void CheckLinks(ContentSource content, MimePart part, int index)
        {
            // A plain-text attachment (a log, an export) is read in a text editor, its links a copy and paste away: its
            // links have their own count, and a cap reached there is noted, not held against the mail (a support mail
            // with a 2,500-line log of intranet URLs was suspicious, and used up the bodies' count).
            var textAttachment = part.IsAttachment && part.ContentType.IsMimeType("text", "plain");
            ref var links = ref textAttachment ? ref _attachmentLinks : ref _links;
            var capSeverity = textAttachment ? Severity.Info : Severity.Medium;
            if (links > settings.MaxLinks)
            {
                return;
            }

            // A cap that stops the checks is a finding: links placed past it (behind filler) were passing unseen. Only
            // when something past it reads like a link: a large log or export attached as text has none.
            if (content.Length > settings.MaxBodyBytes && MentionsLinkPast(content, settings.MaxBodyBytes))
            {
                reporter.Report(Rules.MailLinksUnchecked, capSeverity,
                    $"part {index} is larger than Inspection:Mail:MaxBodyBytes ({settings.MaxBodyBytes} bytes): links past its first {settings.MaxBodyBytes} bytes were not checked");
            }

            var bytes = new byte[(int)Math.Min(content.Length, settings.MaxBodyBytes)];
            var read = content.ReadAt(0, bytes);
            Encoding encoding;
            try
            {
                encoding = part.ContentType.CharsetEncoding ?? Encoding.UTF8;
            }
            catch (NotSupportedException)
            {
                encoding = Encoding.UTF8;
            }

            var text = encoding.GetString(bytes, 0, read);
            CheckLinksIn(text, reporter, settings, ref links, capSeverity, textAttachment ? "the message's text attachments" : "the message");
        }
    }
}

/// <summary>A write-only stream into a spill buffer, refusing to grow beyond a cap.</summary>
internal sealed class SpillWriteStream(SpillBuffer buffer, long cap) : Stream
{
    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => buffer.Length;

    public override long Position
    {
        get => buffer.Length;
        set => throw new NotSupportedException();
    }

    public override void Write(byte[] data, int offset, int count) => Write(data.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> data)
    {
        if (buffer.Length + data.Length > cap)
        {
            throw new InnerSizeExceededException();
        }

        buffer.Write(data);
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        if (buffer.Length + data.Length > cap)
        {
            throw new InnerSizeExceededException();
        }

        await buffer.WriteAsync(data, cancellationToken).ConfigureAwait(false);
    }

    public override Task WriteAsync(byte[] data, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(data.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override int Read(byte[] data, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}

internal sealed class InnerSizeExceededException : Exception;
