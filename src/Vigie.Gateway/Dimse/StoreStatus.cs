namespace Vigie.Gateway.Dimse;

/// <summary>
/// Whether stores are being refused for a fault of the node's own (A700: the index's database refusing writes, a
/// spool that cannot be written). /health said Healthy while every C-STORE was refused on "permission denied for
/// table archive_instances": the modalities kept their images and retried, and nothing told the administrator.
/// </summary>
public sealed class StoreStatus
{
    private readonly FailureSpell _spell = new(TimeSpan.FromMinutes(10));

    internal void Failed(DateTimeOffset at, string reason) => _spell.Failed(at, reason);

    internal void Stored() => _spell.Succeeded();

    /// <summary>Since when, how many and why, while the last stores failed and none completed since (within 10 minutes).</summary>
    public (DateTimeOffset Since, int Count, string Reason)? Failing(DateTimeOffset now) => _spell.Current(now);
}
