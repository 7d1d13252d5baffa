using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Vigie.Dicom.Network;

/// <summary>Traces and metrics of the DICOM network layer ("Vigie.Dicom").</summary>
public static class DicomNetworkTelemetry
{
    public const string Name = "Vigie.Dicom";

    public static readonly ActivitySource Source = new(Name);

    private static readonly Meter Meter = new(Name);

    internal static readonly Counter<long> Associations = Meter.CreateCounter<long>("vigie.dicom.associations", description: "Associations by outcome");

    internal static readonly UpDownCounter<long> ActiveAssociations = Meter.CreateUpDownCounter<long>("vigie.dicom.associations.active");

    internal static readonly Counter<long> Messages = Meter.CreateCounter<long>("vigie.dicom.messages", description: "DIMSE requests handled, by command");

    /// <summary>
    /// The metric label of a command field. Any 16-bit value can arrive: a peer sending thousands of unknown ones would
    /// otherwise make a series each, and push the real commands into the exporter's overflow series.
    /// </summary>
    internal static string CommandLabel(DimseCommand field) => Enum.IsDefined(field) ? field.ToString() : "other";

    internal static readonly Counter<long> BytesReceived = Meter.CreateCounter<long>("vigie.dicom.dataset.bytes", unit: "By", description: "Data set bytes received");
}
