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

    /// <summary>
    /// A hospital PKI with an issuing authority: root.crt, int.crt (issued by the root), and name.crt/.key for each of
    /// <paramref name="leaves"/> (name, issuer, extended key usage), with name-chain.crt holding the leaf and its issuer.
    /// </summary>
    public static async Task HospitalPkiAsync(string folder, CancellationToken ct, params (string Name, string Issuer, string Usage)[] leaves)
    {
        Task Run(params string[] arguments) => OpenSslAsync(folder, ct, arguments);
        await Run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "root.key", "-out", "root.crt",
            "-days", "2", "-subj", "/CN=Vigie Test Root CA");
        await Run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "other.key", "-out", "other.crt",
            "-days", "2", "-subj", "/CN=Vigie Test Other CA");
        await File.WriteAllTextAsync(Path.Combine(folder, "int.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n", ct);
        await IssueAsync("int", "root", "/CN=Vigie Test Issuing CA", "int.ext");
        foreach (var (name, issuer, usage) in leaves)
        {
            await File.WriteAllTextAsync(Path.Combine(folder, name + ".ext"),
                $"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", ct);
            await IssueAsync(name, issuer, "/CN=" + name, name + ".ext");
            await File.WriteAllTextAsync(Path.Combine(folder, name + "-chain.crt"),
                await File.ReadAllTextAsync(Path.Combine(folder, name + ".crt"), ct) + await File.ReadAllTextAsync(Path.Combine(folder, issuer + ".crt"), ct), ct);
        }

        async Task IssueAsync(string name, string issuer, string subject, string extensions)
        {
            await Run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject);
            await Run("x509", "-req", "-in", name + ".csr", "-CA", issuer + ".crt", "-CAkey", issuer + ".key", "-CAcreateserial", "-out", name + ".crt",
                "-days", "2", "-extfile", extensions);
        }
    }

    private static async Task OpenSslAsync(string folder, CancellationToken ct, params string[] arguments)
    {
        var result = await Peers.RunAsync(Peers.Require("openssl", "openssl"), arguments, TimeSpan.FromMinutes(1), workingDirectory: folder, cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
    }
}
