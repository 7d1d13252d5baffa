using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Vigie.Core.Outbox;

namespace Vigie.Gateway.Forwarding;

/// <summary>
/// The loop of a background consumer of one outbox topic: a round while there is work, else a wait for a producer's
/// signal (or 2 s, for messages other nodes queued or retries falling due); a failed round is logged and retried.
/// </summary>
internal abstract class OutboxConsumer(Outbox outbox, string topic, ILogger logger, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(2);
    private bool _abandonedReleased;
    private DateTimeOffset _lastFailureLog = DateTimeOffset.MinValue;
    private int _failuresNotLogged;

    protected Outbox Queue { get; } = outbox;

    protected TimeProvider Clock { get; } = time;

    /// <summary>What a failed round is called in the log ("Forwarding round failed").</summary>
    protected abstract string RoundName { get; }

    /// <summary>Claims and handles one batch; returns how many messages it took.</summary>
    public abstract Task<int> RunOnceAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Once per process, before its first claim: puts back in the queue the messages of this topic that earlier
    /// processes of this node claimed and never finished (a stop or a kill -9 in the middle of an attempt), which would
    /// otherwise wait out their claim's lease. Returns how many; 0 after the first call.
    /// </summary>
    protected async ValueTask<int> ReleaseAbandonedOnceAsync(string consumer, CancellationToken cancellationToken)
    {
        if (_abandonedReleased)
        {
            return 0;
        }

        var released = await Queue.ReleaseAbandonedAsync(topic, holder => Vigie.Core.IO.LocalProcess.IsEarlierProcessOfThisMachine(holder, consumer), cancellationToken)
            .ConfigureAwait(false);
        _abandonedReleased = true;
        return released;
    }

    /// <summary>Runs before each round (gauges, status reads).</summary>
    protected virtual Task BeforeRoundAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await BeforeRoundAsync(stoppingToken).ConfigureAwait(false);
                if (await RunOnceAsync(stoppingToken).ConfigureAwait(false) == 0)
                {
                    await Queue.WaitAsync(topic, Idle, stoppingToken).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Every 2 s for the whole of a database outage, a stack trace each time: in full once a minute.
                if (Dimse.GatewayServiceProvider.DueForLog(ref _lastFailureLog, Clock.GetUtcNow()))
                {
                    logger.LogError(e, "{Round} failed{Since}; retrying", RoundName, _failuresNotLogged > 0 ? $" ({_failuresNotLogged} more times since the last report)" : "");
                    _failuresNotLogged = 0;
                }
                else
                {
                    _failuresNotLogged++;
                    logger.LogDebug("{Round} failed again: {Reason}", RoundName, e.Message);
                }

                try
                {
                    await Task.Delay(Idle, Clock, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }
}
