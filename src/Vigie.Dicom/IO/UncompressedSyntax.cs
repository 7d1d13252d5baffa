using System.IO.Pipelines;

namespace Vigie.Dicom.IO;

/// <summary>
/// The two uncompressed little-endian transfer syntaxes (PS3.5 A.1 and A.2) carry the same values: a data set in one can
/// be sent in the other when a peer takes only that one. Implicit VR is the one every storage SCP must accept, and
/// many images arrive in explicit VR.
/// </summary>
public static class UncompressedSyntax
{
    /// <summary>The other uncompressed little-endian syntax, or null when <paramref name="syntaxUid"/> is not one of them.</summary>
    public static string? Alternative(string syntaxUid) => syntaxUid switch
    {
        DicomUids.ExplicitVRLittleEndian => DicomUids.ImplicitVRLittleEndian,
        DicomUids.ImplicitVRLittleEndian => DicomUids.ExplicitVRLittleEndian,
        _ => null,
    };

    /// <summary>
    /// The data set read from <paramref name="source"/> (seekable, at the data set's first byte, left open) encoded in
    /// <paramref name="target"/>, produced as the returned stream is read. Large values (pixel data) are left in the
    /// source and copied from it then, so memory stays bounded whatever the data set's size.
    /// </summary>
    public static async Task<Stream> ConvertAsync(Stream source, TransferSyntax from, TransferSyntax target, DicomReadOptions? options,
        CancellationToken cancellationToken)
    {
        if (!source.CanSeek)
        {
            throw new ArgumentException("The source must be seekable: its large values are read again while writing.", nameof(source));
        }

        var dataset = await DicomReader.ReadDatasetAsync(source, from, options, cancellationToken).ConfigureAwait(false);
        return new ConvertedStream(new Pipe(), dataset, source, target);
    }

    private sealed class ConvertedStream : ForwardReadStream
    {
        private readonly Pipe _pipe;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _encoding;
        private bool _disposed;

        public ConvertedStream(Pipe pipe, DicomDataset dataset, Stream source, TransferSyntax target)
            : base(pipe.Reader.AsStream())
        {
            _pipe = pipe;
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
            await Inner.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
            await base.DisposeAsync().ConfigureAwait(false);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing && !_disposed)
            {
                _disposed = true;
                _stop.Cancel();
                _pipe.Reader.Complete();
                _encoding.GetAwaiter().GetResult();
                Inner.Dispose();
                _stop.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
