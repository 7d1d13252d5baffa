using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Review 18: a polyglot sent in Deflated Explicit VR Little Endian, judged as the node serves it (inflated).</summary>
public sealed class DeflatedPolyglotStoreTests
{
    private static DicomDataset Object(string instance)
    {
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.SecondaryCaptureImageStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, instance);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, instance + ".100");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, instance + ".101");
        dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-DEFLATE-18");
        dataset.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^DEFLATED");
        dataset.SetString(DicomTags.Modality, DicomVR.CS, "OT");
        return dataset;
    }

    /// <summary>
    /// Regression (review 18): the PDF header in the data set's first kilobyte (Manufacturer "ACME\%PDF-1.4", an
    /// /OpenAction script in a private OB) and a ZIP holding a program in the last pixel bytes were looked for in the
    /// compressed bytes of a deflated data set only: C-STORE answered 0000, and C-GET served the inflated copy, a PDF
    /// or ZIP polyglot. Both are now refused 0124 over a real association and nothing is stored.
    /// </summary>
    [Fact]
    public async Task Regression_a_deflated_pdf_or_zip_polyglot_was_stored_and_served_inflated()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);

        var pdf = Object("1.2.826.0.1.3680043.10.1338.18.1");
        pdf.SetString(DicomTags.Manufacturer, DicomVR.LO, "ACME\\%PDF-1.4");
        var objects = Encoding.ASCII.GetBytes("\n1 0 obj\n<</Type/Catalog/Pages 2 0 R/OpenAction 3 0 R>>\nendobj\n2 0 obj\n<</Type/Pages/Kids[]/Count 0>>\nendobj\n"
            + "3 0 obj\n<</S/JavaScript/JS(app.alert\\(\"VIGIE-INERT-MARKER\"\\))>>\nendobj\ntrailer\n<</Root 1 0 R/Size 4>>\n%%EOF\n");
        pdf.SetString(new DicomTag(0x7FE1, 0x0010), DicomVR.LO, "ACME 1.0");
        pdf.SetBytes(new DicomTag(0x7FE1, 0x1010), DicomVR.OB, objects.Length % 2 == 0 ? objects : [.. objects, (byte)'\n']);

        var zip = Object("1.2.826.0.1.3680043.10.1338.18.2");
        zip.SetUInt16(DicomTags.SamplesPerPixel, 1);
        zip.SetString(DicomTags.PhotometricInterpretation, DicomVR.CS, "MONOCHROME2");
        zip.SetUInt16(DicomTags.Rows, 64);
        zip.SetUInt16(DicomTags.Columns, 64);
        zip.SetUInt16(DicomTags.BitsAllocated, 8);
        zip.SetUInt16(DicomTags.BitsStored, 8);
        zip.SetUInt16(DicomTags.HighBit, 7);
        zip.SetUInt16(DicomTags.PixelRepresentation, 0);
        var archive = StoredZip("run.exe", SecurityTests.InertPeHeader());
        var pixels = new byte[64 * 64];
        archive.CopyTo(pixels, pixels.Length - archive.Length);
        zip.SetBytes(DicomTags.PixelData, DicomVR.OB, pixels);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.SecondaryCaptureImageStorage], DicomUids.DeflatedExplicitVRLittleEndian), ct))
        {
            foreach (var (dataset, rule) in new[] { (pdf, "pdf."), (zip, "executable.pe") })
            {
                var bytes = DicomWriter.Encode(dataset, TransferSyntax.DeflatedExplicitVRLittleEndian);
                Assert.True(bytes.AsSpan().IndexOf("%PDF-"u8) < 0 && bytes.AsSpan().IndexOf("PK\u0005\u0006"u8) < 0, "the data set is sent compressed");
                var refused = await client.StoreAsync(DicomUids.SecondaryCaptureImageStorage, dataset.GetString(DicomTags.SOPInstanceUID)!,
                    DicomUids.DeflatedExplicitVRLittleEndian, new MemoryStream(bytes), ct);
                Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
                Assert.Contains(rule, refused.ErrorComment, StringComparison.Ordinal);
            }

            await client.ReleaseAsync(ct);
        }

        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        var stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
        Assert.Equal(2, stats.GetProperty("quarantined").GetInt64());
    }

    /// <summary>A ZIP of one stored entry (no compression), as unzip lists it.</summary>
    private static byte[] StoredZip(string name, byte[] data)
    {
        using var stream = new MemoryStream();
        using (var archive = new System.IO.Compression.ZipArchive(stream, System.IO.Compression.ZipArchiveMode.Create, leaveOpen: true))
        {
            using var entry = archive.CreateEntry(name, System.IO.Compression.CompressionLevel.NoCompression).Open();
            entry.Write(data);
        }

        return stream.ToArray();
    }
}
