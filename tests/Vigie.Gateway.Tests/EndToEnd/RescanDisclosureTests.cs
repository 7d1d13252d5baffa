using System.IO.Compression;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: `vigie rescan` printed a finding's inner path and message as they were, names taken from inside the
/// object included (a ZIP entry named after the patient), without --reveal-identifiers.
/// </summary>
public sealed class RescanDisclosureTests
{
    private const string EntryName = "notes/ZZLEAK_DUPONT-JEANNE_ZZPID424242.txt";

    [Fact]
    public async Task Regression_rescan_printed_names_from_inside_the_object_without_reveal_identifiers()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-rescan-names");
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);

        using var zip = new MemoryStream();
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Create, leaveOpen: true))
        {
            await using var entry = await archive.CreateEntry(EntryName, CompressionLevel.NoCompression).OpenAsync(ct);
            await entry.WriteAsync("marker VIGIE-NAME-IOC-4242 ok"u8.ToArray(), ct);
        }

        var dataset = Document("2.25.4242424203", "application/zip", zip.ToArray());
        var data = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.EncapsulatedPDFStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.Equal(DimseStatus.Success,
                (await client.StoreAsync(DicomUids.EncapsulatedPDFStorage, "2.25.4242424203", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var rules = Directory.CreateDirectory(work.Combine("rules")).FullName;
        await File.WriteAllTextAsync(Path.Combine(rules, "ioc.ndb"), $"Vigie.Test.NameIOC:0:*:{Convert.ToHexStringLower("VIGIE-NAME-IOC-4242"u8)}\n", ct);

        var plain = await node.VigieAsync("rescan", "--rules", rules);
        var json = await node.VigieAsync("rescan", "--rules", rules, "--json");
        Assert.True(plain.ExitCode == 1, plain.ToString());
        Assert.True(json.ExitCode == 1, json.ToString());
        foreach (var output in new[] { plain.StandardOutput, json.StandardOutput })
        {
            Assert.Contains("Vigie.Test.NameIOC", output, StringComparison.Ordinal);
            Assert.DoesNotContain("ZZPID424242", output, StringComparison.Ordinal);
            Assert.DoesNotContain("DUPONT", output, StringComparison.Ordinal);
        }

        // The structure stays: the element and the content type, the name as a placeholder.
        var paths = JsonDocument.Parse(json.StandardOutput).RootElement.GetProperty("flagged")[0].GetProperty("findings").EnumerateArray()
            .Select(f => f.GetProperty("inner_path").GetString()).ToList();
        Assert.Contains("(0042,0011):application/zip/[name]", paths);

        var revealed = await node.VigieAsync("rescan", "--rules", rules, "--json", "--reveal-identifiers");
        Assert.Contains(EntryName, revealed.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Regression_quarantine_list_json_reason_quoted_names_from_inside_the_object()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var pdf = MinimalPdf(@"/OpenAction << /S /Launch /F (C:\\Patients\\ZZLAUNCH_DUPONT_ZZPID515151.exe) >>");
        var dataset = Document("2.25.5151515103", "application/pdf", pdf);
        var data = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);
        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.EncapsulatedPDFStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            Assert.NotEqual(DimseStatus.Success,
                (await client.StoreAsync(DicomUids.EncapsulatedPDFStorage, "2.25.5151515103", DicomUids.ExplicitVRLittleEndian, new MemoryStream(data), ct)).Status);
            await client.ReleaseAsync(ct);
        }

        var listed = await node.VigieAsync("quarantine", "list", "--json");
        Assert.True(listed.ExitCode == 0, listed.ToString());
        var reason = Assert.Single(JsonDocument.Parse(listed.StandardOutput).RootElement.EnumerateArray()).GetProperty("reason").GetString()!;
        Assert.DoesNotContain("ZZPID515151", reason, StringComparison.Ordinal);
        Assert.Contains("[name]", reason, StringComparison.Ordinal);

        var revealed = await node.VigieAsync("quarantine", "list", "--json", "--reveal-identifiers");
        Assert.Contains("ZZPID515151", revealed.StandardOutput, StringComparison.Ordinal);
    }

    private static DicomDataset Document(string sopInstanceUid, string mimeType, byte[] document)
    {
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedPDFStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstanceUid);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, sopInstanceUid + ".1");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, sopInstanceUid + ".2");
        dataset.SetString(DicomTags.PatientName, DicomVR.PN, "DUPONT^JEANNE");
        dataset.SetString(DicomTags.PatientID, DicomVR.LO, "ZZPID424242");
        dataset.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
        dataset.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, mimeType);
        dataset.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, document.Length % 2 == 0 ? document : [.. document, 0]);
        return dataset;
    }

    /// <summary>A one-page PDF with a correct cross-reference table, <paramref name="catalogExtra"/> in its catalog.</summary>
    private static byte[] MinimalPdf(string catalogExtra)
    {
        var objects = new[]
        {
            $"<< /Type /Catalog /Pages 2 0 R {catalogExtra} >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        };
        var text = new System.Text.StringBuilder("%PDF-1.7\n");
        var offsets = new List<int>();
        for (var i = 0; i < objects.Length; i++)
        {
            offsets.Add(text.Length);
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"{i + 1} 0 obj\n{objects[i]}\nendobj\n");
        }

        var xref = text.Length;
        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"xref\n0 {objects.Length + 1}\n0000000000 65535 f \n");
        foreach (var offset in offsets)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"{offset:D10} 00000 n \n");
        }

        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"trailer\n<< /Size {objects.Length + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n");
        return System.Text.Encoding.Latin1.GetBytes(text.ToString());
    }
}
