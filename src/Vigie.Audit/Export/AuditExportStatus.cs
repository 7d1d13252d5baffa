using Microsoft.Extensions.Options;
using Vigie.Audit.Storage;

namespace Vigie.Audit.Export;

/// <summary>
/// Where each export sink stands: entries not yet sent and the failures of the last attempts. A SIEM that has been
/// unreachable for a day means a day of accesses the security officer's tools have not seen; /health says so.
/// </summary>
public sealed class AuditExportStatus
{
    private readonly IOptions<AuditOptions> _options;
    private readonly AuditStore _store;

    internal AuditExportStatus(IOptions<AuditOptions> options, AuditStore store)
    {
        _options = options;
        _store = store;
    }

    public async Task<IReadOnlyList<AuditSinkStatus>> GetAsync(CancellationToken cancellationToken)
    {
        var sinks = _options.Value.Sinks.Where(s => s.Enabled && !string.IsNullOrWhiteSpace(s.Name)).DistinctBy(s => s.Name, StringComparer.Ordinal).ToList();
        if (sinks.Count == 0)
        {
            return [];
        }

        var size = (await _store.ReadStateAsync(cancellationToken).ConfigureAwait(false)).TreeSize;
        var status = new List<AuditSinkStatus>(sinks.Count);
        foreach (var sink in sinks)
        {
            var name = AuditExportWorker.CursorFor(sink.Name);
            var cursor = await _store.ReadCursorStatusAsync(name, cancellationToken).ConfigureAwait(false);
            var setAside = await _store.CountSetAsideAsync(name, cancellationToken).ConfigureAwait(false);
            status.Add(cursor is { } c
                ? new AuditSinkStatus(sink.Name, sink.Kind, Math.Max(0, size - c.NextSeq), c.Attempts, DateTimeOffset.FromUnixTimeMilliseconds(c.UpdatedMs),
                    c.Attempts > 0 ? c.LastError : null, setAside)
                : new AuditSinkStatus(sink.Name, sink.Kind, sink.StartAtEnd ? 0 : size, 0, null, null, setAside));
        }

        return status;
    }
}

/// <summary>
/// One sink: entries waiting, consecutive failed attempts (0 once a batch goes through), when its cursor last moved or
/// failed, the last error while it fails (network and server errors only, never entry content), and how many entries
/// and tree heads its collector refused for good (set aside until resent).
/// </summary>
public sealed record AuditSinkStatus(string Name, AuditSinkKind Kind, long Waiting, int FailedAttempts, DateTimeOffset? LastActivity, string? LastError,
    long SetAside = 0);
