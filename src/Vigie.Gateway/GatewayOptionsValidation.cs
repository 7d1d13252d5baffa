using Microsoft.Extensions.Options;
using Vigie.Dicom;
using Vigie.Dicom.Network;

namespace Vigie.Gateway;

/// <summary>
/// Checks the gateway's peers when the node starts: a destination without a title, host or valid port, or two with the
/// same title, used to be accepted and then fail each forward or C-MOVE at run time.
/// </summary>
public sealed class GatewayOptionsValidation : IValidateOptions<GatewayOptions>
{
    private const int MaxInMemoryInspectionLimit = 1 << 30;

    public ValidateOptionsResult Validate(string? name, GatewayOptions options)
    {
        var problems = new List<string>();
        var titles = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Destinations.Count; i++)
        {
            var destination = options.Destinations[i];
            var at = $"Gateway:Destinations:{i}";
            if (AETitles.Problem(destination.AETitle) is { } title)
            {
                problems.Add($"{at}:AETitle '{destination.AETitle}' {title} ({AETitles.Rule})");
            }
            else if (!titles.Add(destination.AETitle))
            {
                problems.Add($"{at}:AETitle '{destination.AETitle}' is also another destination's: C-MOVE could not tell them apart");
            }

            if (string.IsNullOrWhiteSpace(destination.Host))
            {
                problems.Add($"{at}:Host is empty");
            }

            if (destination.Port is < 1 or > 65535)
            {
                problems.Add($"{at}:Port {destination.Port} is not 1 to 65535");
            }

            if (!destination.UseTls && (destination.ClientCertificatePath is not null || destination.ServerCaPath is not null))
            {
                problems.Add($"{at} names TLS files but UseTls is false: the node would be reached in clear");
            }

            if (destination.ConnectTimeout <= TimeSpan.Zero || destination.ConnectTimeout > TimeSpan.FromMinutes(10))
            {
                problems.Add($"{at}:ConnectTimeout {destination.ConnectTimeout} is not between 0 and 10 minutes");
            }

            if (destination.ResponseTimeout < TimeSpan.FromSeconds(1) || destination.ResponseTimeout > TimeSpan.FromHours(1))
            {
                problems.Add($"{at}:ResponseTimeout {destination.ResponseTimeout} is not between 1 second and 1 hour");
            }

            if (destination.ArtimTimeout < TimeSpan.FromSeconds(1) || destination.ArtimTimeout > TimeSpan.FromMinutes(10))
            {
                problems.Add($"{at}:ArtimTimeout {destination.ArtimTimeout} is not between 1 second and 10 minutes");
            }

            if (destination.MaxSendPduLength is > 0 and < DicomServerOptionsValidation.MinPduLength)
            {
                problems.Add($"{at}:MaxSendPduLength {destination.MaxSendPduLength} is below {DicomServerOptionsValidation.MinPduLength}, the least PS3.8 allows (0: as the node advertises)");
            }
        }

        foreach (var (setting, value) in new[]
                 {
                     ("InMemoryInspectionLimit", (long)options.InMemoryInspectionLimit), ("MaxRetrieveInstances", options.MaxRetrieveInstances),
                     ("MaxFindResults", options.MaxFindResults),
                 })
        {
            if (value <= 0)
            {
                problems.Add($"Gateway:{setting} is {value}: it must be positive");
            }
        }

        for (var i = 0; i < options.AdditionalStorageSopClasses.Count; i++)
        {
            var uid = options.AdditionalStorageSopClasses[i];
            if (!UidSyntax.IsWellFormed(uid))
            {
                problems.Add($"Gateway:AdditionalStorageSopClasses:{i} '{uid}' is not a UID (digits and dots, at most 64 characters, no leading zero in a component)");
            }
            else if (DicomDictionary.FindUid(uid) is { } known && !SopClasses.IsStorage(uid))
            {
                // Taken as a storage class, a query, retrieve or commitment class would be answered as one.
                problems.Add($"Gateway:AdditionalStorageSopClasses:{i} '{uid}' is the registry's {known.Name} ({known.Type}), not a storage class");
            }
        }

        if (options.InMemoryInspectionLimit > MaxInMemoryInspectionLimit)
        {
            problems.Add($"Gateway:InMemoryInspectionLimit {options.InMemoryInspectionLimit} is above 1 GiB, the largest copy one object may keep in memory");
        }

        // A negative period started without a word: a negative backlog alert turned forwarding Degraded as soon as one
        // object waited, and a negative report expiry gave up on every commitment report at once.
        if (options.Forwarding.BacklogAlert <= TimeSpan.Zero)
        {
            problems.Add($"Gateway:Forwarding:BacklogAlert {options.Forwarding.BacklogAlert} must be positive");
        }

        ValidateForwarding(options.Forwarding, problems);

        if (options.CommitmentReportExpiry <= TimeSpan.Zero)
        {
            problems.Add($"Gateway:CommitmentReportExpiry {options.CommitmentReportExpiry} must be positive");
        }

        if (options.InMemoryInspectionTotal < 0)
        {
            problems.Add($"Gateway:InMemoryInspectionTotal is {options.InMemoryInspectionTotal}: it must not be negative (0: every object is read back from its spool)");
        }

        var maintenance = options.Maintenance;
        if (maintenance.Interval < TimeSpan.Zero || maintenance.FirstRunDelay < TimeSpan.Zero || maintenance.FinishedMessageRetention < TimeSpan.Zero)
        {
            problems.Add("Gateway:Maintenance:Interval, FirstRunDelay and FinishedMessageRetention must not be negative (Interval 0 turns maintenance off)");
        }

        if (maintenance.Retention is { } policy)
        {
            if (string.IsNullOrWhiteSpace(policy.Name))
            {
                problems.Add("Gateway:Maintenance:Retention:Name is empty: the policy's name is what the audit trail records for every removal");
            }

            // Retention is the only way data leaves the archive: a period that would make everything due at once, or
            // a share that disables the halt, is a typing error until proven otherwise.
            foreach (var (setting, period) in new[] { ("Studies", policy.Studies), ("SupersededVersions", policy.SupersededVersions), ("Quarantine", policy.Quarantine) })
            {
                if (period is { } value && value <= TimeSpan.Zero)
                {
                    problems.Add($"Gateway:Maintenance:Retention:{setting} {value} must be a positive period (leave it out to keep those for ever)");
                }
            }

            if (!(policy.MaxShare > 0 && policy.MaxShare <= 1))
            {
                problems.Add($"Gateway:Maintenance:Retention:MaxShare {policy.MaxShare} must be more than 0 and at most 1 (a share of the archive)");
            }

            if (maintenance.Interval <= TimeSpan.Zero)
            {
                problems.Add("Gateway:Maintenance:Retention is set but Gateway:Maintenance:Interval is 0: the policy would never run");
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    /// <summary>
    /// The forwarding queue's settings (until 2026-12-07 unchecked: BatchSize 0 claimed nothing and forwarded nothing
    /// while /health said Healthy; a zero delay or lease retried or handed over without pause).
    /// </summary>
    private static void ValidateForwarding(ForwardingOptions forwarding, List<string> problems)
    {
        const string at = "Gateway:Forwarding";
        if (forwarding.BatchSize < 1)
        {
            problems.Add($"{at}:BatchSize is {forwarding.BatchSize}: it must be at least 1 (objects per association; 0 would forward nothing)");
        }

        if (forwarding.MaxAttempts < 0)
        {
            problems.Add($"{at}:MaxAttempts is {forwarding.MaxAttempts}: it must not be negative (0: never give up)");
        }

        foreach (var (setting, value) in new[]
                 {
                     ("InitialRetryDelay", forwarding.InitialRetryDelay), ("MaxRetryDelay", forwarding.MaxRetryDelay), ("Lease", forwarding.Lease),
                 })
        {
            if (value <= TimeSpan.Zero)
            {
                problems.Add($"{at}:{setting} {value} must be positive");
            }
        }

        if (forwarding.InitialRetryDelay > TimeSpan.Zero && forwarding.MaxRetryDelay > TimeSpan.Zero && forwarding.MaxRetryDelay < forwarding.InitialRetryDelay)
        {
            problems.Add($"{at}:MaxRetryDelay {forwarding.MaxRetryDelay} is below InitialRetryDelay {forwarding.InitialRetryDelay}: the delay doubles from the first up to the second");
        }

        if (!string.IsNullOrWhiteSpace(forwarding.CallingAE) && AETitles.Problem(forwarding.CallingAE) is { } title)
        {
            problems.Add($"{at}:CallingAE '{forwarding.CallingAE}' {title} ({AETitles.Rule})");
        }
    }
}
