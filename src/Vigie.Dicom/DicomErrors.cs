namespace Vigie.Dicom;

/// <summary>Why a dataset could not be read. Stable names: they map to DIMSE statuses, problem types and exit codes.</summary>
public enum DicomErrorKind
{
    /// <summary>Neither a Part 10 file nor a plausible headerless dataset.</summary>
    NotDicom,

    /// <summary>The data ends inside an element, an item or a sequence.</summary>
    Truncated,

    /// <summary>A declared length goes beyond the end of the data or of the enclosing item.</summary>
    LengthExceedsRemaining,

    /// <summary>An explicit VR that is not a VR of the standard.</summary>
    InvalidVR,

    /// <summary>The dataset is not encoded the way its transfer syntax says.</summary>
    TransferSyntaxMismatch,

    /// <summary>An item or delimiter where an element was expected, or the reverse.</summary>
    InvalidStructure,

    /// <summary>Undefined length on an element that cannot have one.</summary>
    UndefinedLengthNotAllowed,

    /// <summary>File meta information that cannot be used.</summary>
    InvalidMetaInformation,

    /// <summary>Sequences nested deeper than the configured limit.</summary>
    DepthLimitExceeded,

    /// <summary>More elements, items or fragments than the configured limit.</summary>
    ElementLimitExceeded,

    /// <summary>More bytes than the configured limit (after inflation for deflated syntaxes).</summary>
    SizeLimitExceeded,

    /// <summary>A value too large to be held in memory by the configured limit.</summary>
    ValueTooLarge,

    /// <summary>The deflate stream of a deflated transfer syntax is corrupt.</summary>
    InvalidDeflateStream,

    /// <summary>Compressed pixel data that cannot be decoded, or image attributes that do not describe it.</summary>
    InvalidPixelData,
}

/// <summary>
/// A dataset could not be read. Carries where (byte offset in the source, or in the inflated stream for deflated
/// syntaxes) and in which element (tag path such as "(0040,A730)[1].(0008,0100)").
/// </summary>
public sealed class DicomParseException : Exception
{
    public DicomParseException(DicomErrorKind kind, string reason, long offset, string tagPath, Exception? inner = null)
        : base(Format(reason, offset, tagPath), inner)
    {
        Kind = kind;
        Reason = reason;
        Offset = offset;
        TagPath = tagPath;
    }

    public DicomErrorKind Kind { get; }

    public string Reason { get; }

    public long Offset { get; }

    public string TagPath { get; }

    private static string Format(string reason, long offset, string tagPath) =>
        tagPath.Length == 0 ? $"{reason} at offset {offset}" : $"{reason} at offset {offset} in {tagPath}";
}

/// <summary>Anomalies that do not stop reading but that a strict reader, a security analyser or a human wants to know.</summary>
public enum DicomWarningKind
{
    OddLength,
    OutOfOrderTag,
    DuplicateTag,
    ConflictingDuplicateTag,
    GroupLengthMismatch,
    MetaInformationImplicitVR,
    MetaInformationMissing,
    TransferSyntaxMissing,
    UnknownTransferSyntax,
    StrayDelimiter,
    NonZeroDelimiterLength,
    NonZeroReservedBytes,
    UnknownVRReinterpreted,
    MetaElementInDataset,
    DicmPrefixWithoutPreamble,
    UnknownCharacterSet,
    UndefinedLengthUnknown,
    LengthBeyondEnd,
    EndedInsideItem,
}

public sealed record DicomWarning(DicomWarningKind Kind, string Message, long Offset, string TagPath);
