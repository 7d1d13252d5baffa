using System.Text;
using Vigie.Dicom.IO;
using Vigie.Dicom.Tests.Samples;

namespace Vigie.Dicom.Tests;

public sealed class DicomReaderTests
{
    private static ValueTask<DicomFile> Read(byte[] bytes, DicomReadOptions? options = null) =>
        DicomReader.ReadFileAsync(new MemoryStream(bytes), options, TestContext.Current.CancellationToken);

    private static async Task<DicomParseException> Rejected(byte[] bytes, DicomReadOptions? options = null) =>
        await Assert.ThrowsAsync<DicomParseException>(async () => await Read(bytes, options));

    [Theory]
    [InlineData(DicomUids.ExplicitVRLittleEndian)]
    [InlineData(DicomUids.ImplicitVRLittleEndian)]
    [InlineData(DicomUids.DeflatedExplicitVRLittleEndian)]
    public async Task Every_native_syntax_reads_back_what_was_written(string syntax)
    {
        var file = await Read(DicomSamples.File(DicomSamples.SmallImage("Dupont^Élise"), TransferSyntax.Lookup(syntax)));
        Assert.Equal(syntax, file.TransferSyntax.Uid);
        Assert.Equal("Dupont^Élise", file.Dataset.GetString(DicomTags.PatientName));
        Assert.Equal(["-250.0", "-250", "1e2"], file.Dataset.GetStrings(DicomTags.ImagePositionPatient));
        Assert.Equal(8, file.Dataset.TryGetInt64(DicomTags.Rows, out var rows) ? rows : -1);
        var item = Assert.Single(file.Dataset.GetSequence(DicomTags.ReferencedImageSequence)!.Items);
        var code = Assert.Single(item.GetSequence(DicomTags.PurposeOfReferenceCodeSequence)!.Items);
        Assert.Equal("Localizer", code.GetString(DicomTags.CodeMeaning));
        Assert.Equal("DCM", code.GetString(DicomTags.CodingSchemeDesignator));
        // The character set of the top-level dataset applies inside items.
        Assert.True(code.CharacterSet.IsUtf8);
        Assert.Equal(DicomVR.OW, file.Dataset[DicomTags.PixelData]!.VR);
        Assert.Empty(file.Warnings);
    }

    [Fact]
    public async Task Explicit_big_endian_values_are_swapped_to_little_endian()
    {
        var file = await Read(DicomSamples.BigEndian());
        Assert.Equal(TransferSyntax.ExplicitVRBigEndian, file.TransferSyntax);
        Assert.Equal(0x0102, file.Dataset.TryGetInt64(DicomTags.Rows, out var rows) ? rows : -1);
        Assert.Equal("BIG^ENDIAN", file.Dataset.GetString(DicomTags.PatientName));
        Assert.Equal(["0.5", "0.5"], file.Dataset.GetStrings(DicomTags.PixelSpacing));
    }

    [Fact]
    public async Task A_headerless_implicit_dataset_is_recognised()
    {
        var file = await Read(DicomSamples.Headerless());
        Assert.False(file.HasMetaInformation);
        Assert.Null(file.Preamble);
        Assert.Equal(TransferSyntax.ImplicitVRLittleEndian, file.TransferSyntax);
        Assert.Equal("SYNTH^PATIENT", file.Dataset.GetString(DicomTags.PatientName));
    }

    [Fact]
    public async Task Encapsulated_pixel_data_keeps_offset_table_and_fragments()
    {
        var file = await Read(DicomSamples.Encapsulated());
        var fragments = Assert.IsType<DicomFragmentSequence>(file.Dataset[DicomTags.PixelData]);
        Assert.Equal([0L, 6, 4], fragments.Items.Select(f => f.Length));
        Assert.Equal(new byte[] { 3, 4, 0xFF, 0xD9 }, fragments.Items[2].Value.ToArray());
    }

    [Fact]
    public async Task Large_values_stay_in_a_seekable_source_as_references()
    {
        var bytes = DicomSamples.File(DicomSamples.SmallImage(rows: 256, columns: 256), TransferSyntax.ExplicitVRLittleEndian);
        var file = await Read(bytes);
        var pixels = Assert.IsType<DicomValueElement>(file.Dataset[DicomTags.PixelData]);
        Assert.True(pixels.IsBulk);
        Assert.Equal(256 * 256 * 2, pixels.Length);
        Assert.Equal((byte)7, bytes[pixels.Bulk!.Offset + 1]);
        var loaded = await Read(bytes, new DicomReadOptions { LoadLargeValues = true });
        Assert.False(((DicomValueElement)loaded.Dataset[DicomTags.PixelData]!).IsBulk);
    }

    [Fact]
    public async Task Metadata_only_read_stops_at_pixel_data()
    {
        var file = await Read(DicomSamples.File(DicomSamples.SmallImage(), TransferSyntax.ExplicitVRLittleEndian),
            new DicomReadOptions { StopAtTag = DicomTags.PixelData });
        Assert.True(file.IsPartial);
        Assert.False(file.Dataset.Contains(DicomTags.PixelData));
        Assert.True(file.Dataset.Contains(DicomTags.PixelRepresentation));
    }

    [Fact]
    public async Task Value_length_beyond_the_end_of_the_file_is_rejected_with_offset_and_tag()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian,
            DicomSamples.Explicit(0x0010, 0x0010, "PN", 4, "A^B "u8),
            DicomSamples.Explicit(0x7FE0, 0x0010, "OB", 1000, new byte[10]));
        var error = await Rejected(bytes);
        Assert.Equal(DicomErrorKind.LengthExceedsRemaining, error.Kind);
        Assert.Equal("(7FE0,0010)", error.TagPath);
        Assert.Contains("1000", error.Message, StringComparison.Ordinal);
        Assert.True(error.Offset > 132);
    }

    [Fact]
    public async Task Absurd_declared_length_is_refused_before_any_allocation()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, DicomSamples.Explicit(0x0009, 0x1010, "OB", 0xFFFFFFF0));
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = await Rejected(bytes);
        Assert.Equal(DicomErrorKind.LengthExceedsRemaining, error.Kind);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 10_000_000);
    }

    [Fact]
    public async Task Sequence_nesting_bomb_stops_at_the_depth_limit()
    {
        var parts = new List<byte[]>();
        for (var i = 0; i < 10_000; i++)
        {
            parts.Add(DicomSamples.Explicit(0x0040, 0xA730, "SQ", 0xFFFFFFFF));
            parts.Add(DicomSamples.Item(0xFFFFFFFF));
        }

        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, [.. parts]));
        Assert.Equal(DicomErrorKind.DepthLimitExceeded, error.Kind);
        Assert.StartsWith("(0040,A730)[0].(0040,A730)[0]", error.TagPath, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Element_count_bomb_stops_at_the_element_limit()
    {
        var parts = Enumerable.Range(0, 5000).Select(i => DicomSamples.Explicit(0x0009, (ushort)(0x1000 + i), "UN", 0)).ToArray();
        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, parts), new DicomReadOptions { MaxElements = 1000 });
        Assert.Equal(DicomErrorKind.ElementLimitExceeded, error.Kind);
    }

    [Fact]
    public async Task Undefined_length_item_never_closed_inside_a_value_is_truncated()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian,
            DicomSamples.Explicit(0x0040, 0xA730, "SQ", 0xFFFFFFFF), DicomSamples.Item(0xFFFFFFFF),
            DicomSamples.Explicit(0x0008, 0x0100, "SH", 8, "ABC"u8));
        var error = await Rejected(bytes);
        Assert.Equal(DicomErrorKind.LengthExceedsRemaining, error.Kind);
    }

    [Fact]
    public async Task Undefined_length_item_never_closed_at_an_element_boundary_is_read_with_a_warning()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian,
            DicomSamples.Explicit(0x0040, 0xA730, "SQ", 0xFFFFFFFF), DicomSamples.Item(0xFFFFFFFF),
            DicomSamples.Explicit(0x0008, 0x0100, "SH", 4, "ABC "u8));
        var file = await Read(bytes);
        Assert.Contains(file.Warnings, w => w.Kind == DicomWarningKind.EndedInsideItem);
    }

    [Fact]
    public async Task Deflate_bomb_stops_at_the_inflated_size_limit()
    {
        var raw = new byte[64 * 1024 * 1024];
        DicomSamples.Explicit(0x7FE0, 0x0010, "OB", (uint)(raw.Length - 12)).CopyTo(raw, 0);
        var bytes = DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, DicomSamples.Deflate(raw));
        Assert.True(bytes.Length < 200_000);
        var error = await Rejected(bytes, new DicomReadOptions { MaxInflatedBytes = 8 * 1024 * 1024 });
        Assert.Equal(DicomErrorKind.SizeLimitExceeded, error.Kind);
    }

    [Fact]
    public async Task Regression_a_deflate_bomb_was_held_in_memory_up_to_the_inflated_size_limit()
    {
        // 486 KB inflating to 500 MB took 1 GB of memory before the 1 GiB limit; the ratio now stops it past 32 MiB.
        var raw = new byte[96 * 1024 * 1024];
        DicomSamples.Explicit(0x7FE0, 0x0010, "OB", (uint)(raw.Length - 12)).CopyTo(raw, 0);
        var error = await Rejected(DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, DicomSamples.Deflate(raw)));
        Assert.Equal(DicomErrorKind.SizeLimitExceeded, error.Kind);
        Assert.Contains("decompression bomb", error.Message, StringComparison.Ordinal);

        // Highly compressible but under the floor: read. Regression: a 600-frame binary segmentation (19.6 MB from 28 KB,
        // 683:1) was refused as a bomb when the floor was 16 MiB.
        var small = new byte[24 * 1024 * 1024];
        DicomSamples.Explicit(0x7FE0, 0x0010, "OB", (uint)(small.Length - 12)).CopyTo(small, 0);
        var file = await Read(DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, DicomSamples.Deflate(small)));
        Assert.Equal(small.Length - 12, ((DicomValueElement)file.Dataset[DicomTags.PixelData]!).Length);
    }

    /// <summary>
    /// Regression: only values over 64 KiB were kept as references, so encapsulated pixel data cut into fragments of 64 KiB
    /// or less was loaded whole (a 1 GB image took 1.4 GB in the node, `vigie dump` 474 MB for 400 MB). Past the loaded
    /// budget, binary values and fragments stay in the source (text too since 2026-12-07; short values are still loaded).
    /// </summary>
    [Fact]
    public async Task Regression_pixel_data_in_many_small_fragments_was_loaded_whole()
    {
        const int fragment = 32 * 1024;
        var parts = new List<byte[]>
        {
            DicomSamples.Explicit(0x0008, 0x0018, "UI", 8, "2.25.42\0"u8),
            DicomSamples.Explicit(0x0029, 0x0010, "LO", 4, "ACME"u8),
        };
        for (var i = 0; i < 40; i++)
        {
            parts.Add(DicomSamples.Explicit(0x0029, (ushort)(0x1000 + i), "OB", fragment, new byte[fragment]));
        }

        parts.Add(DicomSamples.Explicit(0x0032, 0x4000, "LT", 6, "NOTES "u8));
        parts.Add(DicomSamples.Explicit(0x7FE0, 0x0010, "OB", 0xFFFFFFFF));
        parts.Add(DicomSamples.Item(0));
        for (var i = 0; i < 200; i++)
        {
            var value = new byte[fragment];
            value[0] = (byte)i;
            parts.Add([.. DicomSamples.Item(fragment), .. value]);
        }

        parts.Add(DicomSamples.SequenceEnd());
        var bytes = DicomSamples.Part10(DicomUids.JPEGBaseline8Bit, [.. parts]);

        var file = await Read(bytes, new DicomReadOptions { MaxLoadedBytes = 1024 * 1024 });
        var privates = Enumerable.Range(0, 40).Select(i => (DicomValueElement)file.Dataset[new DicomTag(0x0029, (ushort)(0x1000 + i))]!).ToList();
        Assert.False(privates[0].IsBulk);
        Assert.True(privates[^1].IsBulk);
        var fragments = ((DicomFragmentSequence)file.Dataset[DicomTags.PixelData]!).Items;
        Assert.Equal(201, fragments.Count);
        Assert.All(fragments.Skip(1), f => Assert.NotNull(f.Bulk));
        Assert.Equal(199, bytes[(int)fragments[^1].Bulk!.Offset]);
        // Text stays readable whatever was loaded before it.
        Assert.Equal("NOTES", file.Dataset.GetString(new DicomTag(0x0032, 0x4000)));
        Assert.Equal("2.25.42", file.Dataset.GetString(DicomTags.SOPInstanceUID)?.TrimEnd('\0'));

        // Without the budget spent, small values are loaded as before.
        var loaded = await Read(bytes);
        Assert.All(((DicomFragmentSequence)loaded.Dataset[DicomTags.PixelData]!).Items, f => Assert.Null(f.Bulk));
    }

    /// <summary>
    /// Regression: text values were loaded whatever the loaded budget said, so a C-STORE of one sequence of 6,000 LT values
    /// of 65,000 bytes (each under the 64 KiB threshold, 390 MB) was loaded whole: +463 MB in the node, and a 780 MB one
    /// took it to 1.5 GB. Past the budget text stays in the source like binary values; short values are still loaded.
    /// </summary>
    [Fact]
    public async Task Regression_many_text_values_under_the_threshold_were_loaded_whole()
    {
        const int items = 200;
        const int textLength = 65_000;
        const long budget = 1024 * 1024;
        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("LOREM IPSUM ", (textLength / 12) + 1)))[..textLength];
        var parts = new List<byte[]>
        {
            DicomSamples.Explicit(0x0008, 0x0018, "UI", 8, "2.25.42\0"u8),
            DicomSamples.Explicit(0x0010, 0x0010, "PN", 14, "DUPONT^JEANNE "u8),
            DicomSamples.Explicit(0x0040, 0xA730, "SQ", 0xFFFFFFFF),
        };
        for (var i = 0; i < items; i++)
        {
            parts.Add(DicomSamples.Item(0xFFFFFFFF));
            parts.Add(DicomSamples.Explicit(0x0020, 0x4000, "LT", textLength, text));
            parts.Add(DicomSamples.Explicit(0x0040, 0xA040, "CS", 4, "TEXT"u8));
            parts.Add(DicomSamples.Explicit(0x0040, 0xA160, "UT", textLength, text));
            parts.Add(DicomSamples.ItemEnd());
        }

        parts.Add(DicomSamples.SequenceEnd());
        parts.Add(DicomSamples.Explicit(0x0070, 0x0080, "CS", 6, "LABEL "u8));
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, [.. parts]);

        var file = await Read(bytes, new DicomReadOptions { MaxLoadedBytes = budget });
        // The parser's own accounting: the budget, plus the short values (at most 64 bytes each) loaded past it.
        Assert.InRange(file.LoadedBytes, budget - textLength, budget + (items * 64L) + 64);
        var content = file.Dataset.GetSequence(new DicomTag(0x0040, 0xA730))!.Items;
        Assert.Equal(items, content.Count);
        Assert.False(((DicomValueElement)content[0][new DicomTag(0x0020, 0x4000)]!).IsBulk);
        foreach (var tag in new[] { new DicomTag(0x0020, 0x4000), new DicomTag(0x0040, 0xA160) })
        {
            var last = (DicomValueElement)content[^1][tag]!;
            Assert.True(last.IsBulk);
            Assert.Equal(textLength, last.Length);
            Assert.True(bytes.AsSpan((int)last.Bulk!.Offset, textLength).SequenceEqual(text));
        }

        // Identifiers and codes are still read, whatever was loaded before them.
        Assert.Equal("TEXT", content[^1].GetString(new DicomTag(0x0040, 0xA040)));
        Assert.Equal("LABEL", file.Dataset.GetString(new DicomTag(0x0070, 0x0080)));
        Assert.Equal("DUPONT^JEANNE", file.Dataset.GetString(DicomTags.PatientName));

        // Under the budget, the same text is loaded as before.
        var whole = await Read(bytes);
        Assert.True(whole.LoadedBytes > items * 2L * textLength);
        Assert.False(((DicomValueElement)whole.Dataset.GetSequence(new DicomTag(0x0040, 0xA730))!.Items[^1][new DicomTag(0x0040, 0xA160)]!).IsBulk);
    }

    /// <summary>
    /// Regression: a deflated data set cannot be read again, so its values were loaded, each grown by doubling as it
    /// arrived (2.3 times the value), and loaded again for the index: a 100 MB private value in a deflated store took
    /// 615 MB in the node. Values are now gathered in chunks and copied once, and a reader that wants only the
    /// attributes drops them.
    /// </summary>
    [Fact]
    public async Task Regression_a_large_value_in_a_deflated_data_set_took_six_times_its_size()
    {
        var value = new byte[(int)(2.5 * 1024 * 1024)];
        new Random(7).NextBytes(value);
        var raw = (byte[])[.. DicomSamples.Explicit(0x0008, 0x0018, "UI", 8, "2.25.42\0"u8), .. DicomSamples.Explicit(0x0029, 0x0010, "LO", 4, "ACME"u8),
            .. DicomSamples.Explicit(0x0029, 0x1010, "OB", (uint)value.Length, value), .. DicomSamples.Explicit(0x0032, 0x4000, "LT", 6, "NOTES "u8)];
        var bytes = DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, DicomSamples.Deflate(raw));

        var whole = await Read(bytes);
        var blob = (DicomValueElement)whole.Dataset[new DicomTag(0x0029, 0x1010)]!;
        Assert.False(blob.IsBulk);
        Assert.True(blob.Span.SequenceEqual(value));

        var attributes = await Read(bytes, new DicomReadOptions { DropLargeValues = true });
        Assert.True(((DicomValueElement)attributes.Dataset[new DicomTag(0x0029, 0x1010)]!).IsBulk);
        Assert.Equal("NOTES", attributes.Dataset.GetString(new DicomTag(0x0032, 0x4000)));
        Assert.Equal("2.25.42", attributes.Dataset.GetString(DicomTags.SOPInstanceUID)?.TrimEnd('\0'));

        // A value that stops short of its length is still an error, not a short array.
        var truncated = DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, DicomSamples.Deflate(raw[..(raw.Length - 1024 * 1024)]));
        var error = await Rejected(truncated);
        Assert.Equal(DicomErrorKind.Truncated, error.Kind);
    }

    [Fact]
    public async Task Regression_elements_in_descending_tag_order_made_parsing_quadratic()
    {
        // Each out-of-order element is inserted in its place: 990,000 in descending order took 88 s.
        byte[][] Descending(int count) => [.. Enumerable.Range(0, count).Select(i => DicomSamples.Explicit(0x0009, (ushort)(0x9000 - i), "LO", 0))];
        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, Descending(300)));
        Assert.Equal(DicomErrorKind.InvalidStructure, error.Kind);
        Assert.Contains("out of ascending tag order", error.Message, StringComparison.Ordinal);

        var few = await Read(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, Descending(20)));
        Assert.Equal(20, few.Dataset.Count);
        Assert.Contains(few.Warnings, w => w.Kind == DicomWarningKind.OutOfOrderTag);
    }

    [Fact]
    public async Task Regression_conflicting_duplicate_file_meta_elements_were_accepted_silently()
    {
        // Vigie kept the first transfer syntax, pydicom the last: two readers, two objects, and no warning.
        static byte[] Uid(ushort element, string uid)
        {
            var value = System.Text.Encoding.ASCII.GetBytes(uid.Length % 2 == 0 ? uid : uid + "\0");
            return DicomSamples.Explicit(0x0002, element, "UI", (uint)value.Length, value);
        }

        var bytes = new List<byte>(new byte[128]);
        bytes.AddRange("DICM"u8.ToArray());
        bytes.AddRange(Uid(0x0010, DicomUids.ExplicitVRLittleEndian));
        bytes.AddRange(Uid(0x0002, DicomUids.CTImageStorage));
        bytes.AddRange(Uid(0x0010, DicomUids.ImplicitVRLittleEndian));
        bytes.AddRange(DicomSamples.Explicit(0x0008, 0x0060, "CS", 2, "CT"u8));
        var file = await Read([.. bytes]);
        Assert.Equal(DicomUids.ExplicitVRLittleEndian, file.TransferSyntax.Uid);
        Assert.Contains(file.Warnings, w => w.Kind == DicomWarningKind.ConflictingDuplicateTag);
        Assert.Contains(file.Warnings, w => w.Kind == DicomWarningKind.OutOfOrderTag);
    }

    [Fact]
    public async Task Corrupt_deflate_stream_is_a_parse_error()
    {
        var bytes = DicomSamples.Part10(DicomUids.DeflatedExplicitVRLittleEndian, [0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01]);
        var error = await Rejected(bytes);
        Assert.True(error.Kind is DicomErrorKind.InvalidDeflateStream or DicomErrorKind.Truncated, error.Message);
    }

    [Fact]
    public async Task Implicit_data_under_an_explicit_transfer_syntax_is_a_mismatch()
    {
        var implicitBytes = DicomWriter.Encode(DicomSamples.SmallImage(), TransferSyntax.ImplicitVRLittleEndian);
        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, implicitBytes));
        Assert.Equal(DicomErrorKind.TransferSyntaxMismatch, error.Kind);
    }

    [Fact]
    public async Task Invalid_explicit_VR_is_rejected()
    {
        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, DicomSamples.Explicit(0x0009, 0x1000, "ZZ", 2, "ab"u8)));
        Assert.Equal(DicomErrorKind.InvalidVR, error.Kind);
        Assert.Contains("ZZ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Item_where_an_element_belongs_is_rejected()
    {
        var error = await Rejected(DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, DicomSamples.Item(0)));
        Assert.Equal(DicomErrorKind.InvalidStructure, error.Kind);
    }

    [Fact]
    public async Task Fragment_of_undefined_length_is_rejected()
    {
        var error = await Rejected(DicomSamples.Part10(DicomUids.JPEGBaseline8Bit,
            DicomSamples.Explicit(0x7FE0, 0x0010, "OB", 0xFFFFFFFF), DicomSamples.Item(0), DicomSamples.Item(0xFFFFFFFF)));
        Assert.Equal(DicomErrorKind.UndefinedLengthNotAllowed, error.Kind);
    }

    [Fact]
    public async Task Meta_element_with_huge_length_is_rejected()
    {
        var bytes = new byte[132].Concat(DicomSamples.Explicit(0x0002, 0x0010, "UI", 60000, new byte[10])).ToArray();
        "DICM"u8.CopyTo(bytes.AsSpan(128));
        var error = await Rejected(bytes);
        Assert.Equal(DicomErrorKind.InvalidMetaInformation, error.Kind);
    }

    [Theory]
    [InlineData("")]
    [InlineData("%PDF-1.7\n")]
    [InlineData("PK\u0003\u0004 not dicom at all")]
    public async Task Non_dicom_content_is_refused(string text)
    {
        var error = await Rejected(Encoding.Latin1.GetBytes(text));
        Assert.Equal(DicomErrorKind.NotDicom, error.Kind);
    }

    [Fact]
    public async Task Out_of_order_and_duplicate_tags_are_reported()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian,
            DicomSamples.Explicit(0x0010, 0x0020, "LO", 4, "ID1 "u8),
            DicomSamples.Explicit(0x0010, 0x0010, "PN", 4, "A^B "u8),
            DicomSamples.Explicit(0x0010, 0x0020, "LO", 4, "ID2 "u8));
        var file = await Read(bytes);
        Assert.Contains(file.Warnings, w => w.Kind == DicomWarningKind.OutOfOrderTag);
        Assert.Contains(file.Warnings, w => w.Kind == DicomWarningKind.ConflictingDuplicateTag);
        Assert.Equal("ID1", file.Dataset.GetString(DicomTags.PatientID));
    }

    [Fact]
    public async Task Explicit_UN_of_a_known_element_reads_as_its_real_VR_and_writes_back_as_UN()
    {
        var bytes = DicomSamples.Part10(DicomUids.ExplicitVRLittleEndian, DicomSamples.Explicit(0x0028, 0x0010, "UN", 2, new byte[] { 0x00, 0x02 }));
        var file = await Read(bytes);
        var rows = file.Dataset[DicomTags.Rows]!;
        Assert.Equal(DicomVR.US, rows.VR);
        Assert.Equal(DicomVR.UN, rows.SourceVR);
        using var output = new MemoryStream();
        await DicomWriter.WriteFileAsync(output, file, null, TestContext.Current.CancellationToken);
        Assert.Equal("UN", Encoding.ASCII.GetString(output.ToArray()[^10..^8]));
    }

    [Fact]
    public async Task Non_seekable_streams_read_the_same()
    {
        var bytes = DicomSamples.File(DicomSamples.SmallImage(rows: 256, columns: 256), TransferSyntax.ExplicitVRLittleEndian);
        var file = await DicomReader.ReadFileAsync(new NonSeekable(bytes), null, TestContext.Current.CancellationToken);
        var pixels = Assert.IsType<DicomValueElement>(file.Dataset[DicomTags.PixelData]);
        Assert.False(pixels.IsBulk);
        Assert.Equal(256 * 256 * 2, pixels.Length);
    }

    internal sealed class NonSeekable(byte[] bytes) : Stream
    {
        private readonly MemoryStream _inner = new(bytes);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, Math.Min(count, 1000));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
