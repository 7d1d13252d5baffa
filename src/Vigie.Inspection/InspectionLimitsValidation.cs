using Microsoft.Extensions.Options;

namespace Vigie.Inspection;

/// <summary>
/// Checks the inspection limits when a node or command starts. Zero or negative limits were taken as they came until
/// 2026-12-06: MaxFindings 0 answered every threat A700 (an exception, no quarantine, no alert), MaxObjects 0 refused
/// every object.
/// </summary>
public sealed class InspectionLimitsValidation : IValidateOptions<InspectionLimits>
{
    public ValidateOptionsResult Validate(string? name, InspectionLimits options)
    {
        const string at = InspectionLimits.Section;
        var problems = new List<string>();
        void AtLeast(string setting, double value, double least)
        {
            if (value < least || double.IsNaN(value))
            {
                problems.Add($"{at}:{setting} {value} is below {least}");
            }
        }

        AtLeast(nameof(options.MaxDepth), options.MaxDepth, 1);
        AtLeast(nameof(options.MaxObjects), options.MaxObjects, 1);
        AtLeast(nameof(options.MaxInnerSize), options.MaxInnerSize, 1);
        AtLeast(nameof(options.MaxTotalExtracted), options.MaxTotalExtracted, 1);
        AtLeast(nameof(options.MaxCompressionRatio), options.MaxCompressionRatio, 1);
        AtLeast(nameof(options.InMemoryThreshold), options.InMemoryThreshold, 0);
        AtLeast(nameof(options.RatioCheckFloor), options.RatioCheckFloor, 0);
        AtLeast(nameof(options.MaxEntries), options.MaxEntries, 1);
        AtLeast(nameof(options.MaxFindings), options.MaxFindings, 1);
        AtLeast(nameof(options.MaxInMemoryTotal), options.MaxInMemoryTotal, 0);
        AtLeast(nameof(options.BatchParallelism), options.BatchParallelism, 0);
        // A timer cannot wait past 49 days; a day is already far past any object's inspection.
        if (options.Timeout <= TimeSpan.Zero || options.Timeout > TimeSpan.FromDays(1))
        {
            problems.Add($"{at}:Timeout {options.Timeout} is not between 0 and 1 day");
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
