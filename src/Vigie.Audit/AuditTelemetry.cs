using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vigie.Audit;

internal static class AuditTelemetry
{
    public const string Name = "Vigie.Audit";
    public static readonly ActivitySource ActivitySource = new(Name);
    public static readonly Meter Meter = new(Name);
    public static readonly Counter<long> EntriesAppended = Meter.CreateCounter<long>("vigie.audit.entries_appended", "{entry}");
    public static readonly Histogram<int> BatchSize = Meter.CreateHistogram<int>("vigie.audit.append_batch_size", "{entry}");
    public static readonly Counter<long> SpilledRecords = Meter.CreateCounter<long>("vigie.audit.spilled_records", "{record}",
        "Records kept in the local spill while the database was out of reach");
    public static readonly Counter<long> TreeHeadsSigned = Meter.CreateCounter<long>("vigie.audit.tree_heads_signed", "{head}");
    public static readonly Counter<long> Exported = Meter.CreateCounter<long>("vigie.audit.exported", "{entry}");
    public static readonly Counter<long> TreeHeadsWitnessed = Meter.CreateCounter<long>("vigie.audit.tree_heads_witnessed", "{head}",
        "Signed tree heads sent to a collector, the copy kept outside the database.");
    public static readonly Counter<long> SetAside = Meter.CreateCounter<long>("vigie.audit.export_set_aside", "{item}",
        "Entries and signed tree heads a collector refused for good, set aside for resending.");
    public static readonly Counter<long> ExportFailures = Meter.CreateCounter<long>("vigie.audit.export_failures", "{attempt}");
    public static readonly Counter<long> VerificationProblems = Meter.CreateCounter<long>("vigie.audit.verification_problems", "{problem}");
}
