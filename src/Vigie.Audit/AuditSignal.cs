namespace Vigie.Audit;

/// <summary>
/// In-process wake-ups: exporters wake when entries commit, the tree-head signer when enough entries piled up.
/// Other nodes' appends are seen by polling.
/// </summary>
internal sealed class AuditSignal
{
    private TaskCompletionSource _appended = NewSource();
    private TaskCompletionSource _headDue = NewSource();
    private long _sinceHead;

    /// <summary>Set by the signer from the options.</summary>
    public int HeadThreshold { get; set; } = 1000;

    public void OnAppended(int count)
    {
        Interlocked.Exchange(ref _appended, NewSource()).TrySetResult();
        if (Interlocked.Add(ref _sinceHead, count) >= HeadThreshold)
        {
            Interlocked.Exchange(ref _sinceHead, 0);
            Interlocked.Exchange(ref _headDue, NewSource()).TrySetResult();
        }
    }

    public void OnTreeHeadSigned() => Interlocked.Exchange(ref _sinceHead, 0);

    public Task WaitAppendedAsync(TimeSpan timeout, CancellationToken cancellationToken) => WaitAsync(Volatile.Read(ref _appended).Task, timeout, cancellationToken);

    public Task WaitHeadDueAsync(TimeSpan timeout, CancellationToken cancellationToken) => WaitAsync(Volatile.Read(ref _headDue).Task, timeout, cancellationToken);

    private static async Task WaitAsync(Task task, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
    }

    private static TaskCompletionSource NewSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
