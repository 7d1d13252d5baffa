using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>TLS, quarantine, crash safety and tamper evidence, through the real node and CLI.</summary>
public sealed class SecurityTests
{
    /// <summary>An inert executable header (MZ, PE signature, a marker): what inspection must find, never a working program.</summary>
    internal static byte[] InertPeHeader()
    {
        var bytes = new byte[256];
        "MZ"u8.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(0x3C), 0x80);
        "PE\0\0"u8.CopyTo(bytes.AsSpan(0x80));
        "VIGIE-INERT-MARKER-7731"u8.CopyTo(bytes.AsSpan(0xA0));
        return bytes;
    }

    /// <summary>
    /// Regression: a deflate bomb sent by C-STORE was refused only after it had been inflated whole in memory (1.6 GB),
    /// then inflated again for the index. It is now stopped by the inflate ratio, refused and quarantined, and the node
    /// stores the next object as usual.
    /// </summary>
    [Fact]
    public async Task Regression_a_deflate_bomb_sent_by_C_STORE_was_inflated_whole_twice()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        const string sopInstance = "1.2.826.0.1.3680043.10.1338.99.1";
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.CTImageStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.99.2");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.99.3");
        var head = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);
        var raw = new byte[head.Length + 12 + 200 * 1024 * 1024];
        head.CopyTo(raw, 0);
        var pixels = raw.AsSpan(head.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(pixels, 0x0010_7FE0);
        "OB"u8.CopyTo(pixels[4..]);
        BinaryPrimitives.WriteUInt32LittleEndian(pixels[8..], (uint)(raw.Length - head.Length - 12));
        using var compressed = new MemoryStream();
        await using (var deflate = new System.IO.Compression.DeflateStream(compressed, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
        {
            await deflate.WriteAsync(raw, ct);
        }

        Assert.True(compressed.Length < 1_000_000, $"{compressed.Length} bytes");
        compressed.Position = 0;
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
            [new PresentationContext(1, DicomUids.CTImageStorage, [DicomUids.DeflatedExplicitVRLittleEndian])], ct);
        var refused = await client.StoreAsync(DicomUids.CTImageStorage, sopInstance, DicomUids.DeflatedExplicitVRLittleEndian, compressed, ct);
        Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
        Assert.Contains("size-limit", refused.ErrorComment, StringComparison.Ordinal);
        await client.ReleaseAsync(ct);

        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
    }

    /// <summary>
    /// Regression (review 14): a Manufacturer (LO) of "%PDF-1.4" puts a PDF header in the stored file's first kilobyte,
    /// and the PDF's objects (an /OpenAction script) sat in a private OB further on. PDF readers open the stored and the
    /// retrieved file as that PDF and run the script; the object was answered 0000, archived and served. It is now read
    /// from the header as the PDF a reader opens, refused 0124 and quarantined, and the node stores the next object.
    /// </summary>
    [Fact]
    public async Task Regression_a_pdf_header_in_a_short_element_with_its_script_further_on_was_stored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        const string sopInstance = "1.2.826.0.1.3680043.10.1338.14.1";
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.SecondaryCaptureImageStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.14.2");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.14.3");
        dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-PDF-14");
        dataset.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^POLYGLOT");
        dataset.SetString(DicomTags.Modality, DicomVR.CS, "OT");
        dataset.SetString(DicomTags.Manufacturer, DicomVR.LO, "%PDF-1.4");
        var objects = Encoding.ASCII.GetBytes("\n1 0 obj\n<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[]/Count 0>>\nendobj\n"
            + "3 0 obj\n<</S/JavaScript/JS(app.alert\\(\"VIGIE-INERT-MARKER\"\\))>>\nendobj\ntrailer\n<</Root 1 0 R/Size 4>>\n%%EOF\n");
        dataset.SetString(new DicomTag(0x7FE1, 0x0010), DicomVR.LO, "ACME 1.0");
        dataset.SetBytes(new DicomTag(0x7FE1, 0x1010), DicomVR.OB, objects.Length % 2 == 0 ? objects : [.. objects, (byte)'\n']);
        var bytes = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.SecondaryCaptureImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var refused = await client.StoreAsync(DicomUids.SecondaryCaptureImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(bytes), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            Assert.Contains("pdf.", refused.ErrorComment, StringComparison.Ordinal);
            await client.ReleaseAsync(ct);
        }

        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
    }

    /// <summary>
    /// Regression (review 17, defect 1): an Encapsulated CDA whose CDA carries its report as a base64 PDF
    /// (nonXMLBody/text, representation B64, as HL7 CDA R2 sends scanned and PDF reports, which CDA viewers decode and
    /// show) running a script on open was answered 0000 and archived. It is now decoded, refused 0124 naming the PDF
    /// rule and quarantined; nothing of it is stored, and the node stores the next object.
    /// </summary>
    [Fact]
    public async Task Regression_a_base64_pdf_with_a_script_in_an_encapsulated_cda_was_stored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await StoreCdaWithScriptedPdfAsync(node, Encoding.UTF8, "UTF-8", "17", ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
    }

    /// <summary>
    /// Regression (review 31, defect 09): the same Encapsulated CDA saved as UTF-16 without a byte order mark
    /// (encoding="UTF-16", which XML parsers detect by its opening, XML 1.0 Appendix F) was typed Unknown, never
    /// parsed, and stored: Success. It is refused 0124 as the UTF-8 one is.
    /// </summary>
    [Fact]
    public async Task Regression_a_utf16_encapsulated_cda_without_a_byte_order_mark_was_stored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await StoreCdaWithScriptedPdfAsync(node, Encoding.Unicode, "UTF-16", "31", ct);
    }

    /// <summary>
    /// Sends an Encapsulated CDA carrying a base64 PDF that runs a script, in <paramref name="encoding"/> (no byte order
    /// mark), and checks that it is refused 0124 naming the PDF rule, quarantined, and that nothing of it is stored.
    /// </summary>
    private static async Task StoreCdaWithScriptedPdfAsync(VigieNode node, Encoding encoding, string declared, string review, CancellationToken ct)
    {
        var sopInstance = $"1.2.826.0.1.3680043.10.1338.{review}.1";
        var pdf = Encoding.ASCII.GetBytes("%PDF-1.7\n1 0 obj\n<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[]/Count 0>>\nendobj\n"
            + "3 0 obj\n<</S/JavaScript/JS(app.alert\\(\"VIGIE-INERT-MARKER\"\\))>>\nendobj\ntrailer\n<</Root 1 0 R/Size 4>>\n%%EOF\n");
        var cda = encoding.GetBytes($"<?xml version=\"1.0\" encoding=\"{declared}\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>Compte rendu (synthetic)</title>"
            + $"<component><nonXMLBody><text mediaType=\"application/pdf\" representation=\"B64\">{Convert.ToBase64String(pdf)}</text></nonXMLBody></component></ClinicalDocument>\n");
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedCDAStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, $"1.2.826.0.1.3680043.10.1338.{review}.2");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, $"1.2.826.0.1.3680043.10.1338.{review}.3");
        dataset.SetString(DicomTags.PatientID, DicomVR.LO, $"SYN-CDA-{review}");
        dataset.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^CDA");
        dataset.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
        dataset.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, "text/XML");
        dataset.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, cda.Length % 2 == 0 ? cda : [.. cda, 0]);
        var bytes = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.EncapsulatedCDAStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var refused = await client.StoreAsync(DicomUids.EncapsulatedCDAStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(bytes), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            Assert.Contains("pdf.open-action", refused.ErrorComment, StringComparison.Ordinal);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(0, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
    }

    [Fact]
    public async Task Tls_with_client_certificates_accepts_known_clients_only()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        using var pki = new TempDirectory("vigie-pki");
        Task Run(params string[] arguments) => OpenSslAsync(pki, ct, arguments);
        await MakeHospitalPkiAsync(pki, ct);

        var tlsPort = VigieNode.FreePort();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
            ["VIGIE__DICOM__SERVER__TLS__REQUIRECLIENTCERTIFICATE"] = "true",
            ["VIGIE__DICOM__SERVER__TLS__CLIENTCAPATH"] = pki.Combine("ca.crt"),
        }, cancellationToken: ct);
        var port = tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var known = await Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tls", pki.Combine("client.key"), pki.Combine("client.crt"), "+cf", pki.Combine("ca.crt"),
            "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(known.ExitCode == 0, known.ToString());
        var anonymous = await Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tla", "+cf", pki.Combine("ca.crt"), "127.0.0.1", port], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.NotEqual(0, anonymous.ExitCode);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "+tls", pki.Combine("client.key"), pki.Combine("client.crt"),
            "+cf", pki.Combine("ca.crt"), "127.0.0.1", port, .. Peers.CtCorpusFiles().Take(5)], TimeSpan.FromMinutes(2), cancellationToken: ct);
        Assert.True(store.ExitCode == 0, store.ToString());
        Assert.Equal(5, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        // Regression: only the chain was checked. A certificate of the same authority made for a server (a web server's)
        // passed as a DICOM client; and a server certificate that does not name the host passed for the PACS.
        await Run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "web.key", "-out", "web.csr", "-subj", "/CN=intranet");
        await File.WriteAllTextAsync(pki.Combine("web.ext"), "subjectAltName=DNS:intranet\nextendedKeyUsage=serverAuth\n", ct);
        await Run("x509", "-req", "-in", "web.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "web.crt", "-days", "2", "-extfile", "web.ext");
        var web = await Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tls", pki.Combine("web.key"), pki.Combine("web.crt"), "+cf", pki.Combine("ca.crt"),
            "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.NotEqual(0, web.ExitCode);
        DicomClientOptions AsPacsClient(string? serverName) => new()
        {
            Host = "127.0.0.1", Port = tlsPort, CallingAE = "CT1", CalledAE = "VIGIE", UseTls = true, ServerCaPath = pki.Combine("ca.crt"),
            ServerName = serverName, ClientCertificatePath = pki.Combine("client.crt"), ClientKeyPath = pki.Combine("client.key"),
        };
        PresentationContext[] verification = [new(1, DicomUids.Verification, [DicomUids.ImplicitVRLittleEndian])];
        await using (var named = await DicomClient.ConnectAsync(AsPacsClient(null), verification, ct))
        {
            Assert.Equal(DimseStatus.Success, (await named.EchoAsync(ct)).Status);
            await named.ReleaseAsync(ct);
        }

        await Assert.ThrowsAnyAsync<Exception>(async () => await DicomClient.ConnectAsync(AsPacsClient("pacs.example"), verification, ct));

        // Regression: a certificate from an intermediate authority was sent without it, so a client trusting the root refused it.
        await Run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=Vigie Test Issuing CA");
        await File.WriteAllTextAsync(pki.Combine("int.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n", ct);
        await Run("x509", "-req", "-in", "int.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "int.crt", "-days", "2", "-extfile", "int.ext");
        await Run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost");
        await Run("x509", "-req", "-in", "leaf.csr", "-CA", "int.crt", "-CAkey", "int.key", "-CAcreateserial", "-out", "leaf.crt", "-days", "2", "-extfile", "server.ext");
        await File.WriteAllTextAsync(pki.Combine("server.crt"), await File.ReadAllTextAsync(pki.Combine("leaf.crt"), ct) + await File.ReadAllTextAsync(pki.Combine("int.crt"), ct), ct);
        File.Copy(pki.Combine("leaf.key"), pki.Combine("server.key"), overwrite: true);
        var chained = await Eventually.WaitForAsync(
            () => Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tls", pki.Combine("client.key"), pki.Combine("client.crt"), "+cf", pki.Combine("ca.crt"),
                "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct),
            r => r.ExitCode == 0, ct, TimeSpan.FromSeconds(20));
        Assert.Equal(0, chained.ExitCode);
    }

    /// <summary>
    /// Regression: with client certificates optional (an authority set, not required), the node never asked for one, so
    /// a certificate from any authority, or self-signed, was never even checked, and the association went on as anonymous.
    /// </summary>
    [Fact]
    public async Task Regression_optional_client_certificates_were_never_asked_for_so_an_untrusted_one_passed()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        using var pki = new TempDirectory("vigie-pki");
        await MakeHospitalPkiAsync(pki, ct);
        await TestCertificates.SelfSignedAsync(pki.Path, "rogue", 2, "/CN=Modality CT1", ct);
        var tlsPort = VigieNode.FreePort();
        var port = tlsPort.ToString(CultureInfo.InvariantCulture);
        await using var node = await StartCheckingClientsAsync(pki, port, ct);

        Task<ProcessResult> EchoAsync(params string[] tls) =>
            Peers.RunAsync(echoscu, ["-aec", "VIGIE", .. tls, "+cf", pki.Combine("ca.crt"), "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);
        var anonymous = await EchoAsync("+tla");
        Assert.True(anonymous.ExitCode == 0, anonymous.ToString());
        var known = await EchoAsync("+tls", pki.Combine("client.key"), pki.Combine("client.crt"));
        Assert.True(known.ExitCode == 0, known.ToString());
        var rogue = await EchoAsync("+tls", pki.Combine("rogue.key"), pki.Combine("rogue.crt"));
        Assert.NotEqual(0, rogue.ExitCode);
    }

    /// <summary>
    /// Regression: the TLS CertificateRequest named no authority, so a client holding several certificates (one per
    /// hospital, a vendor's) could not tell which one Vigie trusts, and offered the wrong one or none.
    /// </summary>
    [Fact]
    public async Task Regression_the_certificate_request_named_no_authority_so_a_client_with_several_certificates_chose_blind()
    {
        var ct = TestContext.Current.CancellationToken;
        using var pki = new TempDirectory("vigie-pki");
        await MakeHospitalPkiAsync(pki, ct);
        var port = VigieNode.FreePort().ToString(CultureInfo.InvariantCulture);
        await using var node = await StartCheckingClientsAsync(pki, port, ct);

        foreach (var version in new[] { "-tls1_2", "-tls1_3" })
        {
            // No input: s_client ends once the handshake is done.
            var handshake = await Peers.RunAsync("/bin/sh", ["-c", "exec \"$0\" s_client \"$@\" </dev/null", Peers.Require("openssl", "openssl"), version,
                "-connect", $"127.0.0.1:{port}", "-CAfile", pki.Combine("ca.crt")], TimeSpan.FromMinutes(1), cancellationToken: ct);
            var output = handshake.StandardOutput + handshake.StandardError;
            var names = output[(output.IndexOf("Acceptable client certificate CA names", StringComparison.Ordinal) + 1)..];
            Assert.True(output.Contains("Acceptable client certificate CA names", StringComparison.Ordinal), output);
            Assert.Contains("Vigie Test CA", names.Split('\n').Skip(1).First(), StringComparison.Ordinal);
        }
    }

    /// <summary>A node on TLS port <paramref name="port"/> with the hospital PKI's server certificate, checking clients against its authority.</summary>
    private static Task<VigieNode> StartCheckingClientsAsync(TempDirectory pki, string port, CancellationToken ct) => VigieNode.StartAsync(
        environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = port,
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
            ["VIGIE__DICOM__SERVER__TLS__CLIENTCAPATH"] = pki.Combine("ca.crt"),
        }, cancellationToken: ct);

    private static async Task OpenSslAsync(TempDirectory pki, CancellationToken ct, params string[] arguments)
    {
        var result = await Peers.RunAsync(Peers.Require("openssl", "openssl"), arguments, TimeSpan.FromMinutes(1), workingDirectory: pki.Path, cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    /// <summary>A hospital authority (ca.crt) and what it issued: server.crt for localhost (serverAuth), client.crt for a modality (clientAuth).</summary>
    private static async Task MakeHospitalPkiAsync(TempDirectory pki, CancellationToken ct)
    {
        await OpenSslAsync(pki, ct, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=Vigie Test CA");
        foreach (var (name, subject) in new[] { ("server", "/CN=localhost"), ("client", "/CN=Modality CT1") })
        {
            await OpenSslAsync(pki, ct, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", $"{name}.key", "-out", $"{name}.csr",
                "-subj", subject);
            await File.WriteAllTextAsync(pki.Combine($"{name}.ext"), name == "server"
                ? "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" : "extendedKeyUsage=clientAuth\n", ct);
            await OpenSslAsync(pki, ct, "x509", "-req", "-in", $"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", $"{name}.crt",
                "-days", "2", "-extfile", $"{name}.ext");
        }
    }

    /// <summary>
    /// A hospital's certificates are renewed every year or so. One about to expire is reported at start and by /health,
    /// and the renewed files are used from the next handshake: no restart that would cut off the modalities.
    /// </summary>
    [Fact]
    public async Task An_expiring_tls_certificate_is_reported_and_its_renewal_is_used_without_a_restart()
    {
        var ct = TestContext.Current.CancellationToken;
        var echoscu = Peers.Require("echoscu", "dcmtk");
        using var pki = new TempDirectory("vigie-pki-renewal");
        Task SelfSignedAsync(string name, int days) => TestCertificates.SelfSignedAsync(pki.Path, name, days, "/CN=localhost", ct, "DNS:localhost,IP:127.0.0.1");

        await SelfSignedAsync("server", 5);
        var tlsPort = VigieNode.FreePort();
        var port = tlsPort.ToString(CultureInfo.InvariantCulture);
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__TLSPORT"] = port,
            ["VIGIE__DICOM__SERVER__TLS__CERTIFICATEPATH"] = pki.Combine("server.crt"),
            ["VIGIE__DICOM__SERVER__TLS__KEYPATH"] = pki.Combine("server.key"),
        }, cancellationToken: ct);
        using var http = new HttpClient();
        async Task<JsonElement> TlsHealthAsync() =>
            JsonDocument.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/health"), ct)).RootElement.GetProperty("checks").GetProperty("dicom-tls");
        Task<ProcessResult> EchoAsync(string trusted) =>
            Peers.RunAsync(echoscu, ["-aec", "VIGIE", "+tla", "+cf", pki.Combine(trusted), "127.0.0.1", port], TimeSpan.FromMinutes(1), cancellationToken: ct);

        var expiring = await TlsHealthAsync();
        Assert.Equal("Degraded", expiring.GetProperty("status").GetString());
        Assert.Contains("expires on", expiring.GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.Contains("The DICOM TLS certificate CN=localhost expires on", node.Output, StringComparison.Ordinal);
        var before = await EchoAsync("server.crt");
        Assert.True(before.ExitCode == 0, before.ToString());

        // Regression: an expired pair (an old backup restored by mistake) replaced the certificate in service.
        File.Copy(pki.Combine("server.crt"), pki.Combine("current.crt"));
        await TestCertificates.ExpiredAsync(pki.Path, "server", "CN=localhost", ct);
        await Task.Delay(2500, ct);
        Assert.True((await EchoAsync("current.crt")).ExitCode == 0, "an expired renewal leaves the certificate in service");
        Assert.Contains("expired on", (await TlsHealthAsync()).GetProperty("description").GetString(), StringComparison.Ordinal);

        // Second review: in date but from another authority (the modalities trust the current one's), it is kept out too.
        await TestCertificates.SelfSignedAsync(pki.Path, "foreign", 400, "/CN=another-authority", ct, "DNS:localhost,IP:127.0.0.1");
        File.Copy(pki.Combine("foreign.key"), pki.Combine("server.key"), overwrite: true);
        File.Copy(pki.Combine("foreign.crt"), pki.Combine("server.crt"), overwrite: true);
        await Task.Delay(2500, ct);
        Assert.True((await EchoAsync("current.crt")).ExitCode == 0, "a renewal from another authority leaves the certificate in service");
        Assert.Contains("taken at the next restart", (await TlsHealthAsync()).GetProperty("description").GetString(), StringComparison.Ordinal);

        // The renewal lands the way a copy does: the key first (it does not match the certificate yet), then the
        // certificate. Regression: copied with its times kept (cp -p), older than the key, the certificate was never read.
        await SelfSignedAsync("renewed", 400);
        File.Copy(pki.Combine("renewed.key"), pki.Combine("server.key"), overwrite: true);
        await Task.Delay(2500, ct);
        var halfway = await TlsHealthAsync();
        Assert.Contains("cannot be used", halfway.GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.True((await EchoAsync("current.crt")).ExitCode == 0, "the certificate in service stays while the renewal is incomplete");
        File.Copy(pki.Combine("renewed.crt"), pki.Combine("server.crt"), overwrite: true);
        File.SetLastWriteTimeUtc(pki.Combine("server.crt"), DateTime.UtcNow.AddDays(-3));
        await Task.Delay(2500, ct);

        var after = await EchoAsync("renewed.crt");
        Assert.True(after.ExitCode == 0, after + "\n--- node\n" + node.Output);
        var renewed = await TlsHealthAsync();
        Assert.Equal("Healthy", renewed.GetProperty("status").GetString());
        Assert.StartsWith("certificate valid until", renewed.GetProperty("description").GetString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: every object larger than Gateway:InMemoryInspectionLimit (64 MiB: multi-frame CT, tomosynthesis) was
    /// inspected and indexed as 0 bytes and refused C000 "too short to be a DICOM dataset"; a malicious one was then
    /// neither quarantined nor audited. Here the limit is lowered so that a CT image passes it.
    /// </summary>
    [Fact]
    public Task Regression_every_object_past_the_in_memory_inspection_limit_was_refused_as_too_short() =>
        StoreCleanAndMaliciousReadBackFromTheSpoolAsync("InMemoryInspectionLimit", "size");

    /// <summary>
    /// Regression: each arriving object kept a plaintext copy of up to 64 MiB for inspection, grown by doubling, with no
    /// bound across associations: a 500 MB store allocated 126 MiB of copies before giving up on them, and concurrent
    /// large stores held about 145 MB each until the process ran out of memory. The node's total is now bounded
    /// (Gateway:InMemoryInspectionTotal); here it is below one copy, so both objects are inspected from their spool.
    /// </summary>
    [Fact]
    public Task Regression_concurrent_large_stores_each_kept_a_plaintext_copy_with_no_bound_across_the_node() =>
        StoreCleanAndMaliciousReadBackFromTheSpoolAsync("InMemoryInspectionTotal", "memory");

    private static async Task StoreCleanAndMaliciousReadBackFromTheSpoolAsync(string setting, string reason)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__Gateway__" + setting] = "65536" },
            cancellationToken: ct);
        var clean = Peers.CtCorpusFiles()[0];
        Assert.True(new FileInfo(clean).Length > 65536);
        var file = await DicomReader.ReadFileAsync(clean, new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.4242424243");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, InertPeHeader());
        var malicious = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var stored = await client.StoreFileAsync(clean, ct);
            Assert.True(stored.Status == DimseStatus.Success, $"{stored.Status:X4} {stored.ErrorComment}");
            var refused = await client.StoreAsync(DicomUids.CTImageStorage, "2.25.4242424243", DicomUids.ExplicitVRLittleEndian, new MemoryStream(malicious), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            Assert.Contains("dicom.element.executable", refused.ErrorComment, StringComparison.Ordinal);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.HttpPort}/metrics"), ct);
        var readBack = Regex.Match(metrics, $@"^vigie_gateway_ingest_read_back_total\{{[^}}]*reason=""{reason}""[^}}]*\}} (\d+)", RegexOptions.Multiline);
        Assert.True(readBack.Success && readBack.Groups[1].Value == "2", metrics);
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Malicious_object_is_refused_quarantined_encrypted_audited_and_never_forwarded(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-e2e");
        await using var pacs = await StoreScp.StartAsync("PACS", work.Combine("pacs"));
        await using var node = await VigieNode.StartAsync(provider, ["--forward", $"PACS@127.0.0.1:{pacs.Port}"], cancellationToken: ct);
        var clean = Peers.CtCorpusFiles()[0];
        var file = await DicomReader.ReadFileAsync(clean, new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.4242424242");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetBytes(new DicomTag(0x0029, 0x1001), DicomVR.OB, InertPeHeader());
        var data = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var refused = await client.StoreAsync(DicomUids.CTImageStorage, "2.25.4242424242", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            Assert.Contains("dicom.element.executable", refused.ErrorComment, StringComparison.Ordinal);
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(clean, ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        var alerts = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details")).StandardOutput).RootElement;
        Assert.Contains(alerts.EnumerateArray(), e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("dicom.element.executable",
            StringComparison.Ordinal));
        await pacs.WaitForFilesAsync(1, TimeSpan.FromMinutes(1));
        await Task.Delay(2000, ct);
        Assert.Equal(1, pacs.Files);
        Assert.Equal(1, pacs.StoreRequests);

        // The security officer lists the quarantine and takes the object out for analysis, and the audit trail says so.
        var listed = await node.VigieAsync("quarantine", "list", "--json");
        Assert.True(listed.ExitCode == 0, listed.ToString());
        var item = Assert.Single(JsonDocument.Parse(listed.StandardOutput).RootElement.EnumerateArray());
        Assert.Equal("MODALITY", item.GetProperty("calling_ae").GetString());
        Assert.Equal("Malicious", item.GetProperty("verdict").GetString());
        Assert.Contains(item.GetProperty("rules").EnumerateArray(), r => r.GetString() == "dicom.element.executable");
        var quarantineId = item.GetProperty("id").GetString()!;
        var copy = work.Combine("analysis.dcm");
        var refusedWithoutReason = await node.VigieAsync("quarantine", "export", quarantineId, "--out", copy, "--reason", " ");
        Assert.Equal(2, refusedWithoutReason.ExitCode);
        var exported = await node.VigieAsync("quarantine", "export", quarantineId, "--out", copy, "--reason", "incident INC-0042");
        Assert.True(exported.ExitCode == 0, exported.ToString());
        // The data set exactly as it arrived, in the DICOM file Vigie made of it (its own file meta information in front).
        var exportedBytes = await File.ReadAllBytesAsync(copy, ct);
        Assert.True(exportedBytes.AsSpan(128, 4).SequenceEqual("DICM"u8));
        Assert.True(exportedBytes.AsSpan().EndsWith(data));
        // Regression: every header Vigie made said its file meta group was 0 bytes long (dcmdump: "Invalid Element").
        Assert.Equal((uint)(exportedBytes.Length - data.Length - 144), System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(exportedBytes.AsSpan(140)));
        var dump = await Peers.RunAsync(Peers.Require("dcmdump", "dcmtk"), ["-M", copy], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(dump.ExitCode == 0 && !dump.StandardError.Contains("W:", StringComparison.Ordinal), dump.ToString());
        // Regression: a log line written to stdout came before the --json output.
        var exportedJson = await node.VigieAsync("quarantine", "export", quarantineId, "--out", work.Combine("again.dcm"), "--reason", "INC-0043", "--json");
        Assert.True(exportedJson.ExitCode == 0, exportedJson.ToString());
        JsonDocument.Parse(exportedJson.StandardOutput).Dispose();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(copy));
        Assert.Equal(2, (await node.VigieAsync("quarantine", "export", quarantineId, "--out", copy, "--reason", "again")).ExitCode);
        Assert.Equal(2, (await node.VigieAsync("quarantine", "export", "no-such-id", "--out", work.Combine("none.dcm"), "--reason", "test")).ExitCode);
        // Never as plaintext inside the data folder.
        var inside = await node.VigieAsync("quarantine", "export", quarantineId, "--out", Path.Combine(node.Data, "analysis.dcm"), "--reason", "test");
        Assert.Equal(2, inside.ExitCode);
        Assert.Contains("outside Vigie's data and key folders", inside.StandardError, StringComparison.Ordinal);
        // Regression: a path through a symbolic link to the data folder was written, the hostile object in clear inside it.
        var link = work.Combine("via-link");
        Directory.CreateSymbolicLink(link, node.Data);
        var linked = await node.VigieAsync("quarantine", "export", quarantineId, "--out", Path.Combine(link, "leak.dcm"), "--reason", "test");
        Assert.Equal(2, linked.ExitCode);
        Assert.Contains("outside Vigie's data and key folders", linked.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(node.Data, "leak.dcm")));
        var nowhere = await node.VigieAsync("quarantine", "export", quarantineId, "--out", work.Combine("no-such-folder", "copy.dcm"), "--reason", "test");
        Assert.Equal(2, nowhere.ExitCode);
        Assert.Contains("no such folder", nowhere.StandardError, StringComparison.Ordinal);
        var folder = await node.VigieAsync("quarantine", "export", quarantineId, "--out", work.Path, "--reason", "test", "--force");
        Assert.Equal(2, folder.ExitCode);
        Assert.Contains("names a folder: give the file to write", folder.StandardError, StringComparison.Ordinal);
        var exports = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110106", "--details")).StandardOutput).RootElement;
        Assert.Equal(2, exports.GetArrayLength());
        var export = Assert.Single(exports.EnumerateArray(),
            e => e.GetProperty("details").GetProperty("outcome").GetString()!.Contains("INC-0042", StringComparison.Ordinal));
        Assert.Contains("INC-0042", export.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
        Assert.Contains(quarantineId, export.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
        // Regression: an export named its operator "user@host (vigie quarantine export)" and the other commands "user",
        // so filtering the trail by user missed the exports. Now the account, from this host; and the media it went to.
        var byUser = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--user", Environment.UserName, "--event", "110106")).StandardOutput)
            .RootElement;
        Assert.Equal(2, byUser.GetArrayLength());
        Assert.All(byUser.EnumerateArray(), e =>
        {
            var participants = e.GetProperty("participants").EnumerateArray().ToList();
            Assert.Contains(participants, p => p.GetProperty("requestor").GetBoolean() && p.GetProperty("user").GetString() == Environment.UserName
                && p.GetProperty("address").GetString() == Environment.MachineName);
            Assert.Contains(participants, p => p.TryGetProperty("media", out var media) && media.GetString() == "URI");
        });
        // Regression: the quarantine and the export named no patient, so neither showed in that patient's history,
        // though the exported file holds their identity and images (PS3.15 A.5.3.7).
        var patientId = file.Dataset.GetString(DicomTags.PatientID)!;
        var history = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--patient", patientId)).StandardOutput).RootElement;
        Assert.Equal(1, history.EnumerateArray().Count(e => e.GetProperty("event_id").GetString() == "110113"));
        Assert.Equal(2, history.EnumerateArray().Count(e => e.GetProperty("event_id").GetString() == "110106"));

        // A damaged quarantined copy never comes out, not even in part, and leaves no export in the trail.
        await using (var stored = File.Open(Path.Combine(node.Data, "quarantine", quarantineId + ".vobj"), FileMode.Open, FileAccess.ReadWrite))
        {
            stored.Position = stored.Length / 2;
            var original = stored.ReadByte();
            stored.Position--;
            stored.WriteByte((byte)(original ^ 0xFF));
        }

        var damaged = await node.VigieAsync("quarantine", "export", quarantineId, "--out", work.Combine("damaged.dcm"), "--reason", "test");
        Assert.Equal(2, damaged.ExitCode);
        Assert.Contains("cannot be read back", damaged.StandardError, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFiles(work.Path, "*damaged.dcm*"));
        Assert.Equal(2, JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110106")).StandardOutput).RootElement.GetArrayLength());
        await node.StopAsync();
        // The quarantined copy is encrypted like everything else: its marker is nowhere in clear.
        Assert.Empty(await CorpusIdentifiers.FindAsync(node.Data, ["VIGIE-INERT-MARKER-7731", "2.25.4242424242"], ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_signature_published_after_an_object_was_archived_finds_it_there_with_rescan(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-rescan");
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        var clean = Peers.CtCorpusFiles()[0];
        var file = await DicomReader.ReadFileAsync(clean, new DicomReadOptions { LoadLargeValues = true }, ct);
        file.Dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "2.25.5521552155");
        file.Dataset.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "ACME");
        file.Dataset.SetString(new DicomTag(0x0029, 0x1001), DicomVR.LO, "VIGIE-RETRO-IOC-5521");
        var data = DicomWriter.Encode(file.Dataset, TransferSyntax.ExplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            // Nothing knows the marker yet: both are archived.
            Assert.Equal(DimseStatus.Success, (await client.StoreAsync(DicomUids.CTImageStorage, "2.25.5521552155", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct)).Status);
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(clean, ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var before = await node.VigieAsync("rescan", "--json");
        Assert.True(before.ExitCode == 0, before.ToString());
        Assert.Equal(2, JsonDocument.Parse(before.StandardOutput).RootElement.GetProperty("objects").GetInt64());

        // The indicator is published (a ClamAV body signature of the marker): the object is found where it sits.
        var rules = work.Combine("rules");
        Directory.CreateDirectory(rules);
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.RetroIOC:0:*:{Convert.ToHexStringLower("VIGIE-RETRO-IOC-5521"u8)}\n", ct);
        var after = await node.VigieAsync("rescan", "--rules", rules, "--reveal-identifiers", "--json");
        Assert.True(after.ExitCode == 1, after.ToString());
        var flagged = Assert.Single(JsonDocument.Parse(after.StandardOutput).RootElement.GetProperty("flagged").EnumerateArray());
        Assert.Equal("2.25.5521552155", flagged.GetProperty("sop_instance_uid").GetString());
        Assert.Contains(flagged.GetProperty("findings").EnumerateArray(), f => f.GetProperty("message").GetString()!.Contains("Vigie.Test.RetroIOC", StringComparison.Ordinal));
        var later = await node.VigieAsync("rescan", "--rules", rules, "--since", DateTimeOffset.UtcNow.AddHours(1).ToString("O"), "--json");
        Assert.True(later.ExitCode == 0, later.ToString());
        Assert.Equal(0, JsonDocument.Parse(later.StandardOutput).RootElement.GetProperty("objects").GetInt64());
        var plain = await node.VigieAsync("rescan", "--rules", rules);
        Assert.Equal(1, plain.ExitCode);
        Assert.DoesNotContain("2.25.5521552155", plain.StandardOutput, StringComparison.Ordinal);

        var alerts = JsonDocument.Parse((await node.VigieAsync("audit", "show", "--json", "--event", "110113", "--details")).StandardOutput).RootElement;
        Assert.Equal(2, alerts.EnumerateArray().Count(e => (e.GetProperty("details").GetProperty("outcome").GetString() ?? "").Contains("flagged by re-inspection",
            StringComparison.Ordinal)));
        Assert.Equal(2, (await node.VigieAsync("rescan", "--rules", work.Combine("no-such-folder"))).ExitCode);

        // Regression (review of the officer's workflows): a flagged object was still retrieved (and forwarded to a PACS
        // that had been down). It is withheld; a whole rescan that no longer flags it releases it.
        async Task<int> RetrievedAsync()
        {
            using var got = new TempDirectory("vigie-withheld");
            await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-aet", "MODALITY", "-S", "-k", "QueryRetrieveLevel=IMAGE",
                "-k", $"StudyInstanceUID={file.Dataset.GetString(DicomTags.StudyInstanceUID)}", "-k", $"SeriesInstanceUID={file.Dataset.GetString(DicomTags.SeriesInstanceUID)}",
                "-k", "SOPInstanceUID=2.25.5521552155", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            return Directory.GetFiles(got.Path).Length;
        }

        Assert.Equal(0, await RetrievedAsync());

        // Regression (review of the docs): the next campaign's rescan, with its own indicator folder, released what the
        // previous campaign had flagged. Another folder lifts nothing; the same folder with the rule withdrawn does.
        var nextCampaign = Directory.CreateDirectory(work.Combine("next-campaign")).FullName;
        await File.WriteAllTextAsync(Path.Combine(nextCampaign, "other.ndb"), $"Vigie.Test.Other:0:*:{Convert.ToHexStringLower("VIGIE-NOT-THERE-9"u8)}\n", ct);
        var other = await node.VigieAsync("rescan", "--rules", nextCampaign);
        Assert.True(other.ExitCode == 0, other.ToString());
        Assert.DoesNotContain("released", other.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(0, await RetrievedAsync());

        var flags = JsonDocument.Parse((await node.VigieAsync("withheld", "list", "--json")).StandardOutput).RootElement;
        var flag = Assert.Single(flags.EnumerateArray());
        Assert.Equal(Path.GetFullPath(rules), flag.GetProperty("rules_folder").GetString());

        // The same folder spelt another way (a trailing slash, a link) is the same folder.
        var ioc = await File.ReadAllTextAsync(Path.Combine(rules, "ioc.ndb"), ct);
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.Other:0:*:{Convert.ToHexStringLower("VIGIE-NOT-THERE-9"u8)}\n", ct);
        var release = await node.VigieAsync("rescan", "--rules", rules + "/");
        Assert.True(release.ExitCode == 0, release.ToString());
        Assert.Contains("no longer flagged, and are released", release.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(1, await RetrievedAsync());

        // Flagged again; the officer judges it harmless and releases it, with the reason kept in the trail.
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), ioc, ct);
        Assert.Equal(1, (await node.VigieAsync("rescan", "--rules", rules)).ExitCode);
        Assert.Equal(0, await RetrievedAsync());
        var released = await node.VigieAsync("withheld", "release", flag.GetProperty("object").GetString()!, "--reason", "INC-77: vendor marker, harmless");
        Assert.True(released.ExitCode == 0, released.ToString());
        Assert.Equal(1, await RetrievedAsync());
        Assert.Equal(2, (await node.VigieAsync("withheld", "release", flag.GetProperty("object").GetString()!, "--reason", "again")).ExitCode);
        // Under the object's patient, where the flag is (third review: the release named no patient).
        Assert.Contains("released from withholding (1 flag(s) lifted): INC-77: vendor marker, harmless",
            (await node.VigieAsync("audit", "show", "--json", "--details", "--patient", file.Dataset.GetString(DicomTags.PatientID)!)).StandardOutput, StringComparison.Ordinal);

        // Regression: a rescan read the files it found, so an object whose file was gone was not inspected, unsaid.
        File.Delete(Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).First());
        var missing = await node.VigieAsync("rescan", "--json");
        Assert.True(missing.ExitCode == 2, missing.ToString());
        Assert.Equal(1, JsonDocument.Parse(missing.StandardOutput).RootElement.GetProperty("not_found").GetInt64());
        Assert.Contains("1 indexed objects were not found on disk", (await node.VigieAsync("rescan")).StandardOutput, StringComparison.Ordinal);
        await node.StopAsync();
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Kill_9_in_the_middle_of_a_store_loses_nothing_acknowledged(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles();
        await using var node = await VigieNode.StartAsync(provider, cancellationToken: ct);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var storescu = new System.Diagnostics.ProcessStartInfo(Peers.Require("storescu", "dcmtk")) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-v", "-aec", "VIGIE", "127.0.0.1", node.DicomPortText }.Concat(files))
        {
            storescu.ArgumentList.Add(argument);
        }

        storescu.Environment["TCP_NODELAY"] = "1";
        var acknowledged = 0;
        using var process = System.Diagnostics.Process.Start(storescu)!;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("Received Store Response (Success)", StringComparison.Ordinal) == true)
            {
                Interlocked.Increment(ref acknowledged);
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        while (Volatile.Read(ref acknowledged) < 60 && !process.HasExited)
        {
            await Task.Delay(20, ct);
        }

        await node.KillAsync();
        await process.WaitForExitAsync(ct);
        var acked = Volatile.Read(ref acknowledged);
        Assert.InRange(acked, 60, 199);

        await node.StartProcessAsync(ct);
        // storescu sends in order and waits for each answer: the first `acked` files were acknowledged.
        var found = new HashSet<string>(StringComparer.Ordinal);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "CHECK", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.StudyRootQueryRetrieveInformationModelFind], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var query = new DicomDataset();
            query.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
            query.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, "");
            await foreach (var match in client.FindAsync(DicomUids.StudyRootQueryRetrieveInformationModelFind, query, ct))
            {
                found.Add(match.GetString(DicomTags.SOPInstanceUID)!);
            }

            await client.ReleaseAsync(ct);
        }

        foreach (var path in files.Take(acked))
        {
            var uid = (await DicomReader.ReadFileAsync(path, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.SOPInstanceUID)!;
            Assert.Contains(uid, found);
        }

        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var scrub = await node.VigieAsync("scrub");
        Assert.True(scrub.ExitCode == 0, scrub.ToString());
    }

    /// <summary>
    /// Deleting every signed tree head leaves a log that still verifies on its own: its entries hash and chain. The
    /// head printed by `vigie audit head` and kept elsewhere reveals it.
    /// </summary>
    [Fact]
    public async Task A_tree_head_kept_outside_reveals_the_heads_deleted_from_the_database()
    {
        var ct = TestContext.Current.CancellationToken;
        using var outside = new TempDirectory("vigie-witness");
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. Peers.CtCorpusFiles().Take(4)],
            TimeSpan.FromMinutes(3), cancellationToken: ct);
        Assert.True(store.ExitCode == 0, store.ToString());
        await node.StopAsync();
        var head = await node.VigieAsync("audit", "head", "--json");
        Assert.True(head.ExitCode == 0, head.ToString());
        var witness = outside.Combine("head.json");
        await File.WriteAllTextAsync(witness, head.StandardOutput, ct);
        var kept = await node.VigieAsync("audit", "verify", "--witness", witness);
        Assert.True(kept.ExitCode == 0, kept.ToString());
        Assert.Contains("(with 1 kept outside)", kept.StandardOutput, StringComparison.Ordinal);

        await using (var connection = new SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=False"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM audit_tree_head";
            await command.ExecuteNonQueryAsync(ct);
        }

        // The node's own record of its last head, beside its key, tells too (since 2026-12-07); without it, nothing does.
        Assert.Equal(1, (await node.VigieAsync("audit", "verify")).ExitCode);
        File.Move(Path.Combine(node.Keys, "audit-signing.key.heads"), Path.Combine(node.Keys, "heads.kept"));
        Assert.Equal(0, (await node.VigieAsync("audit", "verify")).ExitCode); // the documented limit without a witness
        var caught = await node.VigieAsync("audit", "verify", "--witness", witness);
        Assert.Equal(1, caught.ExitCode);
        Assert.Contains("a witnessed tree head is missing from the database", caught.StandardOutput, StringComparison.Ordinal);

        await File.WriteAllTextAsync(witness, "{\"treeSize\": 3}", ct);
        var garbage = await node.VigieAsync("audit", "verify", "--witness", witness);
        Assert.Equal(2, garbage.ExitCode);
        Assert.Contains("not a signed tree head", garbage.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// A site whose only audit export is FHIR keeps the signed tree heads there too: the NDJSON export file, as it
    /// stands, is a witness for `vigie audit verify`.
    /// </summary>
    [Fact]
    public async Task The_fhir_export_keeps_the_tree_heads_that_reveal_heads_deleted_from_the_database()
    {
        var ct = TestContext.Current.CancellationToken;
        using var outside = new TempDirectory("vigie-witness");
        var export = outside.Combine("audit.ndjson");
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__AUDIT__TREEHEADINTERVAL"] = "00:00:01",
            ["VIGIE__AUDIT__SINKS__0__NAME"] = "arr",
            ["VIGIE__AUDIT__SINKS__0__KIND"] = "FhirNdjson",
            ["VIGIE__AUDIT__SINKS__0__NDJSONPATH"] = export,
        }, cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. Peers.CtCorpusFiles().Take(4)],
            TimeSpan.FromMinutes(3), cancellationToken: ct);
        Assert.True(store.ExitCode == 0, store.ToString());
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(export) || !(await File.ReadAllTextAsync(export, ct)).Contains("signed-tree-head", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, "no signed tree head reached the FHIR export");
            await Task.Delay(200, ct);
        }

        await node.StopAsync();
        var kept = await node.VigieAsync("audit", "verify", "--witness", export);
        Assert.True(kept.ExitCode == 0, kept.ToString());
        Assert.Matches(@"\(with \d+ kept outside\)", kept.StandardOutput);
        var keptBySink = await node.VigieAsync("audit", "verify", "--witness-sink", "arr");
        Assert.True(keptBySink.ExitCode == 0, keptBySink.ToString());

        await using (var connection = new SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=False"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM audit_tree_head";
            await command.ExecuteNonQueryAsync(ct);
        }

        var caught = await node.VigieAsync("audit", "verify", "--witness", export);
        Assert.Equal(1, caught.ExitCode);
        Assert.Contains("a witnessed tree head is missing from the database", caught.StandardOutput, StringComparison.Ordinal);

        // The same copies, found through the node's own configuration of the sink.
        var bySink = await node.VigieAsync("audit", "verify", "--witness-sink", "arr");
        Assert.Equal(1, bySink.ExitCode);
        Assert.Contains("a witnessed tree head is missing from the database", bySink.StandardOutput, StringComparison.Ordinal);
        var unknown = await node.VigieAsync("audit", "verify", "--witness-sink", "siem");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("no audit sink is named siem (configured: arr)", unknown.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tampering_with_the_audit_trail_or_the_archive_is_named_by_the_cli()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var store = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText, .. Peers.CtCorpusFiles().Take(12)],
            TimeSpan.FromMinutes(3), cancellationToken: ct);
        Assert.True(store.ExitCode == 0, store.ToString());
        await node.StopAsync();
        Assert.Equal(0, (await node.VigieAsync("audit", "verify")).ExitCode);
        Assert.Equal(0, (await node.VigieAsync("scrub")).ExitCode);
        var database = Path.Combine(node.Data, "index.db");
        // Kept outside the data folder, where the scrub reports any file Vigie did not put.
        using var saved = new TempDirectory("vigie-index-copy");
        var backup = saved.Combine("index.db.clean");
        File.Copy(database, backup);

        async Task<string> VerifyFailsNaming(long sequence)
        {
            var result = await node.VigieAsync("audit", "verify");
            Assert.Equal(1, result.ExitCode);
            Assert.Contains($"entry {sequence}:", result.StandardOutput, StringComparison.Ordinal);
            File.Copy(backup, database, overwrite: true);
            File.Delete(database + "-wal");
            return result.StandardOutput;
        }

        async Task ExecuteAsync(string sql)
        {
            await using var connection = new SqliteConnection($"Data Source={database};Pooling=False");
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            await command.ExecuteNonQueryAsync(ct);
        }

        await ExecuteAsync("UPDATE audit_entry SET user_id = 'STORESCX' WHERE seq = 5");
        await VerifyFailsNaming(5);
        await ExecuteAsync("UPDATE audit_entry SET sealed = CAST(sealed AS BLOB) || x'00' WHERE seq = 7");
        await VerifyFailsNaming(7);
        await ExecuteAsync("DELETE FROM audit_entry WHERE seq = 6");
        await VerifyFailsNaming(6);
        await ExecuteAsync("""
            UPDATE audit_entry SET seq = -1 WHERE seq = 8; UPDATE audit_entry SET seq = 8 WHERE seq = 9; UPDATE audit_entry SET seq = 9 WHERE seq = -1;
            """);
        await VerifyFailsNaming(8);

        // The archive: one object corrupted, one deleted, one replaced by a "re-encrypted" foreign file.
        var objects = Directory.EnumerateFiles(Path.Combine(node.Data, "objects"), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        await using (var stream = new FileStream(objects[0], FileMode.Open, FileAccess.ReadWrite))
        {
            stream.Position = stream.Length / 2;
            var b = stream.ReadByte();
            stream.Position--;
            stream.WriteByte((byte)(b ^ 0x01));
        }

        File.Delete(objects[1]);
        await File.WriteAllBytesAsync(objects[2], Encoding.ASCII.GetBytes("ENCRYPTED BY RANSOMWARE ").Concat(new byte[4096]).ToArray(), ct);
        var scrub = await node.VigieAsync("scrub", "--json");
        Assert.Equal(1, scrub.ExitCode);
        var report = JsonDocument.Parse(scrub.StandardOutput).RootElement;
        var findings = report.GetProperty("findings").EnumerateArray().Select(f => (Kind: f.GetProperty("kind").GetString(), Object: f.GetProperty("object").GetString()))
            .ToList();
        Assert.Contains(("corrupted", Path.GetFileName(objects[0])), findings);
        Assert.Contains(("missing", Path.GetFileName(objects[1])), findings);
        Assert.Contains(findings, f => f.Kind == "foreign" && f.Object == Path.GetFileName(objects[2]));

        // Regression: the findings of `vigie scrub` (the only check that decrypts every segment) reached no audit entry.
        var alerts = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110113");
        Assert.Contains(JsonDocument.Parse(alerts.StandardOutput).RootElement.EnumerateArray(), e =>
            e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith("archive integrity: vigie scrub: ", StringComparison.Ordinal)
            && e.GetProperty("details").GetProperty("outcome").GetString()!.Contains("1 missing, 1 corrupted, 1 foreign", StringComparison.Ordinal));
    }
}

/// <summary>
/// Bug: an index row pointed (in the database) at another instance's object made C-GET send that other patient's image
/// under the instance asked for, without a word. The node checks what it sends against what the row names.
/// </summary>
public sealed class IndexRedirectTests
{
    [Fact]
    public async Task A_retrieve_never_sends_an_object_that_is_not_the_instance_asked_for()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(2).ToList();
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(files, ct);
        await node.StopAsync();
        await using (var connection = new SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=False"))
        {
            await connection.OpenAsync(ct);
            await using var command = connection.CreateCommand();
            // Every version row now names one object, the other instance's for one of them.
            command.CommandText = "UPDATE archive_versions SET object_id = (SELECT object_id FROM archive_versions ORDER BY object_id LIMIT 1)";
            Assert.Equal(2, await command.ExecuteNonQueryAsync(ct));
        }

        await node.StartProcessAsync(ct);
        using var got = new TempDirectory("vigie-got");
        var asked = new List<string>();
        foreach (var file in files)
        {
            var dataset = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset;
            asked.Add(dataset.GetString(DicomTags.SOPInstanceUID)!);
            await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE",
                "-k", $"StudyInstanceUID={dataset.GetString(DicomTags.StudyInstanceUID)}", "-k", $"SeriesInstanceUID={dataset.GetString(DicomTags.SeriesInstanceUID)}",
                "-k", $"SOPInstanceUID={dataset.GetString(DicomTags.SOPInstanceUID)}", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
                cancellationToken: ct);
        }

        // Each file served is the instance asked for, never the other one. The object only its object row still names is
        // filed again at start (since 2026-12-07), so the redirected instance may be served its own object again.
        var received = Directory.GetFiles(got.Path).Select(f => Path.GetFileName(f)).ToList();
        Assert.NotEmpty(received);
        Assert.All(received, name => Assert.Contains(asked, uid => name == "CT." + uid));
    }
}
