namespace Vigie.Dicom;

/// <summary>
/// Hard limits and value-loading policy for the Part 10 reader. Defaults suit hostile input from the network:
/// deep enough for real structured reports, far below what would exhaust memory or the stack.
/// </summary>
public sealed record DicomReadOptions
{
    public const string Section = "Dicom";

    public static DicomReadOptions Default { get; } = new();

    /// <summary>Deepest sequence nesting accepted.</summary>
    public int MaxDepth { get; init; } = 32;

    /// <summary>Most elements, items and fragments in one dataset, nested ones included.</summary>
    public int MaxElements { get; init; } = 1_000_000;

    /// <summary>Most bytes read from the source.</summary>
    public long MaxTotalBytes { get; init; } = 16L * 1024 * 1024 * 1024;

    /// <summary>Most bytes a deflated dataset may inflate to: the bound on deflate bombs.</summary>
    public long MaxInflatedBytes { get; init; } = 1024L * 1024 * 1024;

    /// <summary>
    /// Past the first <see cref="DeflateRatioFloor"/> bytes, a deflated dataset may inflate to at most this many times
    /// the compressed bytes read so far. Real data sets stay far below it; a bomb (500 MB from 486 KB) stops at once, so
    /// memory stays proportional to what was received instead of reaching <see cref="MaxInflatedBytes"/>.
    /// </summary>
    public int MaxDeflateRatio { get; init; } = 100;

    /// <summary>
    /// Inflated bytes allowed whatever the ratio. Mostly empty masks and black frames deflate far past 100:1 (a
    /// 600-frame binary segmentation: 19.6 MB from 28 KB); at 16 MiB such objects were refused as bombs until 2026-12-06.
    /// </summary>
    public long DeflateRatioFloor { get; init; } = 32L * 1024 * 1024;

    /// <summary>
    /// Most elements out of ascending tag order (PS3.5 7.1). Each is inserted in its place, which moves the elements
    /// after it: a data set written in descending order made parsing quadratic (990,000 elements, 88 s).
    /// </summary>
    public int MaxOutOfOrderElements { get; init; } = 256;

    /// <summary>Values longer than this are kept as references into a seekable source instead of being loaded.</summary>
    public int LargeValueThreshold { get; init; } = 64 * 1024;

    /// <summary>Load every value, however large (up to <see cref="MaxValueInMemory"/>), instead of keeping references.</summary>
    public bool LoadLargeValues { get; init; }

    /// <summary>
    /// Bytes of values loaded into memory before values of any VR and fragments over 64 bytes are kept as references too
    /// (when the source is seekable): memory stays bounded whatever the number of small values. Text counted since
    /// 2026-12-07; before, only binary values and fragments were.
    /// </summary>
    public long MaxLoadedBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>
    /// For readers that need only the attributes (the index): a value over <see cref="LargeValueThreshold"/> in a source
    /// that cannot be read again (a deflated data set) is skipped rather than loaded. Its element keeps a reference to
    /// its position in the inflated data set, which the file itself cannot serve.
    /// </summary>
    public bool DropLargeValues { get; init; }

    /// <summary>The largest single value the reader will ever allocate.</summary>
    public int MaxValueInMemory { get; init; } = 512 * 1024 * 1024;

    /// <summary>Largest file meta information group.</summary>
    public int MaxMetaInformationLength { get; init; } = 64 * 1024;

    /// <summary>
    /// When the top-level dataset is followed by bytes that do not parse as elements (an appended archive or executable),
    /// stop there and report <see cref="DicomFile.TrailingDataOffset"/> instead of failing. Used by inspection.
    /// </summary>
    public bool ReportTrailingData { get; init; }

    /// <summary>
    /// Read a defined-length UN value (an explicit UN, or an element an implicit VR data set does not name) that starts
    /// with an item tag as the sequence it is, in implicit VR little endian (PS3.5 6.2.2). A private sequence hides
    /// whatever its items hold from a reader that keeps it as bytes. Used by inspection.
    /// </summary>
    public bool ReadSequencesInUnknownValues { get; init; }

    /// <summary>Stop reading the top-level dataset at the first element whose tag is at least this one (e.g. Pixel Data).</summary>
    public DicomTag? StopAtTag { get; init; }
}
