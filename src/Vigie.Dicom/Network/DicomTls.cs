using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Vigie.Dicom.Network;

/// <summary>TLS settings shared by the server and the client: BCP 195 protocols and cipher suites.</summary>
public static class DicomTls
{
    public const SslProtocols Protocols = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>ECDHE with AEAD for TLS 1.2, and the TLS 1.3 suites (BCP 195 / RFC 9325 recommendations).</summary>
    public static CipherSuitesPolicy? CipherSuites()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return null;
        }

        return new CipherSuitesPolicy(
        [
            TlsCipherSuite.TLS_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
    }

    /// <summary>
    /// A certificate with its private key: PEM certificate and key files, or a PKCS#12 file. A key that does not match, a
    /// wrong password or a file that is not a certificate is an <see cref="InvalidOperationException"/> naming the files.
    /// </summary>
    public static X509Certificate2 LoadCertificate(string path, string? keyPath, string? password)
    {
        try
        {
            if (keyPath is not null)
            {
                using var pem = X509Certificate2.CreateFromPemFile(path, keyPath);
                // Re-import so the private key is usable by SslStream on every platform.
                return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }

            return X509CertificateLoader.LoadPkcs12FromFile(path, password);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException && keyPath is not null && IsEncryptedPemKey(keyPath))
        {
            // .NET reads only unencrypted PEM keys, and said "malformed, or the key does not match" (before 2026-12-07).
            throw new EncryptedKeyException($"the TLS private key {keyPath} is encrypted (password-protected), which Vigie does not read: give it the key "
                + "unencrypted (openssl pkey -in KEY -out KEY.plain), in a file readable only by Vigie's account (chmod 0600)", e);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"the TLS certificate {path}{(keyPath is null ? "" : $" with key {keyPath}")} cannot be used: {e.Message}", e);
        }
    }

    /// <summary>A PEM key file holding a password-protected key: PKCS#8 "ENCRYPTED PRIVATE KEY", or a legacy "Proc-Type: 4,ENCRYPTED" one.</summary>
    private static bool IsEncryptedPemKey(string keyPath)
    {
        try
        {
            var text = File.ReadAllText(keyPath);
            return text.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal) || text.Contains("Proc-Type: 4,ENCRYPTED", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The other certificates of a certificate file (the intermediate authorities), without the certificate itself.</summary>
    internal static X509Certificate2Collection LoadIntermediates(string path, string? keyPath, string? password, X509Certificate2 certificate)
    {
        var all = new X509Certificate2Collection();
        try
        {
            if (keyPath is not null)
            {
                all.ImportFromPemFile(path);
            }
            else
            {
                all.AddRange(X509CertificateLoader.LoadPkcs12CollectionFromFile(path, password));
            }
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"the TLS certificate file {path} cannot be read: {e.Message}", e);
        }

        var others = new X509Certificate2Collection();
        foreach (var candidate in all)
        {
            if (candidate.Thumbprint != certificate.Thumbprint)
            {
                others.Add(candidate);
            }
        }

        return others;
    }

    /// <summary>
    /// Validates a peer certificate against a PEM bundle of trusted authorities only (not the system store), with the
    /// intermediates the peer sent, for its role: a server (the PACS) must carry the name it was reached by and may be
    /// used for server authentication; a client (a modality) for client authentication. A key usage, when the
    /// certificate restricts it, must allow signing. Until 2026-12-05 only the chain was checked: any certificate of the
    /// hospital's authority (a modality's, a web server's) passed for the PACS, or for a DICOM client.
    /// </summary>
    public static RemoteCertificateValidationCallback TrustOnly(string caBundlePath, bool requireCertificate, TlsPeer peer) =>
        TrustOnly(LoadAuthorities(caBundlePath), requireCertificate, peer);

    /// <summary>The same, with authorities already read (the server names them in its CertificateRequest too).</summary>
    internal static RemoteCertificateValidationCallback TrustOnly(X509Certificate2Collection anchors, bool requireCertificate, TlsPeer peer) =>
        (_, certificate, presented, errors) => Refusal(anchors, requireCertificate, peer, certificate, presented, errors) is null;

    /// <summary>
    /// Why a peer certificate is refused (no patient data: its subject, its issuer and what is wrong), or null when it
    /// passes <see cref="TrustOnly(string, bool, TlsPeer)"/>. Every refusal read "rejected by the provided
    /// RemoteCertificateValidationCallback" until 2026-12-07, a client that sent none too.
    /// </summary>
    internal static string? Refusal(X509Certificate2Collection anchors, bool requireCertificate, TlsPeer peer, X509Certificate? certificate, X509Chain? presented,
        SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            return requireCertificate ? $"no {(peer == TlsPeer.Client ? "client " : "")}certificate was sent" : null;
        }

        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        var about = $"{(peer == TlsPeer.Client ? "client" : "server")} certificate '{Printable(leaf.Subject)}' issued by '{Printable(leaf.Issuer)}'";

        // The name is compared by SslStream with the host (or ServerName) the client asked for.
        if (peer == TlsPeer.Server && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return $"{about} does not carry the name the node was reached by";
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(anchors);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        // The configured authority may be an issuing (intermediate) CA: .NET then calls the chain partial, since no root
        // is above it, and refused every certificate it issued (before 2026-12-07). Unknown or partial tops are let
        // through here, and the chain must then pass through a certificate of the file itself (checked below); every
        // other fault (validity, usage, signature) still fails the build.
        chain.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(peer == TlsPeer.Server ? ServerAuthentication : ClientAuthentication));
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        var built = chain.Build(leaf);
        var elements = chain.ChainElements.Select(e => e.Certificate).ToList();
        if (!elements.Any(e => anchors.Any(a => a.RawDataMemory.Span.SequenceEqual(e.RawDataMemory.Span))))
        {
            var top = elements.Count > 0 ? elements[^1] : leaf;
            return top.SubjectName.RawData.AsSpan().SequenceEqual(top.IssuerName.RawData)
                ? $"{about} does not chain to an authority of {Setting(peer)} (its chain ends at '{Printable(top.Subject)}')"
                : $"{about} does not chain to an authority of {Setting(peer)} (its chain stops at '{Printable(top.Issuer)}': an authority neither trusted nor sent)";
        }

        if (!built)
        {
            return $"{about}: {Describe(chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status), leaf, peer)}";
        }

        if (!leaf.Extensions.OfType<X509KeyUsageExtension>().All(u => (u.KeyUsages & X509KeyUsageFlags.DigitalSignature) != 0))
        {
            return $"{about}: its key usage does not allow signing (digitalSignature)";
        }

        return null;
    }

    private static string Describe(X509ChainStatusFlags status, X509Certificate2 leaf, TlsPeer peer)
    {
        var now = DateTime.UtcNow;
        var reasons = new List<string>();
        if ((status & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            reasons.Add(leaf.NotAfter.ToUniversalTime() < now ? $"expired on {leaf.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC"
                : leaf.NotBefore.ToUniversalTime() > now ? $"not valid before {leaf.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC"
                : "an authority of its chain is out of its validity");
        }

        if ((status & (X509ChainStatusFlags.NotValidForUsage | X509ChainStatusFlags.InvalidExtension)) != 0)
        {
            reasons.Add(peer == TlsPeer.Client
                ? "not for clients (its Extended Key Usage lacks clientAuth)"
                : "not for servers (its Extended Key Usage lacks serverAuth)");
        }

        if ((status & X509ChainStatusFlags.NotSignatureValid) != 0)
        {
            reasons.Add("a signature of its chain does not verify");
        }

        var rest = status & ~(X509ChainStatusFlags.NotTimeValid | X509ChainStatusFlags.NotValidForUsage | X509ChainStatusFlags.InvalidExtension
            | X509ChainStatusFlags.NotSignatureValid | X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain);
        if (rest != X509ChainStatusFlags.NoError || reasons.Count == 0)
        {
            reasons.Add($"its chain is not valid ({rest})");
        }

        return string.Join("; ", reasons);
    }

    private static string Setting(TlsPeer peer) => peer == TlsPeer.Client ? "ClientCaPath" : "ServerCaPath";

    /// <summary>A peer-supplied name, bounded and without control characters, for the audit trail and the log.</summary>
    internal static string Printable(string text)
    {
        var printable = string.Create(Math.Min(text.Length, 200), text, static (span, t) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(t[i]) ? '?' : t[i];
            }
        });
        return text.Length > 200 ? printable + "..." : printable;
    }

    /// <summary>
    /// Why a server certificate is one no TLS peer accepts now, or null: not valid yet, or not for servers. Checked at
    /// start and on renewal (at start since 2026-12-07; before, such a certificate started and /health said Healthy).
    /// An expired one is the caller's to judge: at start it is reported, not refused.
    /// </summary>
    internal static string? UnusableServerCertificate(X509Certificate2 certificate, DateTime utcNow)
    {
        if (certificate.NotBefore.ToUniversalTime() > utcNow)
        {
            return $"is not valid before {certificate.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
        }

        if (certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is { } usage
            && !usage.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value is ServerAuthentication or AnyExtendedKeyUsage))
        {
            return "is not for servers (its Extended Key Usage lacks serverAuth)";
        }

        return null;
    }

    /// <summary>The authorities of a PEM bundle, refused when it cannot be read or holds none.</summary>
    internal static X509Certificate2Collection LoadAuthorities(string caBundlePath)
    {
        var anchors = new X509Certificate2Collection();
        try
        {
            anchors.ImportFromPemFile(caBundlePath);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"the trusted authorities file {caBundlePath} cannot be read: {e.Message}", e);
        }

        if (anchors.Count == 0)
        {
            // An empty bundle would trust nobody and refuse every client without saying why.
            throw new InvalidOperationException($"the trusted authorities file {caBundlePath} holds no certificate");
        }

        return anchors;
    }

    /// <summary>
    /// The TLS alert a peer sent, from the error text OpenSSL gives .NET on Linux ("error:0A00045C:SSL routines::tlsv13
    /// alert certificate required", in an inner exception of the failed read or handshake), or null. .NET exposes no
    /// alert code of its own, so this text is what there is; other platforms' texts are not recognised.
    /// </summary>
    internal static (byte Code, string Name)? ReceivedAlert(Exception? failure)
    {
        for (var e = failure; e is not null; e = e.InnerException)
        {
            var message = e.Message;
            foreach (var prefix in (ReadOnlySpan<string>)["tlsv13 alert ", "tlsv1 alert ", "sslv3 alert "])
            {
                var at = message.IndexOf(prefix, StringComparison.Ordinal);
                if (at < 0)
                {
                    continue;
                }

                var name = message[(at + prefix.Length)..];
                var end = name.IndexOfAny([':', '\n', '(']);
                if (AlertNames.TryGetValue((end < 0 ? name : name[..end]).Trim(), out var alert))
                {
                    return alert;
                }
            }
        }

        return null;
    }

    /// <summary>OpenSSL's names of the alerts a server sends about a client's certificate (RFC 8446 6.2), with their codes.</summary>
    private static readonly Dictionary<string, (byte Code, string Name)> AlertNames = new(StringComparer.Ordinal)
    {
        ["handshake failure"] = (40, "handshake_failure"),
        ["bad certificate"] = (42, "bad_certificate"),
        ["unsupported certificate"] = (43, "unsupported_certificate"),
        ["certificate revoked"] = (44, "certificate_revoked"),
        ["certificate expired"] = (45, "certificate_expired"),
        ["certificate unknown"] = (46, "certificate_unknown"),
        ["unknown ca"] = (48, "unknown_ca"),
        ["access denied"] = (49, "access_denied"),
        ["decrypt error"] = (51, "decrypt_error"),
        ["certificate required"] = (116, "certificate_required"),
    };

    private const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";
    private const string AnyExtendedKeyUsage = "2.5.29.37.0";
}

/// <summary>A certificate's PEM key file is password-protected, which Vigie does not read: the key file's fault, not the certificate's.</summary>
public sealed class EncryptedKeyException(string message, Exception inner) : InvalidOperationException(message, inner);

/// <summary>Which side of a TLS connection a certificate is checked for.</summary>
public enum TlsPeer
{
    /// <summary>The node Vigie connects to (the PACS, a C-MOVE destination).</summary>
    Server,

    /// <summary>A node connecting to Vigie (a modality, a workstation).</summary>
    Client,
}
