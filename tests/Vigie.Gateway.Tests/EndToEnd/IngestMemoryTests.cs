using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>What one C-STORE'd object may make a node hold, measured on the node's process.</summary>
public sealed class IngestMemoryTests
{
    private const int TextLength = 65_000;

    /// <summary>
    /// Regression: the reader's loaded budget (64 MiB) left text out, so an object of many text values each under the
    /// 64 KiB threshold was loaded whole by inspection and again by the index: a 390 MB one (6,000 LT values in one
    /// sequence) raised the node's RSS by 463 MB, a 780 MB one took it to 1.5 GB. These 3,500 values (228 MB) raised it by
    /// 290 to 440 MB before the fix, about 130 MB after.
    /// </summary>
    [Fact]
    public async Task Regression_an_object_of_many_short_text_values_was_held_whole_in_memory()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var pid = node.ProcessId!.Value;
        const string sopInstance = "1.2.826.0.1.3680043.10.1338.64.1";
        var head = new DicomDataset();
        head.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.SecondaryCaptureImageStorage);
        head.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, sopInstance);
        head.SetString(DicomTags.Modality, DicomVR.CS, "OT");
        head.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^TEXT");
        head.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-TEXT");
        head.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.64.2");
        head.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, "1.2.826.0.1.3680043.10.1338.64.3");
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.SecondaryCaptureImageStorage], DicomUids.ExplicitVRLittleEndian), ct);
        await using var peak = PeakRss.Watch(pid);

        await using var data = new TextSequenceStream(DicomWriter.Encode(head, TransferSyntax.ExplicitVRLittleEndian), items: 3_500);
        var result = await client.StoreAsync(DicomUids.SecondaryCaptureImageStorage, sopInstance, DicomUids.ExplicitVRLittleEndian, data, ct);
        var growth = await peak.GrowthAsync();
        Assert.Equal(DimseStatus.Success, result.Status);
        await client.ReleaseAsync(ct);
        // Inspection and the index each load at most their budget (64 + 16 MiB); the rest stays in the spool as references.
        // The bound sits between the two (about 130 MB after, 290 at least before) with room for a busy machine's GC.
        Assert.True(growth < 220L * 1024 * 1024, $"the node's RSS grew by {growth / 1048576} MB for a {data.Length / 1048576} MB object of text values");
    }

    /// <summary>
    /// Regression (review 23): a deflated data set's values were each loaded into an array of their own size by inspection,
    /// outside the node's inspection memory: 64 associations each storing a 32 KB object that inflates to 31 MiB (under the
    /// 32 MiB deflate ratio floor, so accepted) took a node to 4 GB, and it kept 3.7 GB once idle. The inflated data sets
    /// are now held within Gateway:InMemoryInspectionTotal (256 MiB), the rest in temporary files: 32 such stores at once
    /// stay within that budget and the node's own overhead.
    /// </summary>
    [Fact]
    public async Task Regression_parallel_deflated_stores_held_their_inflated_data_sets_outside_the_memory_budget()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var pid = node.ProcessId!.Value;
        const int stores = 32;
        var objects = Enumerable.Range(0, stores).Select(i => DeflatedZeros(i, 31)).ToArray();
        var clients = new DicomClient[stores];
        for (var i = 0; i < stores; i++)
        {
            clients[i] = await DicomClient.ConnectAsync(
                new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "DEFL" + (i % 4), CalledAE = "VIGIE" },
                DicomClient.Propose([DicomUids.CTImageStorage], DicomUids.DeflatedExplicitVRLittleEndian), ct);
        }

        await using var peak = PeakRss.Watch(pid);

        var results = await Task.WhenAll(Enumerable.Range(0, stores).Select(async i =>
        {
            await using var data = new MemoryStream(objects[i].Data);
            var result = await clients[i].StoreAsync(DicomUids.CTImageStorage, objects[i].Instance, DicomUids.DeflatedExplicitVRLittleEndian, data, ct);
            await clients[i].ReleaseAsync(ct);
            await clients[i].DisposeAsync();
            return result.Status;
        }));
        var growth = await peak.GrowthAsync();
        Assert.All(results, status => Assert.Equal(DimseStatus.Success, status));
        // 32 data sets of 31 MiB: about 1 GB held before the fix; now the 256 MiB budget, the spools, and the GC's slack.
        Assert.True(growth < 512L * 1024 * 1024, $"the node's RSS grew by {growth / 1048576} MB for {stores} deflated objects inflating to 31 MiB each");
    }

    /// <summary>A CT data set in Deflated Explicit VR Little Endian: its identifiers, then private OB values of 1 MiB of zeros.</summary>
    private static (string Instance, byte[] Data) DeflatedZeros(int index, int mebibytes)
    {
        var instance = "1.2.826.0.1.3680043.10.1338.23." + index.ToString(CultureInfo.InvariantCulture);
        var head = new DicomDataset();
        head.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.CTImageStorage);
        head.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, instance);
        head.SetString(DicomTags.Modality, DicomVR.CS, "CT");
        head.SetString(DicomTags.PatientName, DicomVR.PN, "SYNTH^DEFLATED");
        head.SetString(DicomTags.PatientID, DicomVR.LO, "SYN-DEFL-" + index.ToString(CultureInfo.InvariantCulture));
        head.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, instance + ".1");
        head.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, instance + ".2");
        using var compressed = new MemoryStream();
        using (var deflate = new System.IO.Compression.DeflateStream(compressed, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
        {
            deflate.Write(DicomWriter.Encode(head, TransferSyntax.ExplicitVRLittleEndian));
            var header = new byte[12];
            var zeros = new byte[1 << 20];
            for (var i = 0; i < mebibytes; i++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(header, 0x0029);
                BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(2), (ushort)(0x1000 + i));
                "OB"u8.CopyTo(header.AsSpan(4));
                BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), (uint)zeros.Length);
                deflate.Write(header);
                deflate.Write(zeros);
            }
        }

        return (instance, compressed.ToArray());
    }

    /// <summary>The node's resident set size, in bytes.</summary>
    /// <summary>The highest resident size of a process, sampled every 50 ms from when watching began.</summary>
    private sealed class PeakRss : IAsyncDisposable
    {
        private readonly CancellationTokenSource _watch = new();
        private readonly long _before;
        private readonly Task<long> _highest;

        private PeakRss(int pid)
        {
            _before = Rss(pid);
            _highest = Task.Run(async () =>
            {
                var highest = _before;
                while (!_watch.IsCancellationRequested)
                {
                    highest = Math.Max(highest, Rss(pid));
                    await Task.Delay(50, CancellationToken.None);
                }

                return Math.Max(highest, Rss(pid));
            }, CancellationToken.None);
        }

        public static PeakRss Watch(int pid) => new(pid);

        /// <summary>Stops watching: how far above its size when watching began the process went.</summary>
        public async Task<long> GrowthAsync()
        {
            await _watch.CancelAsync();
            return await _highest - _before;
        }

        public async ValueTask DisposeAsync()
        {
            await _watch.CancelAsync();
            await _highest;
            _watch.Dispose();
        }
    }

    private static long Rss(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("no VmRSS");
    }

    /// <summary>
    /// The data set <paramref name="head"/>, then Content Sequence (0040,A730) of undefined length whose items each hold
    /// one 65,000-byte LT, produced as it is read so the test holds none of it.
    /// </summary>
    private sealed class TextSequenceStream(byte[] head, int items) : GeneratedStream
    {
        private static readonly byte[] Item = BuildItem();
        private static readonly byte[] SequenceHeader = [0x40, 0x00, 0x30, 0xA7, (byte)'S', (byte)'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        private static readonly byte[] SequenceEnd = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0];

        public override long Length => head.Length + SequenceHeader.Length + ((long)Item.Length * items) + SequenceEnd.Length;

        protected override int Produce(long position, Span<byte> buffer)
        {
            var (part, at) = Locate(position);
            var count = Math.Min(buffer.Length, part.Length - at);
            part.AsSpan(at, count).CopyTo(buffer);
            return count;
        }

        private (byte[] Part, int At) Locate(long position)
        {
            if (position < head.Length)
            {
                return (head, (int)position);
            }

            position -= head.Length;
            if (position < SequenceHeader.Length)
            {
                return (SequenceHeader, (int)position);
            }

            position -= SequenceHeader.Length;
            return position < (long)Item.Length * items ? (Item, (int)(position % Item.Length)) : (SequenceEnd, (int)(position - ((long)Item.Length * items)));
        }

        private static byte[] BuildItem()
        {
            var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("LOREM IPSUM ", (TextLength / 12) + 1)))[..TextLength];
            var item = new byte[8 + 8 + TextLength];
            BinaryPrimitives.WriteUInt32LittleEndian(item, 0xE000FFFE);
            BinaryPrimitives.WriteUInt32LittleEndian(item.AsSpan(4), 8 + TextLength);
            BinaryPrimitives.WriteUInt32LittleEndian(item.AsSpan(8), 0x40000020);
            "LT"u8.CopyTo(item.AsSpan(12));
            BinaryPrimitives.WriteUInt16LittleEndian(item.AsSpan(14), TextLength);
            text.CopyTo(item, 16);
            return item;
        }
    }
}
