using System.Globalization;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Self-signed EC certificates made with openssl, as a hospital's PKI would hand them over: name.crt and name.key.</summary>
internal static class TestCertificates
{
    public static async Task SelfSignedAsync(string folder, string name, int days, string subject, CancellationToken ct, string? subjectAltName = null)
    {
        string[] arguments =
        [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", $"{name}.key", "-out", $"{name}.crt",
            "-days", days.ToString(CultureInfo.InvariantCulture), "-subj", subject,
            .. subjectAltName is null ? Array.Empty<string>() : ["-addext", "subjectAltName=" + subjectAltName],
        ];
        var made = await Peers.RunAsync(Peers.Require("openssl", "openssl"), arguments, TimeSpan.FromMinutes(1), workingDirectory: folder, cancellationToken: ct);
        Assert.True(made.ExitCode == 0, made.ToString());
    }

    /// <summary>A certificate and key (PEM) that expired yesterday, as an old backup restored by mistake would be.</summary>
    public static async Task ExpiredAsync(string folder, string name, string subject, CancellationToken ct)
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(subject, key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-400), DateTimeOffset.UtcNow.AddDays(-1));
        await File.WriteAllTextAsync(Path.Combine(folder, name + ".crt"), certificate.ExportCertificatePem(), ct);
        await File.WriteAllTextAsync(Path.Combine(folder, name + ".key"), key.ExportPkcs8PrivateKeyPem(), ct);
    }
}
