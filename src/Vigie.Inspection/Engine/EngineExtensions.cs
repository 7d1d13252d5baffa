namespace Vigie.Inspection.Engine;

internal static class EngineExtensions
{
    /// <summary>Reports a decompression bomb and tells the engine to stop descending: the verdict is settled.</summary>
    public static void ReportBomb(this InspectionContext context, string rule, string message, long? offset = null)
    {
        (context as EngineContext)?.Session.MarkBomb();
        context.Report(rule, Severity.High, message, offset);
    }

    /// <summary>True once a bomb was found anywhere in this inspection.</summary>
    public static bool BombFound(this InspectionContext context) => (context as EngineContext)?.Session.BombFound ?? false;

    /// <summary>Maps a non-complete extraction to its finding; true when the caller should stop extracting from this container.</summary>
    public static bool ReportExtractionProblem(this InspectionContext context, ExtractionResult result, string name, string bombRule, string malformedRule, long? offset)
    {
        switch (result.Status)
        {
            case ExtractionStatus.Complete:
                return false;
            case ExtractionStatus.RatioExceeded:
                context.ReportBomb(bombRule,
                    $"{name} expands beyond {context.Limits.MaxCompressionRatio}:1 (stopped after {result.Produced} bytes): decompression bomb", offset);
                return true;
            case ExtractionStatus.InnerSizeLimit:
                context.Report(Rules.InnerSizeLimit, Severity.Medium,
                    $"{name} expands beyond the {context.Limits.MaxInnerSize}-byte inner object limit: not inspected", offset);
                return false;
            case ExtractionStatus.BudgetExhausted:
                return true;
            case ExtractionStatus.Failed:
                context.Report(malformedRule, Severity.Medium, $"{name} cannot be decoded ({result.Error}): not inspected", offset);
                return false;
            default:
                return false;
        }
    }
}
