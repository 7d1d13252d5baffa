namespace Vigie.Inspection;

/// <summary>Disarm cannot produce a safe copy of this content (encrypted, unreadable): the original must be refused or quarantined.</summary>
public sealed class DisarmException(string message) : Exception(message);
