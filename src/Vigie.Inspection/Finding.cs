namespace Vigie.Inspection;

/// <summary>How bad a finding is. Info is never a threat: clean references may carry info findings, nothing above.</summary>
public enum Severity
{
    Info = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

/// <summary>
/// One thing an analyser or engine saw. <see cref="Rule"/> is stable (documented in docs/rules.md) so that
/// policies, the risk register and tests can refer to it; <see cref="InnerPath"/> says where inside nested
/// containers ("" for the top level, "mail/attachment[2]:report.zip/macro.docm/word/vbaProject.bin").
/// </summary>
public sealed record Finding(string Rule, Severity Severity, string Message, long? Offset, string InnerPath);
