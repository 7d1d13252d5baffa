using Vigie.Archive.Storage;
using Vigie.Inspection;

namespace Vigie.Gateway.Ingest;

/// <summary>
/// An archived (or spooled) object seen by the inspection engine through random-access reads that decrypt only the
/// segments they touch. For objects too large to decrypt into memory.
/// </summary>
internal sealed class ObjectContentSource(ArchiveObjectReader reader) : ContentSource
{
    public override long Length => reader.Length;

    // Inspection runs on thread-pool threads; the synchronous path waits on the decrypting read.
    public override int ReadAt(long offset, Span<byte> destination)
    {
        var buffer = new byte[destination.Length];
        var read = ReadAtAsync(offset, buffer, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        buffer.AsSpan(0, read).CopyTo(destination);
        return read;
    }

    public override async ValueTask<int> ReadAtAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < destination.Length && offset + total < reader.Length)
        {
            var read = await reader.ReadAsync(offset + total, destination[total..], cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }
}
