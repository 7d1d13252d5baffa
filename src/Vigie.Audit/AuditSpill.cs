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
        foreach (var path in Directory.EnumerateFiles(folder, "*" + Extension).Order(StringComparer.Ordinal).ToList())
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

            await using (stream.ConfigureAwait(false))
            {
                var records = await ReadAsync(stream, path, cancellationToken).ConfigureAwait(false);
                if (records.Count > 0)
                {
                    await append(records, cancellationToken).ConfigureAwait(false);
                }

                appended += records.Count;
                File.Delete(path);
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

    /// <summary>Records dropped since the last call (the spill was full), to record once.</summary>
    public long TakeDropped() => Interlocked.Exchange(ref _dropped, 0);

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

    private async Task<List<AuditRecord>> ReadAsync(FileStream stream, string path, CancellationToken cancellationToken)
    {
        var records = new List<AuditRecord>();
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var number = 0;
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            number++;
            if (records.Count >= _options.MaxSpilledRecords || line.Length > MaxLineBytes)
            {
                _logger.LogError("Audit spill {File}: line {Line} and the rest are past the spill's limits and are not appended", Path.GetFileName(path), number);
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
            }
        }

        return records;
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

        try
        {
            var dropped = spill.TakeDropped();
            if (dropped > 0)
            {
                logger.LogError("{Count} audit records were lost: the database was out of reach and the spill held Audit:MaxSpilledRecords ({Max})", dropped,
                    options.Value.MaxSpilledRecords);
            }

            await spill.DrainAsync(AppendAsync, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
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
