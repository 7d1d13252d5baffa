namespace Vigie.Dicom.Network;

/// <summary>
/// The thread that owns one accepted association's socket. Its reads block on that thread, so an arriving PDU wakes it
/// directly: with asynchronous reads, every read that had to wait woke the socket engine's thread and then a pool
/// thread, and on a busy virtual machine those wake-ups cost more CPU per stored object than its hashing. Work that
/// strayed to other threads (an await that really waited) comes back here through <see cref="SwitchTo"/> before the
/// next read. dcmtk and Orthanc also give each association a thread; the association limits bound their number.
/// </summary>
internal sealed class AssociationThread
{
    private readonly Queue<Action> _work = new();
    private readonly Thread _thread;
    private bool _finished;

    private AssociationThread(string name)
    {
        _thread = new Thread(Drain) { IsBackground = true, Name = name };
    }

    /// <summary>True on the owner thread.</summary>
    public bool IsCurrent => Thread.CurrentThread == _thread;

    /// <summary>Runs <paramref name="body"/> on a new owner thread; the task ends with the body.</summary>
    public static Task Run(Func<AssociationThread, Task> body, string name)
    {
        var owner = new AssociationThread(name);
        var completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        owner.Post(() =>
        {
            Task task;
            try
            {
                task = body(owner);
            }
            catch (Exception e)
            {
                task = Task.FromException(e);
            }

            task.ContinueWith(t =>
            {
                owner.Finish();
                if (t.Exception is { } error)
                {
                    completion.TrySetException(error.InnerExceptions);
                }
                else
                {
                    completion.TrySetResult();
                }
            }, TaskScheduler.Default);
        });
        owner._thread.Start();
        return completion.Task;
    }

    /// <summary>Continues the awaiting code on the owner thread.</summary>
    public SwitchAwaitable SwitchTo() => new(this);

    private void Post(Action action)
    {
        lock (_work)
        {
            if (!_finished)
            {
                _work.Enqueue(action);
                Monitor.Pulse(_work);
                return;
            }
        }

        // The association has ended: whatever still arrives runs on the pool rather than on a thread that has gone.
        ThreadPool.UnsafeQueueUserWorkItem(static a => a(), action, preferLocal: false);
    }

    private void Finish()
    {
        lock (_work)
        {
            _finished = true;
            Monitor.Pulse(_work);
        }
    }

    private void Drain()
    {
        while (true)
        {
            Action next;
            lock (_work)
            {
                while (_work.Count == 0 && !_finished)
                {
                    Monitor.Wait(_work);
                }

                if (_work.Count == 0)
                {
                    return;
                }

                next = _work.Dequeue();
            }

            // Posted items are async state machine steps, which keep their exceptions in their tasks; the body's own
            // failure is caught in Run. Nothing escapes to end the process.
            next();
        }
    }

    public readonly struct SwitchAwaitable(AssociationThread owner) : System.Runtime.CompilerServices.INotifyCompletion
    {
        public SwitchAwaitable GetAwaiter() => this;

        public bool IsCompleted => owner.IsCurrent;

        public void OnCompleted(Action continuation) => owner.Post(continuation);

        public void GetResult()
        {
        }
    }
}
