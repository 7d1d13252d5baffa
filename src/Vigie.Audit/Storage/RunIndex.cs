using Vigie.Audit.Verification;

namespace Vigie.Audit.Storage;

/// <summary>
/// A sparse index over the log: a row in <paramref name="Table"/> wherever <paramref name="EntryValue"/> changes from
/// the entry before. Every entry belongs to exactly one run, from its start to the next run's start.
/// </summary>
internal sealed record RunIndex(string Table, string Column, string EntryValue, AuditProblemKind Kind, string Name, string Noun, string Miss)
{
    public static readonly RunIndex Patient = new("audit_patient_run", "patient_ref", "patient_ref", AuditProblemKind.PatientIndexMismatch,
        "the patient index", "patient", "the patient's view would miss entries");

    public static readonly RunIndex Minute = new("audit_minute_run", "minute", $"time_ms / {AuditStore.MinuteMs}", AuditProblemKind.TimeIndexMismatch,
        "the time index", "minute", "a search by time would miss entries");

    public static readonly IReadOnlyList<RunIndex> All = [Patient, Minute];

    /// <summary>The insert's conflict clause (see AuditStore.NodeConflict).</summary>
    public string Conflict => $"ON CONFLICT (seq) DO UPDATE SET {Column} = excluded.{Column}";

    public string Orphan => $"{Name} has a run starting at an entry that does not exist";

    public string Other => $"{Name}'s run starting at this entry names another {Noun}";

    public string Missing => $"the {Noun} changes at this entry but {Name} has no run starting there ({Miss}; "
        + "a node of a release before 2026-12-06 writing to an upgraded trail leaves such gaps: 'vigie audit reindex' rebuilds the indexes from the entries)";
}
