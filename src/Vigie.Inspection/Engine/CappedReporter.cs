namespace Vigie.Inspection.Engine;

/// <summary>Reports through a context, keeping at most a few findings per rule and summarising the rest (a form with 5,000 fields does not need 5,000 findings).</summary>
internal sealed class CappedReporter(InspectionContext context, int perRule = 10)
{
    private readonly Dictionary<string, (int Count, Severity Worst)> _counts = new(StringComparer.Ordinal);

    public bool Report(string rule, Severity severity, string message, long? offset = null)
    {
        _counts.TryGetValue(rule, out var entry);
        _counts[rule] = (entry.Count + 1, entry.Count == 0 || severity > entry.Worst ? severity : entry.Worst);
        if (entry.Count >= perRule)
        {
            return false;
        }

        context.Report(rule, severity, message, offset);
        return true;
    }

    public bool Seen(string rule) => _counts.ContainsKey(rule);

    /// <summary>Adds one finding per rule that went over its cap.</summary>
    public void Flush()
    {
        foreach (var (rule, (count, worst)) in _counts)
        {
            if (count > perRule)
            {
                context.Report(rule, worst, $"{count - perRule} more occurrences of {rule} not listed");
            }
        }
    }
}
