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
    TimeProvider time)
{
    // Before the first head, the interval counts from when this process first looked.
    private DateTimeOffset? _firstSeen;

    public async ValueTask<SignedTreeHead?> SignAsync(bool force, CancellationToken cancellationToken)
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

        var root = MerkleFrontier.Parse(state.TreeSize, state.Frontier).Root();
        if (await FindAppendOnlyViolationAsync(latest, state.TreeSize, root, cancellationToken).ConfigureAwait(false) is { } violation)
        {
            status.Refuse(violation, state.TreeSize, now);
            throw new AuditIntegrityException(violation);
        }

        var signer = await keys.GetSignerAsync(cancellationToken).ConfigureAwait(false);
        var timestamp = DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(now.ToUnixTimeMilliseconds(), latest?.Timestamp.ToUnixTimeMilliseconds() ?? 0));
        var signature = signer.Sign(SignedTreeHead.SignedBytes(state.TreeSize, timestamp.ToUnixTimeMilliseconds(), root));
        var head = new SignedTreeHead(state.TreeSize, timestamp, root, signer.KeyId, signer.PublicKey, signature);
        await store.InsertTreeHeadAsync(head, cancellationToken).ConfigureAwait(false);
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
}

/// <summary>Runs the signer on one node at a time (database lease), and signs a last head on shutdown.</summary>
internal sealed class TreeHeadSigningService(TreeHeadSigner signer, AuditSignal signal, LeaseStore leases, IOptions<AuditOptions> options,
    AuditSigningStatus status, TimeProvider time, ILogger<TreeHeadSigningService> logger) : BackgroundService
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
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await leases.TryAcquireAsync(LeaseName, _holder, lease, stoppingToken).ConfigureAwait(false)
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
                    logger.LogCritical("Audit tree head not signed: {Reason}", ex.Message);
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

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Cover the last entries now rather than leaving them unsigned until the next start.
            if (await leases.TryAcquireAsync(LeaseName, _holder, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false))
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
