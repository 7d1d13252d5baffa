using System.Runtime.InteropServices;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Vigie.Cli;

/// <summary>
/// Settings are read once, at start. An administrator who edits vigie.json on a running node (to shut a compromised
/// modality out, say) and sends SIGHUP believed it done while nothing changed (until 2026-12-06): the edit and the
/// signal are now logged with the restart they need, and /health (`settings`) is Degraded until the node restarts.
/// </summary>
internal sealed class SettingsFileWatch : BackgroundService, IHealthCheck
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(5);

    private readonly IReadOnlyList<string> _files;
    private readonly (bool Exists, DateTime Written, long Length)[] _atStart;
    private readonly ILogger<SettingsFileWatch> _logger;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private (string File, DateTimeOffset Seen)? _changed;
    private int _logged;

    public SettingsFileWatch(IReadOnlyList<string> files, ILogger<SettingsFileWatch> logger, TimeProvider time)
    {
        _files = files;
        _atStart = [.. files.Select(Stamp)];
        _logger = logger;
        _time = time;
    }

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(Look() is { } changed
            ? HealthCheckResult.Degraded(changed.File.StartsWith("SIGHUP", StringComparison.Ordinal)
                ? $"SIGHUP received at {changed.Seen:u}: settings are read at start only; restart vigie serve to apply a change"
                : $"{changed.File} changed at {changed.Seen:u}, after the start: settings are read at start only; restart vigie serve to apply it")
            : HealthCheckResult.Healthy("settings as read at start"));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var hangUp = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            _logger.LogWarning("SIGHUP received: vigie serve reads its settings at start only; restart it to apply a change to {Files}",
                string.Join(" or ", _files));
            // Whoever sent it expects a reload: /health says none happened (it stayed Healthy until 2026-12-07).
            lock (_lock)
            {
                _changed ??= ("SIGHUP received; " + string.Join(" or ", _files), _time.GetUtcNow());
            }
        });
        using var timer = new PeriodicTimer(CheckEvery, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (Look() is { } changed && Interlocked.Exchange(ref _logged, 1) == 0)
                {
                    _logger.LogWarning("{File} changed after the start: vigie serve reads its settings at start only; restart it to apply the change", changed.File);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private (string File, DateTimeOffset Seen)? Look()
    {
        lock (_lock)
        {
            if (_changed is null)
            {
                for (var i = 0; i < _files.Count; i++)
                {
                    if (Stamp(_files[i]) != _atStart[i])
                    {
                        _changed = (_files[i], _time.GetUtcNow());
                        break;
                    }
                }
            }

            return _changed;
        }
    }

    private static (bool Exists, DateTime Written, long Length) Stamp(string file)
    {
        // The file a link points to (a ConfigMap, a managed link): stamped as the link itself, its edits went unseen.
        var info = new FileInfo(file);
        try
        {
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target)
            {
                info = target;
            }
        }
        catch (IOException)
        {
            // A link loop: the link itself is all there is to stamp.
        }

        return info.Exists ? (true, info.LastWriteTimeUtc, info.Length) : (false, default, 0);
    }
}
