namespace Vigie.Archive.Storage;

/// <summary>Why an object could not be read or verified. Scrub groups them into foreign, corrupted and missing.</summary>
public enum ObjectProblem
{
    /// <summary>No such file.</summary>
    NotFound,

    /// <summary>The file does not start with the object magic: something else replaced it (the ransomware case).</summary>
    NotOurFormat,

    /// <summary>Our magic, but a format version or algorithm this build does not know.</summary>
    UnsupportedVersion,

    /// <summary>Header fields out of range (segment size, slot layout, reserved bytes).</summary>
    InvalidHeader,

    /// <summary>Every key slot names a key-encryption key this node does not hold: encrypted by someone else.</summary>
    UnknownKey,

    /// <summary>A key slot names one of our keys but its wrapped data key does not authenticate.</summary>
    KeyUnwrapFailed,

    /// <summary>The file is shorter than its header and one segment and trailer, or its length fits no layout.</summary>
    Truncated,

    /// <summary>A segment does not authenticate: altered, moved, from another object, or the file was cut or extended.</summary>
    SegmentAuthenticationFailed,

    /// <summary>The sealed trailer does not authenticate (altered, truncated or extended file).</summary>
    TrailerAuthenticationFailed,

    /// <summary>The trailer's length or segment count disagrees with the file (or the index).</summary>
    LengthMismatch,

    /// <summary>The decrypted content does not hash to the trailer's SHA-256.</summary>
    ContentHashMismatch,

    /// <summary>The content is intact but is not the object its name says (files swapped or renamed).</summary>
    IdMismatch,

    /// <summary>The object is larger than the configured limit.</summary>
    TooLarge,

    /// <summary>The file cannot be read: its permissions were changed.</summary>
    Unreadable,

    /// <summary>
    /// A quarantined object where an archive object was expected (its data key is wrapped for quarantine, or, before the
    /// first start since 2026-12-07, the index records its id as quarantined): copied into the archive by someone else.
    /// </summary>
    Quarantined,
}

/// <summary>An object that failed to read or verify, with the reason and where (segment, byte offset in the file).</summary>
public sealed class ObjectFormatException : Exception
{
    public ObjectFormatException(ObjectProblem problem, string message, string? location = null, long? segment = null, long? offset = null,
        Exception? inner = null)
        : base(Describe(problem, message, location, segment, offset), inner)
    {
        Problem = problem;
        Location = location;
        Segment = segment;
        Offset = offset;
    }

    public ObjectProblem Problem { get; }

    /// <summary>The object (id or quarantine id), never a file content.</summary>
    public string? Location { get; }

    public long? Segment { get; }

    public long? Offset { get; }

    /// <summary>True when the file is not ours at all, is under a key we do not hold, or is a quarantined object put in the archive.</summary>
    public bool IsForeign => Problem is ObjectProblem.NotOurFormat or ObjectProblem.UnknownKey or ObjectProblem.Quarantined;

    private static string Describe(ObjectProblem problem, string message, string? location, long? segment, long? offset)
    {
        var where = location is null ? "" : $" [{location}";
        if (location is not null)
        {
            where += segment is null ? "" : $", segment {segment}";
            where += offset is null ? "" : $", offset {offset}";
            where += "]";
        }

        return $"{problem}: {message}{where}";
    }
}
