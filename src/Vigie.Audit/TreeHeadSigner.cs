using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit.Merkle;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core.Outbox;

namespace Vigie.Audit;

/// <summary>Signs a tree head over the current state when one is due (every N entries or T seconds, whichever first).</summary>
internal sealed class TreeHeadSigner(AuditStore store, IAuditSigningKeyProvider keys, AuditSignal signal, AuditSigningStatus status, IOptions<AuditOptions> options,
    TimeProvider time, ILogger<TreeHeadSigner>? logger = null)
{
    // Before the first head, the interval counts from when this process first looked.
    private DateTimeOffset? _firstSeen;

    // The witness file could not be written (a read-only key folder): said once, not at every head.
    private bool _witnessWarned;

    public ValueTask<SignedTreeHead?> SignAsync(bool force, CancellationToken cancellationToken) => SignAsync(force, rebaseWitness: false, cancellationToken);

    /// <summary>
    /// Signs when due (or now, with <paramref name="force"/>). <paramref name="rebaseWitness"/> is the operator's
    /// acceptance of a deliberate restore: the head is signed without the witness check, and replaces the witness file.
    /// </summary>
    internal async ValueTask<SignedTreeHead?> SignAsync(bool force, bool rebaseWitness, CancellationToken cancellationToken)
    {
        var latest = await store.FindTreeHeadAsync(TreeHeadLookup.Latest, 0, cancellationToken).ConfigureAwait(false);
        var state = await store.ReadStateAsync(cancellationToken).ConfigureAwait(false);
        var signedSize = latest?.TreeSize ?? 0;
        if (state.TreeSize <= signedSize)
        {
            return null;
        }

        var now = time.GetUtcNow();
        var o = options.Value;
        if (!force && state.TreeSize - signedSize < o.TreeHeadEveryEntries && latest is not null && now - latest.Timestamp < o.TreeHeadInterval)
        {
            return null;
        }

        // A first head waits for the interval too, unless enough entries came.
        if (!force && latest is null && state.TreeSize < o.TreeHeadEveryEntries && now - FirstSeen(now) < o.TreeHeadInterval)
        {
            return null;
        }

        // Refused as a forged frontier is: no head over it (the next append rebuilds it from the stored hashes).
        var frontier = MerkleFrontier.TryParse(state.TreeSize, state.Frontier);
        var root = frontier?.Root() ?? [];
        var violation = frontier is null
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"the audit_state row's Merkle frontier ({state.Frontier.Length} bytes) does not fit tree size {state.TreeSize}: the row was altered (StateMismatch)")
            : await FindAppendOnlyViolationAsync(latest, state.TreeSize, root, cancellationToken).ConfigureAwait(false);
        if (violation is null && !rebaseWitness)
        {
            violation = await FindWitnessViolationAsync(state.TreeSize, root, cancellationToken).ConfigureAwait(false);
        }

        if (violation is not null)
        {
            status.Refuse(violation, state.TreeSize, now);
            throw new AuditIntegrityException(violation);
        }

        var signer = await keys.GetSignerAsync(cancellationToken).ConfigureAwait(false);
        var timestamp = DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(now.ToUnixTimeMilliseconds(), latest?.Timestamp.ToUnixTimeMilliseconds() ?? 0));
        var signature = signer.Sign(SignedTreeHead.SignedBytes(state.TreeSize, timestamp.ToUnixTimeMilliseconds(), root));
        var head = new SignedTreeHead(state.TreeSize, timestamp, root, signer.KeyId, signer.PublicKey, signature);
        // The head's commit is synced (and with it every earlier one) before the witness file names it: a power cut then
        // takes only what came after the recorded head, and the log always holds it.
        await store.InsertTreeHeadAsync(head, cancellationToken).ConfigureAwait(false);
        await RecordWitnessAsync(head, rebaseWitness, cancellationToken).ConfigureAwait(false);
        signal.OnTreeHeadSigned();
        status.Signed();
        AuditTelemetry.TreeHeadsSigned.Add(1);
        return head;
    }

    /// <summary>
    /// Why a head over <paramref name="root"/> must not be signed, or null. The root comes from the state row's frontier:
    /// one altered in the database would otherwise get a genuine signature over a root that no entries have, or one that
    /// does not extend the heads already signed. So the root must be the one the stored hashes give, and the stored hashes
    /// must prove it extends the last signed head (RFC 9162 2.1.4).
    /// </summary>
    private async ValueTask<string?> FindAppendOnlyViolationAsync(SignedTreeHead? latest, long size, byte[] root, CancellationToken cancellationToken)
    {
        const string advice = "no tree head is signed until this is resolved; run `vigie audit verify` to find the altered rows";
        try
        {
            var stored = (await store.RangeHashesAsync([(0, size)], cancellationToken).ConfigureAwait(false))[0];
            if (!stored.AsSpan().SequenceEqual(root))
            {
                return $"The audit state's root at size {size} is not the root that the stored leaf hashes and subtree nodes give: the audit_state row, a leaf hash or a subtree node was altered; {advice}.";
            }

            if (latest is not null)
            {
                var proof = await store.RangeHashesAsync(MerkleProofs.ConsistencyRanges(latest.TreeSize, size), cancellationToken).ConfigureAwait(false);
                if (!MerkleProofs.VerifyConsistency(latest.TreeSize, size, latest.RootHash, root, proof))
                {
                    return $"The log at size {size} does not extend the signed tree head of size {latest.TreeSize}: entries or nodes it covers were altered; {advice}.";
                }
            }
        }
        catch (AuditIntegrityException e)
        {
            return $"{e.Message.TrimEnd('.')}; {advice}.";
        }

        return null;
    }

    private DateTimeOffset FirstSeen(DateTimeOffset now) => _firstSeen ??= now;

    private async ValueTask RecordWitnessAsync(SignedTreeHead head, bool rebase, CancellationToken cancellationToken)
    {
        if (TreeHeadWitnessFile.PathFor(options.Value.SigningKeyPath) is not { } path)
        {
            return;
        }

        try
        {
            await TreeHeadWitnessFile.WriteAsync(path, head, cancellationToken, rebase).ConfigureAwait(false);
            _witnessWarned = false;
        }
        catch (Exception e) when (!rebase && e is IOException or UnauthorizedAccessException)
        {
            // The head is signed and stored; only the node's own check of its heads is lost until the folder is writable.
            if (!_witnessWarned)
            {
                logger?.LogWarning("The record of the last audit tree head signed cannot be written beside the signing key ({Reason}): heads are still "
                    + "signed, but this node cannot tell at its next start whether heads were deleted from the database; make the key folder writable",
                    e.Message);
                _witnessWarned = true;
            }
        }
    }

    /// <summary>
    /// Checked at start, before any head is due: refuses signing (and says so in /health) when the log no longer holds
    /// what this node last signed. Returns the reason, or null. The root is the stored hashes' (the history), not the
    /// state row's: a forged state row is the due head's own check, with its own message.
    /// </summary>
    public async ValueTask<string?> CheckWitnessAsync(CancellationToken cancellationToken)
    {
        var state = await store.ReadStateAsync(cancellationToken).ConfigureAwait(false);
        string? violation;
        try
        {
            // An empty log has no range to hash (an index error at every start of a new node, logged as a failed check).
            var root = state.TreeSize == 0
                ? MerkleHash.EmptyRoot()
                : (await store.RangeHashesAsync([(0, state.TreeSize)], cancellationToken).ConfigureAwait(false))[0];
            violation = await FindWitnessViolationAsync(state.TreeSize, root, cancellationToken).ConfigureAwait(false);
        }
        catch (AuditIntegrityException e)
        {
            violation = $"{e.Message.TrimEnd('.')}; no tree head is signed until this is resolved.";
        }

        if (violation is not null)
        {
            status.Refuse(violation, state.TreeSize, time.GetUtcNow());
        }

        return violation;
    }

    /// <summary>
    /// Why the log of <paramref name="size"/> entries and root <paramref name="root"/> does not hold the latest head this
    /// node signed (<see cref="TreeHeadWitnessFile"/>), or null: heads deleted from the database, or the entries under
    /// them rewritten with the chain, nodes and state, would otherwise be signed over with the genuine key.
    /// </summary>
    internal async ValueTask<string?> FindWitnessViolationAsync(long size, byte[] root, CancellationToken cancellationToken)
    {
        if (TreeHeadWitnessFile.PathFor(options.Value.SigningKeyPath) is not { } path)
        {
            return null;
        }

        SignedTreeHead? witnessed;
        try
        {
            witnessed = await TreeHeadWitnessFile.ReadAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return $"{e.Message.TrimEnd('.')}: the signer cannot check that the log still holds what it signed; no tree head is signed until it is "
                + "restored from its backup (or replaced with `vigie audit accept-restore`, the node stopped).";
        }

        return witnessed is null ? null : await FindViolationOfAsync(witnessed, path, size, root, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Why the log of <paramref name="size"/> entries and root <paramref name="root"/> does not hold <paramref name="witnessed"/>, or null.</summary>
    internal async ValueTask<string?> FindViolationOfAsync(SignedTreeHead witnessed, string path, long size, byte[] root, CancellationToken cancellationToken)
    {
        var advice = $"no tree head is signed until this is resolved; run `vigie audit verify`, which reads {path} too. If the database was restored from a "
            + "backup on purpose, the heads signed after that backup are gone for good: stop the node and run `vigie audit accept-restore --reason TEXT`, "
            + "which records it in the trail, and the node signs again";
        var w = witnessed.TreeSize;
        if (size < w)
        {
            return $"This node signed a tree head of size {w} (recorded in {path}), but the audit log holds {size} entries: entries were removed from the "
                + $"database (Truncated, from entry {size}); {advice}.";
        }

        var stored = await store.FindTreeHeadAsync(TreeHeadLookup.ExactSize, w, cancellationToken).ConfigureAwait(false);
        if (stored is null || !stored.RootHash.AsSpan().SequenceEqual(witnessed.RootHash))
        {
            return $"This node signed a tree head of size {w} (recorded in {path}), but the database {(stored is null ? "no longer holds it" : "holds another head of that size")}: "
                + $"tree heads were deleted or replaced (TreeHeadMismatch); {advice}.";
        }

        List<byte[]> proof = w == size ? [] : await store.RangeHashesAsync(MerkleProofs.ConsistencyRanges(w, size), cancellationToken).ConfigureAwait(false);
        return (w == size ? root.AsSpan().SequenceEqual(witnessed.RootHash) : MerkleProofs.VerifyConsistency(w, size, witnessed.RootHash, root, proof))
            ? null
            : $"The audit log at size {size} does not extend the tree head of size {w} this node signed (recorded in {path}): entries it covers were rewritten "
              + $"(TreeHeadMismatch); {advice}.";
    }
}

/// <summary>Runs the signer on one node at a time (database lease), and signs a last head on shutdown.</summary>
internal sealed class TreeHeadSigningService(TreeHeadSigner signer, AuditSignal signal, LeaseStore leases, IOptions<AuditOptions> options,
    AuditSigningStatus status, TimeProvider time, ILogger<TreeHeadSigningService> logger, AuditLog? log = null) : BackgroundService
{
    private DateTimeOffset _lastFailureLog = DateTimeOffset.MinValue;

    private const string LeaseName = "audit-tree-head";
    private readonly string _holder = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        signal.HeadThreshold = Math.Max(1, o.TreeHeadEveryEntries);
        var poll = o.TreeHeadPollInterval > TimeSpan.Zero ? o.TreeHeadPollInterval : TimeSpan.FromSeconds(1);
        var lease = TimeSpan.FromTicks(Math.Max(poll.Ticks * 5, TimeSpan.FromSeconds(10).Ticks));
        var refusalLogged = false;
        try
        {
            // At start, not at the next head: deleted heads leave nothing due for a while, and the node would sign the forgery later.
            if (await signer.CheckWitnessAsync(stoppingToken).ConfigureAwait(false) is { } violation)
            {
                await RefusedAsync(violation, stoppingToken).ConfigureAwait(false);
                refusalLogged = true;
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogError(ex, "Checking the audit log against the last tree head this node signed failed");
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await AcquireAsync(lease, stoppingToken).ConfigureAwait(false)
                    && await signer.SignAsync(force: false, stoppingToken).ConfigureAwait(false) is not null)
                {
                    refusalLogged = false;
                }

                status.Attempted();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (AuditIntegrityException ex)
            {
                // Said once until a head is signed again, not at every poll: /health keeps saying it.
                if (!refusalLogged)
                {
                    await RefusedAsync(ex.Message, stoppingToken).ConfigureAwait(false);
                    refusalLogged = true;
                }
            }
            catch (Exception ex)
            {
                // Once in full, then a line a minute: a full disk fails this at every poll. /health says it meanwhile.
                var now = time.GetUtcNow();
                if (status.Fail($"{ex.GetType().Name}: {ex.Message}", now))
                {
                    logger.LogError(ex, "Signing an audit tree head failed");
                    _lastFailureLog = now;
                }
                else if (now - _lastFailureLog >= TimeSpan.FromMinutes(1))
                {
                    logger.LogError("Signing an audit tree head still fails ({Count} attempts since {Since:u}): {Reason}",
                        status.Failing?.Count, status.Failing?.Since, ex.Message);
                    _lastFailureLog = now;
                }
            }

            try
            {
                await signal.WaitHeadDueAsync(poll, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // A stop during the wait (also when another service failed to start) is no failure of this one.
                break;
            }
        }
    }

    /// <summary>
    /// The lease; taken over from a holder claiming it further ahead than any signer or `vigie audit accept-restore` takes
    /// it (a forged row stopped every head for good before 2026-12-08), that takeover logged by the store and audited here.
    /// </summary>
    private async ValueTask<bool> AcquireAsync(TimeSpan duration, CancellationToken cancellationToken)
    {
        var grant = await leases.AcquireAsync(LeaseName, _holder, duration, AuditRestoreAcceptance.LeaseLength, cancellationToken).ConfigureAwait(false);
        if (grant.OverriddenHolder is { } forged)
        {
            await SecurityAlertAsync(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"lease {LeaseName} taken over from {forged}, which claimed it until {grant.OverriddenUntil:u}: further ahead than any signer takes it"),
                "lease taken over", cancellationToken).ConfigureAwait(false);
        }

        return grant.Acquired;
    }

    /// <summary>One Security Alert in the trail, so that the exporters carry it to the collector too; a failure to write it is logged.</summary>
    private async ValueTask SecurityAlertAsync(string description, string what, CancellationToken cancellationToken)
    {
        if (log is null)
        {
            return;
        }

        try
        {
            await log.AppendAsync(new AuditRecord
            {
                Time = time.GetUtcNow(),
                EventId = AuditEventIds.SecurityAlert,
                Action = AuditAction.Execute,
                Outcome = AuditOutcome.SeriousFailure,
                Participants = [AuditParticipant.ThisApplication()],
                Details = new AuditDetails { OutcomeDescription = description },
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogWarning(ex, "The Security Alert of the {What} could not be written to the trail", what);
        }
    }

    /// <summary>
    /// Says a refusal once: critical in the log (sizes and paths, no patient data) and one Security Alert in the trail, so
    /// that the exporters carry it to the collector too. /health says it for as long as it lasts.
    /// </summary>
    private async ValueTask RefusedAsync(string reason, CancellationToken cancellationToken)
    {
        logger.LogCritical("Audit tree head not signed: {Reason}", reason);
        await SecurityAlertAsync($"audit tree heads are no longer signed: {reason}", "refused audit tree head", cancellationToken).ConfigureAwait(false);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Cover the last entries now rather than leaving them unsigned until the next start.
            if (await AcquireAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    await signer.SignAsync(force: true, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    // Released even when signing failed: kept, a node restarted within 30 s signed nothing (before 2026-12-06).
                    await leases.ReleaseAsync(LeaseName, _holder, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogWarning(ex, "Could not sign a final audit tree head on shutdown");
        }
    }
}
