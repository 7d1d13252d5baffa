using System.Text;
using MimeKit;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Text;

/// <summary>
/// Bug: a file uuencoded in a text (a mail body from an old client, or one written to slip past MIME-only scanners)
/// was never decoded: an executable sent that way was called clean.
/// </summary>
public sealed class UuencodeTests
{
    /// <summary>The classic encoding: a length character, then four characters per three bytes, '`' for zero.</summary>
    private static string Uuencode(string name, byte[] data, bool withEnd = true)
    {
        static char Char(int sixBits) => sixBits == 0 ? '`' : (char)(sixBits + 32);
        var text = new StringBuilder($"begin 644 {name}\n");
        for (var at = 0; at < data.Length; at += 45)
        {
            var count = Math.Min(45, data.Length - at);
            text.Append(Char(count));
            for (var i = 0; i < count; i += 3)
            {
                var a = data[at + i];
                var b = i + 1 < count ? data[at + i + 1] : (byte)0;
                var c = i + 2 < count ? data[at + i + 2] : (byte)0;
                text.Append(Char(a >> 2)).Append(Char(((a & 3) << 4) | (b >> 4))).Append(Char(((b & 15) << 2) | (c >> 6))).Append(Char(c & 63));
            }

            text.Append('\n');
        }

        text.Append("`\n");
        if (withEnd)
        {
            text.Append("end\n");
        }

        return text.ToString();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Regression_an_executable_uuencoded_in_a_text_was_never_decoded(bool withEnd)
    {
        var text = "Hello,\n\nplease find the report below.\n\n" + Uuencode("report.exe", ExecutableSamples.Pe(), withEnd) + "\nRegards\n";

        var verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(text), "note.txt");

        Assert.Contains(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath == "uuencoded[1]:report.exe");
        Assert.Contains(verdict.Findings, f => f.Rule == "text.uuencoded-file" && f.Message.Contains("line 5", StringComparison.Ordinal));
    }

    /// <summary>The text is searched in 256 KiB chunks: a begin line cut by a chunk's end is still found.</summary>
    [Fact]
    public async Task A_begin_line_across_a_chunk_boundary_is_found()
    {
        var filler = new string('x', 79) + "\n";
        var text = new StringBuilder();
        while (text.Length + filler.Length < (256 * 1024) - 3)
        {
            text.Append(filler);
        }

        text.Append(new string('y', (256 * 1024) - 4 - text.Length)).Append('\n');
        text.Append(Uuencode("report.exe", ExecutableSamples.Pe()));

        var verdict = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(text.ToString()), "note.txt");

        Assert.Contains(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath == "uuencoded[1]:report.exe");
    }

    [Fact]
    public async Task A_uuencoded_file_in_a_mail_body_is_decoded()
    {
        var message = MailSamples.Message();
        message.Body = new TextPart("plain") { Text = "See below.\n" + Uuencode("tool.exe", ExecutableSamples.Pe()) };

        var verdict = await TestInspection.InspectAsync(MailSamples.Bytes(message), "message.eml");

        Assert.Contains(verdict.Findings, f => f.Rule == "executable.pe" && f.InnerPath.EndsWith("uuencoded[1]:tool.exe", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Text_that_only_says_begin_is_clean_and_a_harmless_file_is_info_only()
    {
        var plain = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes("begin 644 is how the line starts\nand nothing follows\n"), "a.txt");
        Assert.DoesNotContain(plain.Findings, f => f.Rule != "text.uuencoded-file" && f.Severity > Severity.Info);

        var harmless = await TestInspection.InspectAsync(Encoding.ASCII.GetBytes(Uuencode("notes.txt", Encoding.ASCII.GetBytes("just some notes, nothing more\n"))), "b.txt");
        Assert.All(harmless.Findings, f => Assert.Equal(Severity.Info, f.Severity));
        Assert.Contains(harmless.Findings, f => f.Rule == "text.uuencoded-file");
    }
}
