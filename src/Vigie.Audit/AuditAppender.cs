using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Vigie.Audit.Storage;

namespace Vigie.Audit;

/// <summary>
/// The standalone appender for callers without a transaction: producers hand over ready rows (validated and sealed
/// on their own thread), one writer drains the channel and commits each batch in one transaction (group commit).
/// </summary>
internal sealed class AuditAppender : IAsyncDisposable
{
    private readonly AuditStore _store;
    private readonly AuditSignal _signal;
    private readonly ILogger _logger;
    private readonly int _maxBatch;
    private readonly Channel<Pending> _channel;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _startLock = new();
    private Task? _writer;
    private int _disposed;

    // Written by the one writer only. An outage fails every batch: the first is logged in full, then a line a minute.
    private long _failedBatches;
    private long _lastFailureLog;

    public AuditAppender(AuditStore store, AuditSignal signal, AuditOptions options, ILogger logger)
    {
        _store = store;
        _signal = signal;
        _logger = logger;
        _maxBatch = Math.Max(1, options.AppenderMaxBatch);
        _channel = Channel.CreateBounded<Pending>(new BoundedChannelOptions(Math.Max(1, options.AppenderQueueCapacity))
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Queues a row and completes with its sequence number once its batch has committed.</summary>
    public async ValueTask<long> AppendAsync(EntryRow row, CancellationToken cancellationToken)
    {
        EnsureStarted();
        var pending = new Pending(row, new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));
        await _channel.Writer.WriteAsync(pending, cancellationToken).ConfigureAwait(false);
        return await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private void EnsureStarted()
    {
        if (_writer is not null)
        {
            return;
        }

        lock (_startLock)
        {
            _writer ??= Task.Run(() => RunAsync(_stopping.Token));
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new List<Pending>(_maxBatch);
        var rows = new List<EntryRow>(_maxBatch);
        var reader = _channel.Reader;
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                batch.Clear();
                rows.Clear();
                while (batch.Count < _maxBatch && reader.TryRead(out var item))
                {
                    batch.Add(item);
                    rows.Add(item.Row);
                }

                try
                {
                    long first;
                    await using (var connection = await _store.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
                    {
                        await _store.TuneWriterConnectionAsync(connection, cancellationToken).ConfigureAwait(false);
                        await using var transaction = await _store.Database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
                        first = await _store.AppendAsync(rows, connection, transaction, cancellationToken).ConfigureAwait(false);
                        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                    }

                    for (var i = 0; i < batch.Count; i++)
                    {
                        batch[i].Completion.TrySetResult(first + i);
                    }

                    AuditTelemetry.EntriesAppended.Add(batch.Count);
                    AuditTelemetry.BatchSize.Record(batch.Count);
                    _signal.OnAppended(batch.Count);
                    if (_failedBatches > 0)
                    {
                        _logger.LogInformation("Audit batches commit again, after {Count} that failed", _failedBatches);
                        _failedBatches = 0;
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    var now = Environment.TickCount64;
                    if (++_failedBatches == 1)
                    {
                        _logger.LogError(ex, "Audit batch of {Count} entries failed to commit", batch.Count);
                        _lastFailureLog = now;
                    }
                    else if (now - _lastFailureLog >= 60_000)
                    {
                        _logger.LogError("Audit batches still fail to commit ({Count} since the first failed): {Reason}", _failedBatches, $"{ex.GetType().Name}: {ex.Message}");
                        _lastFailureLog = now;
                    }

                    foreach (var pending in batch)
                    {
                        pending.Completion.TrySetException(ex);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var pending in batch)
            {
                pending.Completion.TrySetCanceled(CancellationToken.None);
            }

            while (reader.TryRead(out var left))
            {
                left.Completion.TrySetCanceled(CancellationToken.None);
            }
        }
    }

    /// <summary>Stops accepting records and commits what is queued.</summary>
    public async ValueTask DisposeAsync()
    {
        // The container may dispose the log twice (registered as itself and as IAuditLog).
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _channel.Writer.TryComplete();
        if (_writer is not null)
        {
            await _writer.ConfigureAwait(false);
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }

    private sealed record Pending(EntryRow Row, TaskCompletionSource<long> Completion);
}
