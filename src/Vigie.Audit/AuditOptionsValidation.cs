using Microsoft.Extensions.Options;

namespace Vigie.Audit;

/// <summary>
/// Checks the audit settings when the node starts, naming each problem with its place. A syslog sink without a host
/// retried "Host is not set" forever, a sink whose name another one had was skipped with a log line, and a trusted
/// public key that was not one failed every verification: each left the trail without the copy outside it was meant to have.
/// </summary>
public sealed class AuditOptionsValidation : IValidateOptions<AuditOptions>
{
    public ValidateOptionsResult Validate(string? name, AuditOptions options)
    {
        var problems = new List<string>();
        const string at = AuditOptions.Section;
        foreach (var (setting, value) in new[]
                 {
                     ("TreeHeadEveryEntries", options.TreeHeadEveryEntries), ("AppenderMaxBatch", options.AppenderMaxBatch),
                     ("AppenderQueueCapacity", options.AppenderQueueCapacity), ("QueryMaxPageSize", options.QueryMaxPageSize),
                     ("VerifyMaxProblems", options.VerifyMaxProblems), ("MaxSealedBytes", options.MaxSealedBytes),
                 })
        {
            if (value < 1)
            {
                problems.Add($"{at}:{setting} is {value}: it must be positive");
            }
        }

        // -1 was taken before 2026-12-07: every record of an outage was dropped, with no word at start.
        if (options.MaxSpilledRecords < 0)
        {
            problems.Add($"{at}:MaxSpilledRecords is {options.MaxSpilledRecords}: it must be 0 (keep none) or more");
        }

        Positive(problems, $"{at}:TreeHeadInterval", options.TreeHeadInterval);
        Positive(problems, $"{at}:TreeHeadPollInterval", options.TreeHeadPollInterval);
        for (var i = 0; i < options.TrustedPublicKeys.Count; i++)
        {
            if (!IsPublicKey(options.TrustedPublicKeys[i]))
            {
                problems.Add($"{at}:TrustedPublicKeys:{i} is not an Ed25519 public key (32 bytes in base64: the publicKey of `vigie audit head --json`)");
            }
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Sinks.Count; i++)
        {
            CheckSink(options.Sinks[i], $"{at}:Sinks:{i}", names, problems);
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    private static void CheckSink(AuditSinkOptions sink, string at, HashSet<string> names, List<string> problems)
    {
        if (string.IsNullOrWhiteSpace(sink.Name))
        {
            problems.Add($"{at}:Name is empty: it keys the sink's cursor");
        }
        else if (!names.Add(sink.Name))
        {
            problems.Add($"{at}:Name '{sink.Name}' is also another sink's: they would share one cursor");
        }

        if (!sink.Enabled)
        {
            // Kept, not checked: an operator parks a sink being set up.
            return;
        }

        switch (sink.Kind)
        {
            case AuditSinkKind.SyslogTcp or AuditSinkKind.SyslogTls:
                if (string.IsNullOrWhiteSpace(sink.Host))
                {
                    problems.Add($"{at}:Host is empty: the collector's name or address");
                }

                if (sink.Port is < 1 or > 65535)
                {
                    problems.Add($"{at}:Port {sink.Port} is not 1 to 65535");
                }

                if (sink.Kind == AuditSinkKind.SyslogTcp && (sink.TrustedCaPath ?? sink.ClientCertificatePath ?? sink.ClientKeyPath) is not null)
                {
                    problems.Add($"{at} names TLS files but its Kind is SyslogTcp: the messages would go in clear (SyslogTls)");
                }

                if ((sink.ClientCertificatePath is null) != (sink.ClientKeyPath is null))
                {
                    problems.Add($"{at}:ClientCertificatePath and ClientKeyPath go together (PEM certificate and key)");
                }

                foreach (var (setting, path) in new[] { ("TrustedCaPath", sink.TrustedCaPath), ("ClientCertificatePath", sink.ClientCertificatePath), ("ClientKeyPath", sink.ClientKeyPath) })
                {
                    if (!string.IsNullOrWhiteSpace(path) && !File.Exists(path))
                    {
                        problems.Add($"{at}:{setting} '{path}': no such file");
                    }
                }

                if (sink.MaxMessageBytes < 2048)
                {
                    problems.Add($"{at}:MaxMessageBytes {sink.MaxMessageBytes} is below 2048, the least RFC 5425 collectors take");
                }

                break;
            case AuditSinkKind.FhirHttp:
                if (sink.FhirBaseUrl is not { IsAbsoluteUri: true } url || (url.Scheme != Uri.UriSchemeHttps && url.Scheme != Uri.UriSchemeHttp))
                {
                    problems.Add($"{at}:FhirBaseUrl '{sink.FhirBaseUrl}' is not an http or https address (the FHIR server's base)");
                }

                break;
            case AuditSinkKind.FhirNdjson:
                if (string.IsNullOrWhiteSpace(sink.NdjsonPath))
                {
                    problems.Add($"{at}:NdjsonPath is empty: the file the AuditEvents are appended to");
                }

                break;
            default:
                problems.Add($"{at}:Kind {sink.Kind} is not one of {string.Join(", ", Enum.GetNames<AuditSinkKind>())}");
                break;
        }

        if (sink.BatchSize < 1)
        {
            problems.Add($"{at}:BatchSize {sink.BatchSize} must be positive");
        }

        Positive(problems, $"{at}:PollInterval", sink.PollInterval);
        Positive(problems, $"{at}:ConnectTimeout", sink.ConnectTimeout);
        Positive(problems, $"{at}:SendTimeout", sink.SendTimeout);
        Positive(problems, $"{at}:MinBackoff", sink.MinBackoff);
        if (sink.MaxBackoff < sink.MinBackoff)
        {
            problems.Add($"{at}:MaxBackoff {sink.MaxBackoff} is below MinBackoff {sink.MinBackoff}");
        }
    }

    private static void Positive(List<string> problems, string setting, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            problems.Add($"{setting} {value} must be positive");
        }
    }

    private static bool IsPublicKey(string encoded)
    {
        Span<byte> raw = stackalloc byte[48];
        return Convert.TryFromBase64String(encoded, raw, out var length) && length == 32;
    }
}
