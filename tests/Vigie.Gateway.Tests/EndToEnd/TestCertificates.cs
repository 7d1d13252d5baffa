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
}
