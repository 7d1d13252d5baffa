using Vigie.Archive.Storage;

namespace Vigie.Archive.Index;

/// <summary>A patient as the gateway maps it from a dataset. The index adds Patient ID and its issuer to the sealed attributes.</summary>
public sealed record PatientEntry(string PatientId, string? IssuerOfPatientId, AttributeSet Attributes);

/// <summary>A study: its UID and its study-level attributes (date, accession number, description, referring physician...).</summary>
public sealed record StudyEntry(string StudyInstanceUid, AttributeSet Attributes);

/// <summary>A series: its UID and its series-level attributes (modality, number, description...).</summary>
public sealed record SeriesEntry(string SeriesInstanceUid, AttributeSet Attributes);

/// <summary>An instance: its SOP Instance and SOP Class UIDs and its instance-level attributes.</summary>
public sealed record InstanceEntry(string SopInstanceUid, string SopClassUid, AttributeSet Attributes);

/// <summary>Everything the index records for one stored instance. <paramref name="Source"/> (calling AE, address...) is sealed with the version.</summary>
public sealed record InstanceIndexEntry(
    PatientEntry Patient,
    StudyEntry Study,
    SeriesEntry Series,
    InstanceEntry Instance,
    ObjectId ObjectId,
    long ObjectLength,
    AttributeSet? Source = null);

/// <summary>What a store did to the index.</summary>
public enum IndexOutcome
{
    /// <summary>A SOP Instance UID seen for the first time: version 1.</summary>
    NewInstance,

    /// <summary>A known SOP Instance UID with new content: a new version; the old one stays until retention.</summary>
    NewVersion,

    /// <summary>The same content again for the same instance: nothing changed (idempotent).</summary>
    AlreadyStored,
}

/// <summary>Hierarchy disagreements the index kept as they were, for the gateway to report. The existing links win.</summary>
[Flags]
public enum HierarchyConflict
{
    None = 0,

    /// <summary>The study UID is already filed under another patient.</summary>
    StudyUnderOtherPatient = 1,

    /// <summary>The series UID is already filed under another study.</summary>
    SeriesUnderOtherStudy = 2,

    /// <summary>The SOP Instance UID is already filed under another series.</summary>
    InstanceUnderOtherSeries = 4,
}

public sealed record IndexWriteResult(
    IndexOutcome Outcome,
    long PatientRowId,
    long StudyRowId,
    long SeriesRowId,
    long InstanceRowId,
    int Version,
    HierarchyConflict Conflicts);

/// <summary>A quarantined object as the index records it. The reason and details are sealed.</summary>
public sealed record QuarantineEntry(string QuarantineId, ObjectId ObjectId, long Length, string Reason, DateTimeOffset QuarantinedAt,
    AttributeSet? Details = null);

public sealed record QuarantineRecord(long RowId, string QuarantineId, ObjectId ObjectId, long Length, string Reason,
    DateTimeOffset QuarantinedAt, AttributeSet Details);

/// <summary>One stored version of an instance.</summary>
public sealed record InstanceVersion(int Version, ObjectId ObjectId, long Length, DateTimeOffset StoredAt, DateTimeOffset? SupersededAt);

/// <summary>The current version of an instance as filed: its SOP class, the object holding it and its plaintext length.</summary>
public sealed record StoredInstance(string SopClassUid, ObjectId ObjectId, long Length);

/// <summary>Where the current version of an instance is.</summary>
public sealed record InstanceLocation(long PatientRowId, long StudyRowId, long SeriesRowId, long InstanceRowId, int Version,
    ObjectId ObjectId, long Length);

/// <summary>Counts for <c>vigie stats</c>.</summary>
public sealed record ArchiveStats(long Patients, long Studies, long Series, long Instances, long InstanceVersions, long Objects,
    long ObjectBytes, long Quarantined);
