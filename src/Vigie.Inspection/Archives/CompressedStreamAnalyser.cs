using System.IO.Compression;
using System.Text;
using SharpCompress.Compressors.BZip2;
using SharpCompress.Compressors.Xz;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Archives;

/// <summary>
/// Compressed streams (gzip, bzip2, xz; concatenated members and streams decoded as one): decompressed under the ratio
/// and size limits, then inspected as one child.
/// </summary>
internal sealed class CompressedStreamAnalyser : IContentAnalyser
{
    public string Name => "compressed-stream";

    public bool CanAnalyse(ContentType type) => type is ContentType.Gzip or ContentType.Bzip2 or ContentType.Xz;

    public async ValueTask AnalyseAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        await using var raw = content.OpenStream();
        Stream decoded;
        try
        {
            IReadOnlyList<(long Offset, long Length)>? xzStreams = null;
            if (context.ContentType == ContentType.Xz)
            {
                xzStreams = XzStreams.Split(content, context.Limits.MaxEntries, out var problem);
                if (problem is not null)
                {
                    // Reading on would need a walk from the front that xz itself refuses; what follows the first stream is
                    // not inspected, and the file is not called clean for it.
                    context.Report(Rules.ArchiveMalformed, Severity.Medium, $"the xz file cannot be read whole: {problem}; only its first stream was inspected", 0);
                }
            }

            decoded = context.ContentType switch
            {
                ContentType.Gzip => new GZipStream(raw, System.IO.Compression.CompressionMode.Decompress, leaveOpen: true),
                ContentType.Bzip2 => BZip2Stream.Create(raw, SharpCompress.Compressors.CompressionMode.Decompress, decompressConcatenated: true, leaveOpen: true, tolerateTruncatedStream: false),
                ContentType.Xz => xzStreams is { Count: > 1 } ? XzStreams.Open(content, xzStreams) : new XZStream(raw),
                _ => throw new InvalidOperationException($"unexpected type {context.ContentType}"),
            };
        }
        catch (Exception ex) when (Extraction.IsDecoderFailure(ex))
        {
            context.Report(Rules.ArchiveMalformed, Severity.Medium, $"{context.ContentType} header cannot be read: {ex.Message}", 0);
            return;
        }

        await using (decoded.ConfigureAwait(false))
        {
            var result = await Extraction.ExtractAsync(context, decoded, content.Length, cancellationToken).ConfigureAwait(false);
            using var extracted = result.Content;
            var name = InnerName(context, content);
            if (context.ReportExtractionProblem(result, $"the {context.ContentType} stream", Rules.ArchiveBombRatio, Rules.ArchiveMalformed, 0) || extracted is null)
            {
                return;
            }

            if (context.ContentType == ContentType.Gzip && TruncatedGzip(content, extracted.Length) is { } problem)
            {
                context.Report(Rules.ArchiveMalformed, Severity.Medium, problem, 0);
            }

            await context.InspectChildAsync(name, extracted, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The decoder stops quietly where a gzip file is cut. A single member ends with the size of what it holds (ISIZE,
    /// modulo 2^32): when that disagrees, the file was cut. A file that may hold several members is not judged.
    /// </summary>
    private static string? TruncatedGzip(ContentSource content, long decoded)
    {
        if (content.Length < 18 || MayHoldSeveralMembers(content))
        {
            return null;
        }

        // A gzip stream kept in a DICOM value ends with the value's NUL pad byte when its length is odd (PS3.5 7.1.1).
        Span<byte> trailer = stackalloc byte[5];
        if (content.ReadAt(content.Length - 5, trailer) != 5)
        {
            return null;
        }

        var declared = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer[1..]);
        var padded = trailer[4] == 0 && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer) == (uint)decoded;
        return declared == (uint)decoded || padded
            ? null
            : $"the gzip stream's trailer declares {declared} bytes, not the {decoded} decoded: the file is truncated";
    }

    private static bool MayHoldSeveralMembers(ContentSource content)
    {
        var buffer = new byte[64 * 1024];
        for (long offset = 10; offset < content.Length - 2; offset += buffer.Length - 2)
        {
            var read = content.ReadAt(offset, buffer);
            if (read < 3)
            {
                return false;
            }

            if (buffer.AsSpan(0, read).IndexOf((ReadOnlySpan<byte>)[0x1F, 0x8B, 0x08]) >= 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The gzip header's original name, else the declared name without its compression suffix.</summary>
    private static string InnerName(InspectionContext context, ContentSource content)
    {
        if (context.ContentType == ContentType.Gzip && GzipOriginalName(content) is { } original)
        {
            return original;
        }

        var declared = context.DeclaredName;
        if (declared is not null)
        {
            var lower = declared.ToLowerInvariant();
            foreach (var (suffix, replacement) in new[] { (".tgz", ".tar"), (".gz", ""), (".bz2", ""), (".tbz2", ".tar"), (".xz", ""), (".txz", ".tar") })
            {
                if (lower.EndsWith(suffix, StringComparison.Ordinal) && declared.Length > suffix.Length)
                {
                    return Path.GetFileName(declared[..^suffix.Length] + replacement);
                }
            }
        }

        return $"[{context.ContentType.ToString().ToLowerInvariant()} content]";
    }

    private static string? GzipOriginalName(ContentSource content)
    {
        Span<byte> header = stackalloc byte[512];
        header = header[..content.ReadAt(0, header)];
        if (header.Length < 10 || (header[3] & 0x08) == 0)
        {
            return null;
        }

        var position = 10;
        if ((header[3] & 0x04) != 0)
        {
            if (header.Length < 12)
            {
                return null;
            }

            position += 2 + (header[10] | (header[11] << 8));
        }

        if (position >= header.Length)
        {
            return null;
        }

        var end = header[position..].IndexOf((byte)0);
        if (end <= 0)
        {
            return null;
        }

        var name = Path.GetFileName(Encoding.Latin1.GetString(header.Slice(position, end)).Replace('\\', '/'));
        return name.Length == 0 ? null : name;
    }
}
