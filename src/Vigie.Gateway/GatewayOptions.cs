using Vigie.Dicom.Network;

namespace Vigie.Gateway;

/// <summary>The gateway's policy and its peers (configuration section "Gateway").</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";

    /// <summary>Quarantine objects whose verdict is Suspicious, not only Malicious (the safe default).</summary>
    public bool QuarantineSuspicious { get; set; } = true;

    /// <summary>
    /// Objects up to this size keep a plaintext copy in memory while they arrive, and are inspected from it; larger ones
    /// are read back from their encrypted spool by ranges.
    /// </summary>
    public int InMemoryInspectionLimit { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// All those copies together, across associations: an object that would take the node past it is read back from
    /// its spool too, so memory stays bounded whatever the number of concurrent large stores.
    /// </summary>
    public long InMemoryInspectionTotal { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// DICOM nodes Vigie talks to: forwarding targets (the PACS), C-MOVE destinations, and the modalities that ask for
    /// storage commitment (their reports go to the address given here).
    /// </summary>
    public List<DicomDestination> Destinations { get; set; } = [];

    /// <summary>The node declared under <paramref name="aeTitle"/> (in that role, when one is given), or null.</summary>
    public DicomDestination? FindDestination(string aeTitle, Predicate<DicomDestination>? role = null) =>
        Destinations.Find(d => string.Equals(d.AETitle, aeTitle, StringComparison.Ordinal) && (role is null || role(d)));

    /// <summary>Most instances one C-GET or C-MOVE may send, and one C-FIND may return.</summary>
    public int MaxRetrieveInstances { get; set; } = 100_000;

    public int MaxFindResults { get; set; } = 10_000;

    /// <summary>
    /// Storage SOP classes outside the registry that the node takes, keeps and sends like the registry's: vendors'
    /// private ones (a CT's raw data or protocol objects). None by default: an unknown class is refused at negotiation
    /// (result 3), so the modality cannot store it anywhere through Vigie; an explicit list keeps what comes in a choice.
    /// </summary>
    public List<string> AdditionalStorageSopClasses { get; set; } = [];

    /// <summary>A storage class of the registry, or one of <see cref="AdditionalStorageSopClasses"/>.</summary>
    public bool IsStorageClass(string uid) => SopClasses.IsStorage(uid) || AdditionalStorageSopClasses.Contains(uid, StringComparer.Ordinal);

    public ForwardingOptions Forwarding { get; set; } = new();

    public MaintenanceOptions Maintenance { get; set; } = new();

    /// <summary>
    /// At start, objects written up to this long before the newest indexed one are checked against the index: ingest
    /// commits are not synced, so a power cut may take the rows of the last ones (see ArchiveRecovery).
    /// </summary>
    public TimeSpan RecoveryWindow { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// How long Vigie keeps trying to deliver a storage commitment report to a modality that cannot be reached; past
    /// it the report is given up (logged and audited) and the modality keeps its copies.
    /// </summary>
    public TimeSpan CommitmentReportExpiry { get; set; } = TimeSpan.FromHours(24);
}

/// <summary>A remote DICOM node.</summary>
public sealed class DicomDestination
{
    public string AETitle { get; set; } = string.Empty;

    public string Host { get; set; } = "127.0.0.1";

    public int Port { get; set; } = 104;

    /// <summary>Every object Vigie stores is forwarded to this node (a PACS behind the gateway).</summary>
    public bool Forward { get; set; }

    /// <summary>Accept this node as a C-MOVE destination.</summary>
    public bool MoveDestination { get; set; } = true;

    public bool UseTls { get; set; }

    public string? ServerCaPath { get; set; }

    /// <summary>
    /// The name the node's TLS certificate must carry (DNS or IP subject alternative name); by default <see cref="Host"/>.
    /// For a PACS reached by address whose certificate names it by host name.
    /// </summary>
    public string? ServerName { get; set; }

    public string? ClientCertificatePath { get; set; }

    public string? ClientKeyPath { get; set; }

    /// <summary>
    /// How long Vigie waits for this node to accept a connection and finish the TLS handshake; past it the attempt
    /// counts as "cannot reach" and is retried later. Raise it for a site across a slow link.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long Vigie waits for this node to answer a request (a C-STORE, a report) or to go on reading what Vigie
    /// sends; past it the association is aborted and the send retried later. Raise it for a PACS slow to commit.
    /// </summary>
    public TimeSpan ResponseTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// ARTIM towards this node: how long Vigie waits for it to accept or reject the association, and to confirm
    /// the release.
    /// </summary>
    public TimeSpan ArtimTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Largest PDU Vigie sends to this node whatever it advertises (0: as it advertises). Set it for a node that
    /// advertises more than it can take, or no limit at all; the least PS3.8 allows is 4096.
    /// </summary>
    public uint MaxSendPduLength { get; set; }

    /// <summary>Parses the command-line form AE@host:port.</summary>
    public static DicomDestination Parse(string text, bool forward)
    {
        var at = text.IndexOf('@', StringComparison.Ordinal);
        var colon = text.LastIndexOf(':');
        if (at <= 0 || colon <= at + 1 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            || port is < 1 or > 65535)
        {
            throw new FormatException($"'{text}' is not AE@host:port (for example PACS@10.0.0.5:104).");
        }

        return new DicomDestination { AETitle = text[..at], Host = text[(at + 1)..colon], Port = port, Forward = forward };
    }
}

public sealed class ForwardingOptions
{
    /// <summary>First retry delay after a failed send; doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan InitialRetryDelay { get; set; } = TimeSpan.FromSeconds(5);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Attempts before an object is set aside as undeliverable (0: never give up).</summary>
    public int MaxAttempts { get; set; }

    /// <summary>Objects sent over one association before it is released.</summary>
    public int BatchSize { get; set; } = 64;

    /// <summary>How long a claimed message stays ours; past it another node may take it over.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The calling AE title towards the PACS; by default the node's own (Dicom:Server:AETitle, `--ae`), the one PACS
    /// administrators register. Set it only when the PACS knows Vigie's sending side under another title.
    /// </summary>
    public string? CallingAE { get; set; }

    /// <summary>The calling AE title in use: <see cref="CallingAE"/>, else the node's.</summary>
    public string CallingAEOr(string nodeAETitle) => string.IsNullOrWhiteSpace(CallingAE) ? nodeAETitle : CallingAE;

    /// <summary>
    /// An object waiting longer than this to be forwarded turns /health to degraded: the PACS is down, unreachable or
    /// refusing, and the images are not where the clinicians look for them.
    /// </summary>
    public TimeSpan BacklogAlert { get; set; } = TimeSpan.FromMinutes(15);
}
