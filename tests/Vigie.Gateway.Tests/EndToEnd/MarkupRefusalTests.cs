using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Pages hidden in text values, refused by C-STORE through the real node.</summary>
public sealed class MarkupRefusalTests
{
    /// <summary>
    /// Regression (review 18, defect 4): an LT value holding an HTML-smuggling page (a script that builds a Blob from
    /// base64 and clicks a download link; inert, 12 bytes) was refused 0124 only when the page started the value:
    /// "Report follows. " before it, and the node answered 0000 and archived the object. It is now refused 0124
    /// (html.smuggling) and nothing is stored.
    /// </summary>
    [Fact]
    public async Task Regression_a_smuggling_page_behind_text_in_an_LT_value_was_stored()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        const string sopInstance = "1.2.826.0.1.3680043.10.1338.18.1";
        const string page = "<html><body><script>var b=atob(\"TVqQAAMAAAAEAAAA\");var a=document.createElement(\"a\");"
            + "a.href=URL.createObjectURL(new Blob([b],{type:\"application/octet-stream\"}));a.download=\"report.exe\";a.click();</script></body></html>";
        var dataset = new DicomDataset();
        dataset.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.SecondaryCaptureImageStorage);
        dataset.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        dataset.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.18.2");
        dataset.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.18.3");
        dataset.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-HTML-18");
        dataset.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^SMUGGLING");
        dataset.SetString(DicomTags.Modality, DicomVR.CS, "OT");
        var text = Encoding.ASCII.GetBytes("Report follows. " + page);
        dataset.SetBytes(new DicomTag(0x0020, 0x4000), DicomVR.LT, text.Length % 2 == 0 ? text : [.. text, (byte)' ']);
        var bytes = DicomWriter.Encode(dataset, TransferSyntax.ExplicitVRLittleEndian);

        await using (var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
                         DicomClient.Propose([DicomUids.SecondaryCaptureImageStorage], DicomUids.ExplicitVRLittleEndian), ct))
        {
            var refused = await client.StoreAsync(DicomUids.SecondaryCaptureImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, new MemoryStream(bytes), ct);
            Assert.Equal(DimseStatus.NotAuthorized, refused.Status);
            Assert.Contains("html.smuggling", refused.ErrorComment, StringComparison.Ordinal);
            await client.ReleaseAsync(ct);
        }

        var stats = await node.StatsAsync();
        Assert.Equal(0, stats.GetProperty("instances").GetInt64());
        Assert.Equal(1, stats.GetProperty("quarantined").GetInt64());
    }
}
