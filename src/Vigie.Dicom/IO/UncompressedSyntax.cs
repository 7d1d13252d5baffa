using System.IO.Pipelines;

namespace Vigie.Dicom.IO;

/// <summary>
/// The two uncompressed little-endian transfer syntaxes (PS3.5 A.1 and A.2) carry the same values: a data set in one can
/// be sent in the other when a peer takes only that one. Implicit VR is the one every storage SCP must accept, and
/// many images arrive in explicit VR. RLE Lossless (PS3.5 A.4.2) decodes exactly to them, and a deflated data set
/// (A.5) inflates to them, so such objects can go to a peer that takes only uncompressed syntaxes; other compressed
/// syntaxes are sent as they are or not at all.
/// </summary>
public static class UncompressedSyntax
{
    /// <summary>Decoded pixel data above this is refused rather than converted (a frame at a time is in memory, not all of it).</summary>
    public const long MaxDecodedPixelData = 4L << 30;

    /// <summary>A deflated data set is inflated into memory to be re-encoded: above this it is refused.</summary>
    public const long MaxInflatedInMemory = 256L << 20;

    /// <summary>What all the data sets inflated for sending hold at once across the process: beyond it, a conversion waits its turn.</summary>
    public const long MaxInflatedInMemoryTotal = 2 * MaxInflatedInMemory;

    private static readonly InflationBudget Inflation = new(MaxInflatedInMemoryTotal);

    /// <summary>Memory the data sets inflated for sending hold now (at most <see cref="MaxInflatedInMemoryTotal"/>).</summary>
    public static long InflatedInMemory => Inflation.Used;

    /// <summary>The syntaxes a data set in <paramref name="syntaxUid"/> can also be sent in, preferred first.</summary>
    public static IReadOnlyList<string> Alternatives(string syntaxUid) => syntaxUid switch
    {
        DicomUids.ExplicitVRLittleEndian => [DicomUids.ImplicitVRLittleEndian],
        DicomUids.ImplicitVRLittleEndian => [DicomUids.ExplicitVRLittleEndian],
        // Big endian (retired, still sent by old devices): most peers take only little endian, and Implicit VR Little
        // Endian is the one syntax every node must accept (PS3.5 10.1).
        DicomUids.RLELossless or DicomUids.DeflatedExplicitVRLittleEndian or DicomUids.ExplicitVRBigEndian =>
            [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian],
        _ => [],
    };

    /// <summary>
    /// The syntax to send a data set stored in <paramref name="syntaxUid"/> in: its own when <paramref name="accepted"/>,
    /// else the first accepted alternative; null when the peer takes none of them.
    /// </summary>
    public static string? Choose(string syntaxUid, Func<string, bool> accepted)
    {
        if (accepted(syntaxUid))
        {
            return syntaxUid;
        }

        foreach (var other in Alternatives(syntaxUid))
        {
            if (accepted(other))
            {
                return other;
            }
        }

        return null;
    }

    /// <summary>
    /// What to send for a data set stored in <paramref name="storedSyntax"/> when the peer took <paramref name="chosenSyntax"/>
    /// (and the syntaxes <paramref name="accepted"/> says): as <see cref="ForSendingAsync"/>, or why the stored object
    /// cannot be converted (the sub-operation then fails with that reason, and nothing was sent).
    /// </summary>
    public static async Task<(Stream? Converted, string Syntax, string? Problem)> PrepareAsync(Stream dataSet, string storedSyntax, string chosenSyntax,
        Func<string, bool> accepted, CancellationToken cancellationToken)
    {
        try
        {
            var (converted, syntax) = await ForSendingAsync(dataSet, storedSyntax, chosenSyntax, accepted, cancellationToken).ConfigureAwait(false);
            return (converted, syntax, null);
        }
        catch (DicomParseException e)
        {
            return (null, chosenSyntax, "the stored object cannot be converted: " + e.Reason);
        }
    }

    /// <summary>
    /// What to send for a data set stored in <paramref name="storedSyntax"/> (<paramref name="dataSet"/> seekable, at its
    /// first byte) when the peer took <paramref name="chosenSyntax"/>: the stream to send and dispose, or null to send the
    /// stored bytes, and the syntax it is in. A data set re-encoded for another syntax is padded by the writer; one sent in
    /// its own syntax is re-encoded in it only when a value has an odd length (PS3.5 7.1.1), which dcmtk refuses. A big
    /// endian one is then sent padded in a little-endian syntax the peer also took, or as stored when it took none.
    /// Throws <see cref="DicomParseException"/> when a conversion the peer needs cannot be made.
    /// </summary>
    public static async Task<(Stream? Converted, string Syntax)> ForSendingAsync(Stream dataSet, string storedSyntax, string chosenSyntax,
        Func<string, bool> accepted, CancellationToken cancellationToken)
    {
        var stored = TransferSyntax.Lookup(storedSyntax);
        if (chosenSyntax != storedSyntax)
        {
            return (await ConvertAsync(dataSet, stored, TransferSyntax.Lookup(chosenSyntax), null, cancellationToken).ConfigureAwait(false), chosenSyntax);
        }

        if (!await HasOddLengthAsync(dataSet, stored, cancellationToken).ConfigureAwait(false))
        {
            return (null, storedSyntax);
        }

        if (!stored.IsLittleEndian)
        {
            return Alternatives(storedSyntax).FirstOrDefault(accepted) is { } other
                ? (await ConvertAsync(dataSet, stored, TransferSyntax.Lookup(other), null, cancellationToken).ConfigureAwait(false), other)
                : (null, storedSyntax);
        }

        if (stored.IsDeflated)
        {
            return (await InflateAsync(dataSet, stored, stored, null, cancellationToken).ConfigureAwait(false), storedSyntax);
        }

        var dataset = await DicomReader.ReadDatasetAsync(dataSet, stored, null, cancellationToken).ConfigureAwait(false);
        return (new ConvertedStream(new Pipe(), dataset, dataSet, stored, null), storedSyntax);
    }

    /// <summary>
    /// Whether a value or fragment of the data set has an odd length. Values are skipped, not loaded; the stream is put
    /// back where it was. A data set that does not parse is sent as stored, as it was before this check.
    /// </summary>
    private static async Task<bool> HasOddLengthAsync(Stream dataSet, TransferSyntax syntax, CancellationToken cancellationToken)
    {
        if (!dataSet.CanSeek)
        {
            return false;
        }

        var start = dataSet.Position;
        try
        {
            var dataset = await DicomReader.ReadDatasetAsync(dataSet, syntax, DicomReadOptions.Default with { LargeValueThreshold = 1024, DropLargeValues = true },
                cancellationToken).ConfigureAwait(false);
            return HasOddLength(dataset);
        }
        catch (DicomParseException)
        {
            return false;
        }
        finally
        {
            dataSet.Position = start;
        }
    }

    private static bool HasOddLength(DicomDataset dataset) => dataset.Any(element => element switch
    {
        DicomSequence sequence => sequence.Items.Any(HasOddLength),
        DicomFragmentSequence fragments => fragments.Items.Any(f => (f.Length & 1) != 0),
        DicomValueElement value => (value.Length & 1) != 0,
        _ => false,
    });

    /// <summary>
    /// The data set read from <paramref name="source"/> (seekable, at the data set's first byte, left open) encoded in
    /// <paramref name="target"/>, produced as the returned stream is read. Large values (pixel data) are left in the
    /// source and copied from it then, so memory stays bounded whatever the data set's size. RLE pixel data is decoded
    /// once here, so that a frame that cannot be decoded fails with a <see cref="DicomParseException"/> before anything is
    /// sent, and again frame by frame as it is written.
    /// </summary>
    public static async Task<Stream> ConvertAsync(Stream source, TransferSyntax from, TransferSyntax target, DicomReadOptions? options,
        CancellationToken cancellationToken)
    {
        if (!source.CanSeek)
        {
            throw new ArgumentException("The source must be seekable: its large values are read again while writing.", nameof(source));
        }

        if (target.IsEncapsulated || !Alternatives(from.Uid).Contains(target.Uid))
        {
            throw new ArgumentException($"{from.Name} cannot be converted to {target.Name}.", nameof(target));
        }

        if (from.IsDeflated)
        {
            return await InflateAsync(source, from, target, options, cancellationToken).ConfigureAwait(false);
        }

        var dataset = await DicomReader.ReadDatasetAsync(source, from, options, cancellationToken).ConfigureAwait(false);
        Stream bulkSource = source;
        if (from.IsEncapsulated)
        {
            if (dataset[DicomTags.PixelData] is not DicomFragmentSequence { Items.Count: > 0 } fragments)
            {
                throw PixelLayout.Invalid("no encapsulated pixel data in an RLE data set");
            }

            var layout = PixelLayout.Read(dataset);
            var decoded = new DecodedPixelSource(source, fragments.Items.Skip(1).ToList(), layout, MaxDecodedPixelData);
            try
            {
                await decoded.VerifyAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await decoded.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            dataset.AddOrUpdate(new DicomValueElement(DicomTags.PixelData, layout.BitsAllocated > 8 ? DicomVR.OW : DicomVR.OB,
                new DicomBulkReference(decoded.Start, decoded.DecodedLength, 1), -1));
            bulkSource = decoded;
        }

        return new ConvertedStream(new Pipe(), dataset, bulkSource, target, bulkSource == source ? null : bulkSource);
    }

    /// <summary>
    /// Values cannot be read again from a deflate stream: the data set is inflated into memory, within a bound per object
    /// and one across the process (<see cref="MaxInflatedInMemoryTotal"/>), held until the returned stream is disposed.
    /// </summary>
    private static async Task<Stream> InflateAsync(Stream source, TransferSyntax from, TransferSyntax target, DicomReadOptions? options,
        CancellationToken cancellationToken)
    {
        var reserved = await Inflation.ReserveAsync(MaxInflatedInMemory, cancellationToken).ConfigureAwait(false);
        try
        {
            var inflated = await DicomReader.ReadDatasetAsync(source, from,
                (options ?? DicomReadOptions.Default) with { LoadLargeValues = true, MaxInflatedBytes = MaxInflatedInMemory }, cancellationToken).ConfigureAwait(false);
            // Only what it holds stays reserved, so that small deflated objects do not wait behind the bound of large ones:
            // its values, twice (the reader's buffers while inflating, the writer's as it sends, measured at 400 MB for 199 MB).
            var held = Math.Min(reserved, 2 * HeldBytes(inflated));
            Inflation.GiveBackUnused(reserved - held);
            reserved = held;
            return new ConvertedStream(new Pipe(), inflated, null, target, null, () => Inflation.Release(held));
        }
        catch
        {
            Inflation.GiveBackUnused(reserved);
            throw;
        }
    }

    /// <summary>The bytes of the values a data set holds in memory (an element's header and object costs aside).</summary>
    private static long HeldBytes(DicomDataset dataset) => dataset.Sum(element => element switch
    {
        DicomSequence sequence => sequence.Items.Sum(HeldBytes),
        DicomFragmentSequence fragments => fragments.Items.Sum(f => (long)f.Length),
        DicomValueElement value => value.Length,
        _ => 0L,
    });

    private sealed class ConvertedStream : ForwardReadStream
    {
        private readonly Pipe _pipe;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _encoding;
        private readonly Stream? _owned;
        private readonly Action? _released;
        private bool _disposed;

        public ConvertedStream(Pipe pipe, DicomDataset dataset, Stream? source, TransferSyntax target, Stream? owned, Action? released = null)
            : base(pipe.Reader.AsStream())
        {
            _pipe = pipe;
            _owned = owned;
            _released = released;
            _encoding = Task.Run(async () =>
            {
                try
                {
                    await using var writer = _pipe.Writer.AsStream(leaveOpen: true);
                    await DicomWriter.WriteDatasetAsync(writer, dataset, target, source, _stop.Token).ConfigureAwait(false);
                    await _pipe.Writer.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // The reader sees the failure instead of a short data set.
                    await _pipe.Writer.CompleteAsync(e).ConfigureAwait(false);
                }
            });
        }

        public override async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            // Stop the writer first: it may be waiting for a reader that has gone.
            await _stop.CancelAsync().ConfigureAwait(false);
            await _pipe.Reader.CompleteAsync().ConfigureAwait(false);
            await _encoding.ConfigureAwait(false);
            if (_owned is not null)
            {
                await _owned.DisposeAsync().ConfigureAwait(false);
            }

            await Inner.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
            await base.DisposeAsync().ConfigureAwait(false);
            _released?.Invoke();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_disposed)
            {
                _disposed = true;
                _stop.Cancel();
                _pipe.Reader.Complete();
                _encoding.GetAwaiter().GetResult();
                _owned?.Dispose();
                Inner.Dispose();
                _stop.Dispose();
                _released?.Invoke();
            }

            base.Dispose(disposing);
        }
    }
}
