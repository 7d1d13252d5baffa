using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit.Model;
using Vigie.Audit.Storage;
using Vigie.Core;
using Vigie.Core.Outbox;

namespace Vigie.Audit.Export;

/// <summary>
/// Exports one sink from its durable cursor: the log itself is the outbox. Ingest never waits for it. A batch is
/// retried with exponential back-off (with jitter) until it goes through; the cursor moves only after success,
/// so delivery is at least once and resumes after a restart. Entries the collector refuses for good, while it takes
/// the others, are set aside (and shown by /health) rather than holding back every entry after them. One node at a
/// time runs a sink (database lease).
/// </summary>
internal sealed class AuditExportWorker(AuditSinkOptions options, IAuditSink sink, AuditStore store, EntryFactory factory, AuditSignal signal,
    LeaseStore leases, TimeProvider time, string holder, ILogger logger)
{
    private long _witnessedSize;

    /// <summary>How long the worker holds its sink's lease while it sends: the longest an honest holder of it takes.</summary>
    internal TimeSpan LeaseLength { get; } = TimeSpan.FromTicks(Math.Max(options.SendTimeout.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
    private string? _loggedRefusal;

    public string CursorName => CursorFor(options.Name);

    public string SinkName => options.Name;

    /// <summary>The cursor (and set-aside) name of the sink called <paramref name="sinkName"/>.</summary>
    internal static string CursorFor(string sinkName) => "sink:" + sinkName;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var attempts = 0;
        var lease = LeaseLength;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (!await leases.TryAcquireAsync("audit-" + CursorName, holder, lease, cancellationToken).ConfigureAwait(false))
                {
                    await Task.Delay(options.PollInterval, time, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var sent = await RunOnceAsync(cancellationToken).ConfigureAwait(false);
                _loggedRefusal = null;
                if (attempts > 0)
                {
                    logger.LogInformation("Audit sink {Sink} recovered after {Attempts} failed attempts", options.Name, attempts);
                }

                attempts = 0;
                if (sent == 0)
                {
                    await signal.WaitAppendedAsync(options.PollInterval, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                attempts++;
                AuditTelemetry.ExportFailures.Add(1);
                var delay = Backoff(attempts);
                // Network and server errors only: entry content never goes into the message. An exposed export file is
                // said once, as an error (it stays so until the operator acts), not at every retry.
                if (ex is AuditExportFileExposedException && ex.Message != _loggedRefusal)
                {
                    _loggedRefusal = ex.Message;
                    logger.LogError("Audit sink {Sink} writes nothing: {Reason}", options.Name, ex.Message);
                }
                else if (ex is AuditExportFileExposedException)
                {
                    logger.LogDebug("Audit sink {Sink} still refuses its file (attempt {Attempts})", options.Name, attempts);
                }
                else
                {
                    logger.LogWarning("Audit sink {Sink} failed (attempt {Attempts}), retrying in {Delay}: {Error}", options.Name, attempts, delay, ExceptionCauses.Describe(ex));
                }

                try
                {
                    var cursor = await store.ReadCursorAsync(CursorName, cancellationToken).ConfigureAwait(false);
                    await store.SaveCursorAsync(CursorName, cursor?.NextSeq ?? 0, attempts, Truncate(ex is AuditExportFileExposedException ? ex.Message : ex.GetType().Name + ": " + ExceptionCauses.Describe(ex)),
                        time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken).ConfigureAwait(false);
                }
                catch (Exception inner) when (inner is not OperationCanceledException)
                {
                    logger.LogDebug(inner, "Could not record the failure of audit sink {Sink}", options.Name);
                }

                try
                {
                    await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
    }

    /// <summary>Sends the next batch after the cursor; returns how many entries went out.</summary>
    public async ValueTask<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var cursor = await store.ReadCursorAsync(CursorName, cancellationToken).ConfigureAwait(false);
        long next;
        if (cursor is null)
        {
            next = options.StartAtEnd ? (await store.ReadStateAsync(cancellationToken).ConfigureAwait(false)).TreeSize : 0;
            await store.SaveCursorAsync(CursorName, next, 0, null, time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            next = cursor.Value.NextSeq;
        }

        var rows = await store.ReadEntriesAsync(next, Math.Max(1, options.BatchSize), cancellationToken).ConfigureAwait(false);
        if (rows.Count == 0)
        {
            await WitnessTreeHeadAsync(cancellationToken).ConfigureAwait(false);
            return 0;
        }

        var entries = new List<AuditEntry>(rows.Count);
        foreach (var row in rows)
        {
            if (row.Seq != next + entries.Count)
            {
                // A hole in the log: export stops rather than skip silently; verification names the entry.
                throw new AuditIntegrityException($"Entry {next + entries.Count} is missing from the log.");
            }

            entries.Add(factory.ToEntry(row, unseal: factory.CanUnseal));
        }

        // Ingest commits do not wait for the disk: nothing leaves the node that a power cut could still take back.
        await store.Database.SyncAsync(cancellationToken).ConfigureAwait(false);
        using var activity = AuditTelemetry.ActivitySource.StartActivity("audit.export");
        activity?.SetTag("vigie.audit.sink", options.Name);
        var refused = new List<SetAsideItem>();
        var accepted = await SendIsolatingRefusalsAsync(entries, refused, cancellationToken).ConfigureAwait(false);
        if (refused.Count > 0)
        {
            if (accepted == 0 && !await StillTakesWhatItTookAsync(next, cancellationToken).ConfigureAwait(false))
            {
                // A collector that takes nothing is misconfigured rather than every event wrong: retried, never drained
                // into the set-aside table. One that still takes an earlier entry refuses these for what they are (a
                // burst of one kind of event longer than a batch), so they are set aside.
                throw new AuditSinkRefusedException($"The collector refused every entry of the batch and an entry it took before ({refused[0].Reason})",
                    HttpStatusCode.BadRequest);
            }

            await store.SetAsideAsync(CursorName, refused, CancellationToken.None).ConfigureAwait(false);
            AuditTelemetry.SetAside.Add(refused.Count);
            logger.LogError("Audit sink {Sink} refused {Count} entries for good (first: entry {Sequence}, {Reason}); they are set aside until `vigie audit resend --sink {Sink}`",
                options.Name, refused.Count, refused[0].Seq, refused[0].Reason, options.Name);
        }

        // What the collector took is recorded whatever the stop says: a cursor left behind sends it again.
        await store.SaveCursorAsync(CursorName, next + entries.Count, 0, null, time.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None).ConfigureAwait(false);
        AuditTelemetry.Exported.Add(accepted);
        await WitnessTreeHeadAsync(cancellationToken).ConfigureAwait(false);
        return entries.Count;
    }

    /// <summary>
    /// Sends the batch; when the collector refuses it, halves it until each refused entry stands alone (a transaction
    /// bundle is refused whole for one bad event), and returns how many entries went through.
    /// </summary>
    private async ValueTask<int> SendIsolatingRefusalsAsync(IReadOnlyList<AuditEntry> entries, List<SetAsideItem> refused, CancellationToken cancellationToken)
    {
        try
        {
            await sink.SendAsync(entries, cancellationToken).ConfigureAwait(false);
            return entries.Count;
        }
        catch (AuditSinkRefusedException e)
        {
            if (entries.Count == 1)
            {
                refused.Add(new SetAsideItem(SetAsideKind.Entry, entries[0].Sequence, time.GetUtcNow().ToUnixTimeMilliseconds(), Truncate(e.Message)));
                return 0;
            }

            var half = entries.Count / 2;
            var first = await SendIsolatingRefusalsAsync(entries.Take(half).ToList(), refused, cancellationToken).ConfigureAwait(false);
            return first + await SendIsolatingRefusalsAsync(entries.Skip(half).ToList(), refused, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Whether the collector still takes one of the last entries before <paramref name="before"/> that it was not seen
    /// refusing. Sending it again is harmless (its resource id is stable, so the copy is replaced), and it tells a
    /// collector that refuses some content from one that refuses everything.
    /// </summary>
    private async ValueTask<bool> StillTakesWhatItTookAsync(long before, CancellationToken cancellationToken)
    {
        var refused = (await store.ReadSetAsideAsync(CursorName, 10_000, cancellationToken).ConfigureAwait(false))
            .Where(i => i.Kind == SetAsideKind.Entry).Select(i => i.Seq).ToHashSet();
        for (var seq = before - 1; seq >= Math.Max(0, before - 64); seq--)
        {
            if (refused.Contains(seq))
            {
                continue;
            }

            if (await store.ReadEntryAsync(seq, cancellationToken).ConfigureAwait(false) is not { } row)
            {
                return false;
            }

            try
            {
                await sink.SendAsync([factory.ToEntry(row, unseal: factory.CanUnseal)], cancellationToken).ConfigureAwait(false);
                return true;
            }
            catch (AuditSinkRefusedException)
            {
                return false;
            }
        }

        return false;
    }

    /// <summary>
    /// Sends each newly signed head once (again after a restart): a copy outside the database is the only thing that
    /// reveals a log rolled back as a whole, heads, nodes and state included.
    /// </summary>
    private async ValueTask WitnessTreeHeadAsync(CancellationToken cancellationToken)
    {
        if (!sink.WitnessesTreeHeads
            || await store.FindTreeHeadAsync(TreeHeadLookup.Latest, 0, cancellationToken).ConfigureAwait(false) is not { } head
            || head.TreeSize <= _witnessedSize)
        {
            return;
        }

        // As for entries: no head leaves the node that a power cut could still take back.
        await store.Database.SyncAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await sink.SendTreeHeadAsync(head, cancellationToken).ConfigureAwait(false);
        }
        catch (AuditSinkRefusedException e)
        {
            if (!await StillTakesWhatItTookAsync(head.TreeSize, cancellationToken).ConfigureAwait(false))
            {
                throw;
            }

            // The next head covers this one's entries: witnessing goes on, and this one waits for a resend.
            await store.SetAsideAsync(CursorName, [new SetAsideItem(SetAsideKind.TreeHead, head.TreeSize, time.GetUtcNow().ToUnixTimeMilliseconds(), Truncate(e.Message))],
                cancellationToken).ConfigureAwait(false);
            AuditTelemetry.SetAside.Add(1);
            logger.LogError("Audit sink {Sink} refused the signed tree head of size {TreeSize} for good ({Reason}); it is set aside until `vigie audit resend --sink {Sink}`",
                options.Name, head.TreeSize, e.Message, options.Name);
            _witnessedSize = head.TreeSize;
            return;
        }

        _witnessedSize = head.TreeSize;
        AuditTelemetry.TreeHeadsWitnessed.Add(1);
    }

    private TimeSpan Backoff(int attempts)
    {
        var min = Math.Max(1, options.MinBackoff.TotalMilliseconds);
        var max = Math.Max(min, options.MaxBackoff.TotalMilliseconds);
        var exponential = Math.Min(max, min * Math.Pow(2, Math.Min(attempts - 1, 30)));
        return TimeSpan.FromMilliseconds(exponential * (0.5 + Random.Shared.NextDouble() / 2));
    }

    internal static string Truncate(string value) => value.Length <= 1000 ? value : value[..1000];
}

/// <summary>Runs one export worker per configured sink.</summary>
internal sealed class AuditExportService(IOptions<AuditOptions> options, AuditStore store, AuditLog log, AuditSignal signal, LeaseStore leases,
    TimeProvider time, ILoggerFactory loggers) : BackgroundService
{
    /// <summary>How long a stop waits for the last entries and the last head to reach the collectors.</summary>
    internal static readonly TimeSpan FinalRoundLimit = TimeSpan.FromSeconds(5);

    private readonly List<(AuditExportWorker Worker, IAuditSink Sink)> _workers = [];
    private readonly string _holder = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";

    /// <summary>
    /// The workers are made before the service runs: ExecuteAsync starts on another thread, so a stop right after the
    /// start found none (or a list being filled) and sent nothing at its final round.
    /// </summary>
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        var factory = log.Factory;
        var logger = loggers.CreateLogger<AuditExportService>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var sinkOptions in o.Sinks.Where(s => s.Enabled))
        {
            if (string.IsNullOrWhiteSpace(sinkOptions.Name) || !names.Add(sinkOptions.Name))
            {
                logger.LogError("Audit sinks need distinct, non-empty names; skipping one named '{Name}'", sinkOptions.Name);
                continue;
            }

            var sink = CreateSink(sinkOptions, o.EnterpriseSiteId, o.SourceId);
            _workers.Add((new AuditExportWorker(sinkOptions, sink, store, factory, signal, leases, time, _holder, logger), sink));
        }

        return base.StartAsync(cancellationToken);
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.WhenAll(_workers.Select(w => w.Worker.RunAsync(stoppingToken)));

    /// <summary>
    /// Stops the workers, then sends what they had not: the entries written during the stop (Application Stop among
    /// them) and the head signed last to cover them. This service is registered before the signer so that it stops after
    /// it. Without it, the moments before a stop had no copy outside, which is where a rollback would hide.
    /// </summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(FinalRoundLimit);
        var logger = loggers.CreateLogger<AuditExportService>();
        foreach (var (worker, sink) in _workers)
        {
            try
            {
                // The final round's short lease must not read another node's running one as forged (taken over past its length).
                if ((await leases.AcquireAsync("audit-" + worker.CursorName, _holder, FinalRoundLimit * 2, worker.LeaseLength, limit.Token).ConfigureAwait(false)).Acquired)
                {
                    while (await worker.RunOnceAsync(limit.Token).ConfigureAwait(false) > 0)
                    {
                    }
                }
            }
            catch (Exception e)
            {
                // The next start sends them: the cursor did not move past them.
                logger.LogWarning("Audit sink {Sink}: the last entries were not sent at stop ({Reason}); the next start sends them", worker.SinkName,
                    e.Message);
            }
            finally
            {
                // Kept at a clean stop, the lease held the next start's exports back for up to 30 s: a node restarted
                // at once and stopped again within that time sent nothing, not even at its stop (before 2026-12-06).
                try
                {
                    using var release = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await leases.ReleaseAsync("audit-" + worker.CursorName, _holder, release.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    logger.LogDebug(e, "Could not release the lease of audit sink {Sink}; it expires by itself", worker.SinkName);
                }

                await sink.DisposeAsync().ConfigureAwait(false);
            }
        }

        _workers.Clear();
    }

    internal static IAuditSink CreateSink(AuditSinkOptions options, string? enterpriseSiteId, string sourceId) => options.Kind switch
    {
        AuditSinkKind.SyslogTcp or AuditSinkKind.SyslogTls => new SyslogSink(options, enterpriseSiteId),
        AuditSinkKind.FhirHttp => new FhirHttpSink(options, enterpriseSiteId, sourceId: sourceId),
        AuditSinkKind.FhirNdjson => new FhirNdjsonSink(options, enterpriseSiteId, sourceId),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Unknown audit sink kind."),
    };
}
