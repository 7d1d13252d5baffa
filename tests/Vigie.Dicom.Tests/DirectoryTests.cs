using System.Buffers.Binary;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Dicom.Tests;

/// <summary>Regression: a DICOMDIR rewritten with a different meta header size kept stale record offsets.</summary>
public sealed class DirectoryTests
{
    [Theory]
    [InlineData("DICOMDIR")]
    [InlineData("DICOMDIR-implicit")]
    [InlineData("DICOMDIR-bigEnd")]
    public async Task Rewritten_dicomdir_offsets_point_at_their_records(string name)
    {
        var ct = TestContext.Current.CancellationToken;
        var source = Path.Combine("/usr/lib/python3/dist-packages/pydicom/data/test_files/dicomdirtests", name);
        Peers.Require(source, "python3-pydicom");
        var file = await DicomReader.ReadFileAsync(source, null, ct);
        using var output = new MemoryStream();
        await DicomWriter.WriteFileAsync(output, file, null, ct);
        output.Position = 0;
        var copy = await DicomReader.ReadFileAsync(output, null, ct);
        var records = copy.Dataset.GetSequence(DicomTags.DirectoryRecordSequence)!;
        var offsets = records.Items.Select(i => i.SourceOffset).ToHashSet();
        var checkedLinks = 0;
        foreach (var item in records.Items.Append(copy.Dataset))
        {
            foreach (var tag in new[] { DicomTags.OffsetOfTheNextDirectoryRecord, DicomTags.OffsetOfReferencedLowerLevelDirectoryEntity,
                         DicomTags.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, DicomTags.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity })
            {
                if (item[tag] is DicomValueElement { Length: 4 } value && BinaryPrimitives.ReadUInt32LittleEndian(value.Span) is var offset and not 0)
                {
                    Assert.Contains((long)offset, offsets);
                    checkedLinks++;
                }
            }
        }

        Assert.True(checkedLinks > 10);
    }
}
