using System.Buffers.Binary;
using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Archives;

/// <summary>Regressions from the first review of the 7z reading (2026-12-07), on headers written by hand.</summary>
public sealed class SevenZipReviewTests
{
    private static readonly byte[] AesProperties = [0x40 | 19, 0x0F, .. new byte[16]];

    /// <summary>A 7z number: a first byte whose high bits say how many little-endian bytes follow.</summary>
    private static byte[] Number(ulong value)
    {
        for (var n = 0; n < 8; n++)
        {
            if (value < 1UL << (7 * (n + 1)))
            {
                if (n == 0)
                {
                    return [(byte)value];
                }

                var bytes = BitConverter.GetBytes(value);
                return [(byte)(((0xFF00 >> n) & 0xFF) | (int)(value >> (8 * n))), .. bytes[..n]];
            }
        }

        return [0xFF, .. BitConverter.GetBytes(value)];
    }

    /// <summary>
    /// One folder per file, each stored (Copy) or declared AES-encrypted (its bytes are noise, as no password is
    /// ever tried); SubStreamsInfo only when asked, as it is optional.
    /// </summary>
    internal static byte[] SevenZip(bool subStreams, params (string Name, byte[] Data, bool Encrypted)[] files)
    {
        var h = new List<byte> { 0x01, 0x04, 0x06 };
        h.AddRange(Number(0));
        h.AddRange(Number((ulong)files.Length));
        h.Add(0x09);
        foreach (var file in files)
        {
            h.AddRange(Number((ulong)file.Data.Length));
        }

        h.AddRange([0x00, 0x07, 0x0B]);
        h.AddRange(Number((ulong)files.Length));
        h.Add(0x00);
        foreach (var file in files)
        {
            h.AddRange(Number(1));
            if (file.Encrypted)
            {
                h.AddRange([0x20 | 4, 0x06, 0xF1, 0x07, 0x01]);
                h.AddRange(Number((ulong)AesProperties.Length));
                h.AddRange(AesProperties);
            }
            else
            {
                h.AddRange([0x01, 0x00]);
            }
        }

        h.Add(0x0C);
        foreach (var file in files)
        {
            // An encrypted folder declares a few bytes fewer than it packs, as padding does.
            h.AddRange(Number((ulong)(file.Encrypted ? Math.Max(1, file.Data.Length - 6) : file.Data.Length)));
        }

        h.Add(0x00);
        if (subStreams)
        {
            h.AddRange([0x08, 0x00]);
        }

        h.Add(0x00);
        var names = Encoding.Unicode.GetBytes(string.Concat(files.Select(f => f.Name + "\0")));
        h.Add(0x05);
        h.AddRange(Number((ulong)files.Length));
        h.Add(0x11);
        h.AddRange(Number((ulong)names.Length + 1));
        h.Add(0x00);
        h.AddRange(names);
        h.AddRange([0x00, 0x00]);
        var header = h.ToArray();
        var packed = files.SelectMany(f => f.Data).ToArray();
        var start = new byte[20];
        BinaryPrimitives.WriteUInt64LittleEndian(start, (ulong)packed.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(start.AsSpan(8), (ulong)header.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(start.AsSpan(16), Crc32.Compute(header));
        return [(byte)'7', (byte)'z', 0xBC, 0xAF, 0x27, 0x1C, 0x00, 0x04, .. BitConverter.GetBytes(Crc32.Compute(start)), .. start, .. packed, .. header];
    }

    internal static byte[] Noise(int length) => [.. Enumerable.Range(0, length).Select(i => (byte)(i * 37 + 11))];

    [Fact]
    public async Task SevenZip_without_a_substreams_block_is_inspected_without_an_analyser_error()
    {
        // Read by its entries (names checked, content decoded) through a copy with an empty SubStreamsInfo.
        var verdict = await TestInspection.InspectAsync(SevenZip(subStreams: false, ("evil.exe", ExecutableSamples.Pe(), false), ("b.txt", "inert"u8.ToArray(), false)), "plain.7z");
        verdict.HasNo("inspection.analyser-error");
        verdict.Has("executable.pe", "evil.exe");
        verdict.HasNo("archive.malformed");

        // An archive too large to copy is reported, and its packed data inspected raw.
        verdict = await TestInspection.Create(limits: l => l.InMemoryThreshold = 64)
            .InspectAsync(SevenZip(subStreams: false, ("evil.exe", ExecutableSamples.Pe(), false)), "plain.7z");
        verdict.HasNo("inspection.analyser-error");
        verdict.Has("executable.pe");
        Assert.Equal(Severity.Medium, verdict.Has("archive.malformed").Severity);

        // The same archive with the block is read by its entries, with no malformed finding.
        verdict = await TestInspection.InspectAsync(SevenZip(subStreams: true, ("evil.exe", ExecutableSamples.Pe(), false)), "plain.7z");
        verdict.Has("executable.pe", "evil.exe");
        verdict.HasNo("archive.malformed");
    }

    [Fact]
    public async Task SevenZip_plain_entry_after_an_encrypted_decoy_is_inspected()
    {
        var archive = SevenZip(subStreams: true, ("a_decoy.txt", Noise(16), true), ("evil.exe", ExecutableSamples.Pe(), false), ("notes.txt", "inert"u8.ToArray(), false));
        var verdict = await TestInspection.InspectAsync(archive, "decoy.7z");
        Assert.Contains(verdict.Findings, f => f.Rule == "archive.encrypted-entry" && f.Message.Contains("a_decoy.txt", StringComparison.Ordinal));
        verdict.Has("executable.pe", "evil.exe");
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);
        Assert.DoesNotContain(verdict.Findings, f => f.Message.Contains("not inspected", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SevenZip_encrypted_entries_are_each_named_and_no_phantom_entry_is_reported()
    {
        var verdict = await TestInspection.InspectAsync(SevenZip(subStreams: true, ("report.txt", Noise(32), true)), "one.7z");
        Assert.Single(verdict.Findings, f => f.Rule == "archive.encrypted-entry");
        Assert.DoesNotContain(verdict.Findings, f => f.Message.Contains("entry 2", StringComparison.Ordinal));

        verdict = await TestInspection.InspectAsync(SevenZip(subStreams: true, ("first.txt", Noise(32), true), ("second.txt", Noise(48), true)), "two.7z");
        Assert.Contains(verdict.Findings, f => f.Rule == "archive.encrypted-entry" && f.Message.Contains("second.txt", StringComparison.Ordinal));
        Assert.DoesNotContain(verdict.Findings, f => f.Message.Contains("not inspected", StringComparison.Ordinal) && !f.Message.Contains("encrypted", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SevenZip_without_substreams_cut_or_corrupted_gives_no_analyser_error()
    {
        var archive = SevenZip(subStreams: false, ("evil.exe", ExecutableSamples.Pe(), false), ("b.txt", "inert"u8.ToArray(), false));
        foreach (var cut in new[] { 40, archive.Length - 30, archive.Length - 5, archive.Length - 1 })
        {
            (await TestInspection.InspectAsync(archive[..cut], "cut.7z")).HasNo("inspection.analyser-error");
        }

        for (var i = archive.Length - 40; i < archive.Length; i += 3)
        {
            var corrupt = (byte[])archive.Clone();
            corrupt[i] ^= 0xFF;
            (await TestInspection.InspectAsync(corrupt, "corrupt.7z")).HasNo("inspection.analyser-error");
        }
    }
}
