namespace Vigie.Inspection.Tests.Dicom;

/// <summary>Collects what an analyser reports and the children it hands over (their first bytes), without running other analysers.</summary>
internal sealed class RecordingContext : InspectionContext
{
    public List<Finding> Findings { get; } = [];

    public List<(string Name, byte[] Head, long Length)> Children { get; } = [];

    public override string InnerPath => "";

    public override int Depth => 0;

    public override InspectionLimits Limits { get; } = new();

    public override ContentType ContentType => ContentType.Dicom;

    public override void Report(string rule, Severity severity, string message, long? offset = null) =>
        Findings.Add(new Finding(rule, severity, message, offset, ""));

    public override ValueTask InspectChildAsync(string name, ContentSource content, CancellationToken cancellationToken)
    {
        var head = new byte[(int)Math.Min(64, content.Length)];
        content.ReadAt(0, head);
        Children.Add((name, head, content.Length));
        return ValueTask.CompletedTask;
    }

    public override bool TryChargeExtraction(long bytes) => true;

    public Severity Worst => Findings.Count == 0 ? Severity.Info : Findings.Max(f => f.Severity);
}
