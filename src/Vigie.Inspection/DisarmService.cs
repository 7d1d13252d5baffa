using Vigie.Inspection.Engine;

namespace Vigie.Inspection;

/// <summary>What disarm did to one object.</summary>
public sealed record DisarmResult(string ContentType, IReadOnlyList<DisarmAction> Actions);

/// <summary>Identifies content by its bytes and hands it to the disarmer that understands it.</summary>
public sealed class DisarmService(IEnumerable<IDisarmer> disarmers)
{
    private readonly IDisarmer[] _disarmers = [.. disarmers];

    public bool CanDisarm(ContentSource content) => Find(Inspector.Identify(content)) is not null;

    /// <summary>Writes a sanitised copy to <paramref name="output"/>. Throws <see cref="DisarmException"/> when no safe copy can be made, NotSupportedException for types without a disarmer.</summary>
    public async ValueTask<DisarmResult> DisarmAsync(ContentSource content, Stream output, DisarmOptions? options = null, CancellationToken cancellationToken = default)
    {
        var type = Inspector.Identify(content);
        var disarmer = Find(type) ?? throw new NotSupportedException($"no disarmer handles {type} content");
        using var activity = InspectionTelemetry.ActivitySource.StartActivity("disarm");
        activity?.SetTag("vigie.content_type", type.ToString());
        var actions = await disarmer.DisarmAsync(content, output, options ?? new DisarmOptions(), cancellationToken).ConfigureAwait(false);
        activity?.SetTag("vigie.disarm_actions", actions.Count);
        return new DisarmResult(type.ToString(), actions);
    }

    private IDisarmer? Find(ContentType type) => _disarmers.FirstOrDefault(d => d.CanDisarm(type));
}
