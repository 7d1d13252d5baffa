namespace Vigie.Inspection.Engine;

/// <summary>The state shared by every object of one top-level inspection: findings, counters, budgets, deadline.</summary>
internal sealed class InspectionSession : IDisposable
{
    /// <summary>SHA-256 of the top-level object (lower-case hex), when an engine computed it.</summary>
    public string? Sha256 { get; set; }

    private readonly Lock _lock = new();
    private readonly List<Finding> _findings = [];
    private long _concerningReports;
    private readonly HashSet<(string, string, long?, string)> _seen = [];
    private readonly CancellationTokenSource _deadline;
    private readonly CancellationToken _callerToken;
    private int _dropped;
    private Severity? _mildest;
    private int _objects;
    private long _extracted;
    private long _inMemory;
    private int _budgetReported;
    private int _objectLimitReported;

    private readonly InspectionMemory? _node;

    public InspectionSession(InspectionLimits limits, long topLevelLength, CancellationToken callerToken, InspectionMemory? node = null)
    {
        _node = node;
        Limits = limits;
        TopLevelLength = topLevelLength;
        _callerToken = callerToken;
        _deadline = CancellationTokenSource.CreateLinkedTokenSource(callerToken);
        if (limits.Timeout > TimeSpan.Zero && limits.Timeout != Timeout.InfiniteTimeSpan)
        {
            _deadline.CancelAfter(limits.Timeout);
        }
    }

    public InspectionLimits Limits { get; }

    public long TopLevelLength { get; }

    /// <summary>Cancelled by the caller or when the wall-clock budget runs out.</summary>
    public CancellationToken Token => _deadline.Token;

    public bool TimedOut => _deadline.IsCancellationRequested && !_callerToken.IsCancellationRequested;

    /// <summary>Set when something could not be inspected for a reason other than a limit (analyser failure, engine unavailable).</summary>
    public bool Incomplete { get; set; }

    /// <summary>
    /// Set when inspection could not go on for lack of resources (no room for its temporary files, no memory): the
    /// verdict then says nothing about the content, and a gateway asks the sender to retry rather than quarantine.
    /// </summary>
    public string? ResourceShortage { get; set; }

    public int Objects => Volatile.Read(ref _objects);

    /// <summary>Set once a decompression bomb was found: the verdict is settled, so nothing more is extracted or descended into.</summary>
    public bool BombFound { get; private set; }

    public void MarkBomb() => BombFound = true;

    public long Extracted => Interlocked.Read(ref _extracted);

    /// <summary>
    /// Causes for concern so far: findings of Low or graver (duplicates and dropped ones included), and inner objects
    /// that are not passive data (<see cref="NoteInnerObject"/>).
    /// </summary>
    public long ConcerningReports => Interlocked.Read(ref _concerningReports);

    /// <summary>
    /// Counts an inner object as a cause for concern unless it is passive data under a harmless name: a script in an
    /// archive (invoice.js) raises no finding of its own, yet makes the archive no mere data file.
    /// </summary>
    public void NoteInnerObject(ContentType type, string name)
    {
        var passive = type is ContentType.Text or ContentType.Xml or ContentType.Png or ContentType.Jpeg or ContentType.Gif or ContentType.Jpeg2000
            or ContentType.Pdf or ContentType.Dicom or ContentType.Zip or ContentType.Gzip or ContentType.Bzip2 or ContentType.Xz or ContentType.Tar
            or ContentType.SevenZip;
        if (!passive || NameChecks.IsDangerousExtension(NameChecks.Extension(name)))
        {
            Interlocked.Increment(ref _concerningReports);
        }
    }

    public void Report(Finding finding)
    {
        if (finding.Severity >= Severity.Low)
        {
            Interlocked.Increment(ref _concerningReports);
        }

        lock (_lock)
        {
            var key = (finding.Rule, finding.InnerPath, finding.Offset, finding.Message);
            if (_seen.Contains(key))
            {
                return;
            }

            if (_findings.Count >= Limits.MaxFindings)
            {
                // Full: a finding graver than the mildest kept takes its place, so padding an object with a thousand
                // mild findings cannot push out the one that decides the verdict.
                _mildest ??= _findings.Min(f => f.Severity);
                if (finding.Severity <= _mildest)
                {
                    _dropped++;
                    return;
                }

                var index = _findings.FindIndex(f => f.Severity == _mildest);
                _seen.Remove((_findings[index].Rule, _findings[index].InnerPath, _findings[index].Offset, _findings[index].Message));
                _findings[index] = finding;
                _dropped++;
                _mildest = null;
            }
            else
            {
                _findings.Add(finding);
            }

            _seen.Add(key);
        }

        InspectionTelemetry.Findings.Add(1, new KeyValuePair<string, object?>("rule", finding.Rule));
    }

    public IReadOnlyList<Finding> SnapshotFindings()
    {
        lock (_lock)
        {
            var result = new List<Finding>(_findings);
            if (_dropped > 0)
            {
                result.Add(new Finding(Rules.FindingLimit, Severity.Medium,
                    $"{_dropped} more findings were dropped beyond {Limits.MaxFindings} (the mildest first)", null, ""));
            }

            return result;
        }
    }

    /// <summary>Counts one more object; false (reported once) when the object limit is reached.</summary>
    public bool TryCountObject(EngineContext where, string childPath)
    {
        if (Interlocked.Increment(ref _objects) <= Limits.MaxObjects)
        {
            return true;
        }

        if (Interlocked.Exchange(ref _objectLimitReported, 1) == 0)
        {
            Report(new Finding(Rules.ObjectLimit, Severity.Medium,
                $"more than {Limits.MaxObjects} inner objects: the rest, from {childPath}, were not inspected", null, where.InnerPath));
        }

        return false;
    }

    public bool TryChargeExtraction(EngineContext where, long bytes)
    {
        if (BombFound)
        {
            return false;
        }

        var total = Interlocked.Add(ref _extracted, bytes);
        InspectionTelemetry.Extracted.Add(bytes);
        if (total > Limits.MaxTotalExtracted)
        {
            if (Interlocked.Exchange(ref _budgetReported, 1) == 0)
            {
                Report(new Finding(Rules.ExtractionLimit, Severity.Medium,
                    $"more than {Limits.MaxTotalExtracted} bytes extracted in total: extraction stopped", null, where.InnerPath));
            }

            return false;
        }

        // A small object whose descendants expand far beyond it is a bomb, even when each level looks reasonable (42.zip).
        var expansionLimit = Math.Max(Limits.RatioCheckFloor * 16, (long)Math.Min(TopLevelLength * Limits.MaxCompressionRatio, long.MaxValue / 2));
        if (total > expansionLimit)
        {
            if (Interlocked.Exchange(ref _budgetReported, 1) == 0)
            {
                MarkBomb();
                Report(new Finding(Rules.ExpansionBomb, Severity.High,
                    $"nested content expands to more than {expansionLimit} bytes from {TopLevelLength} (more than {Limits.MaxCompressionRatio}:1 overall): extraction stopped",
                    null, where.InnerPath));
            }

            return false;
        }

        return true;
    }

    /// <summary>Memory for inner objects, within this inspection's budget and the node's (what every inspection and plaintext copy holds).</summary>
    public bool TryReserveMemory(long bytes)
    {
        var total = Interlocked.Add(ref _inMemory, bytes);
        if (total > Limits.MaxInMemoryTotal)
        {
            Interlocked.Add(ref _inMemory, -bytes);
            return false;
        }

        if (_node is not null && !_node.TryReserve(bytes))
        {
            Interlocked.Add(ref _inMemory, -bytes);
            return false;
        }

        return true;
    }

    public void ReleaseMemory(long bytes)
    {
        Interlocked.Add(ref _inMemory, -bytes);
        _node?.Release(bytes);
    }

    public void Dispose() => _deadline.Dispose();
}
