namespace Vigie.Gateway.Dimse;

/// <summary>
/// Whether the node is turning every association away for now (its audit trail or the policy's data out of reach: a
/// database locked or restarting), for /health: the listener is up, yet no modality can store.
/// </summary>
public sealed class NegotiationStatus
{
    private readonly FailureSpell _spell = new(TimeSpan.FromMinutes(2));

    internal void Refused(DateTimeOffset at, string reason) => _spell.Failed(at, reason);

    internal void Decided() => _spell.Succeeded();

    /// <summary>The database answers again: the next refusal is a new outage, whatever no association has told yet.</summary>
    public void DatabaseAnswers() => _spell.Settle();

    /// <summary>Since when, until when, and why, when the last association requests were refused and none decided since (within 2 minutes).</summary>
    public (DateTimeOffset Since, DateTimeOffset Last, string Reason)? Refusing(DateTimeOffset now) =>
        _spell.Current(now) is { } spell ? (spell.Since, _spell.LastFailure, spell.Reason) : null;
}
