using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Gateway.Commitment;

namespace Vigie.Gateway.Tests.Commitment;

/// <summary>What a storage commitment request must hold before Vigie takes it on, and the report it produces.</summary>
public sealed class CommitmentRequestTests
{
    private const string CtImage = "1.2.840.10008.5.1.4.1.1.2";

    [Fact]
    public void A_well_formed_request_lists_its_instances()
    {
        Assert.True(StorageCommitmentService.TryRead(Request("2.25.1", ("1.2.3.1", CtImage), ("1.2.3.2", CtImage)), out var transaction, out var references, out _));
        Assert.Equal("2.25.1", transaction);
        Assert.Equal([new CommitmentReference(CtImage, "1.2.3.1"), new CommitmentReference(CtImage, "1.2.3.2")], references);
    }

    [Theory]
    [InlineData(null, "Transaction UID")]
    [InlineData("not-a-uid", "Transaction UID")]
    [InlineData("1.2.", "Transaction UID")]
    public void A_request_without_a_valid_transaction_is_refused(string? transactionUid, string reason)
    {
        Assert.False(StorageCommitmentService.TryRead(Request(transactionUid, ("1.2.3.1", CtImage)), out _, out _, out var problem));
        Assert.Contains(reason, problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_naming_no_instance_or_a_bad_one_is_refused_with_the_item()
    {
        Assert.False(StorageCommitmentService.TryRead(null, out _, out _, out var none));
        Assert.Equal("no Action Information", none);
        Assert.False(StorageCommitmentService.TryRead(Request("2.25.1"), out _, out _, out var empty));
        Assert.Contains("Referenced SOP Sequence (0008,1199) missing or empty", empty, StringComparison.Ordinal);
        Assert.False(StorageCommitmentService.TryRead(Request("2.25.1", ("1.2.3.1", CtImage), ("1.2.3.x", CtImage)), out _, out _, out var bad));
        Assert.Contains("item 2", bad, StringComparison.Ordinal);
        Assert.False(StorageCommitmentService.TryRead(Request("2.25.1", ("1.2.3.1", "")), out _, out _, out var noClass));
        Assert.Contains("item 1", noClass, StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_over_the_instance_limit_is_refused()
    {
        var many = Enumerable.Range(1, StorageCommitmentService.MaxReferences + 1).Select(i => ($"1.2.3.{i}", CtImage)).ToArray();
        Assert.False(StorageCommitmentService.TryRead(Request("2.25.1", many), out _, out _, out var problem));
        Assert.Contains($"at most {StorageCommitmentService.MaxReferences}", problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_report_names_committed_and_failed_instances_with_the_reason()
    {
        var information = CommitmentReports.EventInformation("2.25.7", [new CommitmentReference(CtImage, "1.2.3.1")],
        [
            new CommitmentFailure(new CommitmentReference(CtImage, "1.2.3.9"), DimseStatus.NoSuchObjectInstance),
            new CommitmentFailure(new CommitmentReference(CtImage, "1.2.3.5"), DimseStatus.ClassInstanceConflict),
        ]);
        // Through the wire encoding and back, as the modality reads it.
        var decoded = await DicomReader.ReadDatasetAsync(DicomWriter.Encode(information, TransferSyntax.ImplicitVRLittleEndian), TransferSyntax.ImplicitVRLittleEndian,
            null, TestContext.Current.CancellationToken);
        Assert.Equal("2.25.7", DicomText.TrimUid(decoded.GetString(DicomTags.TransactionUID)!));
        var committed = Assert.Single(decoded.GetSequence(DicomTags.ReferencedSOPSequence)!.Items);
        Assert.Equal("1.2.3.1", DicomText.TrimUid(committed.GetString(DicomTags.ReferencedSOPInstanceUID)!));
        var failed = decoded.GetSequence(DicomTags.FailedSOPSequence)!.Items.Select(item =>
            (DicomText.TrimUid(item.GetString(DicomTags.ReferencedSOPInstanceUID)!), item.TryGetInt64(DicomTags.FailureReason, out var reason) ? reason : -1));
        Assert.Equal([("1.2.3.9", DimseStatus.NoSuchObjectInstance), ("1.2.3.5", DimseStatus.ClassInstanceConflict)], failed);
    }

    private static DicomDataset Request(string? transactionUid, params (string Instance, string SopClass)[] instances)
    {
        var information = new DicomDataset();
        if (transactionUid is not null)
        {
            information.SetString(DicomTags.TransactionUID, DicomVR.UI, transactionUid);
        }

        var sequence = new DicomSequence(DicomTags.ReferencedSOPSequence);
        foreach (var (instance, sopClass) in instances)
        {
            var item = new DicomDataset();
            if (sopClass.Length > 0)
            {
                item.SetString(DicomTags.ReferencedSOPClassUID, DicomVR.UI, sopClass);
            }

            item.SetString(DicomTags.ReferencedSOPInstanceUID, DicomVR.UI, instance);
            sequence.Items.Add(item);
        }

        information.AddOrUpdate(sequence);
        return information;
    }
}
