using Microsoft.Extensions.Options;
using Vigie.Audit.Storage;

namespace Vigie.Audit.Export;

/// <summary>
/// What export sinks' collectors refused for good: listed for the operator, and sent again once the collector has been
/// fixed (a FHIR server's profile relaxed, a size limit raised). An item the collector takes is forgotten; one it
/// refuses again stays, with the new reason.
/// </summary>
public sealed class AuditSetAside
{
    /// <summary>Items read per resend run; a larger backlog takes more runs, each reporting what remains.</summary>
    internal const int MaxPerRun = 100_000;

    private readonly IOptions<AuditOptions> _options;
    private readonly AuditStore _store;
    private readonly AuditLog _log;
    private readonly TimeProvider _time;

    internal AuditSetAside(IOptions<AuditOptions> options, AuditStore store, AuditLog log, TimeProvider time)
    {
        _options = options;
        _store = store;
        _log = log;
        _time = time;
    }

    /// <summary>The sink's set-aside items, entries first, in log order.</summary>
    public async Task<IReadOnlyList<AuditSetAsideItem>> ListAsync(string sinkName, int limit, CancellationToken cancellationToken)
    {
        var sink = Find(sinkName);
        var items = await _store.ReadSetAsideAsync(AuditExportWorker.CursorFor(sink.Name), Math.Clamp(limit, 1, MaxPerRun), cancellationToken).ConfigureAwait(false);
        return items.Select(ToPublic).ToList();
    }

    /// <summary>
    /// Sends each set-aside item again, one at a time, through the sink's own configuration. Stops at the first error
    /// that is not a refusal (the collector down, a timeout): it throws, and what was resent so far stays resent.
    /// </summary>
    public async Task<AuditResendReport> ResendAsync(string sinkName, CancellationToken cancellationToken)
    {
        var options = _options.Value;
        var sinkOptions = Find(sinkName);
        var cursor = AuditExportWorker.CursorFor(sinkOptions.Name);
        var items = await _store.ReadSetAsideAsync(cursor, MaxPerRun, cancellationToken).ConfigureAwait(false);
        var resent = 0;
        var refused = new List<AuditSetAsideItem>();
        await using var sink = AuditExportService.CreateSink(sinkOptions, options.EnterpriseSiteId, options.SourceId);
        foreach (var item in items)
        {
            try
            {
                switch (item.Kind)
                {
                    case SetAsideKind.Entry:
                        // An entry no longer in the log (retention, say) has nothing left to send.
                        if (await _store.ReadEntryAsync(item.Seq, cancellationToken).ConfigureAwait(false) is { } row)
                        {
                            await sink.SendAsync([_log.Factory.ToEntry(row, unseal: _log.Factory.CanUnseal)], cancellationToken).ConfigureAwait(false);
                        }

                        break;
                    case SetAsideKind.TreeHead:
                        if (await _store.FindTreeHeadAsync(TreeHeadLookup.ExactSize, item.Seq, cancellationToken).ConfigureAwait(false) is { } head)
                        {
                            await _store.Database.SyncAsync(cancellationToken).ConfigureAwait(false);
                            await sink.SendTreeHeadAsync(head, cancellationToken).ConfigureAwait(false);
                        }

                        break;
                    default:
                        throw new ArgumentOutOfRangeException(nameof(sinkName), item.Kind, "Unknown set-aside kind.");
                }
            }
            catch (AuditSinkRefusedException e)
            {
                var again = item with { RefusedMs = _time.GetUtcNow().ToUnixTimeMilliseconds(), Reason = AuditExportWorker.Truncate(e.Message) };
                await _store.SetAsideAsync(cursor, [again], cancellationToken).ConfigureAwait(false);
                refused.Add(ToPublic(again));
                continue;
            }

            await _store.ClearSetAsideAsync(cursor, item.Kind, item.Seq, cancellationToken).ConfigureAwait(false);
            resent++;
        }

        var remaining = await _store.CountSetAsideAsync(cursor, cancellationToken).ConfigureAwait(false);
        return new AuditResendReport(sinkOptions.Name, resent, refused, remaining);
    }

    private AuditSinkOptions Find(string sinkName) =>
        _options.Value.Sinks.FirstOrDefault(s => string.Equals(s.Name, sinkName, StringComparison.Ordinal))
        ?? throw new InvalidOperationException(_options.Value.Sinks.Count == 0
            ? $"no audit sink is named {sinkName}: none is configured (Audit:Sinks)"
            : $"no audit sink is named {sinkName} (configured: {string.Join(", ", _options.Value.Sinks.Select(s => s.Name))})");

    private static AuditSetAsideItem ToPublic(SetAsideItem item) =>
        new(AuditStore.KindName(item.Kind), item.Seq, DateTimeOffset.FromUnixTimeMilliseconds(item.RefusedMs), item.Reason);
}

/// <summary>One refused item: an entry by sequence number or a signed tree head by size, when and why it was refused.</summary>
public sealed record AuditSetAsideItem(string Kind, long Sequence, DateTimeOffset RefusedAt, string Reason);

/// <summary>A resend run: how many items the collector took, those it refused again, and how many remain set aside.</summary>
public sealed record AuditResendReport(string Sink, int Resent, IReadOnlyList<AuditSetAsideItem> RefusedAgain, long Remaining);
