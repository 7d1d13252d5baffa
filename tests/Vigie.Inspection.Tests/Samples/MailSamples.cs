using MimeKit;

namespace Vigie.Inspection.Tests.Samples;

/// <summary>Builds messages with MimeKit: bodies, attachments with any name and declared type, attached messages, headers.</summary>
internal static class MailSamples
{
    public static MimeMessage Message(string from = "Dr Claire Martin <claire.martin@hospital.example>", string subject = "Results (synthetic)",
        string text = "Hello,\nthe results are attached.\n", string? html = null)
    {
        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse(from));
        message.To.Add(MailboxAddress.Parse("ward7@hospital.example"));
        message.Subject = subject;
        message.Date = new DateTimeOffset(2024, 3, 1, 9, 30, 0, TimeSpan.Zero);
        message.MessageId = "test-1@hospital.example";
        var builder = new BodyBuilder { TextBody = text, HtmlBody = html };
        message.Body = builder.ToMessageBody();
        return message;
    }

    public static MimeMessage WithAttachments(MimeMessage message, params (string Name, byte[] Data, string MimeType)[] attachments)
    {
        var builder = new BodyBuilder();
        if (message.TextBody is { } text)
        {
            builder.TextBody = text;
        }

        if (message.HtmlBody is { } html)
        {
            builder.HtmlBody = html;
        }

        foreach (var (name, data, mimeType) in attachments)
        {
            builder.Attachments.Add(name, data, MimeKit.ContentType.Parse(mimeType));
        }

        message.Body = builder.ToMessageBody();
        return message;
    }

    public static byte[] Bytes(MimeMessage message)
    {
        using var output = new MemoryStream();
        message.WriteTo(output);
        return output.ToArray();
    }
}
