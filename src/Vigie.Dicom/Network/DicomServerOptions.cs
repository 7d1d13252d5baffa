namespace Vigie.Dicom.Network;

/// <summary>The DICOM node: where it listens, who it is, how many associations it takes (configuration section "Dicom:Server").</summary>
public sealed class DicomServerOptions
{
    public const string Section = "Dicom:Server";

    /// <summary>Address to listen on. Loopback by default: exposing the node is an explicit decision.</summary>
    public string BindAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// Plain DICOM port; 0 disables it. The host refuses both this and <see cref="TlsPort"/> at 0; a
    /// <see cref="DicomServer"/> made directly with both at 0 takes a random plain port (tests).
    /// </summary>
    public int Port { get; set; } = 11112;

    /// <summary>DICOM over TLS port (PS3.15 B.1, conventionally 2762); 0 disables it. Needs <see cref="Tls"/>.</summary>
    public int TlsPort { get; set; }

    public string AETitle { get; set; } = "VIGIE";

    /// <summary>Accept associations whatever Called AE Title they name (off: only <see cref="AETitle"/>).</summary>
    public bool AcceptAnyCalledAE { get; set; }

    public int MaxAssociations { get; set; } = 64;

    public int MaxAssociationsPerCallingAE { get; set; } = 16;

    /// <summary>
    /// Connections one address may hold open before they carry an A-ASSOCIATE-RQ. A peer opening sockets and sending
    /// nothing otherwise held every place until the ARTIM timer freed them, and no modality could associate.
    /// </summary>
    public int MaxPendingConnectionsPerAddress { get; set; } = 16;

    public DicomAssociationOptions Association { get; set; } = new();

    public DicomTlsOptions Tls { get; set; } = new();
}

/// <summary>TLS for DICOM (PS3.15 Annex B, BCP 195 profile: TLS 1.2 or 1.3 with AEAD suites only).</summary>
public sealed class DicomTlsOptions
{
    /// <summary>Server certificate: a PEM file (with <see cref="KeyPath"/>) or a PKCS#12 file.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>PEM private key of the server certificate.</summary>
    public string? KeyPath { get; set; }

    /// <summary>Password of a PKCS#12 certificate file.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>Require a client certificate, validated against <see cref="ClientCaPath"/>.</summary>
    public bool RequireClientCertificate { get; set; }

    /// <summary>PEM bundle of the certificate authorities trusted for client certificates.</summary>
    public string? ClientCaPath { get; set; }
}
