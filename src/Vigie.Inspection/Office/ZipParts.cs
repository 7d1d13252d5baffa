using System.IO.Compression;
using Vigie.Inspection.Archives;

namespace Vigie.Inspection.Office;

/// <summary>Random access to the parts of a ZIP-based package for format analysers, each read as a bounded stream.</summary>
internal sealed class ZipParts
{
    private readonly ContentSource _source;
    private readonly Dictionary<string, ZipEntry> _byName = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, List<ZipEntry>> _duplicates = new(StringComparer.OrdinalIgnoreCase);

    private ZipParts(ContentSource source, ZipDirectory directory)
    {
        _source = source;
        Directory = directory;
        foreach (var entry in directory.Entries)
        {
            var name = entry.Name.TrimStart('/');
            if (!_byName.TryAdd(name, entry))
            {
                // Readers disagree on which copy of a duplicated name wins (the first for most, the last for LibreOffice):
                // every copy is kept for analysers to read.
                if (!_duplicates.TryGetValue(name, out var copies))
                {
                    _duplicates[name] = copies = [_byName[name]];
                }

                copies.Add(entry);
            }
        }
    }

    public ZipDirectory Directory { get; }

    public ContentSource Source => _source;

    public IEnumerable<string> Names => _byName.Keys;

    public static ZipParts? TryOpen(ContentSource source, int maxEntries)
    {
        try
        {
            return new ZipParts(source, ZipReader.Read(source, maxEntries));
        }
        catch (ZipFormatException)
        {
            return null;
        }
    }

    /// <summary>The parts of a directory already read.</summary>
    public static ZipParts Of(ContentSource source, ZipDirectory directory) => new(source, directory);

    public bool Contains(string name) => _byName.ContainsKey(name.TrimStart('/'));

    /// <summary>The first entry of that name, the one most readers open.</summary>
    public ZipEntry? Entry(string name) => _byName.GetValueOrDefault(name.TrimStart('/'));

    /// <summary>Every entry of that name in directory order: one, or each copy of a duplicated name; none when absent.</summary>
    public IReadOnlyList<ZipEntry> Copies(string name)
    {
        name = name.TrimStart('/');
        return _duplicates.TryGetValue(name, out var copies) ? copies : _byName.TryGetValue(name, out var entry) ? [entry] : [];
    }

    /// <summary>
    /// A decoded stream of the part (its first copy), ending (without error) at <paramref name="maxBytes"/> or when the
    /// part expands beyond <paramref name="maxRatio"/>; null when the part is absent, encrypted or uses another method.
    /// </summary>
    public Stream? Open(string name, long maxBytes, double maxRatio, long ratioFloor) =>
        Entry(name) is { } entry ? Open(entry, maxBytes, maxRatio, ratioFloor) : null;

    /// <summary>A decoded stream of one entry, as <see cref="Open(string, long, double, long)"/>.</summary>
    public Stream? Open(ZipEntry entry, long maxBytes, double maxRatio, long ratioFloor)
    {
        if (entry.IsEncrypted || entry.Method is not (0 or 8))
        {
            return null;
        }

        var local = ZipReader.ReadLocalHeader(_source, entry.LocalHeaderOffset);
        if (local is null)
        {
            return null;
        }

        var available = Math.Max(0, Math.Min(entry.CompressedSize, _source.Length - local.DataOffset));
        var raw = _source.OpenStream(Math.Min(local.DataOffset, _source.Length), available);
        Stream decoded = entry.Method == 8 ? new DeflateStream(raw, CompressionMode.Decompress) : raw;
        var cap = Math.Min(maxBytes, Math.Max(ratioFloor, (long)Math.Min(available * maxRatio, long.MaxValue / 2)));
        return new CappedStream(decoded, cap);
    }

    public byte[]? ReadAll(string name, int maxBytes, double maxRatio, long ratioFloor)
    {
        using var stream = Open(name, maxBytes, maxRatio, ratioFloor);
        if (stream is null)
        {
            return null;
        }

        using var output = new MemoryStream();
        try
        {
            stream.CopyTo(output);
        }
        catch (InvalidDataException)
        {
            return null;
        }

        return output.ToArray();
    }

    /// <summary>Ends reading quietly at a byte cap.</summary>
    private sealed class CappedStream(Stream inner, long cap) : Vigie.Dicom.IO.ForwardOnlyStream
    {
        private long _read;

        public override long Position
        {
            get => _read;
            set => throw new NotSupportedException();
        }

        public override int Read(Span<byte> buffer)
        {
            var allowed = (int)Math.Min(buffer.Length, cap - _read);
            if (allowed <= 0)
            {
                return 0;
            }

            var read = inner.Read(buffer[..allowed]);
            _read += read;
            return read;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
