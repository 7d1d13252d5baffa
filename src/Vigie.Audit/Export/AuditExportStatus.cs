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

    /// <summary>
    /// The configured sinks; with <paramref name="recorded"/>, also those whose cursor the database holds though the
    /// configuration read here does not name them (`vigie audit sinks` run without the node's config file: before
    /// 2026-12-07 it said none was configured, and exited 0, while the node's export failed). /health keeps to the
    /// configuration: a sink removed from it leaves a cursor behind.
    /// </summary>
    public async Task<IReadOnlyList<AuditSinkStatus>> GetAsync(CancellationToken cancellationToken, bool recorded = false)
    {
        var sinks = _options.Value.Sinks.Where(s => s.Enabled && !string.IsNullOrWhiteSpace(s.Name)).DistinctBy(s => s.Name, StringComparer.Ordinal).ToList();
        var others = new List<string>();
        if (recorded)
        {
            var prefix = AuditExportWorker.CursorFor("");
            others.AddRange((await _store.ListCursorsAsync(prefix, cancellationToken).ConfigureAwait(false)).Select(c => c[prefix.Length..])
                .Where(n => !sinks.Any(s => string.Equals(s.Name, n, StringComparison.Ordinal))));
        }

        if (sinks.Count == 0 && others.Count == 0)
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

        foreach (var other in others)
        {
            var name = AuditExportWorker.CursorFor(other);
            if (await _store.ReadCursorStatusAsync(name, cancellationToken).ConfigureAwait(false) is { } c)
            {
                status.Add(new AuditSinkStatus(other, null, Math.Max(0, size - c.NextSeq), c.Attempts, DateTimeOffset.FromUnixTimeMilliseconds(c.UpdatedMs),
                    c.Attempts > 0 ? c.LastError : null, await _store.CountSetAsideAsync(name, cancellationToken).ConfigureAwait(false)));
            }
        }

        return status;
    }
}

/// <summary>
/// One sink: entries waiting, consecutive failed attempts (0 once a batch goes through), when its cursor last moved or
/// failed, the last error while it fails (network and server errors only, never entry content), and how many entries
/// and tree heads its collector refused for good (set aside until resent). Kind is null for a sink the database
/// knows of that the configuration read does not name.
/// </summary>
public sealed record AuditSinkStatus(string Name, AuditSinkKind? Kind, long Waiting, int FailedAttempts, DateTimeOffset? LastActivity, string? LastError,
    long SetAside = 0);
