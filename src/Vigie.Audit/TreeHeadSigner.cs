using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit.Merkle;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core.Outbox;

namespace Vigie.Audit;

/// <summary>Signs a tree head over the current state when one is due (every N entries or T seconds, whichever first).</summary>
internal sealed class TreeHeadSigner(AuditStore store, IAuditSigningKeyProvider keys, AuditSignal signal, IOptions<AuditOptions> options, TimeProvider time)
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
        var signer = await keys.GetSignerAsync(cancellationToken).ConfigureAwait(false);
        var timestamp = DateTimeOffset.FromUnixTimeMilliseconds(Math.Max(now.ToUnixTimeMilliseconds(), latest?.Timestamp.ToUnixTimeMilliseconds() ?? 0));
        var signature = signer.Sign(SignedTreeHead.SignedBytes(state.TreeSize, timestamp.ToUnixTimeMilliseconds(), root));
        var head = new SignedTreeHead(state.TreeSize, timestamp, root, signer.KeyId, signer.PublicKey, signature);
        await store.InsertTreeHeadAsync(head, cancellationToken).ConfigureAwait(false);
        signal.OnTreeHeadSigned();
        AuditTelemetry.TreeHeadsSigned.Add(1);
        return head;
    }

    private DateTimeOffset FirstSeen(DateTimeOffset now) => _firstSeen ??= now;
}

/// <summary>Runs the signer on one node at a time (database lease), and signs a last head on shutdown.</summary>
internal sealed class TreeHeadSigningService(TreeHeadSigner signer, AuditSignal signal, LeaseStore leases, IOptions<AuditOptions> options,
    ILogger<TreeHeadSigningService> logger) : BackgroundService
{
    private const string LeaseName = "audit-tree-head";
    private readonly string _holder = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        signal.HeadThreshold = Math.Max(1, o.TreeHeadEveryEntries);
        var poll = o.TreeHeadPollInterval > TimeSpan.Zero ? o.TreeHeadPollInterval : TimeSpan.FromSeconds(1);
        var lease = TimeSpan.FromTicks(Math.Max(poll.Ticks * 5, TimeSpan.FromSeconds(10).Ticks));
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await leases.TryAcquireAsync(LeaseName, _holder, lease, stoppingToken).ConfigureAwait(false))
                {
                    await signer.SignAsync(force: false, stoppingToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                logger.LogError(ex, "Signing an audit tree head failed");
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
                await signer.SignAsync(force: true, cancellationToken).ConfigureAwait(false);
                await leases.ReleaseAsync(LeaseName, _holder, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogWarning(ex, "Could not sign a final audit tree head on shutdown");
        }
    }
}
