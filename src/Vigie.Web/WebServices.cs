using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Vigie.Archive;
using Vigie.Archive.Keys;
using Vigie.Archive.Storage;
using Vigie.Audit;
using Vigie.Audit.Export;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Gateway;
using Vigie.Gateway.Commitment;
using Vigie.Gateway.Forwarding;

namespace Vigie.Web;

public static class WebServiceCollectionExtensions
{
    /// <summary>OpenTelemetry (every "Vigie.*" meter and source, ASP.NET Core, runtime), health checks, problem details.</summary>
    public static IServiceCollection AddVigieWeb(this IServiceCollection services)
    {
        services.AddProblemDetails();
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("vigie", serviceVersion: typeof(WebServiceCollectionExtensions).Assembly.GetName().Version?.ToString()))
            .WithMetrics(m => m.AddMeter("Vigie.*").AddAspNetCoreInstrumentation().AddRuntimeInstrumentation().AddPrometheusExporter())
            .WithTracing(t => t.AddSource("Vigie.*").AddAspNetCoreInstrumentation());
        // The checks that read the database are bounded: a hung server (stopped, a frozen network path) kept /health
        // from answering for a minute, past any probe's patience, instead of saying what was wrong.
        services.TryAddSingleton<DatabaseCheckFlights>();
        services.AddHealthChecks()
            .Add(DatabaseCheckFlights.Bounded<DatabaseHealthCheck>("database", HealthStatus.Unhealthy))
            .AddCheck<DataFolderHealthCheck>("data-folder")
            .AddCheck<DicomNodeHealthCheck>("dicom-node")
            .Add(DatabaseCheckFlights.Bounded<ForwardingHealthCheck>("forwarding", HealthStatus.Degraded))
            .Add(DatabaseCheckFlights.Bounded<StorageCommitmentHealthCheck>("storage-commitment", HealthStatus.Degraded))
            .AddCheck<DicomTlsHealthCheck>("dicom-tls")
            .Add(DatabaseCheckFlights.Bounded<AuditExportHealthCheck>("audit-export", HealthStatus.Degraded))
            // These two read the database too (the unsigned tail, the last maintenance run): bounded as well, else a hung
            // server held /health for the command timeout, a minute (the clean-clone CI saw it on 2026-12-08).
            .Add(DatabaseCheckFlights.Bounded<AuditSigningHealthCheck>("audit-signing", HealthStatus.Degraded))
            .AddCheck<KeysHealthCheck>("keys")
            .Add(DatabaseCheckFlights.Bounded<ArchiveIntegrityHealthCheck>("archive-integrity", HealthStatus.Degraded));
        services.TryAddSingleton<Vigie.Gateway.ArchiveIntegrityStatus>();
        services.TryAddSingleton<Vigie.Gateway.ArchiveMaintenanceWatch>();
        return services;
    }
}

public static class WebEndpointExtensions
{
    /// <summary>/health, /metrics (Prometheus) and the audit trail's public verification API.</summary>
    public static IEndpointRouteBuilder MapVigieEndpoints(this IEndpointRouteBuilder endpoints)
    {
        // Read-only resources: GET and HEAD only (DELETE, TRACE or any made-up method answered 200 as if they had acted).
        var readOnly = new Microsoft.AspNetCore.Routing.HttpMethodMetadata(["GET", "HEAD"]);
        endpoints.MapHealthChecks("/health", new HealthCheckOptions { ResponseWriter = WriteHealthAsync }).WithMetadata(readOnly);
        // Liveness runs no check: a database outage makes /health unhealthy, and a probe that restarted the node for
        // it would only interrupt a node that recovers by itself once the database answers.
        endpoints.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealthAsync }).WithMetadata(readOnly);
        endpoints.MapPrometheusScrapingEndpoint("/metrics").WithMetadata(readOnly);
        endpoints.MapAuditEndpoints();
        return endpoints;
    }

    private static Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsJsonAsync(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        }, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase });
    }
}

/// <summary>
/// Runs a check that reads the database within <see cref="Timeout"/>. A probe that comes while the last one still waits
/// joins it rather than opening one more connection to a server that does not answer.
/// </summary>
internal sealed class DatabaseCheckFlights
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    private readonly Dictionary<string, Task<HealthCheckResult>> _inFlight = new(StringComparer.Ordinal);

    public static HealthCheckRegistration Bounded<T>(string name, HealthStatus failure)
        where T : class, IHealthCheck =>
        new(name, sp => new Check(name, ActivatorUtilities.GetServiceOrCreateInstance<T>(sp), failure, sp.GetRequiredService<DatabaseCheckFlights>()), failure, null);

    private async Task<HealthCheckResult> RunAsync(string name, Func<CancellationToken, Task<HealthCheckResult>> check, HealthStatus failure,
        CancellationToken cancellationToken)
    {
        Task<HealthCheckResult> flight;
        lock (_inFlight)
        {
            if (!_inFlight.TryGetValue(name, out flight!))
            {
                flight = FlyAsync(name, check);
                _inFlight[name] = flight;
            }
        }

        try
        {
            return await flight.WaitAsync(Timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return new HealthCheckResult(failure, $"the database did not answer within {Timeout.TotalSeconds:0} s: hung, or a network path that drops packets");
        }
    }

    private async Task<HealthCheckResult> FlyAsync(string name, Func<CancellationToken, Task<HealthCheckResult>> check)
    {
        try
        {
            // Not the probe's token: a later probe may join this flight after the first one gave up.
            using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            await Task.Yield();
            return await check(limit.Token).ConfigureAwait(false);
        }
        finally
        {
            lock (_inFlight)
            {
                _inFlight.Remove(name);
            }
        }
    }

    private sealed class Check(string name, IHealthCheck inner, HealthStatus failure, DatabaseCheckFlights flights) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            flights.RunAsync(name, ct => inner.CheckHealthAsync(context, ct), failure, cancellationToken);
    }
}

internal sealed class DatabaseHealthCheck(IVigieDatabase database) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        // SQLite reported a damaged file (torn pages met by a store, a query, the signer): "reachable" hid it until
        // 2026-12-07. The report is process-wide, so this index is checked before it is blamed.
        if (database is SqliteDatabase sqlite && (sqlite.Damage is not null || sqlite.CorruptionReportedSinceCheck)
            && await sqlite.CheckIntegrityAsync(cancellationToken).ConfigureAwait(false) is { } damage)
        {
            return HealthCheckResult.Unhealthy(new IndexDamagedException(sqlite.Path, damage, null).Message);
        }

        return await AnswersAsync(database, cancellationToken).ConfigureAwait(false) is { } cause
            ? HealthCheckResult.Unhealthy($"{database.Provider} unreachable: {cause}")
            : HealthCheckResult.Healthy($"{database.Provider} reachable");
    }

    /// <summary>Null when the database answers a query, else why not.</summary>
    internal static async Task<string?> AnswersAsync(IVigieDatabase database, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var command = connection.CreateCommand(null, "SELECT 1");
            await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The server's own words when it answered (53300 "too many clients already"): they name the cause, not a value.
            return e is System.Data.Common.DbException { SqlState: { } state } db ? $"{e.GetType().Name} {state}: {db.Message}" : e.GetType().Name;
        }
    }
}

internal sealed class DataFolderHealthCheck(IOptions<ArchiveOptions> options, ArchiveSpace space, IObjectStore store, Vigie.Gateway.Dimse.RetrieveIntegrity integrity,
    TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var spool = Path.Combine(options.Value.DataFolder, "spool");
        try
        {
            var probe = Path.Combine(spool, $".health-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // ENOSPC with bytes to spare: the file system ran out of inodes (or a quota), which "not writable" alone hid.
            var spare = space.FreeBytes;
            var why = e is IOException { HResult: 28 } && spare > (1L << 20)
                ? $"no space left on device although {spare >> 20} MiB are free: the file system has no free inodes (df -i), or a quota is reached"
                : $"{e.GetType().Name}: {e.Message}";
            return Task.FromResult(HealthCheckResult.Unhealthy($"the data folder is not writable: {why}"));
        }

        // Under the floor stores are refused but queries and retrieves go on: degraded, not down, so that a probe does
        // not take the node (and the images it serves) out of service. The description says which case it is.
        var free = space.FreeBytes;
        var landing = store.Landing;
        var damaged = Damaged();
        var slots = Landing(landing) + damaged;
        if (space.IsFull)
        {
            return Task.FromResult(HealthCheckResult.Degraded($"stores refused: {free >> 20} MiB free, under Archive:MinFreeSpace ({space.MinFreeBytes >> 20} MiB){slots}"));
        }

        if (free < Math.Max(1L << 30, 2 * space.MinFreeBytes))
        {
            return Task.FromResult(HealthCheckResult.Degraded($"{free >> 20} MiB free; stores are refused under {space.MinFreeBytes >> 20} MiB{slots}"));
        }

        // Landed objects are durable and readable where they are; a move that keeps failing (a permission, say) still
        // wants an operator before the slots run out.
        return Task.FromResult(landing.MovesFailing || damaged.Length > 0
            ? HealthCheckResult.Degraded($"{free >> 30} GiB free{slots}")
            : HealthCheckResult.Healthy($"{free >> 30} GiB free{slots}"));
    }

    /// <summary>Objects a retrieve or a storage commitment found damaged in the last day: the first sign, often, before any scrub.</summary>
    private string Damaged() =>
        integrity.Failing(time.GetUtcNow()) is { } failing
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"; {failing.Count} stored objects failed their check when read for a retrieve or a storage commitment since {failing.Since:yyyy-MM-dd HH:mm:ss}Z (last: {failing.Reason}): run vigie scrub, and send those images again")
            : "";

    private string Landing(LandingStatus landing)
    {
        if (!landing.Enabled)
        {
            return "";
        }

        var text = $"; landing slots: {landing.Ready} ready, {landing.Landed} objects landed";
        if (landing.OldestLandedAt is { } oldest)
        {
            text += $" (the oldest {(long)Math.Max(0, (time.GetUtcNow() - oldest).TotalSeconds)} s ago)";
        }

        if (landing.MovesFailing)
        {
            text += $", moving them to objects/ failed ({landing.LastMoveFailure}, at {landing.LastMoveFailureAt:O}); they stay durable and readable in their slots";
        }

        return text;
    }
}

internal sealed class DicomNodeHealthCheck(DicomNodeService node, Vigie.Gateway.Dimse.NegotiationStatus negotiation, Vigie.Gateway.Dimse.StoreStatus stores,
    IVigieDatabase database, TimeProvider time) : IHealthCheck
{
    /// <summary>How long after the last refusal, with nobody asking since, a database that answers again clears the refusal.</summary>
    private static readonly TimeSpan RefusalSettles = TimeSpan.FromSeconds(15);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        // The refusal is only known to end at the next association: with the database back and nobody asking, /health said
        // 503 for up to 2 minutes and kept a load balancer's traffic away (before 2026-12-06). A refusal that has settled,
        // with the database answering, is Degraded; one a modality met within 15 s stays Unhealthy (a locked index).
        if (node.Server is { AcceptFailing: null } && negotiation.Refusing(time.GetUtcNow()) is { } refusing
            && time.GetUtcNow() - refusing.Last >= RefusalSettles && await DatabaseHealthCheck.AnswersAsync(database, cancellationToken).ConfigureAwait(false) is null)
        {
            negotiation.DatabaseAnswers();
            return HealthCheckResult.Degraded(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"associations were refused from {refusing.Since:HH:mm:ss}Z to {refusing.Last:HH:mm:ss}Z ({refusing.Reason}); the database answers again, and the next association will tell"));
        }

        return Check();
    }

    private HealthCheckResult Check()
    {
        if (node.Server is not { } server)
        {
            return HealthCheckResult.Unhealthy("the DICOM node is not running");
        }

        if (server.AcceptFailing is { } failing)
        {
            return HealthCheckResult.Unhealthy(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"connections cannot be accepted since {failing.Since:HH:mm:ss}Z: {failing.Message} ({failing.Error})"));
        }

        // Listening is not serving: while every request is refused as transient, no modality can store.
        if (negotiation.Refusing(time.GetUtcNow()) is { } refusing)
        {
            return HealthCheckResult.Unhealthy(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"associations refused for now since {refusing.Since:HH:mm:ss}Z: {refusing.Reason}"));
        }

        // Nor is accepting associations: stores answered A700 since, and none completed.
        if (stores.Failing(time.GetUtcNow()) is { } storesFailing)
        {
            return HealthCheckResult.Degraded(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"stores refused (A700) since {storesFailing.Since:HH:mm:ss}Z, {storesFailing.Count} since the last one completed: {storesFailing.Reason}"));
        }

        var serving = $"listening on {server.Port}, {server.ActiveAssociations} associations, {server.OpenConnections} connections";
        // Every slot held: each new association is refused (transient, local limit exceeded), and no modality can store
        // until one ends. Since 2026-12-07; before, /health said Healthy through such a lock-out.
        if (server.ActiveAssociations >= server.Options.MaxAssociations)
        {
            return HealthCheckResult.Degraded($"{serving}: every association slot is held (Dicom:Server:MaxAssociations {server.Options.MaxAssociations}), "
                + "new associations are refused until one ends");
        }

        return server.Evictions is { Recent: true } evictions
            ? HealthCheckResult.Degraded($"{serving}; connections that sent nothing were closed to make room at the connection limit "
                + $"({evictions.Total} since the start, the last within 2 minutes): a connection flood?")
            : HealthCheckResult.Healthy(serving);
    }
}

/// <summary>
/// The audit trail's export to the hospital's collectors (SIEM, ATNA repository, FHIR server): degraded while a sink
/// fails, since the entries then wait here, unseen by the security officer's tools, and while a collector's refusals
/// are set aside.
/// </summary>
internal sealed class AuditExportHealthCheck(AuditExportStatus export) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<AuditSinkStatus> sinks;
        try
        {
            sinks = await export.GetAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (System.Data.Common.DbException e)
        {
            return HealthCheckResult.Degraded($"audit export status unreadable: {e.GetType().Name}");
        }

        if (sinks.Count == 0)
        {
            return HealthCheckResult.Healthy("no audit export sink");
        }

        var failing = sinks.Where(s => s.FailedAttempts > 0 || s.SetAside > 0).ToList();
        var text = string.Join("; ", sinks.Select(s => (s.FailedAttempts > 0
            ? $"{s.Name}: {s.FailedAttempts} failed attempts, {s.Waiting} entries waiting, last error: {s.LastError}"
            : $"{s.Name}: {s.Waiting} entries waiting")
            + (s.SetAside > 0 ? $", {s.SetAside} refused by the collector and set aside (vigie audit resend --sink {s.Name})" : "")));
        return failing.Count > 0 ? HealthCheckResult.Degraded(text) : HealthCheckResult.Healthy(text);
    }
}

/// <summary>
/// The audit trail's signer: unhealthy while it refuses to sign tree heads, because the stored log no longer extends what
/// was signed (rows altered in the database). Entries are still written, but nothing outside commits to them.
/// </summary>
internal sealed class AuditSigningHealthCheck(AuditSigningStatus status, AuditUnsignedTail tail) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (status.Current is { } refusal)
        {
            return HealthCheckResult.Unhealthy($"no audit tree head signed since {refusal.At:u}: {refusal.Reason}");
        }

        if (status.Failing is { } failing)
        {
            return HealthCheckResult.Degraded($"signing audit tree heads fails since {failing.Since:u} ({failing.Count} attempts): {failing.Reason}");
        }

        // Read from the database, whichever node holds the lease: this node's signer may not be the one that should sign.
        string? overdue;
        try
        {
            overdue = await tail.FindOverdueAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Degraded($"the unsigned entries cannot be counted: {Vigie.Core.ExceptionCauses.Describe(e)}");
        }

        return overdue is not null ? HealthCheckResult.Degraded(overdue) : HealthCheckResult.Healthy("audit tree heads signed");
    }
}

/// <summary>
/// Degraded while this node's last maintenance scrub was not clean (its integrity alert says the same), or when no
/// maintenance scrub has completed on any node for 3 intervals (since 2026-12-08: a lease written
/// into the database stopped every run while this said "no problem found").
/// </summary>
internal sealed class ArchiveIntegrityHealthCheck(Vigie.Gateway.ArchiveIntegrityStatus status, Vigie.Gateway.ArchiveMaintenanceWatch watch) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (status.Problem is { } problem)
        {
            return HealthCheckResult.Degraded(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"the maintenance scrub at {problem.At:yyyy-MM-dd HH:mm:ss}Z was not clean: {problem.Summary} Run vigie scrub"));
        }

        try
        {
            if (await watch.FindOverdueAsync(cancellationToken).ConfigureAwait(false) is { } overdue)
            {
                return HealthCheckResult.Degraded(overdue);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Degraded($"when maintenance last ran cannot be read: {Vigie.Core.ExceptionCauses.Describe(e)}");
        }

        return HealthCheckResult.Healthy("no problem found by this node's last maintenance scrub");
    }
}

/// <summary>
/// The key files behind the keys the node holds in memory: one deleted (or unreadable) goes unnoticed while the node
/// runs, and the next start then fails, or the archive cannot be read at all. Unhealthy, so that it is restored now.
/// </summary>
internal sealed class KeysHealthCheck(IArchiveKeyService archiveKeys, IAuditSigningKeyProvider signingKeys) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var problems = (await archiveKeys.FindCustodyProblemsAsync(cancellationToken).ConfigureAwait(false)).ToList();
        if (signingKeys.FindCustodyProblem() is { } signing)
        {
            problems.Add(signing);
        }

        return problems.Count > 0
            ? HealthCheckResult.Unhealthy(string.Join("; ", problems))
            : HealthCheckResult.Healthy("key files in place");
    }
}

/// <summary>
/// The DICOM TLS certificate: degraded (peers soon refuse it, or already do) within 30 days of its end, after it, or
/// when a renewed file could not be used. Not unhealthy: the plain port and everything else still serve.
/// </summary>
internal sealed class DicomTlsHealthCheck(DicomNodeService node) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (node.Server?.ServerCertificate is not { } source)
        {
            return Task.FromResult(HealthCheckResult.Healthy("no DICOM TLS port"));
        }

        var certificate = source.Current;
        var notAfter = certificate.NotAfter.ToUniversalTime();
        var left = notAfter - DateTime.UtcNow;
        var renewal = source.ReloadError is { } error ? $"; the renewed certificate files cannot be used: {error}" : string.Empty;
        var until = notAfter.ToString("yyyy-MM-dd HH:mm 'UTC'", System.Globalization.CultureInfo.InvariantCulture);
        return Task.FromResult(left <= TimeSpan.Zero
            ? HealthCheckResult.Degraded($"the certificate expired on {until}: TLS peers refuse it{renewal}")
            : left < DicomTlsExpiry.WarnBefore
                ? HealthCheckResult.Degraded($"the certificate expires on {until}, in {(int)left.TotalDays} days{renewal}")
                : renewal.Length > 0
                    ? HealthCheckResult.Degraded($"certificate valid until {until}{renewal}")
                    : HealthCheckResult.Healthy($"certificate valid until {until}"));
    }
}

/// <summary>
/// The images have to reach the PACS, where the clinicians look for them. Degraded (not unhealthy: the node itself
/// serves) while objects wait longer than Gateway:Forwarding:BacklogAlert or some were given up on, or wait for a
/// destination that refused Vigie for a reason only a setting can end.
/// </summary>
internal sealed class ForwardingHealthCheck(ForwardQueue queue) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ForwardQueueStatus status;
        try
        {
            status = await queue.StatusAsync(0, cancellationToken, perDestinationWhenHealthy: false).ConfigureAwait(false);
        }
        catch (System.Data.Common.DbException e)
        {
            return HealthCheckResult.Degraded($"forwarding queue unreadable: {e.GetType().Name}");
        }

        // Objects given up on for a destination since removed still need someone's decision.
        if (queue.Destinations.Count == 0 && status.Waiting + status.GivenUp == 0)
        {
            return HealthCheckResult.Healthy("no forwarding destination");
        }

        var problems = new List<string>();
        // A refusal only a setting can end, while objects wait for that destination: it will not clear by itself, and
        // read as a mere wait until the backlog alert (15 min by default).
        foreach (var (destination, reason) in queue.Refusals.Where(r => status.Waiting > 0 && queue.Destinations.Any(d => d.AETitle == r.Key)))
        {
            problems.Add($"{destination} refuses: {reason} (a setting to fix; retrying alone will not help)");
        }

        if (status.GivenUp > 0)
        {
            var which = string.Join(", ", status.ByDestination.Where(d => d.GivenUp > 0).Select(d => $"{d.Destination ?? "(unrecorded)"}: {d.GivenUp}"));
            problems.Add($"{status.GivenUp} objects given up on ({(which.Length > 0 ? which + "; " : string.Empty)}vigie forward status)");
        }

        if (status.Stalled)
        {
            // Named per destination: with two PACS, the one behind.
            var stalled = status.ByDestination.Where(d => d.Stalled).ToList();
            problems.Add(stalled.Count == 0
                ? Backlog(null, status.Waiting, status.OldestWait!.Value, status.LastError)
                : string.Join("; ", stalled.Select(d => Backlog(d.Destination ?? "(unrecorded)", d.Waiting, d.OldestWait!.Value, d.LastError))));
        }

        return problems.Count > 0
            ? HealthCheckResult.Degraded(string.Join("; ", problems))
            : HealthCheckResult.Healthy($"{status.Waiting} objects waiting"
                // Why they wait, before the backlog alert: a PACS refusing Vigie's client certificate read as a mere wait until 2026-12-07.
                + (status.Waiting > 0 && status.LastError is { } error ? $"; last error: {error}" : string.Empty));
    }

    private static string Backlog(string? destination, long waiting, TimeSpan oldest, string? lastError) =>
        (destination is null ? string.Empty : destination + ": ") + $"{waiting} objects wait, the oldest for {Math.Floor(oldest.TotalMinutes)} min"
        + (lastError is { } error ? $"; last error: {error}" : string.Empty);
}

/// <summary>Degraded while a storage commitment report has waited past the backlog alert: the modality cannot be reached.</summary>
internal sealed class StorageCommitmentHealthCheck(CommitmentQueue queue) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        CommitmentQueueStatus status;
        try
        {
            status = await queue.StatusAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (System.Data.Common.DbException e)
        {
            return HealthCheckResult.Degraded($"storage commitment queue unreadable: {e.GetType().Name}");
        }

        return status.Stalled
            ? HealthCheckResult.Degraded($"{status.Waiting} storage commitment reports wait"
                + (status.Behind.Count > 0 ? $" ({string.Join(", ", status.Behind)})" : string.Empty)
                + $", the oldest for {Math.Floor(status.OldestWait!.Value.TotalMinutes)} min"
                + (status.LastError is { } error ? $"; last error: {error}" : string.Empty))
            : HealthCheckResult.Healthy($"{status.Waiting} storage commitment reports waiting");
    }
}

/// <summary>
/// Public verification of the audit trail: signed tree heads, the signing key, inclusion and consistency proofs. They
/// carry hashes only, so an auditor can check the log without seeing any entry.
/// </summary>
internal static class AuditEndpoints
{
    public static void MapAuditEndpoints(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/api/audit");
        group.MapGet("/tree-head", async (IAuditLog log, CancellationToken ct) =>
            await log.GetLatestTreeHeadAsync(ct) is { } head ? Results.Ok(TreeHead(head)) : Results.NotFound());
        group.MapGet("/public-key", async (IAuditLog log, CancellationToken ct) =>
        {
            var key = await log.GetPublicKeyAsync(ct);
            return Results.Ok(new { keyId = key.KeyId, publicKey = Convert.ToBase64String(key.PublicKey), algorithm = "Ed25519" });
        });
        group.MapGet("/proofs/inclusion/{sequence:long}", async (long sequence, long? treeSize, IAuditLog log, CancellationToken ct) =>
        {
            if (sequence < 0 || treeSize is <= 0)
            {
                return Results.Problem("sequence must be 0 or more, and treeSize 1 or more", statusCode: StatusCodes.Status400BadRequest);
            }

            try
            {
                var proof = await log.GetInclusionProofAsync(sequence, treeSize, ct);
                return Results.Ok(new
                {
                    sequence = proof.Sequence,
                    treeSize = proof.TreeSize,
                    leafHash = Convert.ToHexStringLower(proof.LeafHash),
                    auditPath = proof.AuditPath.Select(Convert.ToHexStringLower),
                    treeHead = TreeHead(proof.TreeHead),
                });
            }
            catch (AuditTreeHeadNotFoundException e)
            {
                return Results.Problem(e.Message, statusCode: StatusCodes.Status404NotFound);
            }
            catch (ArgumentException e)
            {
                return Results.Problem(e.Message, statusCode: StatusCodes.Status400BadRequest);
            }
            catch (AuditIntegrityException e)
            {
                // The stored log does not prove what it should: said plainly, as `vigie audit verify` would.
                return Results.Problem(e.Message, statusCode: StatusCodes.Status500InternalServerError, title: "The audit trail failed its own check");
            }
        });
        group.MapGet("/proofs/consistency", async (long first, long? second, IAuditLog log, CancellationToken ct) =>
        {
            if (first <= 0 || second < first)
            {
                // RFC 9162 2.1.4: a consistency proof is between a first size of 1 or more and a second no smaller.
                return Results.Problem("first must be 1 or more, and second no smaller than first", statusCode: StatusCodes.Status400BadRequest);
            }

            try
            {
                var proof = await log.GetConsistencyProofAsync(first, second, ct);
                return Results.Ok(new { first = TreeHead(proof.First), second = TreeHead(proof.Second), proof = proof.Proof.Select(Convert.ToHexStringLower) });
            }
            catch (AuditTreeHeadNotFoundException e)
            {
                return Results.Problem(e.Message, statusCode: StatusCodes.Status404NotFound);
            }
            catch (ArgumentException e)
            {
                return Results.Problem(e.Message, statusCode: StatusCodes.Status400BadRequest);
            }
            catch (AuditIntegrityException e)
            {
                // The stored log does not prove what it should: said plainly, as `vigie audit verify` would.
                return Results.Problem(e.Message, statusCode: StatusCodes.Status500InternalServerError, title: "The audit trail failed its own check");
            }
        });
    }

    private static JsonObject TreeHead(SignedTreeHead head) => TreeHeadJson.ToNode(head);
}
