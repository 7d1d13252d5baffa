using System.Collections.Frozen;

namespace Vigie.Inspection.Engine;

/// <summary>The engine's view of one object being inspected, linked to its container for recursion checks.</summary>
internal sealed class EngineContext(
    Inspector engine,
    InspectionSession session,
    EngineContext? parent,
    string innerPath,
    int depth,
    ContentType contentType,
    string? declaredName,
    ContentSource content) : InspectionContext
{
    public InspectionSession Session => session;

    public EngineContext? Parent => parent;

    public ContentSource Content => content;

    /// <summary>Ranges of this content already inspected as children (trailing data...), so that no other step reads them again.</summary>
    public List<(long Offset, long Length)> InspectedRanges { get; } = [];

    public override string InnerPath => innerPath;

    public override int Depth => depth;

    public override InspectionLimits Limits => session.Limits;

    public override ContentType ContentType => contentType;

    public override string? DeclaredName => declaredName;

    public override ContentType? ParentType => parent?.ContentType;

    public override bool InsideMailContainer
    {
        get
        {
            if (parent is null || parent.ContentType is ContentType.Mime or ContentType.Tnef)
            {
                return false;
            }

            for (var ancestor = parent.Parent; ancestor is not null; ancestor = ancestor.Parent)
            {
                if (ancestor.ContentType is ContentType.Mime or ContentType.Tnef)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Bytes read a second time, as what else they are (a container read as the PDF a reader opens, a PDF as the page a
    /// browser renders): what is only odd there (a header offset, a stream or a dictionary garbled by the container's
    /// other members or its transfer encoding) is noted, not held against the file, since the first reading judged its
    /// structure; active content counts as anywhere: High and above, and a PDF's actions, links and embedded files at
    /// their own severity (until 2026-12-07 a Medium /AA or /GoToR was Info there, and a DICOM/PDF polyglot carrying one
    /// was stored while the same PDF as an Encapsulated PDF was refused).
    /// </summary>
    public bool SecondReading { get; init; }

    /// <summary>What a PDF does rather than how it is built: actions, scripts, forms that send or load data, links to programs or raw addresses, embedded files, rich media, XFA.</summary>
    private static readonly FrozenSet<string> PdfActiveContent = FrozenSet.ToFrozenSet(
    [
        Rules.PdfJavaScript, Rules.PdfOpenAction, Rules.PdfAdditionalActions, Rules.PdfLaunch, Rules.PdfSubmitForm, Rules.PdfImportData,
        Rules.PdfGoToRemote, Rules.PdfGoToEmbedded, Rules.PdfRichMedia, Rules.PdfXfa, Rules.PdfEmbeddedFile, Rules.PdfUriExecutable, Rules.PdfUriIp,
        Rules.PdfHiddenInObjectStream,
    ], StringComparer.Ordinal);

    public override void Report(string rule, Severity severity, string message, long? offset = null) =>
        session.Report(new Finding(rule, SecondReading && severity is Severity.Low or Severity.Medium && !PdfActiveContent.Contains(rule) ? Severity.Info : severity,
            message, offset, innerPath));

    public override void RecordSha256(ReadOnlySpan<byte> digest)
    {
        if (depth == 0)
        {
            session.Sha256 = Convert.ToHexStringLower(digest);
        }
    }

    public override ValueTask InspectChildAsync(string name, ContentSource content, CancellationToken cancellationToken) =>
        engine.InspectChildAsync(this, name, content, cancellationToken);

    public override ValueTask InspectAsAsync(string name, ContentType type, ContentSource content, CancellationToken cancellationToken) =>
        engine.InspectChildAsync(this, name, content, cancellationToken, type);

    public override ValueTask InspectSecondReadingAsync(string name, ContentType type, ContentSource content, CancellationToken cancellationToken) =>
        engine.InspectChildAsync(this, name, content, cancellationToken, type, secondReading: true);

    public override void MarkInspected(ContentSource part)
    {
        if (ContentSource.TryLocate(content, part, out var offset))
        {
            InspectedRanges.Add((offset, part.Length));
        }
    }

    public override void MarkInspected(ContentSource part, long offset)
    {
        const int MaxCompared = 1 << 20;
        if (offset < 0 || part.Length > MaxCompared || offset > content.Length - part.Length)
        {
            return;
        }

        using var range = content.Slice(offset, part.Length);
        if (Inspector.SameBytes(range, part, CancellationToken.None))
        {
            InspectedRanges.Add((offset, part.Length));
        }
    }

    public override bool TryChargeExtraction(long bytes) => session.TryChargeExtraction(this, bytes);

    public override long? ConcerningReports => session.ConcerningReports;
}
