using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vigie.Inspection.Engine;

/// <summary>The module's one ActivitySource and one Meter, both named "Vigie.Inspection".</summary>
internal static class InspectionTelemetry
{
    public const string Name = "Vigie.Inspection";

    public static readonly ActivitySource ActivitySource = new(Name);

    public static readonly Meter Meter = new(Name);

    public static readonly Counter<long> Inspections = Meter.CreateCounter<long>("vigie.inspection.inspections", description: "Top-level objects inspected, by verdict.");

    public static readonly Counter<long> Objects = Meter.CreateCounter<long>("vigie.inspection.objects", description: "Objects and inner objects inspected.");

    public static readonly Counter<long> Bytes = Meter.CreateCounter<long>("vigie.inspection.bytes", unit: "By", description: "Bytes of top-level objects inspected.");

    public static readonly Counter<long> Extracted = Meter.CreateCounter<long>("vigie.inspection.extracted", unit: "By", description: "Bytes decompressed or decoded from containers.");

    public static readonly Counter<long> Findings = Meter.CreateCounter<long>("vigie.inspection.findings", description: "Findings, by rule.");

    public static readonly Histogram<double> Duration = Meter.CreateHistogram<double>("vigie.inspection.duration", unit: "s", description: "Wall-clock time of one top-level inspection.");
}
