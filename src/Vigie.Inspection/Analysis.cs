namespace Vigie.Inspection;

/// <summary>
/// Hard limits for one inspection. Every container analyser checks them before descending or extracting,
/// and reports a finding (not an exception) when one is reached.
/// </summary>
public sealed class InspectionLimits
{
    public const string Section = "Inspection";

    /// <summary>Deepest nesting of containers (a zip in a mail in a DICOM...).</summary>
    public int MaxDepth { get; set; } = 8;

    /// <summary>Most inner objects inspected for one top-level object.</summary>
    public int MaxObjects { get; set; } = 10_000;

    /// <summary>Largest single extracted (decompressed) inner object.</summary>
    public long MaxInnerSize { get; set; } = 256L * 1024 * 1024;

    /// <summary>Most decompressed bytes produced across the whole inspection.</summary>
    public long MaxTotalExtracted { get; set; } = 1024L * 1024 * 1024;

    /// <summary>Decompressed/compressed ratio beyond which an entry is treated as a bomb.</summary>
    public double MaxCompressionRatio { get; set; } = 200;

    /// <summary>Inner objects up to this size are held in memory; larger ones are spilled to a temporary file.</summary>
    public int InMemoryThreshold { get; set; } = 16 * 1024 * 1024;

    /// <summary>Wall-clock budget for one top-level object.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Compression ratios are judged only once an entry expands beyond this many bytes (tiny sparse files are harmless).</summary>
    public long RatioCheckFloor { get; set; } = 1024 * 1024;

    /// <summary>Most entries read from one container: archive entries, MIME parts, PDF objects, OLE2 directory entries.</summary>
    public int MaxEntries { get; set; } = 100_000;

    /// <summary>Most findings kept for one top-level object; the rest are counted in one final finding.</summary>
    public int MaxFindings { get; set; } = 1_000;

    /// <summary>Most bytes of extracted inner objects held in memory at once for one inspection; beyond it they spill to disk.</summary>
    public long MaxInMemoryTotal { get; set; } = 64L * 1024 * 1024;

    /// <summary>Folder for spilled inner objects (deleted as soon as inspected); the system temporary folder when empty.</summary>
    public string? SpillDirectory { get; set; }

    /// <summary>Files inspected at once in batch mode; 0 means one per core.</summary>
    public int BatchParallelism { get; set; }
}

/// <summary>
/// What an analyser sees of the inspection it takes part in: where it is, the limits, and how to report
/// findings or descend into embedded content. Implemented by the inspection engine.
/// </summary>
public abstract class InspectionContext
{
    /// <summary>Path of the current object inside the top-level one ("" at the top).</summary>
    public abstract string InnerPath { get; }

    /// <summary>0 for the top-level object.</summary>
    public abstract int Depth { get; }

    public abstract InspectionLimits Limits { get; }

    /// <summary>The type the engine identified for the current object.</summary>
    public abstract ContentType ContentType { get; }

    /// <summary>The name the container gave this object (file name, entry name, attachment file name), when it has one.</summary>
    public virtual string? DeclaredName => null;

    /// <summary>The type of the containing object; null at the top level.</summary>
    public virtual ContentType? ParentType => null;

    /// <summary>Inside a container (a ZIP, a 7z...) that came by mail, below the mail's own parts.</summary>
    public virtual bool InsideMailContainer => false;

    public abstract void Report(string rule, Severity severity, string message, long? offset = null);

    /// <summary>
    /// Identifies and inspects embedded content (an attachment, an archive entry, an encapsulated document) as a
    /// child of the current object. Depth, count and size limits are enforced here.
    /// </summary>
    public abstract ValueTask InspectChildAsync(string name, ContentSource content, CancellationToken cancellationToken);

    /// <summary>
    /// Inspects bytes as a given format rather than as identified: the current object read again as what its
    /// preamble also makes it (a DICOM file that is a ZIP, a PDF or a program too). Such a child is not a copy of its
    /// container in the quine sense, unless the container was already read as that format.
    /// </summary>
    public virtual ValueTask InspectAsAsync(string name, ContentType type, ContentSource content, CancellationToken cancellationToken) =>
        InspectChildAsync(name, content, cancellationToken);

    /// <summary>
    /// Reads bytes of the current object once more as what another reader sees in them (the file as the PDF a reader
    /// opens from a header in its first kilobyte): Low and Medium findings there are Info, since the first reading
    /// judged the structure; active content counts.
    /// </summary>
    public virtual ValueTask InspectSecondReadingAsync(string name, ContentType type, ContentSource content, CancellationToken cancellationToken) =>
        InspectAsAsync(name, type, content, cancellationToken);

    /// <summary>
    /// Says that <paramref name="part"/> (a slice of the current content) has been inspected already, under another
    /// reading, so that no generic step (the appended-archive check) reads it again.
    /// </summary>
    public virtual void MarkInspected(ContentSource part)
    {
    }

    /// <summary>
    /// The same for a part read into memory that claims to hold the current content's bytes at <paramref name="offset"/>
    /// (a DICOM value): taken only when those bytes are indeed the same.
    /// </summary>
    public virtual void MarkInspected(ContentSource part, long offset)
    {
    }

    /// <summary>
    /// Causes for concern so far in this inspection (findings of Low or graver, inner objects that are not passive
    /// data): compared before and after a child, it says whether the child gave any. Null where the context does not count them (its children are not inspected).
    /// </summary>
    public virtual long? ConcerningReports => null;

    /// <summary>Charges bytes an analyser is about to decompress; false when the inspection-wide budget is exhausted.</summary>
    public abstract bool TryChargeExtraction(long bytes);

    /// <summary>An engine that hashed the whole top-level object says so, so that callers need not hash it again.</summary>
    public virtual void RecordSha256(ReadOnlySpan<byte> digest)
    {
    }
}

/// <summary>Understands one or more content types and reports what is wrong with them.</summary>
public interface IContentAnalyser
{
    string Name { get; }

    bool CanAnalyse(ContentType type);

    /// <summary>
    /// Whether to run on this object: by its type, or for a format the identifier gives no type of its own (HL7 v2,
    /// FHIR JSON) by its signature at the head, whatever type the rest made it. Called for every object: the head only.
    /// </summary>
    bool CanAnalyse(ContentType type, ContentSource content) => CanAnalyse(type);

    ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken);
}

/// <summary>Known-bad matching (hashes, byte signatures, YARA, clamd) that runs on every object and inner object, whatever its type.</summary>
public interface IKnownBadEngine
{
    string Name { get; }

    /// <summary>False (with a reason) when the engine cannot run here, e.g. libyara is missing.</summary>
    bool IsAvailable(out string? reason);

    ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken);
}

/// <summary>One change disarm made, listed in the report.</summary>
public sealed record DisarmAction(string Rule, string Description, long? Offset, string InnerPath);

/// <summary>Writes a sanitised copy of content it understands, listing every change.</summary>
public interface IDisarmer
{
    bool CanDisarm(ContentType type);

    /// <summary>Writes the sanitised copy to <paramref name="output"/>; returns the actions taken (empty when nothing needed changing).</summary>
    ValueTask<IReadOnlyList<DisarmAction>> DisarmAsync(ContentSource content, Stream output, DisarmOptions options, CancellationToken cancellationToken);
}

public sealed class DisarmOptions
{
    /// <summary>Remove DICOM private tags as well (off by default: modalities put useful data there).</summary>
    public bool StripDicomPrivateTags { get; set; }
}
