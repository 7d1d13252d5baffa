namespace Vigie.Inspection;

/// <summary>The overall decision for one object.</summary>
public enum VerdictKind
{
    /// <summary>No finding above Info.</summary>
    Clean,

    /// <summary>At least one Low or Medium finding: hold for a human or refuse, per policy.</summary>
    Suspicious,

    /// <summary>At least one High or Critical finding.</summary>
    Malicious,

    /// <summary>The inspection could not complete (I/O failure, engine unavailable): never treated as clean.</summary>
    Error,
}

/// <summary>What inspection concluded about one object, with every finding that led there.</summary>
public sealed record Verdict(VerdictKind Kind, IReadOnlyList<Finding> Findings, string ContentType)
{
    /// <summary>Objects inspected, the top-level one included.</summary>
    public int Objects { get; init; }

    /// <summary>Why inspection could not finish for lack of resources (disk, memory), when that happened: an Error verdict that is no finding about the content.</summary>
    public string? ResourceShortage { get; init; }

    /// <summary>Bytes decompressed or decoded from containers.</summary>
    public long ExtractedBytes { get; init; }

    public TimeSpan Elapsed { get; init; }

    /// <summary>SHA-256 of the inspected object (lower-case hex) when an engine computed it anyway; null otherwise.</summary>
    public string? Sha256 { get; init; }

    public static VerdictKind KindFor(IEnumerable<Finding> findings, bool completed)
    {
        if (!completed)
        {
            return VerdictKind.Error;
        }

        var worst = Severity.Info;
        foreach (var finding in findings)
        {
            if (finding.Severity > worst)
            {
                worst = finding.Severity;
            }
        }

        return worst switch
        {
            Severity.Info => VerdictKind.Clean,
            Severity.Low or Severity.Medium => VerdictKind.Suspicious,
            Severity.High or Severity.Critical => VerdictKind.Malicious,
            _ => throw new ArgumentOutOfRangeException(nameof(findings)),
        };
    }
}
