using System.Text;
using System.Text.RegularExpressions;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Html;

/// <summary>
/// HTML smuggling: pages whose scripts assemble a file in the browser and hand it to the user (Blob plus
/// createObjectURL or msSaveOrOpenBlob, download links to base64 data: URLs, atob of a large literal). Rule id
/// mail.html-smuggling when the page is a part of a mail, html.smuggling otherwise.
/// </summary>
internal sealed partial class HtmlAnalyser(Microsoft.Extensions.Options.IOptions<MailInspectionOptions> mail) : IContentAnalyser
{
    private const int MaxScan = 16 * 1024 * 1024;
    private const int LargeLiteral = 2048;

    public string Name => "html";

    /// <summary>
    /// Text too: a browser renders a page named .html whatever comes before its first tag, and before 2026-12-06 a line
    /// of text (or a long comment) in front of the page made it "text", never looked at.
    /// </summary>
    public bool CanAnalyse(ContentType type) => type is ContentType.Html or ContentType.Xml or ContentType.Text or ContentType.Mime;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        var limit = Math.Min(content.Length, MaxScan);
        if (context.InsideMailContainer && context.ContentType is ContentType.Html or ContentType.Xml)
        {
            CheckLinksInMail(context, content);
        }

        Span<byte> start = stackalloc byte[2];
        var utf16 = content.ReadAt(0, start) == 2 && (start.SequenceEqual(new byte[] { 0xFF, 0xFE }) || start.SequenceEqual(new byte[] { 0xFE, 0xFF }));
        // Every smuggling pattern needs one of the triggers (most pages and XML parts have none), and in text a script,
        // a link or a handler. A mail's parts are inspected as its children (mail.html-smuggling); header-like lines in
        // front of a page with no MIME structure made it a "mail" whose page nobody read (before 2026-12-06). One pass in
        // chunks, so that a large text costs no copy.
        if (!utf16)
        {
            var found = AsciiSearch.Mentions(content, limit, context.ContentType switch
            {
                ContentType.Text => [Triggers, Markup],
                ContentType.Mime => [Triggers, Markup, MimeStructure],
                _ => [Triggers],
            }, cancellationToken);
            if (!found.Take(2).All(f => f) || found is [_, _, true])
            {
                return;
            }
        }

        var bytes = new byte[limit];
        bytes = bytes[..content.ReadAt(0, bytes)];

        var text = Decode(bytes);
        var signals = Signals(text);
        var rule = context.ParentType == ContentType.Mime ? Rules.MailHtmlSmuggling : Rules.HtmlSmuggling;
        if (signals.Smuggling)
        {
            // Text that is not named a page (source code, a how-to with an example) is a page only if served as one:
            // suspicious, not malicious.
            var page = context.ContentType is ContentType.Html or ContentType.Xml
                       || (context.DeclaredName is { } name && (name.EndsWith(".htm", StringComparison.OrdinalIgnoreCase)
                           || name.EndsWith(".html", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".hta", StringComparison.OrdinalIgnoreCase)
                           || name.EndsWith(".svg", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".xhtml", StringComparison.OrdinalIgnoreCase)));
            context.Report(rule, page ? Severity.High : Severity.Medium,
                $"the {(page ? "page" : "text, if rendered as a page,")} builds a file in the browser and offers it for download ({string.Join(", ", signals.Found)})");
        }
        else if (signals.LargeDecode)
        {
            context.Report(rule, Severity.Medium, $"the page decodes a large embedded payload in script ({string.Join(", ", signals.Found)})");
        }
        else if (signals.BuiltFromPage)
        {
            // Nothing carried in the page: an export of its own content, or a file it fetches (which the proxy sees).
            var fetched = text.Contains("fetch(", StringComparison.Ordinal) || text.Contains("XMLHttpRequest", StringComparison.Ordinal);
            context.Report(rule, fetched ? Severity.Medium : Severity.Info,
                fetched ? $"the page fetches a file and offers it for download ({string.Join(", ", signals.Found)})"
                        : $"the page builds a file from its own content and offers it (an export button); nothing is embedded ({string.Join(", ", signals.Found)})");
        }

        // Whatever the verdict: a page framed from a data: URL (an iframe) is rendered as any page, and was never read
        // (until 2026-12-07).
        await InspectDataUrlPayloadsAsync(context, text, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A page in a ZIP or another container attached to a mail is opened from the mail as an attachment is: its links get
    /// the mail's checks (a look-alike in a zipped .html passed until 2026-12-07).
    /// </summary>
    private void CheckLinksInMail(InspectionContext context, ContentSource content)
    {
        var settings = mail.Value;
        var bytes = new byte[(int)Math.Min(content.Length, settings.MaxBodyBytes)];
        bytes = bytes[..content.ReadAt(0, bytes)];
        var reporter = new CappedReporter(context);
        var links = 0;
        Mail.MailAnalyser.CheckLinksIn(Decode(bytes), reporter, settings, ref links, Severity.Medium, "this page");
        reporter.Flush();
    }

    private const int MaxDataUrlPayloads = 16;

    /// <summary>
    /// The files a smuggling page hands over in base64 data: URLs, decoded and inspected as children ("data-url[N]"):
    /// the rule says a file is offered, the child says what it is (the PE in a meta refresh went undecoded until
    /// 2026-12-07). Bounded by the inner size limit and a count.
    /// </summary>
    private static async ValueTask InspectDataUrlPayloadsAsync(InspectionContext context, string text, CancellationToken cancellationToken)
    {
        var count = 0;
        foreach (Match match in Base64DataUrl().Matches(text))
        {
            if (++count > MaxDataUrlPayloads)
            {
                break;
            }

            var payload = new StringBuilder();
            for (var i = match.Index + match.Length; i < text.Length && payload.Length <= context.Limits.MaxInnerSize / 3 * 4 + 4; i++)
            {
                var c = text[i];
                if (char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=' or '-' or '_')
                {
                    payload.Append(c is '-' ? '+' : c is '_' ? '/' : c);
                }
                else if (!char.IsWhiteSpace(c))
                {
                    break;
                }
            }

            var clean = payload.ToString().TrimEnd('=');
            if (clean.Length < 8)
            {
                continue;
            }

            byte[] decoded;
            try
            {
                decoded = Convert.FromBase64String(clean + new string('=', (4 - clean.Length % 4) % 4));
            }
            catch (FormatException)
            {
                continue;
            }

            using var child = ContentSource.FromMemory(decoded);
            await context.InspectChildAsync($"data-url[{count}]", child, cancellationToken).ConfigureAwait(false);
        }

        // A page given in clear, percent-encoded (data:text/html,%3Cscript...), as an iframe renders it.
        foreach (Match match in PlainHtmlDataUrl().Matches(text))
        {
            if (++count > MaxDataUrlPayloads)
            {
                break;
            }

            var end = match.Index + match.Length;
            var stop = text.IndexOfAny(['"', '\'', '>'], end);
            var encoded = text[end..(stop < 0 ? text.Length : Math.Min(stop, end + (int)Math.Min(int.MaxValue - end, context.Limits.MaxInnerSize)))];
            string page;
            try
            {
                page = Uri.UnescapeDataString(System.Net.WebUtility.HtmlDecode(encoded));
            }
            catch (UriFormatException)
            {
                continue;
            }

            using var child = ContentSource.FromMemory(Encoding.UTF8.GetBytes(page));
            await context.InspectAsAsync($"data-url[{count}]", ContentType.Html, child, cancellationToken).ConfigureAwait(false);
        }
    }

    [GeneratedRegex(@"data:text/html(;\s*charset=[\w-]+)?,", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex PlainHtmlDataUrl();

    internal sealed record SmugglingSignals(bool Smuggling, bool LargeDecode, IReadOnlyList<string> Found)
    {
        /// <summary>A file built from the page's own content or the network, and offered: an export button, unless fetched.</summary>
        public bool BuiltFromPage { get; init; }
    }

    /// <summary>An array literal of at least 256 byte values ([77,90,144,...]): a program carried as numbers.</summary>
    private static bool LongByteArray(string text)
    {
        int run = 0, digits = 0;
        foreach (var c in text)
        {
            if (char.IsAsciiDigit(c))
            {
                digits++;
            }
            else if (c == ',')
            {
                run = digits is > 0 and <= 3 ? run + 1 : 0;
                digits = 0;
                if (run >= 255)
                {
                    return true;
                }
            }
            else if (!char.IsWhiteSpace(c))
            {
                run = 0;
                digits = 0;
            }
        }

        return false;
    }

    internal static SmugglingSignals Signals(string text)
    {
        var found = new List<string>();
        // A File is a Blob with a name; a data: URL set on a link from a script downloads as well as one written in a tag
        // (both passed as clean until 2026-12-07).
        // The constructor, not fetch's response.blob().
        var blob = text.Contains("Blob(", StringComparison.Ordinal) || NewFile().IsMatch(text);
        var save = text.Contains("msSaveOrOpenBlob", StringComparison.OrdinalIgnoreCase) || text.Contains("msSaveBlob", StringComparison.OrdinalIgnoreCase);
        var objectUrl = text.Contains("createObjectURL", StringComparison.OrdinalIgnoreCase);
        var click = text.Contains(".click()", StringComparison.OrdinalIgnoreCase) || text.Contains("dispatchEvent", StringComparison.OrdinalIgnoreCase)
            || BracketClick().IsMatch(text);
        // The browser sent straight to the file (a new window, the page moved to it) delivers it as a download does.
        var navigation = NavigationToObjectUrl().IsMatch(text);
        // download set as a property, in an object literal (Object.assign) or by index; click() by index too (those passed
        // as clean until 2026-12-07).
        var downloadAttribute = text.Contains(".download", StringComparison.OrdinalIgnoreCase) || DownloadAttribute().IsMatch(text) || SetDownload().IsMatch(text)
            || DownloadKey().IsMatch(text);
        // A meta refresh to a data: URL navigates without a script (it passed as clean until 2026-12-07).
        // Browsers decode character references in attributes: "url=&#100;ata:" is a data: URL too.
        var dataDownload = DataUrlDownload().IsMatch(text) || downloadAttribute && click && Base64DataUrl().IsMatch(text) || NavigationToData().IsMatch(text)
            || MetaRefreshToData(text)
            || (text.Contains('&', StringComparison.Ordinal) && text.Contains("<meta", StringComparison.OrdinalIgnoreCase) && MetaRefreshToData(System.Net.WebUtility.HtmlDecode(text)));
        var atob = text.Contains("atob(", StringComparison.OrdinalIgnoreCase);
        var largeLiteral = HasLargeBase64Literal(text);
        if (blob)
        {
            found.Add("Blob");
        }

        if (save)
        {
            found.Add("msSaveOrOpenBlob");
        }

        if (objectUrl)
        {
            found.Add("createObjectURL");
        }

        if (downloadAttribute)
        {
            found.Add("download attribute");
        }

        if (dataDownload)
        {
            found.Add("download link to a base64 data: URL");
        }

        if (atob && largeLiteral)
        {
            found.Add($"atob of a literal of more than {LargeLiteral} characters");
        }
        else if (largeLiteral)
        {
            found.Add("large base64 literal");
        }

        if (navigation && (objectUrl || dataDownload))
        {
            found.Add("the browser sent to the file (window.open, location)");
        }

        // A file built in the page is smuggled only if it was carried in the page: an "Export CSV" button builds one from
        // the page's own table, and an image preview or a worker from what the user picked (all were High until 2026-12-07).
        var payload = largeLiteral || atob || LongByteArray(text) || text.Contains("fromCharCode", StringComparison.Ordinal);
        var offered = blob && (save || (objectUrl && (click || downloadAttribute || navigation)));
        var smuggling = offered && payload || dataDownload || atob && largeLiteral && (blob || objectUrl || click);
        return new SmugglingSignals(smuggling, atob && largeLiteral, found) { BuiltFromPage = offered && !payload };
    }

    /// <summary>
    /// Whether text that is not a page by its start (a DICOM text value: "Report follows. &lt;html&gt;...") holds what a
    /// smuggling page needs, a trigger and a script, a link or a handler, in its first <see cref="MaxScan"/> bytes: read
    /// in chunks, never whole. Such text is then read as the page a browser renders.
    /// </summary>
    internal static bool MayBeSmugglingPage(ContentSource content, CancellationToken cancellationToken) =>
        AsciiSearch.Mentions(content, Math.Min(content.Length, MaxScan), [Triggers, Markup], cancellationToken).All(f => f);

    private static readonly string[] Triggers = ["blob", "createObjectURL", "atob(", "data:", "download", "refresh"];
    private static readonly string[] Markup = ["<script", "<a ", "<a\t", "<a\n", "<a\r", "<a/", "onload", "onerror", "srcdoc", "<meta"];
    private static readonly string[] MimeStructure = ["content-type:"];


    private static string Decode(byte[] bytes)
    {
        var span = bytes.AsSpan();
        if (span.StartsWith(new byte[] { 0xFF, 0xFE }))
        {
            return Encoding.Unicode.GetString(span[2..]);
        }

        if (span.StartsWith(new byte[] { 0xFE, 0xFF }))
        {
            return Encoding.BigEndianUnicode.GetString(span[2..]);
        }

        return Encoding.UTF8.GetString(span);
    }

    [GeneratedRegex(@"<a\b[^>]*\bdownload\b", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex DownloadAttribute();

    [GeneratedRegex(@"setAttribute\s*\(\s*[""'`]download[""'`]", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex SetDownload();

    [GeneratedRegex(@"\bnew\s+File\s*\(", RegexOptions.NonBacktracking)]
    private static partial Regex NewFile();

    /// <summary>A base64 data: URL, parameters allowed (";name=r.exe;base64,"), of anything but an image or a font (an inline
    /// logo or a saved page's web font is not a file handed over). Backtracking for the lookahead, which the
    /// non-backtracking engine lacks; linear all the same (no nested repetition).</summary>
    [GeneratedRegex(@"data:(?!image/|font/|application/(x-)?font)[^,""'\s]*;\s*base64,", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Base64DataUrl();

    /// <summary>download given a file name as an object key ({download:'x.exe'}, not a JSON flag "download": false) or by index.</summary>
    [GeneratedRegex(@"(\bdownload[""'`]?\s*:\s*[""'`]|\[\s*[""'`]download[""'`]\s*\])", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex DownloadKey();

    [GeneratedRegex(@"(\bwindow\s*\.\s*open\s*\(|\blocation\s*\.\s*(assign|replace)\s*\(|\blocation(\s*\.\s*href)?\s*=)\s*[""'`]data:(?!image/|font/)[^,""'\s]*;\s*base64,", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex NavigationToData();

    /// <summary>A meta refresh, attributes in either order, to a base64 data: URL of anything but an image or a font.</summary>
    [GeneratedRegex(@"<meta\b[^>]*(\brefresh\b[^>]*\burl\s*=\s*[""']?\s*data:(?<type>[^,""'\s>]*);\s*base64,|\burl\s*=\s*[""']?\s*data:(?<type>[^,""'\s>]*);\s*base64,[^>]*\brefresh\b)", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex MetaRefresh();

    private static bool MetaRefreshToData(string text)
    {
        foreach (Match match in MetaRefresh().Matches(text))
        {
            var type = match.Groups["type"].Value;
            if (!type.StartsWith("image/", StringComparison.OrdinalIgnoreCase) && !type.StartsWith("font/", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    [GeneratedRegex(@"\[\s*[""'`]click[""'`]\s*\]\s*\(", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex BracketClick();

    [GeneratedRegex(@"(\bwindow\s*\.\s*open\s*\(|\blocation\s*\.\s*(assign|replace)\s*\(|\blocation(\s*\.\s*href)?\s*=)\s*URL\s*\.\s*createObjectURL\s*\(", RegexOptions.NonBacktracking)]
    private static partial Regex NavigationToObjectUrl();

    [GeneratedRegex(@"<a\b[^>]*(\bdownload\b[^>]*href\s*=\s*[""']?\s*data:[^,]*;\s*base64,|href\s*=\s*[""']?\s*data:[^,]*;\s*base64,[^>]*\bdownload\b)", RegexOptions.IgnoreCase | RegexOptions.NonBacktracking)]
    private static partial Regex DataUrlDownload();

    /// <summary>A quoted run of at least <see cref="LargeLiteral"/> base64 characters (line continuations allowed).</summary>
    private static bool HasLargeBase64Literal(string text)
    {
        var run = 0;
        var quoted = false;
        foreach (var c in text)
        {
            if (char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=' or '\\' or '\r' or '\n')
            {
                run++;
                continue;
            }

            if (c is '"' or '\'' or '`')
            {
                if (quoted && run >= LargeLiteral)
                {
                    return true;
                }

                quoted = true;
            }
            else
            {
                quoted = false;
            }

            run = 0;
        }

        return false;
    }
}
