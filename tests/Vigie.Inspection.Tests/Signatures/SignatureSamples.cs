using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Vigie.Dicom;
using Vigie.Inspection.Tests.Dicom;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Signatures;

/// <summary>
/// A rules folder and the inert files it is meant to catch (markers only), covering every signature form Vigie
/// loads: MD5/SHA-256 hashes, plain hash lists, floating, fixed and end-relative body patterns with wildcards, gaps,
/// alternatives (negated too), the (W) class and anchored ranges, typed targets (PE, ELF, PDF), and logical signatures
/// with counts and the case-insensitive modifier.
/// </summary>
internal static class SignatureSamples
{
    /// <summary>The EICAR anti-virus test file, reversed here so that no scanner flags this source file.</summary>
    public static byte[] Eicar() =>
        Encoding.ASCII.GetBytes(new string("*H+H$!ELIF-TSET-SURIVITNA-DRADNATS-RACIE$}7)CC7)^P(45XZP\\4[PA@%P!O5X".Reverse().ToArray()));

    public static string Hex(string text) => Convert.ToHexStringLower(Encoding.ASCII.GetBytes(text));

    /// <summary>Writes the sample files; returns name → expected signature names (ClamAV spelling).</summary>
    public static Dictionary<string, string[]> WriteFiles(string folder)
    {
        Directory.CreateDirectory(folder);
        var expected = new Dictionary<string, string[]>(StringComparer.Ordinal);
        void Add(string name, byte[] bytes, params string[] signatures)
        {
            File.WriteAllBytes(Path.Combine(folder, name), bytes);
            expected[name] = signatures;
        }

        Add("alpha.txt", Encoding.ASCII.GetBytes("note: VIGIE-INERT-MARKER-ALPHA then more text\n"), "Vigie.Test.Alpha");
        Add("gap.bin", Encoding.ASCII.GetBytes("head\0\u0001VIGIE-GAP-START..........VIGIE-GAP-END and the tail"), "Vigie.Test.Gap", "Vigie.Test.Star");
        Add("gap-too-far.bin", Encoding.ASCII.GetBytes("VIGIE-GAP-START" + new string('.', 40) + "VIGIE-GAP-END"));
        Add("at-zero.txt", Encoding.ASCII.GetBytes("counted MARK-1 MARK-2 MARK-3 ENDING\n"), "Vigie.Test.AtZero", "Vigie.Test.Logic");
        Add("not-at-zero.txt", Encoding.ASCII.GetBytes(" counted MARK-1 MARK-2 ENDING\n"));
        Add("at-end.bin", Encoding.ASCII.GetBytes("some leading bytes then ATEND-SIG"), "Vigie.Test.AtEnd");
        Add("nibble.bin", [0x10, 0x20, 0x56, 0x49, 0x47, 0x4E, 0x49, 0x42, 0x42, 0x4C, 0xE7, 0x30], "Vigie.Test.Nibble");
        Add("hashed.txt", Encoding.ASCII.GetBytes("a harmless file known by its MD5\n"), "Vigie.Test.HashMd5");
        Add("listed.txt", Encoding.ASCII.GetBytes("a harmless file known by its SHA-256\n"), "Vigie.Test.HashSha256");
        Add("clean.txt", Encoding.ASCII.GetBytes("nothing to see: MARK- once, VIGIE-GAP-END alone\n"));
        Add("alternatives.txt", Encoding.ASCII.GetBytes("VIGIE-ALT-B-END VIGIE-NOT-7-END VIGIE-PAIR-XY-END VIGIE-NOTPAIR-QQ-END VIGIE-VAR-BC-END xYVIGIE-FRONT\n"),
            "Vigie.Test.Alt", "Vigie.Test.NotAlt", "Vigie.Test.AltPair", "Vigie.Test.NotPair", "Vigie.Test.AltLengths", "Vigie.Test.AltFront");
        Add("alternatives-missed.txt",
            Encoding.ASCII.GetBytes("VIGIE-ALT-D-END VIGIE-NOT-0-END VIGIE-PAIR-XZ-END VIGIE-NOTPAIR-AB-END VIGIE-WORDxEND VIGIE-VAR-BD-END xXVIGIE-FRONT\n"));
        Add("wide.txt", [.. Encoding.ASCII.GetBytes("text then "), .. Encoding.Unicode.GetBytes("vigie-wide-marker"), .. "\n"u8], "Vigie.Test.Wide");
        Add("wide-not-ascii.txt", Encoding.ASCII.GetBytes("vigie-wide-marker is only wide in the signature\n"));
        Add("both.txt", [.. Encoding.ASCII.GetBytes("vigie-both-marker "), .. Encoding.Unicode.GetBytes("nothing")], "Vigie.Test.WideOrAscii");
        Add("both-wide.txt", [.. Encoding.Unicode.GetBytes("vigie-both-marker")], "Vigie.Test.WideOrAscii");
        Add("edges.txt", Encoding.ASCII.GetBytes("x vigie-edge\n\nVIGIE-LINE\r\nVIGIE-MID_B VIGIE-CRLF\r\nNEXT a vigieword. VIGIE-NOTWx\n"),
            "Vigie.Test.EdgeB", "Vigie.Test.EdgeL", "Vigie.Test.MidB", "Vigie.Test.MidL", "Vigie.Test.FullWord", "Vigie.Test.NotAfterWord");
        Add("edges-missed.txt", Encoding.ASCII.GetBytes("xvigie-edge. VIGIE-LINE VIGIE-MIDxB VIGIE-CRLF NEXT avigieword VIGIE-NOTW \n"));
        Add("word.txt", Encoding.ASCII.GetBytes("a VIGIE-WORD END here\n"), "Vigie.Test.Word");
        Add("range.txt", Encoding.ASCII.GetBytes("<1234VIGIE-RANGE and ~abcVIGIE-SMALLGAP\n"), "Vigie.Test.Range", "Vigie.Test.SmallGap");
        Add("range-too-far.txt", Encoding.ASCII.GetBytes("<12345678VIGIE-RANGE and ~abcdVIGIE-SMALLGAP\n"));
        Add("nocase.txt", Encoding.ASCII.GetBytes("shouting: ViGiE-NoCaSe-MaRkEr\n"), "Vigie.Test.NoCase");

        var pe = DicomThreatSamples.PeHeader(512);
        Encoding.ASCII.GetBytes("VIGIE-PE-MARKER").CopyTo(pe, 300);
        Add("tool.exe", pe, "Vigie.Test.PeMarker");
        var notPe = new byte[512];
        Encoding.ASCII.GetBytes("VIGIE-PE-MARKER").CopyTo(notPe, 300);
        Add("not-pe.bin", notPe);
        // A well-formed PE32 (headers, .text and .data) holding markers where the entry point and section offsets
        // point, and the same markers 64 bytes further on, where none of them points.
        Add("placed.exe", Pe32(shift: 0), "Vigie.Test.AtEntry", "Vigie.Test.BeforeEntry", "Vigie.Test.InSection", "Vigie.Test.WholeSection",
            "Vigie.Test.LastSection");
        Add("misplaced.exe", Pe32(shift: 0x40));
        Add("placed.elf", Elf64(entryMarkerAt: 0x100), "Vigie.Test.ElfEntry");
        Add("misplaced.elf", Elf64(entryMarkerAt: 0x140));
        var elf = DicomThreatSamples.ElfHeader(256);
        Encoding.ASCII.GetBytes("VIGIE-ELF-MARKER").CopyTo(elf, 200);
        Add("tool.elf", elf, "Vigie.Test.ElfMarker");

        var pdf = PdfBuilder.Document();
        pdf.Add("<< /Producer (VIGIE-PDF-MARKER) >>");
        Add("report.pdf", pdf.Build(), "Vigie.Test.PdfMarker");

        var ds = DicomThreatSamples.Image();
        ds.SetBytes(new DicomTag(0x0009, 0x0010), DicomVR.LO, Encoding.ASCII.GetBytes("VIGIE PRIVATE "));
        ds.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, Encoding.ASCII.GetBytes("xxVIGIE-DICOM-PRIVATE-MARKERxx"));
        Add("image.dcm", DicomThreatSamples.File(ds), "Vigie.Test.DicomPrivate");
        Add("plain-image.dcm", DicomThreatSamples.File(DicomThreatSamples.Image()));

        // CVE-2019-11687: a DICOM file whose preamble makes it a Windows program. clamscan sees a PE; so must the
        // signatures written for PE files, when Vigie reads the file again as the program it is.
        var polyglot = DicomThreatSamples.Image();
        polyglot.SetBytes(new DicomTag(0x0009, 0x0010), DicomVR.LO, Encoding.ASCII.GetBytes("VIGIE PRIVATE "));
        polyglot.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, Encoding.ASCII.GetBytes("xxVIGIE-PE-MARKERxx"));
        Add("polyglot.dcm", DicomThreatSamples.File(polyglot, DicomThreatSamples.Preamble(DicomThreatSamples.PeHeader())), "Vigie.Test.PeMarker");
        return expected;
    }

    /// <summary>
    /// A PE32 file as a linker lays it out: headers in the first 0x200 bytes, .text at RVA 0x1000 (file 0x200) with
    /// the entry point at RVA 0x1010, .data at RVA 0x2000 (file 0x400). No code: markers only, moved by
    /// <paramref name="shift"/>.
    /// </summary>
    public static byte[] Pe32(int shift)
    {
        var file = new byte[0x600];
        "MZ"u8.CopyTo(file);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x3C), 0x40);
        "PE\0\0"u8.CopyTo(file.AsSpan(0x40));
        var coff = file.AsSpan(0x44);
        BinaryPrimitives.WriteUInt16LittleEndian(coff, 0x014C);
        BinaryPrimitives.WriteUInt16LittleEndian(coff[2..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(coff[16..], 0xE0);
        BinaryPrimitives.WriteUInt16LittleEndian(coff[18..], 0x0102);
        var optional = file.AsSpan(0x58, 0xE0);
        BinaryPrimitives.WriteUInt16LittleEndian(optional, 0x10B);
        optional[2] = 14;
        BinaryPrimitives.WriteUInt32LittleEndian(optional[4..], 0x200);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[8..], 0x200);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[16..], 0x1010);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[20..], 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[24..], 0x2000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[28..], 0x400000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[32..], 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[36..], 0x200);
        BinaryPrimitives.WriteUInt16LittleEndian(optional[40..], 6);
        BinaryPrimitives.WriteUInt16LittleEndian(optional[48..], 6);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[56..], 0x3000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[60..], 0x200);
        BinaryPrimitives.WriteUInt16LittleEndian(optional[68..], 2);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[72..], 0x100000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[76..], 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[80..], 0x100000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[84..], 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(optional[92..], 16);
        void Section(int index, string name, uint characteristics)
        {
            var header = file.AsSpan(0x138 + (index * 40), 40);
            Encoding.ASCII.GetBytes(name).CopyTo(header);
            BinaryPrimitives.WriteUInt32LittleEndian(header[8..], 0x200);
            BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)(0x1000 * (index + 1)));
            BinaryPrimitives.WriteUInt32LittleEndian(header[16..], 0x200);
            BinaryPrimitives.WriteUInt32LittleEndian(header[20..], (uint)(0x200 * (index + 1)));
            BinaryPrimitives.WriteUInt32LittleEndian(header[36..], characteristics);
        }

        Section(0, ".text", 0x60000020);
        Section(1, ".data", 0xC0000040);
        void Mark(int at, string marker) => Encoding.ASCII.GetBytes(marker).CopyTo(file, at + shift);
        Mark(0x200, "VIGIE-TEXT-HEAD");
        Mark(0x210, "VIGIE-ENTRY");
        Mark(0x400, "VIGIE-LAST");
        Mark(0x410, "VIGIE-DATA-MARK");
        // Inside .data when in place; shifted, in .text.
        Encoding.ASCII.GetBytes("VIGIE-IN-DATA").CopyTo(file, shift == 0 ? 0x480 : 0x2A0);
        return file;
    }

    /// <summary>
    /// A 64-bit little-endian ELF executable: one loadable segment mapping the whole file at 0x400000, the entry point
    /// at 0x400100 (file offset 0x100). No code: a marker, at <paramref name="entryMarkerAt"/>.
    /// </summary>
    public static byte[] Elf64(int entryMarkerAt)
    {
        var file = new byte[0x200];
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1 }.CopyTo(file, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x10), 2);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x12), 0x3E);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x14), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x18), 0x400100);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x20), 0x40);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x34), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x36), 56);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x38), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x3A), 64);
        var program = file.AsSpan(0x40, 56);
        BinaryPrimitives.WriteUInt32LittleEndian(program, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(program[4..], 5);
        BinaryPrimitives.WriteUInt64LittleEndian(program[16..], 0x400000);
        BinaryPrimitives.WriteUInt64LittleEndian(program[24..], 0x400000);
        BinaryPrimitives.WriteUInt64LittleEndian(program[32..], (ulong)file.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(program[40..], (ulong)file.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(program[48..], 0x1000);
        Encoding.ASCII.GetBytes("VIGIE-ELF-ENTRY").CopyTo(file, entryMarkerAt);
        return file;
    }

    /// <summary>A ZIP holding the alpha marker: ClamAV and Vigie look inside, YARA does not.</summary>
    public static byte[] ZippedAlpha() => new ZipBuilder().Add("inner/alpha.txt", "zipped VIGIE-INERT-MARKER-ALPHA\n").Build();

    public static void WriteRules(string folder)
    {
        Directory.CreateDirectory(folder);
        var md5 = Convert.ToHexStringLower(MD5.HashData(Encoding.ASCII.GetBytes("a harmless file known by its MD5\n")));
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes("a harmless file known by its SHA-256\n")));
        File.WriteAllText(Path.Combine(folder, "test.hdb"), $"# MD5:size:name\n{md5}:33:Vigie.Test.HashMd5\n");
        File.WriteAllText(Path.Combine(folder, "list.sha256"), $"{sha256}  Vigie.Test.HashSha256\n");
        File.WriteAllText(Path.Combine(folder, "test.ndb"), string.Join("\n",
            $"Vigie.Test.Alpha:0:*:{Hex("VIGIE-INERT-MARKER-ALPHA")}",
            $"Vigie.Test.Gap:0:*:{Hex("VIGIE-GAP-START")}{{5-20}}{Hex("VIGIE-GAP-END")}",
            $"Vigie.Test.Star:0:*:{Hex("head")}*{Hex("tail")}",
            $"Vigie.Test.AtZero:0:0:{Hex("counted")}??{Hex("MARK")}",
            $"Vigie.Test.AtEnd:0:EOF-9:{Hex("ATEND")}?d{Hex("SIG")}",
            "Vigie.Test.Nibble:0:*:5649474e4942424c?730",
            $"Vigie.Test.PeMarker:1:*:{Hex("VIGIE-PE-MARKER")}",
            $"Vigie.Test.ElfMarker:6:*:{Hex("VIGIE-ELF-MARKER")}",
            $"Vigie.Test.PdfMarker:10:*:{Hex("VIGIE-PDF-MARKER")}",
            $"Vigie.Test.DicomPrivate:0:*:{Hex("VIGIE-DICOM-PRIVATE-MARKER")}",
            $"Vigie.Test.Never:0:*:{Hex("NEVER-PRESENT-IN-ANY-SAMPLE")}",
            $"Vigie.Test.Alt:0:*:{Hex("VIGIE-ALT-")}(41|42|43){Hex("-END")}",
            $"Vigie.Test.NotAlt:0:*:{Hex("VIGIE-NOT-")}!(30|31){Hex("-END")}",
            $"Vigie.Test.AltPair:0:*:{Hex("VIGIE-PAIR-")}(4142|5859){Hex("-END")}",
            $"Vigie.Test.NotPair:0:*:{Hex("VIGIE-NOTPAIR-")}!(4142|5859){Hex("-END")}",
            $"Vigie.Test.Word:0:*:{Hex("VIGIE-WORD")}(W){Hex("END")}",
            $"Vigie.Test.Range:0:*:3c[2-6]{Hex("VIGIE-RANGE")}",
            $"Vigie.Test.SmallGap:0:*:7e{{3}}{Hex("VIGIE-SMALLGAP")}",
            $"Vigie.Test.AtEntry:1:EP+0:{Hex("VIGIE-ENTRY")}",
            $"Vigie.Test.ElfEntry:6:EP+0:{Hex("VIGIE-ELF-ENTRY")}",
            $"Vigie.Test.BeforeEntry:1:EP-16:{Hex("VIGIE-TEXT-HEAD")}",
            $"Vigie.Test.InSection:1:S1+16:{Hex("VIGIE-DATA-MARK")}",
            $"Vigie.Test.WholeSection:1:SE1:{Hex("VIGIE-IN-DATA")}",
            $"Vigie.Test.LastSection:1:SL+0:{Hex("VIGIE-LAST")}",
            $"Vigie.Test.EdgeB:0:*:(B){Hex("vigie-edge")}(B)",
            $"Vigie.Test.EdgeL:0:*:(L){Hex("VIGIE-LINE")}(L)",
            $"Vigie.Test.MidB:0:*:{Hex("VIGIE-MID")}(B){Hex("B")}",
            $"Vigie.Test.MidL:0:*:{Hex("VIGIE-CRLF")}(L){Hex("NEXT")}",
            $"Vigie.Test.NotAfterWord:0:*:{Hex("VIGIE-NOTW")}!(W)",
            $"Vigie.Test.AltLengths:0:*:{Hex("VIGIE-VAR-")}(41|4243|444546){Hex("-END")}",
            $"Vigie.Test.AltFront:0:*:(5a5a|59){Hex("VIGIE-FRONT")}",
            "") + "\n");
        File.WriteAllText(Path.Combine(folder, "test.ldb"), string.Join("\n",
            $"Vigie.Test.Logic;Engine:51-255,Target:0;(0>2)&1;{Hex("MARK-")};{Hex("ENDING")}",
            $"Vigie.Test.LogicNo;Target:0;0&1;{Hex("MARK-")};{Hex("NOPE-NOT-HERE")}",
            $"Vigie.Test.NoCase;Target:0;0;{Hex("vigie-nocase-marker")}::i",
            $"Vigie.Test.FullWord;Target:0;0;{Hex("vigieword")}::f",
            $"Vigie.Test.Wide;Target:0;0;{Hex("vigie-wide-marker")}::w",
            $"Vigie.Test.WideOrAscii;Target:0;0;{Hex("vigie-both-marker")}::wa",
            "") + "\n");
    }
}
