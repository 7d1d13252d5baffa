using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: vendors' private storage classes (a CT's raw data, Siemens CSA Non-Image 1.3.12.2.1107.5.9.1) were
/// refused at negotiation whatever the settings, so the modality could store them nowhere through Vigie. They are
/// taken when listed under Gateway:AdditionalStorageSopClasses, inspected, kept, found, committed and forwarded like
/// the registry's, and still refused when not listed.
/// </summary>
public sealed class PrivateStorageClassTests
{
    private const string CsaNonImage = "1.3.12.2.1107.5.9.1";

    [Fact]
    public async Task Regression_private_storage_classes_were_refused_whatever_the_settings()
    {
        var ct = TestContext.Current.CancellationToken;
        Assert.Null(DicomDictionary.FindUid(CsaNonImage));
        var listed = new Dictionary<string, string> { ["VIGIE__Gateway__AdditionalStorageSopClasses__0"] = CsaNonImage };
        await using var pacs = await VigieNode.StartAsync(environment: listed, cancellationToken: ct);
        await using var node = await VigieNode.StartAsync(arguments: ["--forward", $"VIGIE@127.0.0.1:{pacs.DicomPort}"], environment: listed, cancellationToken: ct);
        await using var plain = await VigieNode.StartAsync(cancellationToken: ct);

        using var folder = new TempDirectory();
        var file = folder.Combine("csa.dcm");
        await using (var output = File.Create(file))
        {
            await DicomWriter.WriteFileAsync(output, new DicomFile(new DicomDataset(), RawData("2.25.5910001"), TransferSyntax.ExplicitVRLittleEndian), null, ct);
        }

        // storescu sends no class it does not know; dcmsend does, with its UID checks off.
        var refused = await Peers.RunAsync(Peers.Require("dcmsend", "dcmtk"), ["-aec", "VIGIE", "-nuc", "127.0.0.1", plain.DicomPortText, file], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.Contains("No Acceptable Presentation Contexts", refused.StandardError + refused.StandardOutput, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, (await plain.StatsAsync()).GetProperty("instances").GetInt64());

        var stored = await Peers.RunAsync(Peers.Require("dcmsend", "dcmtk"), ["-aec", "VIGIE", "-nuc", "127.0.0.1", node.DicomPortText, file], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(stored.ExitCode == 0 && !stored.StandardError.Contains("E: ", StringComparison.Ordinal), stored.ToString());
        Assert.Equal(1, (await node.StatsAsync()).GetProperty("instances").GetInt64());

        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"),
            ["-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "StudyInstanceUID=2.25.591", "-k", "SeriesInstanceUID", "-k", "SOPClassUID", "-k",
                "SOPInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(find.ExitCode == 0, find.ToString());
        Assert.Contains(CsaNonImage, find.StandardError + find.StandardOutput, StringComparison.Ordinal);

        var forwarded = await Eventually.WaitForAsync(async () => (await pacs.StatsAsync()).GetProperty("instances").GetInt64(), n => n == 1, ct, TimeSpan.FromSeconds(60));
        Assert.Equal(1, forwarded);
        Assert.Equal(0, (await node.VigieAsync("scrub")).ExitCode);
    }

    /// <summary>A raw-data object as a CT writes it: no pixels, a private creator and an opaque private blob.</summary>
    private static DicomDataset RawData(string sopInstance)
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SOPClassUID, DicomVR.UI, CsaNonImage);
        ds.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        ds.SetString(DicomTags.StudyDate, DicomVR.DA, "20260101");
        ds.SetString(DicomTags.Modality, DicomVR.CS, "CT");
        ds.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^PRIVATE");
        ds.SetString(DicomTags.PatientID, DicomVR.LO, "SYN5910");
        ds.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "2.25.591");
        ds.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "2.25.5919");
        ds.SetString(new DicomTag(0x0029, 0x0010), DicomVR.LO, "SIEMENS CSA NON-IMAGE");
        ds.SetBytes(new DicomTag(0x0029, 0x1010), DicomVR.OB, Enumerable.Range(0, 4096).Select(i => (byte)(i * 7)).ToArray());
        return ds;
    }
}
