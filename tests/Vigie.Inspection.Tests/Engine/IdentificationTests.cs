using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Vigie.Inspection.Engine;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Engine;

public sealed class IdentificationTests
{
    private static ContentType Identify(byte[] bytes)
    {
        using var source = ContentSource.FromMemory(bytes);
        return ContentIdentifier.Identify(source);
    }

    private static byte[] Bytes(params byte[] bytes) => bytes;

    private static byte[] Pad(byte[] head, int length = 600)
    {
        var bytes = new byte[Math.Max(length, head.Length)];
        head.CopyTo(bytes, 0);
        return bytes;
    }

    [Fact]
    public void Executables_are_identified_by_structure_not_by_the_first_two_bytes()
    {
        Assert.Equal(ContentType.Pe, Identify(ExecutableSamples.Pe()));
        Assert.NotEqual(ContentType.Pe, Identify(ExecutableSamples.BrokenMz()));
        Assert.Equal(ContentType.Elf, Identify(ExecutableSamples.Elf()));
        Assert.Equal(ContentType.MachO, Identify(ExecutableSamples.MachO()));
        Assert.Equal(ContentType.Script, Identify(ExecutableSamples.Script()));
    }

    [Fact]
    public void Java_class_files_are_not_fat_mach_o()
    {
        var javaClass = Pad(Bytes(0xCA, 0xFE, 0xBA, 0xBE, 0x00, 0x00, 0x00, 0x41), 64);
        Assert.NotEqual(ContentType.MachO, Identify(javaClass));
        var fat = Pad(Bytes(0xCA, 0xFE, 0xBA, 0xBE, 0x00, 0x00, 0x00, 0x02), 64);
        Assert.Equal(ContentType.MachO, Identify(fat));
    }

    [Fact]
    public void Documents_archives_and_images_are_identified_by_magic()
    {
        Assert.Equal(ContentType.Pdf, Identify(Encoding.ASCII.GetBytes("%PDF-1.7\n%junk\n")));
        Assert.Equal(ContentType.Pdf, Identify(Encoding.ASCII.GetBytes(new string(' ', 300) + "%PDF-1.4\n")));
        Assert.Equal(ContentType.Ole2, Identify(Pad(Bytes(0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1))));
        Assert.Equal(ContentType.Rtf, Identify(Encoding.ASCII.GetBytes("{\\rtf1\\ansi hello}")));
        Assert.Equal(ContentType.Rtf, Identify(Encoding.ASCII.GetBytes("{\\rtx obfuscated header}")));
        Assert.Equal(ContentType.Gzip, Identify(Pad(Bytes(0x1F, 0x8B, 8, 0))));
        Assert.Equal(ContentType.Bzip2, Identify(Pad("BZh91AY&SY"u8.ToArray())));
        Assert.Equal(ContentType.Xz, Identify(Pad(Bytes(0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0))));
        Assert.Equal(ContentType.SevenZip, Identify(Pad(Bytes((byte)'7', (byte)'z', 0xBC, 0xAF, 0x27, 0x1C))));
        Assert.Equal(ContentType.Rar, Identify(Pad("Rar!\x1A\x07\x01\x00"u8.ToArray())));
        var tar = new byte[1024];
        "ustar\0"u8.CopyTo(tar.AsSpan(257));
        Assert.Equal(ContentType.Tar, Identify(tar));
        Assert.Equal(ContentType.Jpeg, Identify(Pad(Bytes(0xFF, 0xD8, 0xFF, 0xE0))));
        Assert.Equal(ContentType.Png, Identify(Pad(Bytes(0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A))));
        Assert.Equal(ContentType.Gif, Identify(Pad("GIF89a"u8.ToArray())));
        Assert.Equal(ContentType.Jpeg2000, Identify(Pad(Bytes(0, 0, 0, 0x0C, (byte)'j', (byte)'P', 0x20, 0x20))));
    }

    [Fact]
    public void Zip_family_is_told_apart_by_its_entries()
    {
        Assert.Equal(ContentType.Zip, Identify(new ZipBuilder().Add("a.txt", "hello").Build()));
        Assert.Equal(ContentType.Ooxml, Identify(OoxmlSamples.CleanDocx()));
        var odt = new ZipBuilder().Add("mimetype", "application/vnd.oasis.opendocument.text", deflate: false).Add("content.xml", "<office:document-content/>").Build();
        Assert.Equal(ContentType.OpenDocument, Identify(odt));
    }

    [Fact]
    public void Dicom_is_identified_with_preamble_or_as_a_plausible_headerless_dataset()
    {
        var part10 = new byte[200];
        "DICM"u8.CopyTo(part10.AsSpan(128));
        part10[0] = (byte)'M';
        part10[1] = (byte)'Z';
        Assert.Equal(ContentType.Dicom, Identify(part10));

        // (0008,0016) UI "1.2" then (0008,0018) UI "1.2.3", explicit VR little endian.
        var explicitVr = new MemoryStream();
        WriteExplicit(explicitVr, 0x0008, 0x0016, "UI", "1.2\0"u8);
        WriteExplicit(explicitVr, 0x0008, 0x0018, "UI", "1.2.3\0"u8);
        WriteExplicit(explicitVr, 0x0008, 0x0060, "CS", "CT"u8);
        Assert.Equal(ContentType.Dicom, Identify(explicitVr.ToArray()));

        var implicitVr = new MemoryStream();
        WriteImplicit(implicitVr, 0x0008, 0x0016, "1.2\0"u8);
        WriteImplicit(implicitVr, 0x0008, 0x0018, "1.2.3\0"u8);
        Assert.Equal(ContentType.Dicom, Identify(implicitVr.ToArray()));

        // Descending tags are not a dataset.
        var bad = new MemoryStream();
        WriteImplicit(bad, 0x0008, 0x0018, "1.2\0"u8);
        WriteImplicit(bad, 0x0008, 0x0016, "1.2.3\0"u8);
        Assert.NotEqual(ContentType.Dicom, Identify(bad.ToArray()));
    }

    private static void WriteExplicit(Stream s, ushort group, ushort element, string vr, ReadOnlySpan<byte> value)
    {
        Span<byte> h = stackalloc byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(h, group);
        BinaryPrimitives.WriteUInt16LittleEndian(h[2..], element);
        h[4] = (byte)vr[0];
        h[5] = (byte)vr[1];
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], (ushort)value.Length);
        s.Write(h);
        s.Write(value);
    }

    private static void WriteImplicit(Stream s, ushort group, ushort element, ReadOnlySpan<byte> value)
    {
        Span<byte> h = stackalloc byte[8];
        BinaryPrimitives.WriteUInt16LittleEndian(h, group);
        BinaryPrimitives.WriteUInt16LittleEndian(h[2..], element);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], (uint)value.Length);
        s.Write(h);
        s.Write(value);
    }

    [Fact]
    public void Text_markup_and_mail_are_told_apart()
    {
        Assert.Equal(ContentType.Text, Identify("Patient list\nline two\n"u8.ToArray()));
        Assert.Equal(ContentType.Html, Identify("<!DOCTYPE html><html><body>x</body></html>"u8.ToArray()));
        Assert.Equal(ContentType.Html, Identify("  <html><script>1</script></html>"u8.ToArray()));
        Assert.Equal(ContentType.Xml, Identify("<?xml version=\"1.0\"?><root/>"u8.ToArray()));
        Assert.Equal(ContentType.Mime, Identify("From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\r\nbody"u8.ToArray()));
        Assert.Equal(ContentType.Text, Identify("Note: this is not a mail\r\nSubject matter follows\r\n"u8.ToArray()));
        Assert.Equal(ContentType.Mime, Identify([.. "From: a@b.example\r\nTo: c@d.example\r\nContent-Transfer-Encoding: binary\r\n\r\n"u8.ToArray(), 0, 1, 2, 0xFF]));
        Assert.Equal(ContentType.Unknown, Identify([1, 2, 3, 0, 5, 6, 7, 8]));
        Assert.Equal(ContentType.Unknown, Identify([]));
    }

    [Fact]
    public void Declared_names_never_change_identification()
    {
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, true))
        {
            z.Write("x"u8);
        }

        Assert.Equal(ContentType.Gzip, Identify(gz.ToArray()));
    }
}
