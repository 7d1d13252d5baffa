using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>The node's own settings are checked at start, each problem named with its place.</summary>
public sealed class DicomServerOptionsValidationTests
{
    /// <summary>
    /// Regression: an AE title of 17 characters (never equal to the 16 a peer can send, so every association was
    /// refused as calling an unknown AE), a host name for the address or a zero timer started the node, or failed
    /// later with the first problem only.
    /// </summary>
    [Fact]
    public void Settings_no_association_could_work_with_stop_the_start_with_their_place()
    {
        var options = new DicomServerOptions
        {
            AETitle = "GATEWAY-RADIOLOGY",
            BindAddress = "localhost",
            Port = 11112,
            TlsPort = 11112,
            MaxAssociations = 4,
            MaxAssociationsPerCallingAE = 8,
            Association = new DicomAssociationOptions
            {
                MaxPduLength = 1024,
                MaxSendPduLength = 100,
                ArtimTimeout = TimeSpan.Zero,
                ReadTimeout = TimeSpan.FromDays(2),
            },
        };

        var result = new DicomServerOptionsValidation().Validate(null, options);

        Assert.Equal(
        [
            "Dicom:Server:AETitle 'GATEWAY-RADIOLOGY' has 17 characters; at most 16 (1 to 16 characters of printable ASCII, without a backslash)",
            "Dicom:Server:BindAddress 'localhost' is not an IPv4 address as four decimal numbers without leading zeros (10.1.2.3) or an IPv6 address (0.0.0.0 for every interface)",
            "Dicom:Server:Port and TlsPort are both 11112",
            "Dicom:Server:TlsPort is set but Dicom:Server:Tls:CertificatePath is not",
            "Dicom:Server:MaxAssociations (4) and MaxAssociationsPerCallingAE (8) must be at least 1, the second no more than the first",
            "Dicom:Server:Association:MaxPduLength 1024 is not between 4096 and 16777216",
            "Dicom:Server:Association:MaxSendPduLength 100 is below 4096 (0: as each peer advertises)",
            "Dicom:Server:Association:ArtimTimeout 00:00:00 is not between 1 second and 1 day",
            "Dicom:Server:Association:ReadTimeout 2.00:00:00 is not between 1 second and 1 day",
        ], result.Failures);
    }

    /// <summary>
    /// The one AE title rule, for every title people write into the configuration: what the wire can carry, and what
    /// can equal a title as it arrives (trimmed).
    /// </summary>
    [Theory]
    [InlineData("VIGIE", null)]
    [InlineData("CT_SALLE-2 (A)", null)]
    [InlineData("", "is empty")]
    [InlineData("   ", "is empty")]
    [InlineData("GATEWAY-RADIOLOGY", "has 17 characters; at most 16")]
    [InlineData("CT\\1", "holds a backslash")]
    [InlineData("IRM-SALLE-É", "holds U+00C9, outside printable ASCII")]
    [InlineData("CT\t1", "holds U+0009, outside printable ASCII")]
    [InlineData(" CT1", "has spaces at its ends, which DICOM ignores: write 'CT1'")]
    public void An_AE_title_is_checked_by_one_rule(string title, string? problem) => Assert.Equal(problem, AETitles.Problem(title));

    /// <summary>
    /// Regression: a maximum PDU length of 0, "no limit" in PS3.8's words, started the node, which advertised it and then
    /// aborted every association at its first P-DATA-TF ("PDU of 16384 bytes (limit 0)").
    /// </summary>
    [Fact]
    public void Regression_a_maximum_PDU_length_of_0_aborted_every_association()
    {
        var result = new DicomServerOptionsValidation().Validate(null, new DicomServerOptions { Association = new DicomAssociationOptions { MaxPduLength = 0 } });

        Assert.Equal(["Dicom:Server:Association:MaxPduLength 0 is not between 4096 and 16777216"], result.Failures);
    }

    /// <summary>
    /// Regression: a missing certificate file passed the settings' check and stopped the start with only "Could not find
    /// file", not the setting that named it; a certificate set up without Dicom:Server:TlsPort started a node serving in
    /// clear only.
    /// </summary>
    [Fact]
    public void Regression_TLS_files_were_not_checked_with_their_settings()
    {
        using var work = new TempDirectory("vigie-tls-settings");
        var (certificate, key) = (work.Combine("node.crt"), work.Combine("node.key"));
        using (var rsa = RSA.Create(2048))
        {
            var request = new CertificateRequest("CN=vigie-test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            using var self = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            File.WriteAllText(certificate, self.ExportCertificatePem());
        }

        using (var other = RSA.Create(2048))
        {
            File.WriteAllText(key, other.ExportPkcs8PrivateKeyPem());
        }

        DicomServerOptions Tls(int tlsPort, string? path, string? keyPath, string? ca = null) =>
            new() { TlsPort = tlsPort, Tls = new DicomTlsOptions { CertificatePath = path, KeyPath = keyPath, ClientCaPath = ca } };
        string[] Problems(DicomServerOptions options) => [.. new DicomServerOptionsValidation().Validate(null, options).Failures ?? []];

        var missing = work.Combine("missing.crt");
        Assert.Equal([$"Dicom:Server:Tls:CertificatePath '{missing}': no such file", $"Dicom:Server:Tls:ClientCaPath '{missing}': no such file"],
            Problems(Tls(11113, missing, key, missing)));
        var mismatch = Assert.Single(Problems(Tls(11113, certificate, key)));
        Assert.StartsWith($"Dicom:Server:Tls:CertificatePath: the TLS certificate {certificate} with key {key} cannot be used", mismatch, StringComparison.Ordinal);
        Assert.Equal(["Dicom:Server:Tls names a certificate but Dicom:Server:TlsPort is 0: no TLS port would open, DICOM would be served in clear only"],
            Problems(Tls(0, certificate, key)));
    }

    /// <summary>
    /// Regression: a server certificate not valid yet, or whose Extended Key Usage lacks serverAuth, started the node
    /// with no word and /health said dicom-tls Healthy, while every peer refused it; the same files given as a renewal
    /// were refused. They now stop the start with the setting, the file and what is wrong. An expired one still starts
    /// (it is logged and reported Degraded).
    /// </summary>
    [Fact]
    public void Regression_a_server_certificate_not_valid_yet_or_not_for_servers_started_silently()
    {
        using var work = new TempDirectory("vigie-tls-unusable");
        (string Certificate, string Key) Make(string name, DateTimeOffset notBefore, DateTimeOffset notAfter, string? usage)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
            if (usage is not null)
            {
                request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], critical: false));
            }

            using var self = request.CreateSelfSigned(notBefore, notAfter);
            File.WriteAllText(work.Combine(name + ".crt"), self.ExportCertificatePem());
            File.WriteAllText(work.Combine(name + ".key"), key.ExportPkcs8PrivateKeyPem());
            return (work.Combine(name + ".crt"), work.Combine(name + ".key"));
        }

        string[] Problems((string Certificate, string Key) files) => [.. new DicomServerOptionsValidation().Validate(null, new DicomServerOptions
        {
            TlsPort = 11113,
            Tls = new DicomTlsOptions { CertificatePath = files.Certificate, KeyPath = files.Key },
        }).Failures ?? []];

        var now = DateTimeOffset.UtcNow;
        var future = Make("future", new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2031, 1, 1, 0, 0, 0, TimeSpan.Zero), "1.3.6.1.5.5.7.3.1");
        Assert.Equal([$"Dicom:Server:Tls:CertificatePath: the certificate in {future.Certificate} is not valid before 2030-01-01 00:00 UTC: no TLS peer would accept it"],
            Problems(future));
        var clientOnly = Make("client-only", now.AddDays(-1), now.AddDays(400), "1.3.6.1.5.5.7.3.2");
        Assert.Equal([$"Dicom:Server:Tls:CertificatePath: the certificate in {clientOnly.Certificate} is not for servers (its Extended Key Usage lacks serverAuth): "
            + "no TLS peer would accept it"], Problems(clientOnly));

        Assert.Empty(Problems(Make("server", now.AddDays(-1), now.AddDays(400), "1.3.6.1.5.5.7.3.1")));
        Assert.Empty(Problems(Make("any-usage", now.AddDays(-1), now.AddDays(400), usage: null)));
        Assert.Empty(Problems(Make("expired", now.AddDays(-400), now.AddDays(-1), "1.3.6.1.5.5.7.3.1")));
    }

    /// <summary>
    /// Regression: a password-protected server key (an encrypted PKCS#8 PEM, as openssl writes it when asked for a
    /// passphrase) stopped the start naming CertificatePath, "the content is malformed, or the key does not match the
    /// certificate": nothing said the key was encrypted, which Vigie does not read.
    /// </summary>
    [Fact]
    public void Regression_an_encrypted_server_key_stopped_the_start_as_a_malformed_certificate()
    {
        using var work = new TempDirectory("vigie-tls-encrypted-key");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var self = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(400));
        File.WriteAllText(work.Combine("server.crt"), self.ExportCertificatePem());
        File.WriteAllText(work.Combine("server.key"), key.ExportEncryptedPkcs8PrivateKeyPem("secret",
            new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 100_000)));

        var problems = new DicomServerOptionsValidation().Validate(null, new DicomServerOptions
        {
            TlsPort = 11113,
            Tls = new DicomTlsOptions { CertificatePath = work.Combine("server.crt"), KeyPath = work.Combine("server.key") },
        }).Failures ?? [];

        var problem = Assert.Single(problems);
        Assert.StartsWith($"Dicom:Server:Tls:KeyPath: the TLS private key {work.Combine("server.key")} is encrypted (password-protected)", problem, StringComparison.Ordinal);
        Assert.Contains("unencrypted", problem, StringComparison.Ordinal);
        Assert.Contains("readable only by Vigie's account", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("malformed", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("VIGIE")]
    [InlineData("SIXTEEN_CHARS_AE")]
    [InlineData("CT 1")]
    public void The_defaults_and_ordinary_titles_pass(string title)
    {
        Assert.True(new DicomServerOptionsValidation().Validate(null, new DicomServerOptions { AETitle = title }).Succeeded);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("CT\\1")]
    [InlineData("CT\u00e91")]
    [InlineData("CT\t1")]
    public void A_title_peers_could_not_name_is_refused(string title)
    {
        Assert.False(new DicomServerOptionsValidation().Validate(null, new DicomServerOptions { AETitle = title }).Succeeded);
    }
}
