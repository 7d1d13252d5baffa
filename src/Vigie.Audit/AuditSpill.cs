using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Core.IO;

namespace Vigie.Audit;

/// <summary>
/// Records that could not be appended because the trail's database was out of reach (a restart, a failover, a network
/// cut): each is sealed whole under the audit sealer, written to this process's spill file in the data folder and
/// synced, then appended with its own time once the database answers (<see cref="AuditSpillService"/>). Before
/// 2026-12-07 the associations refused during an outage, and the stores refused meanwhile, left no trace at all.
/// One file per process, held under an exclusive lock while it is written, so that nodes sharing the folder drain only
/// files nobody writes. Appending is at least once: a crash between the commit and the file's removal appends it again.
/// </summary>
internal sealed class AuditSpill : IDisposable
{
    private const string Extension = ".spill";
    private const int MaxLineBytes = 4 * 1024 * 1024;
    private readonly AuditOptions _options;
    private readonly IAuditSealer? _sealer;
    private readonly ILogger<AuditSpill> _logger;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly string _incarnation = $"{Environment.MachineName}-{Environment.ProcessId}-{DateTime.UtcNow.Ticks:x}";
    private FileStream? _file;
    private int _generation;
    // Records this process keeps waiting, in its open file and in those it closed that are not appended yet: the
    // bound holds through an outage (each drain round closes the file; the count was reset there, so the bound was
    // per 10 s, not per process).
    private int _kept;
    private int _keptInFile;
    private readonly Dictionary<string, int> _keptInClosedFiles = new(StringComparer.Ordinal);
    private long _dropped;
    private long _unreadable;

    public AuditSpill(IOptions<AuditOptions> options, ILogger<AuditSpill> logger, IAuditSealer? sealer = null)
    {
        _options = options.Value;
        _sealer = sealer;
        _logger = logger;
    }

    /// <summary>Whether records can be kept: a folder is set and a sealer registered (nothing is written in clear).</summary>
    public bool Enabled => _options.SpillFolder is not null && _sealer is not null;

    /// <summary>Keeps <paramref name="record"/> for later; false when it could not be (no spill, full, or the disk failed too).</summary>
    public async ValueTask<bool> KeepAsync(AuditRecord record, CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return false;
        }

        byte[] line;
        try
        {
            record.Validate();
            line = Seal(record);
        }
        catch (Exception e) when (e is AuditRecordException or InvalidOperationException or System.Security.Cryptography.CryptographicException)
        {
            // The sealer needs the archive's keys; a record that cannot be stored now could not be later either.
            _logger.LogError("An audit record could not be kept in the spill ({Reason})", e.Message);
            Interlocked.Increment(ref _dropped);
            return false;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_kept >= _options.MaxSpilledRecords)
            {
                Interlocked.Increment(ref _dropped);
                return false;
            }

            var file = _file ??= Create();
            await file.WriteAsync(line, cancellationToken).ConfigureAwait(false);
            file.Flush(flushToDisk: true);
            _kept++;
            _keptInFile++;
            AuditTelemetry.SpilledRecords.Add(1);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A folder the service may not write (a restored backup's owner): the refusal is still answered, unrecorded.
            _logger.LogError("An audit record could not be kept in the spill either ({Reason})", e.Message);
            Interlocked.Increment(ref _dropped);
            return false;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Spill files waiting to be appended, this process's included.</summary>
    public bool HasWaiting() => _options.SpillFolder is { } folder && Directory.Exists(folder) && Directory.EnumerateFiles(folder, "*" + Extension).Any();

    /// <summary>
    /// Appends every spill file nobody is writing (this process's current one is closed first) through
    /// <paramref name="append"/>, which must be durable when it returns, then removes each file. Returns the records appended.
    /// </summary>
    public async ValueTask<int> DrainAsync(Func<IReadOnlyList<AuditRecord>, CancellationToken, ValueTask> append, CancellationToken cancellationToken)
    {
        if (!Enabled || !HasWaiting())
        {
            return 0;
        }

        var folder = _options.SpillFolder!;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // New records go to a new file meanwhile; this one is drained like the others.
            if (_file is not null)
            {
                _keptInClosedFiles[Path.GetFullPath(_file.Name)] = _keptInFile;
                _keptInFile = 0;
                await _file.DisposeAsync().ConfigureAwait(false);
                _file = null;
            }
        }
        finally
        {
            _gate.Release();
        }

        var appended = 0;
        foreach (var path in Directory.EnumerateFiles(folder, "*" + Extension).OrderBy(Process, StringComparer.Ordinal).ThenBy(Generation).ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            FileStream stream;
            try
            {
                stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
            }
            catch (IOException)
            {
                continue; // another live process writes it, or it is gone
            }

            int lost;
            await using (stream.ConfigureAwait(false))
            {
                (var records, lost) = await ReadAsync(stream, path, cancellationToken).ConfigureAwait(false);
                if (records.Count > 0)
                {
                    await append(records, cancellationToken).ConfigureAwait(false);
                }

                appended += records.Count;
                if (lost > 0)
                {
                    // Kept for investigation (tampering or corruption), under a name no drain reads again.
                    File.Move(path, path + ".damaged", overwrite: true);
                    Interlocked.Add(ref _unreadable, lost);
                }
                else
                {
                    File.Delete(path);
                }
            }

            DurableFile.SyncDirectory(folder);
            await ForgetAsync(path, cancellationToken).ConfigureAwait(false);
        }

        if (appended > 0)
        {
            _logger.LogWarning("{Count} audit records kept while the database was out of reach were appended to the trail", appended);
        }

        return appended;
    }

    /// <summary>A file of this process's appended and removed: its records no longer count against the bound.</summary>
    private async ValueTask ForgetAsync(string path, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_keptInClosedFiles.Remove(Path.GetFullPath(path), out var count))
            {
                _kept -= count;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Records dropped since the last call (the spill was full, or could not be written), to record once.</summary>
    public long TakeDropped() => Interlocked.Exchange(ref _dropped, 0);

    /// <summary>Spilled records that could not be read back (damaged or past the limits) in the files appended since the last call.</summary>
    public long TakeUnreadable() => Interlocked.Exchange(ref _unreadable, 0);

    /// <summary>Counts taken that could not be recorded yet (the trail still out of reach): given back for the next round.</summary>
    public void ReturnLost(long dropped, long unreadable)
    {
        Interlocked.Add(ref _dropped, dropped);
        Interlocked.Add(ref _unreadable, unreadable);
    }

    // A process's files, in the order it wrote them: by name, generation 10 came before 2 (before 2026-12-07).
    private static string Process(string path) => Path.GetFileNameWithoutExtension(path) is var name && name.LastIndexOf('-') is var dash and > 0 ? name[..dash] : name;

    private static long Generation(string path) =>
        Path.GetFileNameWithoutExtension(path) is var name && name.LastIndexOf('-') is var dash and > 0
        && long.TryParse(name.AsSpan(dash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var generation)
            ? generation
            : 0;

    private FileStream Create()
    {
        var folder = _options.SpillFolder!;
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, $"{_incarnation}-{_generation++}{Extension}");
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
        };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var file = new FileStream(path, options);
        DurableFile.SyncDirectory(folder);
        return file;
    }

    private byte[] Seal(AuditRecord record)
    {
        var dto = new SpilledRecordDto(record.Time.ToUnixTimeMilliseconds(), record.EventId.ToToken(),
            record.EventTypes.Count == 0 ? null : AuditCode.ToTokens(record.EventTypes), (char)record.Action, (int)record.Outcome,
            AuditJson.SerializeParticipants(record.Participants), record.PurposeOfUse?.ToToken(), record.PatientRef, record.SourceId,
            record.Details is null ? null : AuditJson.SerializeDetails(record.Details));
        var json = JsonSerializer.SerializeToUtf8Bytes(dto, AuditJsonContext.Default.SpilledRecordDto);
        var sealedBytes = _sealer!.Seal(json);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(json);
        return Encoding.ASCII.GetBytes($"{_sealer.KeyId} {Convert.ToBase64String(sealedBytes)}\n");
    }

    /// <summary>The records of one file, and how many lines could not be read (a torn last line, never synced, is not counted).</summary>
    private async Task<(List<AuditRecord> Records, int Lost)> ReadAsync(FileStream stream, string path, CancellationToken cancellationToken)
    {
        var records = new List<AuditRecord>();
        // A crash mid-write leaves a last line without its newline: that record was never kept (never synced, never counted).
        var torn = false;
        if (stream.Length > 0)
        {
            stream.Seek(-1, SeekOrigin.End);
            torn = stream.ReadByte() != '\n';
            stream.Seek(0, SeekOrigin.Begin);
        }

        using var reader = new StreamReader(stream, Encoding.ASCII);
        var number = 0;
        var lost = 0;
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            number++;
            if (records.Count >= _options.MaxSpilledRecords || line.Length > MaxLineBytes)
            {
                _logger.LogError("Audit spill {File}: line {Line} and the rest are past the spill's limits and are not appended", Path.GetFileName(path), number);
                lost++;
                while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is not null)
                {
                    lost++;
                }

                break;
            }

            try
            {
                var space = line.IndexOf(' ', StringComparison.Ordinal);
                var json = _sealer!.Open(line[..space], Convert.FromBase64String(line[(space + 1)..]));
                var dto = JsonSerializer.Deserialize(json, AuditJsonContext.Default.SpilledRecordDto)
                    ?? throw new InvalidDataException("an empty record");
                records.Add(new AuditRecord
                {
                    Time = DateTimeOffset.FromUnixTimeMilliseconds(dto.TimeMs),
                    EventId = AuditCode.Parse(dto.EventId),
                    EventTypes = AuditCode.ParseTokens(dto.EventTypes),
                    Action = (AuditAction)dto.Action,
                    Outcome = (AuditOutcome)dto.Outcome,
                    Participants = AuditJson.ParseParticipants(dto.Participants),
                    PurposeOfUse = dto.Purpose is null ? null : AuditCode.Parse(dto.Purpose),
                    PatientRef = dto.PatientRef,
                    SourceId = dto.SourceId,
                    Details = dto.Details is null ? null : AuditJson.ParseDetails(dto.Details),
                });
            }
            catch (Exception e) when (e is FormatException or ArgumentException or JsonException or InvalidDataException or InvalidOperationException
                                          or System.Security.Cryptography.CryptographicException)
            {
                // A torn last line (a crash mid-write, never synced, so never counted as kept) or a damaged one.
                _logger.LogError("Audit spill {File}: line {Line} cannot be read ({Reason}) and is not appended", Path.GetFileName(path), number, e.GetType().Name);
                if (!torn || reader.Peek() >= 0)
                {
                    lost++;
                }
            }
        }

        return (records, lost);
    }

    public void Dispose()
    {
        _file?.Dispose();
        _gate.Dispose();
    }
}

/// <summary>Appends the spill to the trail once the database answers: looks every 10 seconds, and at a stop.</summary>
internal sealed class AuditSpillService(AuditSpill spill, AuditLog log, AuditStore store, IOptions<AuditOptions> options, TimeProvider time,
    ILogger<AuditSpillService> logger) : BackgroundService
{
    private static readonly TimeSpan Every = TimeSpan.FromSeconds(10);
    private DateTimeOffset _lastFailureLog = DateTimeOffset.MinValue;
    // Records lost (the spill full or unwritable) whose alert is not in the trail yet; only the drain rounds touch it.
    private long _dropped;

    private AuditRecord LossAlert(long dropped, long unreadable) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.SecurityAlert,
        Action = AuditAction.Execute,
        Outcome = AuditOutcome.SeriousFailure,
        Participants = [AuditParticipant.ThisApplication()],
        Details = new AuditDetails
        {
            OutcomeDescription = $"audit records lost during a database outage: {dropped} could not be kept in the spill (full at Audit:MaxSpilledRecords, "
                + $"or not writable), {unreadable} kept in it could not be read back (damaged or altered; the file is kept as *.spill.damaged)",
        },
    };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            await DrainOnceAsync(stoppingToken).ConfigureAwait(false);
            try
            {
                await Task.Delay(Every, time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    internal async Task DrainOnceAsync(CancellationToken cancellationToken)
    {
        if (!spill.Enabled)
        {
            return;
        }

        long dropped = 0, unreadable = 0;
        try
        {
            var fresh = spill.TakeDropped();
            if (fresh > 0)
            {
                logger.LogError("{Count} audit records were lost: the database was out of reach and the spill held Audit:MaxSpilledRecords ({Max}) or could not be written",
                    fresh, options.Value.MaxSpilledRecords);
            }

            dropped = fresh + _dropped;
            _dropped = 0;
            await spill.DrainAsync(AppendAsync, cancellationToken).ConfigureAwait(false);
            unreadable = spill.TakeUnreadable();
            if (dropped > 0 || unreadable > 0)
            {
                // In the trail, not only in a log (before 2026-12-07 a damaged spilled record, or one the spill could not
                // take, vanished with a log line): `audit show` and the SIEM see what the outage cost.
                await log.AppendAsync(LossAlert(dropped, unreadable), cancellationToken).ConfigureAwait(false);
                logger.LogError("Audit spill: a security alert records {Dropped} records lost and {Unreadable} that could not be read back", dropped, unreadable);
                dropped = unreadable = 0;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            // Counts not recorded yet wait for the next round with the records.
            _dropped += dropped;
            spill.ReturnLost(0, unreadable);
            // Still out of reach: the records wait in the spill, and the next round tries again.
            var now = time.GetUtcNow();
            if (now - _lastFailureLog >= TimeSpan.FromMinutes(1))
            {
                _lastFailureLog = now;
                logger.LogWarning("Audit records kept during a database outage wait for it to answer ({Reason})", e.Message);
            }
        }
    }

    /// <summary>One transaction for a whole file: all of it is in the trail, or none.</summary>
    private async ValueTask AppendAsync(IReadOnlyList<AuditRecord> records, CancellationToken cancellationToken)
    {
        await using (var connection = await store.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        {
            await using var transaction = await store.Database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
            await log.AppendAsync(records, connection, transaction, cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        log.NotifyCommitted(records.Count);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        // Whatever came in since the last round, while the database answers: the next start need not wait for it.
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TimeSpan.FromSeconds(5));
        await DrainOnceAsync(limit.Token).ConfigureAwait(false);
    }
}
