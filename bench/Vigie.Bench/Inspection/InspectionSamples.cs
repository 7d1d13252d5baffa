using System.Globalization;
using System.IO.Compression;
using System.Text;
using MimeKit;

namespace Vigie.Bench.Inspection;

/// <summary>Deterministic, clean, realistic-sized samples for throughput measurements (same seed, same bytes).</summary>
internal static class InspectionSamples
{
    private static readonly Dictionary<string, byte[]> Cache = [];
    private static readonly Lock Gate = new();

    public static readonly string[] Names = ["pdf", "docx", "zip", "mail"];

    public static byte[] Get(string name)
    {
        lock (Gate)
        {
            if (!Cache.TryGetValue(name, out var bytes))
            {
                bytes = name switch
                {
                    "pdf" => Pdf(pages: 400),
                    "docx" => Docx(paragraphs: 60_000),
                    "zip" => TextZip(files: 200, linesPerFile: 1000),
                    "mail" => Mail(),
                    _ => throw new ArgumentException(name),
                };
                Cache[name] = bytes;
            }

            return bytes;
        }
    }

    private static string Text(Random random, int lines)
    {
        var words = new[] { "patient", "scan", "contrast", "normal", "lesion", "follow-up", "CT", "thorax", "report", "no", "significant", "finding", "mm", "left", "right" };
        var builder = new StringBuilder();
        for (var i = 0; i < lines; i++)
        {
            for (var w = 0; w < 12; w++)
            {
                builder.Append(words[random.Next(words.Length)]).Append(' ');
            }

            builder.Append(random.Next(1000).ToString(CultureInfo.InvariantCulture)).Append('\n');
        }

        return builder.ToString();
    }

    private static byte[] Zlib(byte[] data)
    {
        using var output = new MemoryStream();
        using (var z = new ZLibStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(data);
        }

        return output.ToArray();
    }

    /// <summary>A report-like PDF: per page a compressed content stream and a noisy 8-bit image.</summary>
    private static byte[] Pdf(int pages)
    {
        var random = new Random(1);
        var output = new MemoryStream();
        var offsets = new List<long>();
        void Object(string body, byte[]? stream = null)
        {
            offsets.Add(output.Position);
            var head = Encoding.Latin1.GetBytes($"{offsets.Count} 0 obj\n{body}\n" + (stream is null ? "endobj\n" : "stream\n"));
            output.Write(head);
            if (stream is not null)
            {
                output.Write(stream);
                output.Write("\nendstream\nendobj\n"u8);
            }
        }

        output.Write("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"u8);
        var kids = string.Join(' ', Enumerable.Range(0, pages).Select(i => $"{4 + i * 3} 0 R"));
        Object("<< /Type /Catalog /Pages 2 0 R >>");
        Object($"<< /Type /Pages /Kids [{kids}] /Count {pages} >>");
        Object("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
        for (var p = 0; p < pages; p++)
        {
            var page = 4 + p * 3;
            Object($"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 {page + 2} 0 R >> >> /Contents {page + 1} 0 R >>");
            var content = Zlib(Encoding.ASCII.GetBytes(string.Join('\n', Text(random, 60).Split('\n').Select((l, i) => $"BT /F1 9 Tf 40 {760 - i * 12} Td ({l}) Tj ET"))));
            Object($"<< /Length {content.Length} /Filter /FlateDecode >>", content);
            var pixels = new byte[128 * 128];
            random.NextBytes(pixels);
            Object($"<< /Type /XObject /Subtype /Image /Width 128 /Height 128 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length {pixels.Length} >>", pixels);
        }

        var xref = output.Position;
        var table = new StringBuilder($"xref\n0 {offsets.Count + 1}\n0000000000 65535 f \n");
        foreach (var offset in offsets)
        {
            table.Append(CultureInfo.InvariantCulture, $"{offset:D10} 00000 n \n");
        }

        table.Append(CultureInfo.InvariantCulture, $"trailer\n<< /Size {offsets.Count + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n");
        output.Write(Encoding.Latin1.GetBytes(table.ToString()));
        return output.ToArray();
    }

    private static byte[] Docx(int paragraphs)
    {
        var random = new Random(2);
        using var output = new MemoryStream();
        using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            void Part(string name, string text)
            {
                using var stream = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
                stream.Write(Encoding.UTF8.GetBytes(text));
            }

            Part("[Content_Types].xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/><Default Extension=\"png\" ContentType=\"image/png\"/><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>");
            Part("_rels/.rels", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>");
            var body = new StringBuilder("<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>");
            foreach (var line in Text(random, paragraphs).Split('\n'))
            {
                body.Append("<w:p><w:r><w:t>").Append(line).Append("</w:t></w:r></w:p>");
            }

            body.Append("</w:body></w:document>");
            Part("word/document.xml", body.ToString());
            for (var i = 0; i < 8; i++)
            {
                var image = new byte[512 * 1024];
                random.NextBytes(image);
                new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }.CopyTo(image, 0);
                using var stream = zip.CreateEntry($"word/media/image{i}.png", CompressionLevel.NoCompression).Open();
                stream.Write(image);
            }
        }

        return output.ToArray();
    }

    private static byte[] TextZip(int files, int linesPerFile)
    {
        var random = new Random(3);
        using var output = new MemoryStream();
        using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
        {
            for (var i = 0; i < files; i++)
            {
                using var stream = zip.CreateEntry($"reports/{i:D4}.txt", CompressionLevel.Fastest).Open();
                stream.Write(Encoding.ASCII.GetBytes(Text(random, linesPerFile)));
            }
        }

        return output.ToArray();
    }

    private static byte[] Mail()
    {
        var random = new Random(4);
        var message = new MimeMessage();
        message.From.Add(MailboxAddress.Parse("radiology@hospital.example"));
        message.To.Add(MailboxAddress.Parse("ward7@hospital.example"));
        message.Subject = "Results (synthetic)";
        var builder = new BodyBuilder
        {
            TextBody = Text(random, 50),
            HtmlBody = "<html><body>" + string.Join("", Text(random, 200).Split('\n').Select(l => $"<p>{l} <a href=\"https://portal.hospital.example/r/{l.Length}\">link</a></p>")) + "</body></html>",
        };
        builder.Attachments.Add("report.pdf", Pdf(pages: 60), new ContentType("application", "pdf"));
        builder.Attachments.Add("notes.zip", TextZip(files: 20, linesPerFile: 500), new ContentType("application", "zip"));
        builder.Attachments.Add("letter.docx", Docx(paragraphs: 5000), new ContentType("application", "vnd.openxmlformats-officedocument.wordprocessingml.document"));
        message.Body = builder.ToMessageBody();
        using var output = new MemoryStream();
        message.WriteTo(output);
        return output.ToArray();
    }
}
