using System.Collections.Concurrent;

namespace Vigie.Core.Outbox;

/// <summary>In-process wake-up for outbox consumers, so a fresh event is handled without waiting for the next poll.</summary>
public sealed class OutboxSignal
{
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _signals = new(StringComparer.Ordinal);

    public void Notify(string topic)
    {
        var semaphore = _signals.GetOrAdd(topic, static _ => new SemaphoreSlim(0));
        // A single pending release is enough: the consumer drains everything that is due when it wakes.
        if (semaphore.CurrentCount == 0)
        {
            semaphore.Release();
        }
    }

    public async Task WaitAsync(string topic, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var semaphore = _signals.GetOrAdd(topic, static _ => new SemaphoreSlim(0));
        await semaphore.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
    }
}
