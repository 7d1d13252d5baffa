using System.Xml;

namespace Vigie.Inspection.Engine;

/// <summary>
/// How every analyser reads XML from a file it inspects: no DTD (no entity expansion bombs, no external entities), no
/// resolver, comments and processing instructions skipped.
/// </summary>
internal static class UntrustedXml
{
    public static readonly XmlReaderSettings Document = new()
    {
        DtdProcessing = DtdProcessing.Ignore,
        XmlResolver = null,
        MaxCharactersFromEntities = 1024,
        IgnoreComments = true,
        IgnoreProcessingInstructions = true,
        IgnoreWhitespace = true,
        CloseInput = true,
    };

    /// <summary>As <see cref="Document"/>, for XML that may hold several roots (an XFA form's packets).</summary>
    public static readonly XmlReaderSettings Fragment = FragmentOf(Document);

    private static XmlReaderSettings FragmentOf(XmlReaderSettings document)
    {
        var settings = document.Clone();
        settings.ConformanceLevel = ConformanceLevel.Fragment;
        return settings;
    }
}
