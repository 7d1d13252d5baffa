using System.IO.Compression;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Review 21: OpenDocument carried in an Encapsulated document, in the shapes LibreOffice opens and the identifier missed.</summary>
public sealed class OpenDocumentStoreTests
{
    private const string Namespaces =
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
        + "xmlns:script=\"urn:oasis:names:tc:opendocument:xmlns:script:1.0\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" "
        + "xmlns:ooo=\"http://openoffice.org/2004/office\"";

    private const string Listener = "<office:event-listeners><script:event-listener script:language=\"ooo:script\" script:event-name=\"dom:load\" "
        + "xlink:href=\"vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document\"/></office:event-listeners>";

    /// <summary>
    /// Regression (review 21, defects 1 and 2): a flat ODF whose root came after a 9 KB processing instruction, and an
    /// .odt package without a mimetype entry (recognised by LibreOffice from its manifest), each binding a script to the
    /// load event (inert markers), were typed XML and ZIP, clean, answered 0000 and archived. Both are now refused 0124
    /// naming office.odf-macro and quarantined, and the node stores the next object.
    /// </summary>
    [Fact]
    public async Task Regression_odf_behind_a_long_prolog_or_without_a_mimetype_entry_was_stored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);

        var fodt = Encoding.UTF8.GetBytes("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<?vigie-review " + new string('B', 9000) + "?>\n"
            + $"<office:document {Namespaces} office:mimetype=\"application/vnd.oasis.opendocument.text\"><office:scripts>{Listener}</office:scripts>"
            + "<office:body><office:text><text:p>VIGIE-INERT-MARKER</text:p></office:text></office:body></office:document>\n");
        byte[] odt;
        using (var buffer = new MemoryStream())
        {
            using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
            {
                void Add(string name, string text)
                {
                    using var stream = zip.CreateEntry(name).Open();
                    stream.Write(Encoding.UTF8.GetBytes(text));
                }

                Add("META-INF/manifest.xml", "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\">"
                    + "<manifest:file-entry manifest:full-path=\"/\" manifest:media-type=\"application/vnd.oasis.opendocument.text\"/>"
                    + "<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>");
                Add("content.xml", $"<?xml version=\"1.0\"?><office:document-content {Namespaces}><office:scripts>{Listener}</office:scripts>"
                    + "<office:body><office:text><text:p>VIGIE-INERT-MARKER</text:p></office:text></office:body></office:document-content>");
            }

            odt = buffer.ToArray();
        }

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.EncapsulatedCDAStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var documents = new (string Mime, byte[] Bytes)[] { ("text/XML", fodt), ("application/vnd.oasis.opendocument.text", odt) };
            for (var i = 0; i < documents.Length; i++)
            {
                var sopInstance = $"1.2.826.0.1.3680043.10.1338.21.{i + 1}";
                var dataset = new DicomDataset();
                dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.EncapsulatedCDAStorage);
                dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
                dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.21.100");
                dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.21.101");
                dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-ODF-21");
                dataset.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^ODF");
                dataset.SetString(DicomTags.Modality, DicomVR.CS, "DOC");
                dataset.SetString(DicomTags.MIMETypeOfEncapsulatedDocument, DicomVR.LO, documents[i].Mime);
                var document = documents[i].Bytes;
                dataset.SetBytes(DicomTags.EncapsulatedDocument, DicomVR.OB, document.Length % 2 == 0 ? document : [.. document, 0]);
                var bytes = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);
                var refused = await client.StoreAsync(DicomUids.EncapsulatedCDAStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(bytes), ct);
                Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
                Assert.Contains("office.odf-macro", refused.ErrorComment, StringComparison.Ordinal);
            }

            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(0, stats.GetProperty("instances").GetInt64());
        Assert.Equal(2, stats.GetProperty("quarantined").GetInt64());
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        stats = await node.StatsAsync();
        Assert.Equal(1, stats.GetProperty("instances").GetInt64());
    }
}
