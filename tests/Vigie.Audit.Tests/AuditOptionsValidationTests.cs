using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>The audit settings are checked at start, each problem named with its place.</summary>
public sealed class AuditOptionsValidationTests
{
    /// <summary>
    /// Regression: a syslog sink without a host started and retried "Host is not set" forever, two sinks of one name
    /// started with one skipped by a log line, and a trusted key that was not one started and failed each verification.
    /// </summary>
    [Fact]
    public void Regression_a_sink_that_could_never_send_started_the_node()
    {
        using var work = new TempDirectory("vigie-audit-settings");
        var missing = work.Combine("ca.pem");
        var options = new AuditOptions
        {
            TreeHeadInterval = TimeSpan.Zero,
            TrustedPublicKeys = [Convert.ToBase64String(new byte[32]), "not-a-key", Convert.ToBase64String(new byte[31])],
            Sinks =
            [
                new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTls, Port = 0, TrustedCaPath = missing, ClientCertificatePath = missing },
                new AuditSinkOptions { Name = "siem", Kind = AuditSinkKind.SyslogTcp, Host = "arr.example", TrustedCaPath = missing },
                new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri("fhir/base", UriKind.Relative) },
                new AuditSinkOptions { Name = "", Kind = AuditSinkKind.FhirNdjson, MaxBackoff = TimeSpan.FromMilliseconds(1), BatchSize = 0 },
                new AuditSinkOptions { Name = "parked", Kind = AuditSinkKind.SyslogTcp, Enabled = false },
            ],
        };

        var result = new AuditOptionsValidation().Validate(null, options);

        Assert.Equal(
        [
            "Audit:TreeHeadInterval 00:00:00 must be positive",
            "Audit:TrustedPublicKeys:1 is not an Ed25519 public key (32 bytes in base64: the publicKey of `vigie audit head --json`)",
            "Audit:TrustedPublicKeys:2 is not an Ed25519 public key (32 bytes in base64: the publicKey of `vigie audit head --json`)",
            "Audit:Sinks:0:Host is empty: the collector's name or address",
            "Audit:Sinks:0:Port 0 is not 1 to 65535",
            "Audit:Sinks:0:ClientCertificatePath and ClientKeyPath go together (PEM certificate and key)",
            $"Audit:Sinks:0:TrustedCaPath '{missing}': no such file",
            $"Audit:Sinks:0:ClientCertificatePath '{missing}': no such file",
            "Audit:Sinks:1:Name 'siem' is also another sink's: they would share one cursor",
            "Audit:Sinks:1 names TLS files but its Kind is SyslogTcp: the messages would go in clear (SyslogTls)",
            $"Audit:Sinks:1:TrustedCaPath '{missing}': no such file",
            "Audit:Sinks:2:FhirBaseUrl 'fhir/base' is not an http or https address (the FHIR server's base)",
            "Audit:Sinks:3:Name is empty: it keys the sink's cursor",
            "Audit:Sinks:3:NdjsonPath is empty: the file the AuditEvents are appended to",
            "Audit:Sinks:3:BatchSize 0 must be positive",
            "Audit:Sinks:3:MaxBackoff 00:00:00.0010000 is below MinBackoff 00:00:01",
        ], result.Failures);
    }

    [Fact]
    public void The_defaults_and_ordinary_sinks_pass()
    {
        var options = new AuditOptions
        {
            Sinks =
            [
                new AuditSinkOptions { Name = "arr", Kind = AuditSinkKind.SyslogTcp, Host = "arr.example", Port = 601 },
                new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = new Uri("https://fhir.example/r4") },
                new AuditSinkOptions { Name = "file", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = "/var/log/vigie/audit.ndjson" },
            ],
        };

        Assert.True(new AuditOptionsValidation().Validate(null, new AuditOptions()).Succeeded);
        Assert.True(new AuditOptionsValidation().Validate(null, options).Succeeded);
    }

    /// <summary>Regression: `Audit:MaxSpilledRecords: -1` was taken silently, and every record of an outage was then dropped.</summary>
    [Fact]
    public void Regression_a_negative_MaxSpilledRecords_was_accepted()
    {
        var result = new AuditOptionsValidation().Validate(null, new AuditOptions { MaxSpilledRecords = -1 });
        Assert.Equal(["Audit:MaxSpilledRecords is -1: it must be 0 (keep none) or more"], result.Failures);
        Assert.True(new AuditOptionsValidation().Validate(null, new AuditOptions { MaxSpilledRecords = 0 }).Succeeded);
    }
}
