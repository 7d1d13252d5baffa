using System.Text;
using System.Text.RegularExpressions;

namespace Vigie.Inspection;

/// <summary>
/// A finding as shown without --reveal-identifiers: names taken from inside the object (an archive entry, an
/// attachment, a launch target), often the patient's, become <see cref="Placeholder"/>; the rule, the severity and the
/// structure Vigie names itself (DICOM elements, content types, part numbers) stay. Before 2026-12-07 `vigie rescan`
/// and `vigie quarantine list --json` printed them in full.
/// </summary>
public static partial class FindingDisclosure
{
    public const string Placeholder = "[name]";

    /// <summary>The inner path with each name from the object replaced (consecutive ones as one: an entry name may hold '/').</summary>
    public static string InnerPath(string innerPath)
    {
        var parts = new List<string>();
        var position = 0;
        while (position < innerPath.Length)
        {
            var next = innerPath.IndexOf('/', position);
            if (Structural().Match(innerPath, position) is { Success: true } structural)
            {
                parts.Add(structural.Value);
                next = position + structural.Length;
            }
            else if (Labelled().Match(innerPath, position) is { Success: true } labelled)
            {
                parts.Add(labelled.Value + Placeholder);
            }
            else if (parts.Count == 0 || !parts[^1].EndsWith(Placeholder, StringComparison.Ordinal))
            {
                parts.Add(Placeholder);
            }

            position = next < 0 ? innerPath.Length : next + 1;
        }

        return string.Join('/', parts);
    }

    /// <summary>
    /// The message with quoted names, file paths, what follows a link's host, and the names of its inner path, replaced. Signature rules keep theirs: it names
    /// the site's own rule, not the content.
    /// </summary>
    public static string Message(string rule, string message, string innerPath = "")
    {
        if (rule.StartsWith("signature.", StringComparison.Ordinal))
        {
            return message;
        }

        var redacted = Quoted().Replace(message, m => m.Value[0] + Placeholder + m.Value[^1]);
        // Unquoted links and file paths (a link to a program, a remote document): the host stays, what follows it goes.
        redacted = Link().Replace(redacted, m => m.Groups["host"].Value + (m.Groups["rest"].Length > 0 ? "/" + Placeholder : ""));
        redacted = FilePath().Replace(redacted, Placeholder);
        foreach (var name in Names(innerPath).Where(n => n.Length >= 3).OrderByDescending(n => n.Length))
        {
            redacted = redacted.Replace(name, Placeholder, StringComparison.Ordinal);
        }

        return redacted;
    }

    /// <summary>A quarantine reason ("rule: message", as ingest records it) with the message's names replaced.</summary>
    public static string Reason(string reason)
    {
        var colon = reason.IndexOf(": ", StringComparison.Ordinal);
        return colon < 0 ? Message("", reason) : reason[..(colon + 2)] + Message(reason[..colon], reason[(colon + 2)..]);
    }

    /// <summary>The names from the object in an inner path, as whole runs between structural parts.</summary>
    private static IEnumerable<string> Names(string innerPath)
    {
        var name = new StringBuilder();
        var position = 0;
        while (position < innerPath.Length)
        {
            var next = innerPath.IndexOf('/', position);
            var end = next < 0 ? innerPath.Length : next;
            if (Structural().Match(innerPath, position) is { Success: true } structural)
            {
                if (name.Length > 0)
                {
                    yield return name.ToString();
                    name.Clear();
                }

                end = position + structural.Length;
                next = end < innerPath.Length ? end : -1;
            }
            else
            {
                var start = Labelled().Match(innerPath, position) is { Success: true } labelled ? position + labelled.Length : position;
                name.Append(name.Length > 0 ? "/" : "").Append(innerPath, start, end - start);
            }

            position = next < 0 ? innerPath.Length : next + 1;
        }

        if (name.Length > 0)
        {
            yield return name.ToString();
        }
    }

    private const string Mime = @"[a-z0-9.+-]+/[a-z0-9.+-]+";
    private const string Tag = @"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)";

    /// <summary>The parts Vigie's analysers name themselves (DicomAnalyser, MailAnalyser, Inspector and the others).</summary>
    [GeneratedRegex(@"\G(?:" + Tag + @"(?:\[\d+\]|\." + Tag + @"|\[(?:offset table|fragment \d+|frame \d+|appended)\])*(?::(?:document|" + Mime + @"))?"
        + @"|part\[\d+\]:" + Mime + @"|attachment\[\d+\]|\[appended zip\](?:\(inflated\))?|\[as a [A-Za-z ]+ (?:opens|renders) it(?:, from (?:inflated )?offset \d+)?\]"
        + @"|polyglot\.(?:exe|elf|macho|zip|pdf)|trailing-data(?:\(inflated\))?|data-url\[\d+\]|body\[\d+\]\.(?:html|txt)"
        + @"|folder \d+ \((?:stored|packed, not decoded)\)|packed data \(header unread\)|object \d+(?: \(JavaScript\))?|object data|package|\(unnamed\))(?=/|\z)",
        RegexOptions.CultureInvariant)]
    private static partial Regex Structural();

    /// <summary>A numbered part followed by the name the object gave it ("attachment[2]:report.pdf").</summary>
    [GeneratedRegex(@"\G(?:attachment|message|uuencoded)\[\d+\]:", RegexOptions.CultureInvariant)]
    private static partial Regex Labelled();

    [GeneratedRegex(@"(?<host>\b[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s'""]*)(?<rest>[/?#][^\s'""]*)?", RegexOptions.CultureInvariant)]
    private static partial Regex Link();

    [GeneratedRegex(@"\b[A-Za-z]:\\[^\s'""]*|\\\\[^\s'""]+", RegexOptions.CultureInvariant)]
    private static partial Regex FilePath();

    [GeneratedRegex(@"'[^']*'|""[^""]*""", RegexOptions.CultureInvariant)]
    private static partial Regex Quoted();
}
