namespace Vigie.Inspection.Engine;

/// <summary>Every rule id this module reports; docs/rules.md documents each (a test keeps the two in step).</summary>
internal static class Rules
{
    // Engine
    public const string DepthLimit = "inspection.depth-limit";
    public const string ObjectLimit = "inspection.object-limit";
    public const string InnerSizeLimit = "inspection.inner-size-limit";
    public const string ExtractionLimit = "inspection.extraction-limit";
    public const string Timeout = "inspection.timeout";
    public const string AnalyserError = "inspection.analyser-error";
    public const string EngineUnavailable = "inspection.engine-unavailable";
    public const string FindingLimit = "inspection.finding-limit";
    public const string PrologLimit = "inspection.prolog-limit";
    public const string RecursiveContent = "inspection.recursive-content";
    public const string AppendedArchive = "inspection.appended-archive";
    public const string ExpansionBomb = "inspection.expansion-bomb";

    // Known-bad signatures
    public const string SignatureHash = "signature.hash";
    public const string SignaturePattern = "signature.pattern";
    public const string SignatureYara = "signature.yara";
    public const string SignatureClamd = "signature.clamd";
    public const string SignatureBudget = "signature.budget";
    public const string SignatureIncomplete = "signature.incomplete";

    // Executables
    public const string ExecutablePe = "executable.pe";
    public const string ExecutableElf = "executable.elf";
    public const string ExecutableMachO = "executable.macho";
    public const string ExecutableScript = "executable.script";

    // ZIP (own reader)
    public const string ZipMalformed = "zip.malformed";
    public const string ZipHeaderMismatch = "zip.header-mismatch";
    public const string ZipOverlappingEntries = "zip.overlapping-entries";
    public const string ZipEncryptedEntry = "zip.encrypted-entry";
    public const string ZipPathTraversal = "zip.path-traversal";
    public const string ZipSuspiciousName = "zip.suspicious-name";
    public const string ZipBombRatio = "zip.bomb-ratio";
    public const string ZipHiddenData = "zip.hidden-data";
    public const string ZipUnsupportedMethod = "zip.unsupported-method";
    public const string ZipTooManyEntries = "zip.too-many-entries";
    public const string ZipDuplicateName = "zip.duplicate-name";

    // Other archives and compressed streams (SharpCompress, BCL)
    public const string ArchiveMalformed = "archive.malformed";
    public const string ArchiveEncryptedEntry = "archive.encrypted-entry";
    public const string ArchivePathTraversal = "archive.path-traversal";
    public const string ArchiveLinkEntry = "archive.link-entry";
    public const string ArchiveBombRatio = "archive.bomb-ratio";
    public const string ArchiveTooManyEntries = "archive.too-many-entries";

    // PDF
    public const string PdfJavaScript = "pdf.javascript";
    public const string PdfOpenAction = "pdf.open-action";
    public const string PdfAdditionalActions = "pdf.additional-actions";
    public const string PdfLaunch = "pdf.launch";
    public const string PdfEmbeddedFile = "pdf.embedded-file";
    public const string PdfRichMedia = "pdf.rich-media";
    public const string PdfXfa = "pdf.xfa";
    public const string PdfUriExecutable = "pdf.uri-executable";
    public const string PdfUriIp = "pdf.uri-ip";
    public const string PdfSubmitForm = "pdf.submit-form";
    public const string PdfGoToRemote = "pdf.goto-remote";
    public const string PdfGoToEmbedded = "pdf.goto-embedded";
    public const string PdfImportData = "pdf.import-data";
    public const string PdfEncrypted = "pdf.encrypted";
    public const string PdfObfuscatedName = "pdf.obfuscated-name";
    public const string PdfFilterChain = "pdf.filter-chain";
    public const string PdfHiddenInObjectStream = "pdf.hidden-in-object-stream";
    public const string PdfBombRatio = "pdf.bomb-ratio";
    public const string PdfDecodeError = "pdf.decode-error";
    public const string PdfMalformed = "pdf.malformed";
    public const string PdfTooManyObjects = "pdf.too-many-objects";
    public const string PdfHeaderOffset = "pdf.header-offset";

    // Office (OOXML, OLE2, OpenDocument)
    public const string OfficeVbaMacro = "office.vba-macro";
    public const string OfficeVbaAutoExec = "office.vba-autoexec";
    public const string OfficeVbaSuspicious = "office.vba-suspicious";
    public const string OfficeXlmMacro = "office.xlm-macro";
    public const string OfficeMacroEnabled = "office.macro-enabled";
    public const string OfficeMacroDisguised = "office.macro-disguised";
    public const string OfficeRemoteTemplate = "office.remote-template";
    public const string OfficeExternalOleLink = "office.external-ole-link";
    public const string OfficeExternalRelationship = "office.external-relationship";
    public const string OfficeDde = "office.dde";
    public const string OfficeOlePackage = "office.ole-package";
    public const string OfficeActiveX = "office.activex";
    public const string OfficeEquationEditor = "office.equation-editor";
    public const string OfficeEncrypted = "office.encrypted";
    public const string OfficeOdfMacro = "office.odf-macro";
    public const string OfficeMalformed = "office.malformed";
    public const string OfficeOdfMimetype = "office.odf-mimetype";
    public const string OfficeHybridPackage = "office.hybrid-package";
    public const string Ole2Malformed = "ole2.malformed";
    public const string Ole2TooManyEntries = "ole2.too-many-entries";

    // RTF
    public const string RtfObject = "rtf.object";
    public const string RtfRiskyObjectClass = "rtf.risky-object-class";
    public const string RtfObjectAutoUpdate = "rtf.object-autoupdate";
    public const string RtfDde = "rtf.dde";
    public const string RtfMalformed = "rtf.malformed";

    // Text and HTML
    public const string CsvDdeInjection = "csv.dde-injection";
    public const string CsvExternalFetch = "csv.external-fetch";

    /// <summary>A file uuencoded in text; decoded and inspected as a child.</summary>
    public const string TextUuencoded = "text.uuencoded-file";
    public const string HtmlSmuggling = "html.smuggling";

    /// <summary>HL7 v3 encapsulated data (a CDA's base64 PDF) decoded and inspected as a child.</summary>
    public const string XmlEncapsulatedData = "xml.encapsulated-data";
    public const string FhirAttachmentData = "fhir.attachment-data";

    /// <summary>FHIR JSON that does not parse past a point: what could not be read was not inspected.</summary>
    public const string FhirMalformed = "fhir.malformed";
    public const string Hl7EncapsulatedData = "hl7v2.encapsulated-data";

    // Mail
    public const string MailMalformed = "mail.malformed";
    public const string MailHtmlSmuggling = "mail.html-smuggling";
    public const string MailSpfFail = "mail.spf-fail";
    public const string MailDkimFail = "mail.dkim-fail";
    public const string MailDmarcFail = "mail.dmarc-fail";
    public const string MailDisplayNameSpoof = "mail.display-name-spoof";
    public const string MailLinkIp = "mail.link-ip";
    public const string MailLinkPunycode = "mail.link-punycode";
    public const string MailLinkMixedScript = "mail.link-mixed-script";
    public const string MailLinkLookalike = "mail.link-lookalike";
    public const string MailLinksUnchecked = "mail.links-unchecked";
    public const string MailAttachmentTypeMismatch = "mail.attachment-type-mismatch";
    public const string MailDoubleExtension = "mail.double-extension";
    public const string MailDangerousExtension = "mail.dangerous-extension";
    public const string MailFilenameRtlo = "mail.filename-rtlo";

    /// <summary>Encrypted mail content (S/MIME enveloped data, PGP/MIME) or a fragment of a split message: not inspectable here.</summary>
    public const string MailEncrypted = "mail.encrypted";
    public const string MailPartial = "mail.partial";
    public const string MailAmbiguousHeader = "mail.ambiguous-header";
}
