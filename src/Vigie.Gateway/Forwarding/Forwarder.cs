using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Outbox;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Gateway.Ingest;
using DicomTags = Vigie.Dicom.DicomTags;

namespace Vigie.Gateway.Forwarding;

/// <summary>
/// Forwards stored objects to the configured nodes (the PACS) from the outbox: claims a batch per destination under a
/// lease, sends each over its own association (destinations side by side, one batch each), marks each message done once
/// the peer acknowledged it, retries the rest with exponential back-off, per object and per destination. Survives restarts (the queue is the database) and shares the work between nodes (leases).
/// A crash between the peer's acknowledgement and the mark re-sends that one object: a PACS treats a repeated SOP
/// Instance UID with the same content as a duplicate, so the instance exists once there.
/// </summary>
internal sealed class Forwarder(
    Outbox outbox,
    IObjectStore store,
    Ingest.WithheldObjects withheld,
    ForwardQueue forwardQueue,
    IAuditLog audit,
    IArchiveKeyService keys,
    IOptionsMonitor<GatewayOptions> options,
    IOptionsMonitor<DicomServerOptions> server,
    ILogger<Forwarder> logger,
    TimeProvider time) : OutboxConsumer(outbox, IngestPipeline.ForwardTopic, logger, time)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _unreachableLogged = new(StringComparer.Ordinal);

    private static readonly Meter Meter = new("Vigie.Gateway.Forwarding");
    private static readonly Counter<long> Sent = Meter.CreateCounter<long>("vigie.gateway.forwarded", description: "Objects forwarded, by destination and outcome");

    // The queue as last read (every QueueReadEvery), per destination, for the gauges: a scrape does not query the database.
    private static IReadOnlyList<OutboxSubjectStatus> _queue = [];
    private static DateTimeOffset _queueReadAt;

    private static readonly ObservableGauge<long> WaitingGauge = Meter.CreateObservableGauge("vigie.gateway.forward.waiting",
        () => PerDestination(s => s.Waiting), unit: "{object}", description: "Objects waiting to be forwarded, by destination");

    private static readonly ObservableGauge<double> OldestGauge = Meter.CreateObservableGauge("vigie.gateway.forward.oldest_wait",
        () => PerDestination(s => s.OldestWaiting is { } oldest ? Math.Max(0, (_queueReadAt - oldest).TotalSeconds) : 0), unit: "s",
        description: "How long the oldest object waiting for each destination had waited when the queue was last read");

    private static readonly ObservableGauge<long> GivenUpGauge = Meter.CreateObservableGauge("vigie.gateway.forward.given_up",
        () => PerDestination(s => s.Dead), unit: "{object}", description: "Objects given up on, until retried or dismissed (vigie forward), by destination");

    private static IEnumerable<Measurement<T>> PerDestination<T>(Func<OutboxSubjectStatus, T> value) where T : struct =>
        Volatile.Read(ref _queue).Select(s => new Measurement<T>(value(s), new KeyValuePair<string, object?>("destination", s.Subject ?? "(unrecorded)")));

    private static readonly TimeSpan QueueReadEvery = TimeSpan.FromSeconds(15);

    private readonly string _consumer = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, byte> _deliveredUnrecorded = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, byte> _inFlight = new();
    private readonly Lock _unreleasedLock = new();
    private List<long> _unreleased = [];

    // One batch in flight per destination, each on its own task: a hung PACS held every other one behind it (they
    // were served in turn). Touched by the round's loop only.
    private readonly Dictionary<string, Task> _sending = new(StringComparer.Ordinal);

    // Per destination, after a refusal, an abort or no answer: no new association until then, so new objects wait
    // instead of each opening one (100 objects made 100 attempts in 20 s at a PACS saying "temporary congestion").
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Backoff> _backoff = new(StringComparer.Ordinal);

    private sealed record Backoff(int Failures, DateTimeOffset Until);

    // When each backing-off destination's newly queued objects were last held to its back-off (at most every 2 s).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _heldAt = new(StringComparer.Ordinal);

    private enum Outcome
    {
        None,
        Delivered,
        Failed,
    }

    protected override string RoundName => "Forwarding round";

    protected override async Task BeforeRoundAsync(CancellationToken cancellationToken)
    {
        _ = (WaitingGauge, OldestGauge, GivenUpGauge);
        if (Clock.GetUtcNow() - _queueReadAt >= QueueReadEvery)
        {
            _queueReadAt = Clock.GetUtcNow();
            // Every configured destination has its series, at 0 while nothing waits for it.
            var read = await Queue.StatusBySubjectAsync(IngestPipeline.ForwardTopic, cancellationToken).ConfigureAwait(false);
            var quiet = options.CurrentValue.Destinations.Where(d => d.Forward && !read.Any(r => r.Subject == d.AETitle))
                .Select(d => new OutboxSubjectStatus(d.AETitle, 0, null, 0, null, 0));
            Volatile.Write(ref _queue, [.. read, .. quiet]);
        }
    }

    /// <summary>Claims and handles one batch; returns how many messages it took.</summary>
    public override async Task<int> RunOnceAsync(CancellationToken cancellationToken)
    {
        var settings = options.CurrentValue;
        if (await ReleaseAbandonedOnceAsync(_consumer, cancellationToken).ConfigureAwait(false) is var released and > 0)
        {
            logger.LogWarning("{Count} objects an earlier process of this node had taken to forward, and never finished, go back in the queue", released);
        }

        // What a round that failed on the database left: delivered objects to record, claims to give back. Left to their
        // lease, they waited 5 minutes after a short database outage although the database was back.
        foreach (var id in _deliveredUnrecorded.Keys.Where(id => !InFlight(id)).ToList())
        {
            await Queue.CompleteAsync(id, _consumer, cancellationToken).ConfigureAwait(false);
            _deliveredUnrecorded.TryRemove(id, out _);
        }

        List<long> unreleased;
        lock (_unreleasedLock)
        {
            (unreleased, _unreleased) = (_unreleased, []);
        }

        if (unreleased.Count > 0)
        {
            try
            {
                await Queue.ReleaseAsync(unreleased, _consumer, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception)
            {
                lock (_unreleasedLock)
                {
                    _unreleased.AddRange(unreleased);
                }

                throw;
            }
        }

        foreach (var done in _sending.Where(s => s.Value.IsCompleted).Select(s => s.Key).ToList())
        {
            _sending.Remove(done);
        }

        // Each configured destination that is idle and not backing off gets its own batch, sent on its own task.
        var claimed = 0;
        var forwarding = settings.Destinations.Where(d => d.Forward).ToList();
        foreach (var destination in forwarding)
        {
            var backoff = _backoff.GetValueOrDefault(destination.AETitle);
            if (_sending.ContainsKey(destination.AETitle))
            {
                continue;
            }

            var now = Clock.GetUtcNow();
            if (backoff is not null && backoff.Until > now)
            {
                // Objects stored meanwhile wait for the back-off too, in the queue itself: `vigie forward status` then says
                // when the next attempt comes (it said "due now" for minutes), and a restart keeps to it.
                if (now - _heldAt.GetValueOrDefault(destination.AETitle, DateTimeOffset.MinValue) >= TimeSpan.FromSeconds(2))
                {
                    _heldAt[destination.AETitle] = now;
                    await Queue.HoldUntilAsync(IngestPipeline.ForwardTopic, destination.AETitle, backoff.Until, cancellationToken).ConfigureAwait(false);
                }

                continue;
            }

            // The first attempt after a failure takes the oldest waiting, due or not: the order of arrival.
            var taken = await Queue.ClaimAsync(IngestPipeline.ForwardTopic, _consumer, settings.Forwarding.BatchSize, settings.Forwarding.Lease, cancellationToken,
                subject: destination.AETitle, dueOrNot: backoff is not null).ConfigureAwait(false);
            if (taken.Count == 0)
            {
                continue;
            }

            claimed += taken.Count;
            _sending[destination.AETitle] = Task.Run(() => SendBatchAsync(destination, taken, settings, cancellationToken), CancellationToken.None);
        }

        // What no configured destination names (removed, renamed, queued before destinations were recorded): here, in turn.
        var batch = await Queue.ClaimAsync(IngestPipeline.ForwardTopic, _consumer, settings.Forwarding.BatchSize, settings.Forwarding.Lease, cancellationToken,
            exceptSubjects: [.. forwarding.Select(d => d.AETitle)]).ConfigureAwait(false);
        if (batch.Count == 0)
        {
            return claimed;
        }

        var claim = new Claim(Stopwatch.GetTimestamp());
        try
        {
            var requests = new List<(OutboxMessage Message, IngestPipeline.ForwardRequest Request)>();
            foreach (var message in batch)
            {
                var request = JsonSerializer.Deserialize<IngestPipeline.ForwardRequest>(message.Payload);
                if (request is null)
                {
                    await GiveUpAsync(message, "(unknown)", "unreadable forward request", null, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                requests.Add((message, request));
            }

            foreach (var group in requests.GroupBy(r => r.Request.Destination, StringComparer.Ordinal))
            {
                var destination = settings.FindDestination(group.Key, d => d.Forward);
                if (destination is null)
                {
                    foreach (var (message, _) in group)
                    {
                        await GiveUpAsync(message, group.Key, $"destination {group.Key} is no longer configured", null, cancellationToken).ConfigureAwait(false);
                    }

                    continue;
                }

                _ = await SendGroupAsync(destination, group.ToList(), settings.Forwarding, claim, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The node is stopping: what this round did not finish is given back, due at once for the next node or start.
            await Queue.ReleaseAsync([.. batch.Select(m => m.Id).Where(id => !_deliveredUnrecorded.ContainsKey(id))], _consumer, CancellationToken.None)
                .ConfigureAwait(false);
            throw;
        }
        catch (Exception)
        {
            // The database went away mid-round: given back by the next round that reaches it.
            lock (_unreleasedLock)
            {
                _unreleased.AddRange(batch.Select(m => m.Id).Where(id => !_deliveredUnrecorded.ContainsKey(id)));
            }

            throw;
        }

        return claimed + batch.Count;
    }

    // A delivered object a sending task is still recording: the round must not record it for it.
    private bool InFlight(long id) => _inFlight.ContainsKey(id);

    /// <summary>One destination's batch, on its own task: its failures stay its own, and its back-off is kept.</summary>
    private async Task SendBatchAsync(DicomDestination destination, IReadOnlyList<OutboxMessage> batch, GatewayOptions settings, CancellationToken cancellationToken)
    {
        foreach (var message in batch)
        {
            _inFlight[message.Id] = 0;
        }

        try
        {
            var requests = new List<(OutboxMessage Message, IngestPipeline.ForwardRequest Request)>();
            foreach (var message in batch)
            {
                if (JsonSerializer.Deserialize<IngestPipeline.ForwardRequest>(message.Payload) is { } request)
                {
                    requests.Add((message, request));
                }
                else
                {
                    await GiveUpAsync(message, destination.AETitle, "unreadable forward request", null, cancellationToken).ConfigureAwait(false);
                }
            }

            var outcome = await SendGroupAsync(destination, requests, settings.Forwarding, new Claim(Stopwatch.GetTimestamp()), cancellationToken).ConfigureAwait(false);
            if (outcome == Outcome.Failed)
            {
                var failures = (_backoff.GetValueOrDefault(destination.AETitle)?.Failures ?? 0) + 1;
                var now = Clock.GetUtcNow();
                var until = now + PeerFailures.RetryDelay(failures, settings.Forwarding);
                _backoff[destination.AETitle] = new Backoff(failures, until);
                _heldAt[destination.AETitle] = now;
                await Queue.HoldUntilAsync(IngestPipeline.ForwardTopic, destination.AETitle, until, cancellationToken).ConfigureAwait(false);
            }
            else if (outcome == Outcome.Delivered && _backoff.TryRemove(destination.AETitle, out _))
            {
                // It accepts again: what waited out a longer back-off goes now, in order of arrival, not minutes after newer objects.
                await Queue.BringForwardAsync(IngestPipeline.ForwardTopic, destination.AETitle, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The node is stopping: what this batch did not finish is given back, due at once for the next node or start.
            try
            {
                await Queue.ReleaseAsync([.. batch.Select(m => m.Id).Where(id => !_deliveredUnrecorded.ContainsKey(id))], _consumer, CancellationToken.None)
                    .ConfigureAwait(false);
            }
            catch (Exception e)
            {
                logger.LogWarning("Objects for {Destination} not given back at stop (they wait for their lease): {Reason}", destination.AETitle, e.Message);
            }
        }
        catch (Exception e)
        {
            // The database went away mid-batch: given back by the next round that reaches it.
            lock (_unreleasedLock)
            {
                _unreleased.AddRange(batch.Select(m => m.Id).Where(id => !_deliveredUnrecorded.ContainsKey(id)));
            }

            logger.LogError(e, "Forwarding to {Destination} failed; retrying", destination.AETitle);
        }
        finally
        {
            foreach (var message in batch)
            {
                _inFlight.TryRemove(message.Id, out _);
            }

            // The round may claim this destination's next batch now, not after its idle wait.
            Queue.Notify(IngestPipeline.ForwardTopic);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await base.ExecuteAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            // Each batch under way ends at an object's boundary and gives back the rest (see SendGroupAsync).
            await Task.WhenAll(_sending.Values).ConfigureAwait(false);
        }
    }

    /// <summary>When the claim on each message of a batch was taken or last extended, and which ones were lost.</summary>
    private sealed class Claim(long claimedAt)
    {
        private readonly Dictionary<long, long> _extendedAt = [];

        public HashSet<long> Lost { get; } = [];

        public long Since(long id) => _extendedAt.GetValueOrDefault(id, claimedAt);

        public void Extended(IEnumerable<long> asked, IReadOnlySet<long> held, long at)
        {
            foreach (var id in asked)
            {
                if (held.Contains(id))
                {
                    _extendedAt[id] = at;
                }
                else
                {
                    Lost.Add(id);
                }
            }
        }
    }

    private async Task<Outcome> SendGroupAsync(DicomDestination destination, List<(OutboxMessage Message, IngestPipeline.ForwardRequest Request)> items,
        ForwardingOptions settings, Claim claim, CancellationToken cancellationToken)
    {
        // Describe each object first (SOP class, instance, syntax) to propose the right presentation contexts.
        var prepared = new List<(OutboxMessage Message, ObjectId Id, string SopClass, string SopInstance, string Syntax, DicomDataset Header)>();
        foreach (var (message, request) in items)
        {
            try
            {
                var id = ObjectId.Parse(request.ObjectId);
                if (await withheld.ReasonAsync(id, cancellationToken).ConfigureAwait(false) is { } reason)
                {
                    await GiveUpAsync(message, destination.AETitle, reason, null, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                await using var reader = await store.OpenReadAsync(id, cancellationToken).ConfigureAwait(false);
                await using var stream = reader.OpenStream();
                // Up to the study's UID, for the audit record of an object that cannot be delivered.
                var file = await DicomReader.ReadFileAsync(stream, new DicomReadOptions { StopAtTag = DicomTags.SeriesInstanceUID }, cancellationToken)
                    .ConfigureAwait(false);
                prepared.Add((message, id, Uid(file, DicomTags.MediaStorageSOPClassUID, DicomTags.SOPClassUID), Uid(file, DicomTags.MediaStorageSOPInstanceUID,
                    DicomTags.SOPInstanceUID), file.TransferSyntax.Uid, file.Dataset));
            }
            catch (Exception e) when (e is ObjectFormatException or DicomParseException or FormatException or IOException)
            {
                await GiveUpAsync(message, destination.AETitle, $"object unreadable: {e.Message}", null, cancellationToken).ConfigureAwait(false);
            }
        }

        if (prepared.Count == 0)
        {
            return Outcome.None;
        }

        // One context per SOP class and transfer syntax: the peer accepts a single syntax per context, so a context
        // listing two would leave the objects in the other one without a way through. PS3.8 allows 128 contexts; what
        // does not fit waits for the next round.
        // An uncompressed object can also go in the other little-endian syntax (PS3.5 A.1, A.2), and an RLE or deflated
        // one in either: a PACS that takes only implicit VR, as every storage SCP must, still gets them.
        var pairs = prepared.SelectMany(p => UncompressedSyntax.Alternatives(p.Syntax).Prepend(p.Syntax).Select(syntax => (p.SopClass, syntax)))
            .Distinct().ToList();
        var contexts = new List<PresentationContext>();
        byte contextId = 1;
        foreach (var (sopClass, syntax) in pairs.Take(128))
        {
            contexts.Add(new PresentationContext(contextId, sopClass, [syntax]));
            contextId += 2;
        }

        if (pairs.Count > 128)
        {
            var proposed = pairs.Take(128).ToHashSet();
            foreach (var item in prepared.Where(p => UncompressedSyntax.Choose(p.Syntax, syntax => proposed.Contains((p.SopClass, syntax))) is null).ToList())
            {
                await Queue.RetryLaterAsync(item.Message.Id, _consumer, TimeSpan.Zero, "waiting for a presentation context", cancellationToken).ConfigureAwait(false);
                prepared.Remove(item);
            }
        }

        DicomClient client;
        try
        {
            client = await DicomClient.ConnectAsync(Destinations.ClientOptions(destination, settings.CallingAEOr(server.CurrentValue.AETitle)), contexts, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (PeerFailures.IsTransient(e))
        {
            // Once a minute per destination: each new object tries at once, so during ingest this came several times a second.
            var last = _unreachableLogged.GetValueOrDefault(destination.AETitle, DateTimeOffset.MinValue);
            if (Dimse.GatewayServiceProvider.DueForLog(ref last, Clock.GetUtcNow()))
            {
                _unreachableLogged[destination.AETitle] = last;
                if (e is DicomClientCertificateRefusedException)
                {
                    logger.LogWarning("{Reason}; {Count} objects of this batch wait (logged once a minute)", e.Message, prepared.Count);
                }
                else
                {
                    logger.LogWarning("Cannot reach {Destination} ({Host}:{Port}): {Reason}; {Count} objects of this batch wait (logged once a minute)",
                        destination.AETitle, destination.Host, destination.Port, e.Message, prepared.Count);
                }
            }

            // Reached, but Vigie's certificate refused: not "cannot reach", which sent operators to the firewall.
            var reason = e is DicomClientCertificateRefusedException ? e.Message : $"cannot reach {destination.AETitle}: {e.Message}";
            if (PeerFailures.NeedsSetting(e))
            {
                forwardQueue.ConnectionRefused(destination.AETitle, reason);
            }
            else
            {
                forwardQueue.Connected(destination.AETitle);
            }

            foreach (var item in prepared)
            {
                await RetryAsync(item.Message, destination.AETitle, reason, item.Header, settings, cancellationToken).ConfigureAwait(false);
            }

            return Outcome.Failed;
        }

        forwardQueue.Connected(destination.AETitle);
        var delivered = new List<DicomDataset>();
        var failed = false;
        await using (client)
        {
            for (var i = 0; i < prepared.Count; i++)
            {
                // A stop ends the batch between objects, not in the middle of one: an exchange cut off after the PACS
                // stored the object would send it again after the restart.
                cancellationToken.ThrowIfCancellationRequested();
                var item = prepared[i];
                // A slow destination can outlast the claim: past a third of it, the claim on what is left is extended, and
                // an object another node took over meanwhile is left to it. Else both would send it, after the first
                // had already been acknowledged.
                if (Stopwatch.GetElapsedTime(claim.Since(item.Message.Id)) > settings.Lease / 3)
                {
                    var asked = prepared.Skip(i).Select(p => p.Message.Id).Where(id => !claim.Lost.Contains(id)).ToList();
                    var at = Stopwatch.GetTimestamp();
                    claim.Extended(asked, await Queue.ExtendClaimsAsync(asked, _consumer, settings.Lease, cancellationToken).ConfigureAwait(false), at);
                }

                if (claim.Lost.Contains(item.Message.Id))
                {
                    Sent.Add(1, new("destination", destination.AETitle), new("outcome", "taken-over"));
                    continue;
                }

                // Flagged by `vigie rescan` since the batch was claimed (a slow PACS can take minutes over it): checked
                // again right before its C-STORE, or it went out all the same.
                if (await withheld.ReasonAsync(item.Id, cancellationToken).ConfigureAwait(false) is { } withheldReason)
                {
                    await GiveUpAsync(item.Message, destination.AETitle, withheldReason, item.Header, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                DimseResult result;
                try
                {
                    if (UncompressedSyntax.Choose(item.Syntax, syntax => client.Association.FindAcceptedContext(item.SopClass, syntax) is not null) is not { } syntax)
                    {
                        await GiveUpAsync(item.Message, destination.AETitle, $"{destination.AETitle} does not accept SOP class {item.SopClass} in {item.Syntax}",
                            item.Header, cancellationToken).ConfigureAwait(false);
                        continue;
                    }

                    // Bounded by the destination's ResponseTimeout, not by the stop (see above).
                    result = await SendAsync(client, item.Id, item.SopClass, item.SopInstance, item.Syntax, syntax, CancellationToken.None).ConfigureAwait(false);
                }
                catch (DicomParseException e)
                {
                    // Found before anything was sent (the conversion decodes first): retrying would fail the same way.
                    await GiveUpAsync(item.Message, destination.AETitle, $"cannot be converted for {destination.AETitle}: {e.Reason}", item.Header, cancellationToken)
                        .ConfigureAwait(false);
                    continue;
                }
                catch (Exception e) when (PeerFailures.IsTransient(e))
                {
                    // An answer that did not come in time may still come: the association is aborted, not released
                    // (a release read past it and dropped it), and this object waits its back-off. The rest of the
                    // batch was not tried: it goes back at once, so one object the PACS cannot take does not hold the
                    // others behind it (they waited with it, round after round).
                    if (!client.Association.IsClosed)
                    {
                        await client.Association.AbortAsync(AbortSource.ServiceUser, AbortReason.NotSpecified).ConfigureAwait(false);
                    }

                    var reason = e is DicomTimeoutException
                        ? $"{destination.AETitle} did not answer within its ResponseTimeout ({destination.ResponseTimeout}); it will be sent again: {e.Message}"
                        : $"{destination.AETitle} dropped the association: {e.Message}";
                    await RetryAsync(item.Message, destination.AETitle, reason, item.Header, settings, cancellationToken).ConfigureAwait(false);
                    await Queue.ReleaseAsync([.. prepared.Skip(i + 1).Select(p => p.Message.Id)], _consumer, cancellationToken).ConfigureAwait(false);
                    failed = true;
                    break;
                }

                // PS3.7 9.3.1.2: the response's Affected SOP Class and Instance UIDs, when present, are the request's (U(=)).
                // One naming another object does not acknowledge this one (it was taken as delivered, and never sent again).
                if (result.NotAcknowledging(item.SopClass, item.SopInstance) is { } mismatch)
                {
                    var reason = $"{destination.AETitle} answered for another object ({mismatch}); not taken as delivered";
                    logger.LogWarning("Forwarding of queue entry {Id}: {Reason}", item.Message.Id, reason);
                    await RetryAsync(item.Message, destination.AETitle, reason, item.Header, settings, cancellationToken).ConfigureAwait(false);
                    await audit.AppendAsync(TransferRecord(destination.AETitle, destination.Host, [item.Header], AuditOutcome.MinorFailure, $"not acknowledged: {reason}"),
                        cancellationToken).ConfigureAwait(false);
                    Sent.Add(1, new("destination", destination.AETitle), new("outcome", "not-acknowledged"));
                    failed = true;
                    continue;
                }

                if (DimseStatus.IsSuccessOrWarning(result.Status))
                {
                    // Recorded even when the node is stopping: the PACS has it, it must not go again (nor be given back).
                    _deliveredUnrecorded[item.Message.Id] = 0;
                    await Queue.CompleteAsync(item.Message.Id, _consumer, CancellationToken.None).ConfigureAwait(false);
                    _deliveredUnrecorded.TryRemove(item.Message.Id, out _);
                    delivered.Add(item.Header);
                    Sent.Add(1, new("destination", destination.AETitle), new("outcome", "delivered"));
                }
                else if ((result.Status & 0xFF00) == 0xA700)
                {
                    await RetryAsync(item.Message, destination.AETitle, $"{destination.AETitle} is out of resources: status 0x{result.Status:X4}", item.Header, settings,
                        cancellationToken).ConfigureAwait(false);
                    failed = true;
                }
                else
                {
                    // A refusal that will not change by retrying (SOP class not supported, data set refused). The peer's error
                    // comment is free text that may name the patient: it goes to the sealed audit details only.
                    await GiveUpAsync(item.Message, destination.AETitle, $"{destination.AETitle} refused it: status 0x{result.Status:X4}", item.Header, cancellationToken,
                        result.ErrorComment).ConfigureAwait(false);
                }
            }

            if (!client.Association.IsClosed)
            {
                try
                {
                    await client.ReleaseAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (PeerFailures.IsTransient(e))
                {
                    logger.LogDebug("Release from {Destination} failed: {Reason}", destination.AETitle, e.Message);
                }
            }
        }

        if (delivered.Count > 0)
        {
            await AuditDeliveryAsync(destination, delivered, cancellationToken).ConfigureAwait(false);
            return Outcome.Delivered;
        }

        return failed ? Outcome.Failed : Outcome.None;
    }

    /// <summary>The data set as stored, re-encoded (RLE decoded, inflated) as it is sent when the destination took only another syntax.</summary>
    private async Task<DimseResult> SendAsync(DicomClient client, ObjectId id, string sopClass, string sopInstance, string storedSyntax, string syntax,
        CancellationToken cancellationToken)
    {
        await using var reader = await store.OpenReadAsync(id, cancellationToken).ConfigureAwait(false);
        // Sent once, seldom read again soon: its pages go back for the next objects (see ArchiveOptions.ReleaseWrittenPages).
        reader.ReleasePagesWhenDone();
        await using var stream = reader.OpenStream();
        var file = await DicomReader.ReadFileAsync(stream, new DicomReadOptions { StopAtTag = new DicomTag(0x0003, 0x0000) }, cancellationToken).ConfigureAwait(false);
        stream.Position = file.DatasetOffset;
        // Odd-length values are padded as the data set is sent (PS3.5 7.1.1): a PACS may refuse it otherwise.
        var (converted, sent) = await UncompressedSyntax.ForSendingAsync(stream, storedSyntax, syntax,
            s => client.Association.FindAcceptedContext(sopClass, s) is not null, cancellationToken).ConfigureAwait(false);
        await using var _ = converted;
        return await client.StoreAsync(sopClass, sopInstance, sent, converted ?? stream, cancellationToken).ConfigureAwait(false);
    }

    private async Task RetryAsync(OutboxMessage message, string destination, string reason, DicomDataset header, ForwardingOptions settings,
        CancellationToken cancellationToken)
    {
        if (settings.MaxAttempts > 0 && message.Attempts >= settings.MaxAttempts)
        {
            await GiveUpAsync(message, destination, $"gave up after {message.Attempts} attempts: {reason}", header, cancellationToken).ConfigureAwait(false);
            return;
        }

        var delay = PeerFailures.RetryDelay(message.Attempts, settings);
        await Queue.RetryLaterAsync(message.Id, _consumer, delay, reason, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sets an object aside as undeliverable to <paramref name="destination"/>: it leaves the queue, stays listed by
    /// `vigie forward status` (and turns /health degraded) until retried or dismissed, and is logged and audited.
    /// </summary>
    private async Task GiveUpAsync(OutboxMessage message, string destination, string reason, DicomDataset? header, CancellationToken cancellationToken,
        string? peerComment = null)
    {
        if (!await Queue.DeadLetterAsync(message.Id, _consumer, reason, cancellationToken).ConfigureAwait(false))
        {
            // The claim was lost: another node has the message now.
            return;
        }

        Sent.Add(1, new("destination", destination), new("outcome", "given-up"));
        logger.LogWarning("Forwarding of queue entry {Id} given up: {Reason}. `vigie forward retry` puts it back once the cause is fixed", message.Id, reason);
        var description = $"not forwarded: {reason}" + (string.IsNullOrWhiteSpace(peerComment) ? string.Empty : $" ({peerComment.Trim()})");
        await audit.AppendAsync(TransferRecord(destination, null, header is null ? [] : [header], AuditOutcome.SeriousFailure, description), cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>
    /// One "Instances Transferred" record per study delivered (PS3.15 A.5.3.2), naming the study and its patient, so that
    /// the patient's record shows where the images went.
    /// </summary>
    private async Task AuditDeliveryAsync(DicomDestination destination, List<DicomDataset> delivered, CancellationToken cancellationToken)
    {
        foreach (var study in delivered.GroupBy(h => DicomText.TrimUid(h.GetString(DicomTags.StudyInstanceUID) ?? string.Empty), StringComparer.Ordinal))
        {
            var headers = study.ToList();
            await audit.AppendAsync(TransferRecord(destination.AETitle, destination.Host, headers, AuditOutcome.Success,
                $"forwarded {headers.Count} objects to {destination.AETitle}"), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// "Instances Transferred" from this node to <paramref name="destination"/> for objects of one study (their headers),
    /// naming the study with its SOP classes and the patient, under the patient reference; none of it when no header is known.
    /// </summary>
    private AuditRecord TransferRecord(string destination, string? destinationHost, IReadOnlyList<DicomDataset> study, AuditOutcome outcome, string description)
    {
        var first = study.Count > 0 ? study[0] : null;
        var patientId = first?.GetString(DicomTags.PatientID) ?? string.Empty;
        return new AuditRecord
        {
            Time = Clock.GetUtcNow(),
            EventId = AuditEventIds.DicomInstancesTransferred,
            Action = AuditAction.Read,
            Outcome = outcome,
            Participants =
            [
                GatewayAudit.Self(options.CurrentValue.Forwarding.CallingAEOr(server.CurrentValue.AETitle), requestor: true, AuditRoles.Source),
                GatewayAudit.Destination(destination, destinationHost),
            ],
            PatientRef = first is null ? null : GatewayAudit.PatientRef(keys, patientId, first.GetString(DicomTags.IssuerOfPatientID)),
            Details = new AuditDetails
            {
                OutcomeDescription = description,
                Objects = first is null
                    ? []
                    :
                    [
                        GatewayAudit.Study(DicomText.TrimUid(first.GetString(DicomTags.StudyInstanceUID) ?? "(unknown)"), null,
                            accession: first.GetString(DicomTags.AccessionNumber)) with
                        {
                            SopClasses = study.GroupBy(h => DicomText.TrimUid(h.GetString(DicomTags.SOPClassUID) ?? string.Empty), StringComparer.Ordinal)
                                .Select(c => new AuditSopClass(c.Key, c.Count())).ToList(),
                        },
                        GatewayAudit.Patient(patientId, first.GetString(DicomTags.PatientName)),
                    ],
            },
        };
    }

    private static string Uid(DicomFile file, DicomTag metaTag, DicomTag datasetTag) =>
        DicomText.TrimUid(file.Meta.GetString(metaTag) ?? file.Dataset.GetString(datasetTag) ?? string.Empty);
}
