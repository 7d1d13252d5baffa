using System.Text;

namespace Vigie.Inspection.Dicom;

/// <summary>
/// The preamble read as the content it may also be. PS3.10 7.1 leaves its 128 bytes zero or to an application (a TIFF
/// header, binary data of its own); page markup, shell command lines and an RTF document are there only for a browser,
/// a shell or a word processor to act on, so each is found by what that program reads, not by a list of known starts.
/// </summary>
internal static class PreambleContent
{
    /// <summary>A start tag (or an XML processing instruction, its name after "?"), at a byte offset of the preamble.</summary>
    internal readonly record struct Markup(int Offset, string Tag, string? Handler)
    {
        public string Describe() => Handler is null ? $"<{Tag}" : $"<{Tag} with the event handler {Handler}";
    }

    /// <summary>
    /// The first markup a browser (or an XML reader) acts on: "&lt;" then a letter starts a tag in the HTML tokenizer,
    /// "&lt;?" then a letter an XML processing instruction; the name must end on whitespace, "/", "&gt;" or "?" as a tag's
    /// does, so binary bytes do not spell one by chance. The preamble is decoded as browsers sniff it: by its byte
    /// order mark (UTF-16 either way, UTF-8), else byte for byte. Null when there is none.
    /// </summary>
    public static Markup? FindMarkup(ReadOnlySpan<byte> preamble)
    {
        var (text, charOffset, unit) = Decode(preamble);
        for (var i = 0; i + 2 < text.Length; i++)
        {
            if (text[i] != '<')
            {
                continue;
            }

            var start = text[i + 1] == '?' ? i + 2 : i + 1;
            if (start >= text.Length || !char.IsAsciiLetter(text[start]))
            {
                continue;
            }

            var end = start;
            while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] is ':' or '-' or '_' or '.'))
            {
                end++;
            }

            if (end < text.Length && text[end] is not (' ' or '\t' or '\n' or '\r' or '\f' or '/' or '>' or '?'))
            {
                continue;
            }

            var tag = text[(i + 1)..Math.Min(end, start + 32)].ToLowerInvariant();
            return new Markup(charOffset + i * unit, tag, Handler(text.AsSpan(end)));
        }

        return null;
    }

    /// <summary>An event-handler attribute (onload=, onerror=...) inside the tag that starts <paramref name="rest"/>.</summary>
    private static string? Handler(ReadOnlySpan<char> rest)
    {
        var close = rest.IndexOf('>');
        var tag = close < 0 ? rest : rest[..close];
        for (var i = 0; i + 3 < tag.Length; i++)
        {
            if ((i > 0 && !char.IsWhiteSpace(tag[i - 1]) && tag[i - 1] is not ('/' or '"' or '\''))
                || char.ToLowerInvariant(tag[i]) != 'o' || char.ToLowerInvariant(tag[i + 1]) != 'n' || !char.IsAsciiLetter(tag[i + 2]))
            {
                continue;
            }

            var end = i + 2;
            while (end < tag.Length && char.IsAsciiLetter(tag[end]))
            {
                end++;
            }

            var equals = end;
            while (equals < tag.Length && char.IsWhiteSpace(tag[equals]))
            {
                equals++;
            }

            if (equals < tag.Length && tag[equals] == '=')
            {
                return tag[i..Math.Min(end, i + 32)].ToString().ToLowerInvariant();
            }
        }

        return null;
    }

    /// <summary>The text a browser decodes, where its first character lies, and bytes per character.</summary>
    private static (string Text, int Offset, int Unit) Decode(ReadOnlySpan<byte> preamble)
    {
        if (preamble.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]))
        {
            return (Encoding.Unicode.GetString(preamble[2..]), 2, 2);
        }

        if (preamble.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]))
        {
            return (Encoding.BigEndianUnicode.GetString(preamble[2..]), 2, 2);
        }

        var skip = preamble.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
        return (Encoding.Latin1.GetString(preamble[skip..]), skip, 1);
    }

    /// <summary>Where an RTF document starts: Word reads one up to its closing brace and ignores what follows. -1 when none.</summary>
    public static int FindRtf(ReadOnlySpan<byte> preamble) => preamble.IndexOf("{\\rtf"u8);

    /// <summary>
    /// The offset of the first line a shell runs as a command: text from the preamble's start or a line break that
    /// ends within the preamble, at a line break or a command separator (";", "&amp;", "|"), and starts with a command
    /// word. `sh file.dcm` runs it (dash reads NUL bytes as nothing, bash refuses only a first line holding one). A
    /// vendor's name followed by zeros is not one: its line never ends in the preamble. -1 when there is none.
    /// </summary>
    public static int FindCommandLine(ReadOnlySpan<byte> preamble)
    {
        for (var start = 0; start < preamble.Length; start++)
        {
            if (start > 0 && preamble[start - 1] != '\n')
            {
                continue;
            }

            if (IsCommand(preamble[start..]))
            {
                return start;
            }
        }

        return -1;
    }

    private static bool IsCommand(ReadOnlySpan<byte> line)
    {
        var at = 0;
        while (at < line.Length && line[at] is (byte)' ' or (byte)'\t')
        {
            at++;
        }

        // The command word: a name or a path (a comment, "#!" included, runs nothing).
        var word = at;
        while (at < line.Length && (char.IsAsciiLetterOrDigit((char)line[at]) || line[at] is (byte)'_' or (byte)'.' or (byte)'/' or (byte)'-' or (byte)'='))
        {
            at++;
        }

        if (at - word < 2 || !(char.IsAsciiLetter((char)line[word]) || line[word] is (byte)'_' or (byte)'.' or (byte)'/'))
        {
            return false;
        }

        // Printable text up to where the command ends.
        for (; at < line.Length; at++)
        {
            var c = line[at];
            if (c is (byte)'\n' or (byte)';' or (byte)'&' or (byte)'|')
            {
                return true;
            }

            if (c is not ((>= 0x20 and < 0x7F) or (byte)'\t' or (byte)'\r'))
            {
                return false;
            }
        }

        return false;
    }
}
