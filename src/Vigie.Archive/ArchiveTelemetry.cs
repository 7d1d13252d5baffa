using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vigie.Archive;

internal static class ArchiveTelemetry
{
    public const string Name = "Vigie.Archive";

    public static readonly ActivitySource Source = new(Name);

    public static readonly Meter Meter = new(Name);

    public static readonly Counter<long> ObjectsCommitted = Meter.CreateCounter<long>("vigie.archive.objects.committed", "{object}");

    public static readonly Counter<long> ObjectsDeduplicated = Meter.CreateCounter<long>("vigie.archive.objects.deduplicated", "{object}",
        "Commits whose content was already stored.");

    public static readonly Counter<long> ObjectsRepaired = Meter.CreateCounter<long>("vigie.archive.objects.repaired", "{object}",
        "Stored copies found damaged when the same content arrived again, replaced by the new copy.");

    public static readonly Counter<long> ObjectsQuarantined = Meter.CreateCounter<long>("vigie.archive.objects.quarantined", "{object}");

    public static readonly Counter<long> BytesSpooled = Meter.CreateCounter<long>("vigie.archive.spool.bytes", "By");

    /// <summary>From the start of an object's file sync to its folder synced: the durable part of a commit.</summary>
    public static readonly Histogram<double> CommitSyncDuration = Meter.CreateHistogram<double>("vigie.archive.commit.sync", "ms");

    /// <summary>fsync calls, by kind (file, directory, or data only): each one waits for the disk, so this is what a commit costs.</summary>
    public static readonly Counter<long> Syncs = Meter.CreateCounter<long>("vigie.archive.fsyncs", "{call}", "fsync calls, by kind (file, directory, data).");

    /// <summary>Commits made durable in a landing slot (one data flush) rather than by the file, rename and folder flushes.</summary>
    public static readonly Counter<long> ObjectsLanded = Meter.CreateCounter<long>("vigie.archive.objects.landed", "{object}",
        "Commits made durable in a landing slot.");

    public static readonly Counter<long> ObjectsMovedFromLanding = Meter.CreateCounter<long>("vigie.archive.landing.moved", "{object}",
        "Landed objects moved to objects/ at an idle moment.");

    public static readonly Counter<long> IntegrityFailures = Meter.CreateCounter<long>("vigie.archive.integrity.failures", "{object}");
}
