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

    /// <summary>A minimal TNEF stream (winmail.dat) carrying one attachment.</summary>
    public static byte[] Tnef(string fileName, byte[] data)
    {
        var output = new MemoryStream();
        output.Write(BitConverter.GetBytes(0x223E9F78));
        output.Write(BitConverter.GetBytes((ushort)0x0001));
        void Attribute(byte level, uint id, byte[] value)
        {
            output.WriteByte(level);
            output.Write(BitConverter.GetBytes(id));
            output.Write(BitConverter.GetBytes(value.Length));
            output.Write(value);
            var sum = 0;
            foreach (var b in value)
            {
                sum += b;
            }

            output.Write(BitConverter.GetBytes((ushort)sum));
        }

        Attribute(1, 0x00089006, BitConverter.GetBytes(0x00010000));
        Attribute(1, 0x00069007, [0xE4, 0x04, 0, 0, 0, 0, 0, 0]);
        Attribute(1, 0x00078008, System.Text.Encoding.ASCII.GetBytes("IPM.Microsoft Mail.Note\0"));
        Attribute(2, 0x00069002, new byte[14]);
        Attribute(2, 0x00018010, System.Text.Encoding.ASCII.GetBytes(fileName + "\0"));
        Attribute(2, 0x0006800F, data);
        return output.ToArray();
    }

    public static byte[] Bytes(MimeMessage message)
    {
        using var output = new MemoryStream();
        message.WriteTo(output);
        return output.ToArray();
    }
}
