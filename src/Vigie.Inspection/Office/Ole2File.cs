using System.Buffers.Binary;
using System.Text;

namespace Vigie.Inspection.Office;

internal enum Ole2EntryType : byte
{
    Empty = 0,
    Storage = 1,
    Stream = 2,
    Root = 5,
}

/// <summary>One directory entry, with its path from the root ("Macros/VBA/dir").</summary>
internal sealed record Ole2Entry(int Id, string Name, string Path, Ole2EntryType Type, Guid ClassId, uint StartSector, long Size, int ParentId)
{
    public bool IsStream => Type == Ole2EntryType.Stream;
}

/// <summary>
/// A bounded reader of Compound File Binary (OLE2) files: header, FAT (through the DIFAT chain), mini FAT and
/// mini stream, and the directory tree walked with cycle detection. Streams are exposed as content sources that
/// follow their sector chain lazily; a chain that loops, leaves the file or is shorter than declared is cut and
/// recorded in <see cref="Problems"/>.
/// </summary>
internal sealed class Ole2File
{
    private const uint EndOfChain = 0xFFFFFFFE;
    private const uint FreeSector = 0xFFFFFFFF;
    private const uint MaxRegularSector = 0xFFFFFFFA;
    private static readonly byte[] Signature = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

    private readonly ContentSource _source;
    private uint[] _fat = [];
    private uint[] _miniFat = [];
    private ContentSource? _miniStream;

    private Ole2File(ContentSource source) => _source = source;

    public int SectorSize { get; private set; }

    public int MiniSectorSize { get; private set; }

    public uint MiniStreamCutoff { get; private set; }

    public long SectorCount { get; private set; }

    public List<Ole2Entry> Entries { get; } = [];

    public List<string> Problems { get; } = [];

    /// <summary>Directory entries in use past the <c>maxEntries</c> read (0 when the whole directory was read).</summary>
    public long UnreadEntries { get; private set; }

    public static Ole2File Open(ContentSource source, int maxEntries)
    {
        var file = new Ole2File(source);
        file.ReadHeaderAndTables(maxEntries);
        return file;
    }

    private void ReadHeaderAndTables(int maxEntries)
    {
        Span<byte> header = stackalloc byte[512];
        if (_source.ReadAt(0, header) < 512 || !header[..8].SequenceEqual(Signature))
        {
            throw new Ole2FormatException("not a compound file (signature or header missing)", 0);
        }

        var sectorShift = BinaryPrimitives.ReadUInt16LittleEndian(header[30..]);
        var miniShift = BinaryPrimitives.ReadUInt16LittleEndian(header[32..]);
        if (sectorShift is not (9 or 12) || miniShift != 6)
        {
            throw new Ole2FormatException($"unsupported sector shift {sectorShift} / mini sector shift {miniShift}", 30);
        }

        SectorSize = 1 << sectorShift;
        MiniSectorSize = 1 << miniShift;
        SectorCount = Math.Max(0, (_source.Length - SectorSize + SectorSize - 1) / SectorSize);
        var fatSectors = BinaryPrimitives.ReadUInt32LittleEndian(header[44..]);
        var firstDirectory = BinaryPrimitives.ReadUInt32LittleEndian(header[48..]);
        MiniStreamCutoff = BinaryPrimitives.ReadUInt32LittleEndian(header[56..]);
        var firstMiniFat = BinaryPrimitives.ReadUInt32LittleEndian(header[60..]);
        var miniFatSectors = BinaryPrimitives.ReadUInt32LittleEndian(header[64..]);
        var firstDifat = BinaryPrimitives.ReadUInt32LittleEndian(header[68..]);
        if (MiniStreamCutoff != 4096)
        {
            Problems.Add($"mini stream cutoff is {MiniStreamCutoff} instead of 4096");
            MiniStreamCutoff = 4096;
        }

        if (fatSectors > SectorCount)
        {
            Problems.Add($"header declares {fatSectors} FAT sectors in a file of {SectorCount} sectors");
            fatSectors = (uint)SectorCount;
        }

        // FAT sector numbers: 109 in the header, then the DIFAT chain.
        var fatSectorList = new List<uint>();
        for (var i = 0; i < 109 && fatSectorList.Count < fatSectors; i++)
        {
            var sector = BinaryPrimitives.ReadUInt32LittleEndian(header[(76 + i * 4)..]);
            if (sector <= MaxRegularSector)
            {
                fatSectorList.Add(sector);
            }
        }

        var perSector = SectorSize / 4;
        var difat = firstDifat;
        var visited = new HashSet<uint>();
        var buffer = new byte[SectorSize];
        while (difat <= MaxRegularSector && fatSectorList.Count < fatSectors)
        {
            if (!visited.Add(difat) || difat >= SectorCount)
            {
                Problems.Add("the DIFAT chain loops or leaves the file");
                break;
            }

            ReadSector(difat, buffer);
            for (var i = 0; i < perSector - 1 && fatSectorList.Count < fatSectors; i++)
            {
                var sector = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(i * 4));
                if (sector <= MaxRegularSector)
                {
                    fatSectorList.Add(sector);
                }
            }

            difat = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan((perSector - 1) * 4));
        }

        // Entries past the last sector of the file describe nothing: do not allocate for them.
        var fatLength = (int)Math.Min((long)fatSectorList.Count * perSector, SectorCount + perSector);
        _fat = new uint[fatLength];
        for (var i = 0; i < fatSectorList.Count && i * perSector < fatLength; i++)
        {
            if (fatSectorList[i] >= SectorCount)
            {
                Problems.Add($"FAT sector {fatSectorList[i]} lies outside the file");
                continue;
            }

            ReadSector(fatSectorList[i], buffer);
            var count = Math.Min(perSector, fatLength - i * perSector);
            for (var k = 0; k < count; k++)
            {
                _fat[i * perSector + k] = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(k * 4));
            }
        }

        ReadDirectory(firstDirectory, maxEntries);
        if (miniFatSectors > 0 && firstMiniFat <= MaxRegularSector)
        {
            using var miniFat = new ChainSource(_source, Chain(firstMiniFat, "mini FAT"), SectorSize, (long)Math.Min(miniFatSectors, SectorCount) * SectorSize);
            _miniFat = new uint[miniFat.Length / 4];
            var bytes = new byte[miniFat.Length];
            miniFat.ReadAt(0, bytes);
            for (var i = 0; i < _miniFat.Length; i++)
            {
                _miniFat[i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i * 4));
            }
        }

        if (Entries.Count > 0 && Entries[0].Type == Ole2EntryType.Root)
        {
            var root = Entries[0];
            _miniStream = new ChainSource(_source, Chain(root.StartSector, "mini stream"), SectorSize, root.Size);
        }
    }

    private void ReadSector(uint sector, Span<byte> destination)
    {
        var read = _source.ReadAt((sector + 1L) * SectorSize, destination);
        destination[read..].Clear();
    }

    /// <summary>The sectors of a chain, cut at a loop, at an invalid sector or at the file's sector count.</summary>
    private List<uint> Chain(uint start, string what)
    {
        var chain = new List<uint>();
        var visited = new HashSet<uint>();
        var sector = start;
        while (sector <= MaxRegularSector)
        {
            if (sector >= SectorCount || sector >= _fat.Length)
            {
                Problems.Add($"the {what} chain leaves the file at sector {sector}");
                break;
            }

            if (!visited.Add(sector))
            {
                Problems.Add($"the {what} chain loops at sector {sector}");
                break;
            }

            chain.Add(sector);
            sector = _fat[sector];
        }

        if (sector is not (EndOfChain or FreeSector) && sector > MaxRegularSector)
        {
            Problems.Add($"the {what} chain ends with the special value {sector:X8}");
        }

        return chain;
    }

    private List<uint> MiniChain(uint start, string what)
    {
        var chain = new List<uint>();
        var visited = new HashSet<uint>();
        var sector = start;
        while (sector <= MaxRegularSector)
        {
            if (sector >= _miniFat.Length)
            {
                Problems.Add($"the {what} mini chain leaves the mini FAT at {sector}");
                break;
            }

            if (!visited.Add(sector))
            {
                Problems.Add($"the {what} mini chain loops at {sector}");
                break;
            }

            chain.Add(sector);
            sector = _miniFat[sector];
        }

        return chain;
    }

    private void ReadDirectory(uint firstSector, int maxEntries)
    {
        var chain = Chain(firstSector, "directory");
        using var directory = new ChainSource(_source, chain, SectorSize, (long)chain.Count * SectorSize);
        var raw = new List<(string Name, Ole2EntryType Type, uint Left, uint Right, uint Child, Guid Clsid, uint Start, long Size)>();
        var record = new byte[128];
        for (long offset = 0; offset + 128 <= directory.Length && raw.Count < maxEntries; offset += 128)
        {
            directory.ReadAt(offset, record);
            var nameLength = Math.Min((int)BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(64)), 64);
            var name = Encoding.Unicode.GetString(record, 0, Math.Max(0, nameLength - 2)).TrimEnd('\0');
            var type = (Ole2EntryType)record[66];
            var size = SectorSize == 512
                ? BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(120))
                : (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(120)), long.MaxValue);
            raw.Add((name, type, BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(68)), BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(72)),
                BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(76)), new Guid(record.AsSpan(80, 16)), BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(116)), size));
        }

        // Entries past the limit are not read, but are counted (one byte each) so the file is not called complete.
        var entryType = new byte[1];
        for (var offset = (long)raw.Count * 128; raw.Count >= maxEntries && offset + 128 <= directory.Length; offset += 128)
        {
            directory.ReadAt(offset + 66, entryType);
            if (entryType[0] != (byte)Ole2EntryType.Empty)
            {
                UnreadEntries++;
            }
        }

        if (raw.Count == 0 || raw[0].Type != Ole2EntryType.Root)
        {
            throw new Ole2FormatException("the directory has no root entry", (firstSector + 1L) * SectorSize);
        }

        // Walk the red-black trees iteratively; every entry is visited at most once, whatever the links say.
        var visited = new bool[raw.Count];
        var paths = new string?[raw.Count];
        var parents = new int[raw.Count];
        visited[0] = true;
        paths[0] = "";
        var pending = new Stack<(uint Id, int Parent)>();
        if (raw[0].Child < raw.Count)
        {
            pending.Push((raw[0].Child, 0));
        }

        while (pending.Count > 0)
        {
            var (id, parent) = pending.Pop();
            if (id >= raw.Count)
            {
                continue;
            }

            if (visited[id])
            {
                Problems.Add($"directory entry {id} is reached twice (a cycle in the directory tree)");
                continue;
            }

            visited[id] = true;
            var entry = raw[(int)id];
            parents[id] = parent;
            paths[id] = paths[parent]!.Length == 0 ? entry.Name : paths[parent] + "/" + entry.Name;
            foreach (var sibling in new[] { entry.Left, entry.Right })
            {
                if (sibling < raw.Count)
                {
                    pending.Push((sibling, parent));
                }
            }

            if (entry.Type is Ole2EntryType.Storage && entry.Child < raw.Count)
            {
                pending.Push((entry.Child, (int)id));
            }
        }

        for (var i = 0; i < raw.Count; i++)
        {
            if (paths[i] is null)
            {
                if (raw[i].Type is Ole2EntryType.Stream or Ole2EntryType.Storage)
                {
                    Problems.Add($"directory entry {i} ('{raw[i].Name}') is not reachable from the root");
                }

                continue;
            }

            var (name, type, _, _, _, clsid, start, size) = raw[i];
            Entries.Add(new Ole2Entry(i, name, paths[i]!, type, clsid, start, size, i == 0 ? -1 : parents[i]));
        }

        Entries.Sort((a, b) => a.Id.CompareTo(b.Id));
    }

    public IEnumerable<Ole2Entry> Children(Ole2Entry storage) => Entries.Where(e => e.ParentId == storage.Id);

    /// <summary>A lazily read view of a stream, never longer than its chain.</summary>
    public ContentSource OpenStream(Ole2Entry entry)
    {
        if (entry.Size < MiniStreamCutoff && _miniStream is not null)
        {
            var chain = MiniChain(entry.StartSector, entry.Path);
            return new ChainSource(_miniStream, chain, MiniSectorSize, entry.Size, firstSectorOffset: 0);
        }

        return new ChainSource(_source, Chain(entry.StartSector, entry.Path), SectorSize, entry.Size);
    }

    public byte[] ReadStream(Ole2Entry entry, int maxBytes)
    {
        using var stream = OpenStream(entry);
        var bytes = new byte[(int)Math.Min(stream.Length, maxBytes)];
        var read = stream.ReadAt(0, bytes);
        return read == bytes.Length ? bytes : bytes[..read];
    }

    /// <summary>Bytes spread over a chain of fixed-size sectors; the length is capped by the chain.</summary>
    private sealed class ChainSource : ContentSource
    {
        private readonly ContentSource _parent;
        private readonly List<uint> _chain;
        private readonly int _sectorSize;
        private readonly long _length;
        private readonly long _firstSectorOffset;

        public ChainSource(ContentSource parent, List<uint> chain, int sectorSize, long declaredLength, long? firstSectorOffset = null)
        {
            _parent = parent;
            _chain = chain;
            _sectorSize = sectorSize;
            _firstSectorOffset = firstSectorOffset ?? sectorSize;
            _length = Math.Max(0, Math.Min(declaredLength, (long)chain.Count * sectorSize));
        }

        public override long Length => _length;

        public override int ReadAt(long offset, Span<byte> destination)
        {
            var total = 0;
            while (total < destination.Length && offset + total < _length)
            {
                var position = offset + total;
                var index = (int)(position / _sectorSize);
                var within = (int)(position % _sectorSize);
                var count = (int)Math.Min(Math.Min(_sectorSize - within, destination.Length - total), _length - position);
                var read = _parent.ReadAt(_firstSectorOffset + (long)_chain[index] * _sectorSize + within, destination.Slice(total, count));
                if (read < count)
                {
                    destination.Slice(total + read, count - read).Clear();
                }

                total += count;
            }

            return total;
        }
    }
}

internal sealed class Ole2FormatException(string message, long offset) : Exception($"{message} (offset {offset})")
{
    public long Offset { get; } = offset;
}
