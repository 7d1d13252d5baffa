using System.Buffers.Binary;
using Vigie.Dicom.IO;
using Vigie.Dicom.Tests.Samples;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Interop;

/// <summary>
/// RLE Lossless decoding (PS3.5 Annex G), checked against dcmtk: synthetic images compressed by dcmcrle decode to the
/// exact pixels they started from, in both uncompressed syntaxes, and dcmtk reads the result. Hostile RLE headers and
/// segments fail with a reason naming the frame and segment, before anything is written.
/// </summary>
public sealed class RleDecodingTests
{
    public static TheoryData<int, int, int, int, int, int> Layouts() => new()
    {
        { 7, 5, 1, 8, 0, 1 },    // odd length: a padding byte
        { 16, 16, 1, 16, 0, 3 }, // 16-bit, several frames
        { 9, 11, 3, 8, 0, 2 },   // colour, pixel-interleaved
        { 9, 11, 3, 8, 1, 1 },   // colour, planar
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public async Task Images_compressed_by_dcmcrle_decode_to_their_original_pixels(int rows, int columns, int samples, int bits, int planar, int frames)
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-rle-decode");
        var (dataset, pixels) = Image(rows, columns, samples, bits, planar, frames);
        var native = work.Combine("native.dcm");
        await File.WriteAllBytesAsync(native, DicomSamples.File(dataset, TransferSyntax.ExplicitVRLittleEndian), ct);
        var rle = work.Combine("rle.dcm");
        var encode = await Peers.RunAsync(Peers.Require("dcmcrle", "dcmtk"), [native, rle], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(encode.ExitCode == 0, encode.ToString());

        foreach (var target in new[] { TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian })
        {
            var converted = await ConvertAsync(await File.ReadAllBytesAsync(rle, ct), target, ct);
            var decoded = await DicomReader.ReadDatasetAsync(new MemoryStream(converted), target, new DicomReadOptions { LoadLargeValues = true }, ct);
            var element = (DicomValueElement)decoded[DicomTags.PixelData]!;
            // Implicit VR carries no VR: a reader takes pixel data as OW (PS3.5 A.1).
            Assert.Equal(bits > 8 || target == TransferSyntax.ImplicitVRLittleEndian ? DicomVR.OW : DicomVR.OB, element.VR);
            Assert.Equal(pixels.Length + (pixels.Length & 1), element.Length);
            Assert.True(element.Span[..pixels.Length].SequenceEqual(pixels), $"{target.Name}: pixels differ");

            // dcmtk reads what Vigie wrote, pixel data included.
            var output = work.Combine($"out-{target.Uid}.dcm");
            await File.WriteAllBytesAsync(output, DicomSamples.File(decoded, target), ct);
            var dump = await Peers.RunAsync(Peers.Require("dcmdump", "dcmtk"), ["-q", "+W", work.Path, output], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(dump.ExitCode == 0 && dump.StandardError.Length == 0, dump.ToString());
        }
    }

    public static TheoryData<string, string> HostileFrames() => new()
    {
        { "segments", "declares 2 segments where 1 samples of 8 bits need 1" },
        { "offset", "segment 1 spans bytes 4096.." },
        { "short", "segment 1 decodes to 3 bytes where the image needs 16" },
        { "header", "shorter than the 64-byte RLE header" },
        { "frames", "2 RLE fragments for 1 frames" },
    };

    [Theory]
    [MemberData(nameof(HostileFrames))]
    public async Task Hostile_rle_frames_are_refused_with_the_reason_before_anything_is_written(string defect, string reason)
    {
        var ct = TestContext.Current.CancellationToken;
        // A 4x4 8-bit image whose one segment is the literal run of its 16 bytes, then broken one way.
        var segment = new byte[17];
        segment[0] = 15;
        var fragment = Frame(segment);
        byte[][] fragments = defect switch
        {
            "segments" => [Patch(fragment, 0, 2)],
            "offset" => [Patch(fragment, 4, 4096)],
            "short" => [Frame([2, 1, 2, 3])],
            "header" => [fragment[..40]],
            "frames" => [fragment, fragment],
            _ => throw new ArgumentOutOfRangeException(nameof(defect)),
        };

        var file = Rle(fragments, rows: 4, columns: 4);
        var error = await Assert.ThrowsAsync<DicomParseException>(() => ConvertAsync(file, TransferSyntax.ExplicitVRLittleEndian, ct));
        Assert.Equal(DicomErrorKind.InvalidPixelData, error.Kind);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_frame_that_would_decode_beyond_the_limit_is_refused()
    {
        var ct = TestContext.Current.CancellationToken;
        // 65535 x 65535 x 3 samples x 32 bits x 100 frames: declared, never allocated.
        var file = Rle(Enumerable.Repeat(Frame([0, 0]), 100).ToArray(), rows: 65535, columns: 65535, samples: 3, bits: 32, frames: 100);
        var error = await Assert.ThrowsAsync<DicomParseException>(() => ConvertAsync(file, TransferSyntax.ExplicitVRLittleEndian, ct));
        Assert.Equal(DicomErrorKind.SizeLimitExceeded, error.Kind);
    }

    [Fact]
    public async Task Mutated_rle_files_convert_or_fail_with_a_parse_error_and_nothing_else()
    {
        var ct = TestContext.Current.CancellationToken;
        // A 6x6 two-frame 16-bit image whose frames mix literal and repeat packets.
        byte[] segment = [5, 1, 2, 3, 4, 5, 6, unchecked((byte)-29), 7];
        var frame = new byte[64 + segment.Length * 2];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, 2);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), 64);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(8), (uint)(64 + segment.Length));
        segment.CopyTo(frame, 64);
        segment.CopyTo(frame, 64 + segment.Length);
        var seed = Rle([frame, frame], rows: 6, columns: 6, bits: 16, frames: 2);
        Assert.NotEmpty(await ConvertAsync(seed, TransferSyntax.ImplicitVRLittleEndian, ct));

        var mutator = new Mutator { InterestingLengths = [0, 1, 63, 64, 65, 0x7FFFFFFF, 0xFFFFFFFF], LengthWidths = [2, 4] };
        var random = new Random(20261204);
        var converted = 0;
        for (var i = 0; i < 3000; i++)
        {
            var input = mutator.Mutate(seed, random);
            try
            {
                if ((await ConvertAsync(input, TransferSyntax.ExplicitVRLittleEndian, ct, requireRle: false)).Length > 0)
                {
                    converted++;
                }
            }
            catch (DicomParseException)
            {
            }
        }

        Assert.True(converted > 0, "no mutation left a convertible file: the seed or the mutator is wrong");
    }

    private static async Task<byte[]> ConvertAsync(byte[] file, TransferSyntax target, CancellationToken ct, bool requireRle = true)
    {
        using var source = new MemoryStream(file);
        var read = await DicomReader.ReadFileAsync(source, new DicomReadOptions { StopAtTag = new DicomTag(0x0003, 0x0000) }, ct);
        if (read.TransferSyntax.Uid != DicomUids.RLELossless)
        {
            // A mutation that hit the meta information leaves a file that is not RLE: no conversion to make.
            Assert.False(requireRle, read.TransferSyntax.Name);
            return [];
        }

        source.Position = read.DatasetOffset;
        await using var converted = await UncompressedSyntax.ConvertAsync(source, read.TransferSyntax, target, null, ct);
        using var output = new MemoryStream();
        await converted.CopyToAsync(output, ct);
        return output.ToArray();
    }

    private static (DicomDataset Dataset, byte[] Pixels) Image(int rows, int columns, int samples, int bits, int planar, int frames)
    {
        var dataset = DicomSamples.SmallImage(rows: rows, columns: columns);
        dataset.SetUInt16(DicomTags.SamplesPerPixel, (ushort)samples);
        dataset.SetString(DicomTags.PhotometricInterpretation, DicomVR.CS, samples == 3 ? "RGB" : "MONOCHROME2");
        if (samples > 1)
        {
            dataset.SetUInt16(DicomTags.PlanarConfiguration, (ushort)planar);
        }

        dataset.SetUInt16(DicomTags.BitsAllocated, (ushort)bits);
        dataset.SetUInt16(DicomTags.BitsStored, (ushort)bits);
        dataset.SetUInt16(DicomTags.HighBit, (ushort)(bits - 1));
        if (frames > 1)
        {
            dataset.SetString(DicomTags.NumberOfFrames, DicomVR.IS, frames.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        // Runs and noise, so that both kinds of PackBits packet appear.
        var pixels = new byte[rows * columns * samples * (bits / 8) * frames];
        var random = new Random(rows * 1000 + columns + samples + bits + planar + frames);
        for (var i = 0; i < pixels.Length; i++)
        {
            pixels[i] = i % 40 < 20 ? (byte)(i / 40) : (byte)random.Next(256);
        }

        dataset.SetBytes(DicomTags.PixelData, bits > 8 ? DicomVR.OW : DicomVR.OB, pixels.Length % 2 == 0 ? pixels : [.. pixels, 0]);
        return (dataset, pixels);
    }

    private static byte[] Frame(byte[] segment)
    {
        var frame = new byte[64 + segment.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), 64);
        segment.CopyTo(frame, 64);
        return frame;
    }

    private static byte[] Patch(byte[] frame, int offset, uint value)
    {
        var copy = frame.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(offset), value);
        return copy;
    }

    /// <summary>An RLE file of the given geometry whose pixel data is <paramref name="fragments"/> as they are (one per frame when well formed).</summary>
    private static byte[] Rle(byte[][] fragments, ushort rows, ushort columns, ushort samples = 1, ushort bits = 8, int frames = 1)
    {
        var dataset = new DicomDataset();
        dataset.SetUInt16(DicomTags.SamplesPerPixel, samples);
        dataset.SetUInt16(DicomTags.Rows, rows);
        dataset.SetUInt16(DicomTags.Columns, columns);
        dataset.SetUInt16(DicomTags.BitsAllocated, bits);
        if (frames > 1)
        {
            dataset.SetString(DicomTags.NumberOfFrames, DicomVR.IS, frames.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var pixelData = new DicomFragmentSequence(DicomTags.PixelData, DicomVR.OB);
        pixelData.Items.Add(new DicomFragment(ReadOnlyMemory<byte>.Empty, null, 0, -1));
        foreach (var fragment in fragments)
        {
            var even = fragment.Length % 2 == 0 ? fragment : [.. fragment, 0];
            pixelData.Items.Add(new DicomFragment(even, null, even.Length, -1));
        }

        dataset.AddOrUpdate(pixelData);
        return DicomSamples.File(dataset, TransferSyntax.Lookup(DicomUids.RLELossless));
    }
}
