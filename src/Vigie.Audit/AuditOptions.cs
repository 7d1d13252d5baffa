namespace Vigie.Audit;

/// <summary>Audit trail settings, bound from the "Audit" configuration section (VIGIE__AUDIT__KEY overrides).</summary>
public sealed class AuditOptions
{
    public const string Section = "Audit";

    /// <summary>Sign a tree head once this many entries have been appended since the last one.</summary>
    public int TreeHeadEveryEntries { get; set; } = 1000;

    /// <summary>Sign a tree head at least this often while new entries arrive.</summary>
    public TimeSpan TreeHeadInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the signer looks at the tree size (entries appended in other processes are not signalled).</summary>
    public TimeSpan TreeHeadPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The Ed25519 private key file, outside the data folder. Created with mode 0600 on first use.</summary>
    public string? SigningKeyPath { get; set; }

    /// <summary>Raw Ed25519 public keys (base64) of earlier signing keys whose tree heads verification still accepts.</summary>
    public List<string> TrustedPublicKeys { get; set; } = [];

    /// <summary>AuditSourceID of the entries this node writes.</summary>
    public string SourceId { get; set; } = Environment.MachineName;

    /// <summary>AuditEnterpriseSiteID in exported messages.</summary>
    public string? EnterpriseSiteId { get; set; }

    /// <summary>
    /// Where records that could not reach the trail's database (an outage) wait, sealed, until it answers again; the
    /// host puts it in the data folder. Null: such records are only logged as lost.
    /// </summary>
    public string? SpillFolder { get; set; }

    /// <summary>Most records one process keeps in the spill; past it they are counted, and the count is recorded when the spill is appended.</summary>
    public int MaxSpilledRecords { get; set; } = 100_000;

    /// <summary>Most records one group commit of the standalone appender writes.</summary>
    public int AppenderMaxBatch { get; set; } = 2000;

    /// <summary>Records waiting for the standalone appender before producers wait.</summary>
    public int AppenderQueueCapacity { get; set; } = 100_000;

    /// <summary>Largest page a query returns.</summary>
    public int QueryMaxPageSize { get; set; } = 1000;

    /// <summary>Verification stops listing problems after this many (it still counts them).</summary>
    public int VerifyMaxProblems { get; set; } = 1000;

    /// <summary>Largest sealed blob accepted from the sealer or read back from the database.</summary>
    public int MaxSealedBytes { get; set; } = 1 << 20;

    /// <summary>Export sinks, each with its own durable cursor.</summary>
    public List<AuditSinkOptions> Sinks { get; set; } = [];
}

public enum AuditSinkKind
{
    /// <summary>RFC 5424 over TCP with RFC 6587 octet counting.</summary>
    SyslogTcp,

    /// <summary>RFC 5424 over TLS (RFC 5425).</summary>
    SyslogTls,

    /// <summary>FHIR R4 AuditEvent resources posted to a FHIR server in transaction bundles.</summary>
    FhirHttp,

    /// <summary>FHIR R4 AuditEvent resources appended to an NDJSON file.</summary>
    FhirNdjson,
}

/// <summary>One export destination. Its name keys its cursor, so renaming a sink restarts it from the beginning.</summary>
public sealed class AuditSinkOptions
{
    public string Name { get; set; } = "";
    public AuditSinkKind Kind { get; set; }
    public bool Enabled { get; set; } = true;

    /// <summary>Syslog collector host and port.</summary>
    public string? Host { get; set; }
    public int Port { get; set; } = 6514;

    /// <summary>TLS: the name the collector's certificate must carry (defaults to <see cref="Host"/>).</summary>
    public string? ServerName { get; set; }

    /// <summary>TLS: PEM file of the CA certificates trusted for the collector (the system store when empty).</summary>
    public string? TrustedCaPath { get; set; }

    /// <summary>TLS: client certificate for mutual authentication (PEM certificate and key files, as ATNA asks).</summary>
    public string? ClientCertificatePath { get; set; }
    public string? ClientKeyPath { get; set; }

    /// <summary>Syslog APP-NAME and HOSTNAME (defaults to the machine name).</summary>
    public string AppName { get; set; } = "vigie";
    public string? HostName { get; set; }

    /// <summary>FHIR server base URL (for example https://fhir.example.org/fhir).</summary>
    public Uri? FhirBaseUrl { get; set; }

    /// <summary>FHIR: optional bearer token sent as Authorization.</summary>
    public string? BearerToken { get; set; }

    /// <summary>NDJSON output file.</summary>
    public string? NdjsonPath { get; set; }

    /// <summary>Where a new cursor starts: at the first entry (default) or after the current last one.</summary>
    public bool StartAtEnd { get; set; }

    public int BatchSize { get; set; } = 200;
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan MinBackoff { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromMinutes(5);
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Messages larger than this are cut by the collector side of many syslog servers; Vigie refuses to send them whole.</summary>
    public int MaxMessageBytes { get; set; } = 256 * 1024;
}
