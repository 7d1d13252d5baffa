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

    public override int ReadAt(long offset, Span<byte> destination)
    {
        var total = 0;
        while (total < destination.Length && offset + total < reader.Length)
        {
            var read = reader.Read(offset + total, destination[total..]);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
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
