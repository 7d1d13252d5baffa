using Microsoft.Extensions.Options;

namespace Vigie.Dicom.Network;

/// <summary>
/// Checks the node's own identity, limits and timers when it starts, naming each problem with its place. An AE title
/// of 17 characters (every association refused as calling an unknown AE) or a maximum PDU length of 0 (every
/// association aborted at its first P-DATA) used to start the node.
/// </summary>
public sealed class DicomServerOptionsValidation : IValidateOptions<DicomServerOptions>
{
    /// <summary>Largest receive PDU length Vigie can be set to: it holds one whole PDU in memory.</summary>
    public const uint MaxReceivePduLength = 16 * 1024 * 1024;

    /// <summary>Least maximum PDU length: what PS3.8 peers can be expected to fit a command into.</summary>
    public const uint MinPduLength = 4096;

    public ValidateOptionsResult Validate(string? name, DicomServerOptions options)
    {
        var problems = new List<string>();
        const string at = DicomServerOptions.Section;
        if (AETitles.Problem(options.AETitle) is { } title)
        {
            problems.Add($"{at}:AETitle '{options.AETitle}' {title} ({AETitles.Rule})");
        }

        if (!IPAddressText.TryParse(options.BindAddress, out _))
        {
            problems.Add($"{at}:BindAddress '{options.BindAddress}' is not {IPAddressText.Expected} (0.0.0.0 for every interface)");
        }

        if (options.Port is < 0 or > 65535 || options.TlsPort is < 0 or > 65535)
        {
            problems.Add($"{at}:Port {options.Port} and TlsPort {options.TlsPort} must be 0 (off) to 65535");
        }
        else if (options.Port > 0 && options.Port == options.TlsPort)
        {
            problems.Add($"{at}:Port and TlsPort are both {options.Port}");
        }
        else if (options.Port == 0 && options.TlsPort == 0)
        {
            // 0 is off: with both off, the listener took a random port in clear (until 2026-12-07), which no modality could find.
            problems.Add($"{at}:Port and {at}:TlsPort are both 0 (off): no DICOM port would open; set one of them (--dicom-port sets {at}:Port)");
        }

        if (options.TlsPort > 0 && string.IsNullOrWhiteSpace(options.Tls.CertificatePath))
        {
            problems.Add($"{at}:TlsPort is set but {at}:Tls:CertificatePath is not");
        }

        if (options.TlsPort > 0 && options.Tls.RequireClientCertificate && string.IsNullOrWhiteSpace(options.Tls.ClientCaPath))
        {
            problems.Add($"{at}:Tls:RequireClientCertificate needs {at}:Tls:ClientCaPath, the authorities client certificates are checked against");
        }

        if (options.TlsPort > 0)
        {
            CheckTlsFiles(options.Tls, problems);
        }
        else if (options.Tls.CertificatePath is not null || options.Tls.ClientCaPath is not null)
        {
            // A certificate set up without its port left the node serving in clear only, which its operators took for TLS.
            problems.Add($"{at}:Tls names a certificate but {at}:TlsPort is 0: no TLS port would open, DICOM would be served in clear only");
        }

        if (options.MaxAssociations < 1 || options.MaxAssociationsPerCallingAE < 1 || options.MaxAssociationsPerCallingAE > options.MaxAssociations)
        {
            problems.Add($"{at}:MaxAssociations ({options.MaxAssociations}) and MaxAssociationsPerCallingAE ({options.MaxAssociationsPerCallingAE}) "
                + "must be at least 1, the second no more than the first");
        }

        if (options.MaxPendingConnectionsPerAddress < 1)
        {
            problems.Add($"{at}:MaxPendingConnectionsPerAddress ({options.MaxPendingConnectionsPerAddress}) must be at least 1, or no peer could connect");
        }

        var association = options.Association;
        var a = at + ":Association";
        if (association.MaxPduLength is < MinPduLength or > MaxReceivePduLength)
        {
            problems.Add($"{a}:MaxPduLength {association.MaxPduLength} is not between {MinPduLength} and {MaxReceivePduLength}");
        }

        if (association.MaxSendPduLength is > 0 and < MinPduLength)
        {
            problems.Add($"{a}:MaxSendPduLength {association.MaxSendPduLength} is below {MinPduLength} (0: as each peer advertises)");
        }

        if (association.MaxAssociatePduLength < 1024)
        {
            problems.Add($"{a}:MaxAssociatePduLength {association.MaxAssociatePduLength} is below 1024: an ordinary A-ASSOCIATE-RQ would not fit");
        }
        else if (association.MaxAssociatePduLength > MaxReceivePduLength)
        {
            problems.Add($"{a}:MaxAssociatePduLength {association.MaxAssociatePduLength} is over {MaxReceivePduLength}: each connection may hold that much while it negotiates");
        }

        foreach (var (timer, value) in new[] { ("ArtimTimeout", association.ArtimTimeout), ("IdleTimeout", association.IdleTimeout), ("ReadTimeout", association.ReadTimeout) })
        {
            if (value < TimeSpan.FromSeconds(1) || value > TimeSpan.FromDays(1))
            {
                problems.Add($"{a}:{timer} {value} is not between 1 second and 1 day");
            }
        }

        if (association.MaxCommandLength < 256 || association.MaxIdentifierLength < 1024 || association.MaxActionInformationLength < 1024
            || association.MaxOperationsPerformed < 1)
        {
            problems.Add($"{a}: MaxCommandLength must be at least 256, MaxIdentifierLength and MaxActionInformationLength at least 1024, "
                + "MaxOperationsPerformed at least 1");
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    /// <summary>
    /// The certificate is loaded here, so a missing, unreadable or mismatched file is named with its setting rather than
    /// failing the listener's start with only the file's path.
    /// </summary>
    private static void CheckTlsFiles(DicomTlsOptions tls, List<string> problems)
    {
        const string at = DicomServerOptions.Section + ":Tls";
        var missing = new[] { ("CertificatePath", tls.CertificatePath), ("KeyPath", tls.KeyPath), ("ClientCaPath", tls.ClientCaPath) }
            .Where(f => !string.IsNullOrWhiteSpace(f.Item2) && !File.Exists(f.Item2))
            .Select(f => $"{at}:{f.Item1} '{f.Item2}': no such file")
            .ToList();
        problems.AddRange(missing);
        if (missing.Count > 0 || string.IsNullOrWhiteSpace(tls.CertificatePath))
        {
            return;
        }

        try
        {
            using var certificate = DicomTls.LoadCertificate(tls.CertificatePath, tls.KeyPath, tls.CertificatePassword);
            // What a renewal is refused for stops the start too: one not valid yet or not for servers started, and
            // /health said Healthy while every peer refused it (before 2026-12-07). An expired one is reported instead.
            if (DicomTls.UnusableServerCertificate(certificate, DateTime.UtcNow) is { } problem)
            {
                problems.Add($"{at}:CertificatePath: the certificate in {tls.CertificatePath} {problem}: no TLS peer would accept it");
            }
        }
        catch (EncryptedKeyException e)
        {
            problems.Add($"{at}:KeyPath: {e.Message}");
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            problems.Add($"{at}:CertificatePath: {e.Message}");
        }
    }
}
