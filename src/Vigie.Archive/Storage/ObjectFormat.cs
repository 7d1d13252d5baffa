using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vigie.Archive.Storage;

/// <summary>
/// Object format v1, a segmented AEAD in the manner of Tink's streaming AEAD and age's STREAM:
/// <code>
/// prefix (32)   magic "\x89VGOBJ\r\n" | version 1 | algorithm 1 | header length u16 | segment size u32 | nonce prefix (7) | slot count 2 | slot size u16 | zero (6)
/// slot 0 (256)  state | 0 | wrapped length u16 | generation u32 | KEK id (16) | wrapped data key | zero padding
/// slot 1 (256)
/// segment 0..n-1  AES-256-GCM(data key, nonce = nonce prefix | i u32 | last ? 1 : 0, aad = prefix) : ciphertext | tag (16)
/// trailer (64)  AES-256-GCM(data key, nonce = nonce prefix | 0xFFFFFFFF | 2, aad = prefix) of: length u64 | segments u32 | zero (4) | SHA-256 (32)
/// </code>
/// All integers are big-endian. Every segment but the last holds exactly the segment size; the last holds 1..segment size
/// bytes, or 0 when the object is empty (then it is the only one). The key slots sit outside the associated data so that a
/// rotation can re-wrap the data key in place: the new wrap goes to the free slot with generation + 1, is synced, then the
/// old slot is cleared. A torn slot write fails to unwrap and the reader falls back to the other slot.
/// </summary>
internal static class ObjectFormat
{
    public const byte Version = 1;
    public const byte AlgorithmAes256Gcm = 1;
    public const int PrefixSize = 32;
    public const int SlotCount = 2;
    public const int SlotSize = 256;
    public const int SlotHeaderSize = 24;
    public const int MaxWrappedKeySize = SlotSize - SlotHeaderSize;
    public const int HeaderSize = PrefixSize + SlotCount * SlotSize;
    public const int NoncePrefixSize = 7;
    public const int NonceSize = 12;
    public const int TagSize = 16;
    public const int DataKeySize = 32;
    public const int TrailerPlainSize = 48;
    public const int TrailerSize = TrailerPlainSize + TagSize;
    public const int MinSegmentSize = 1024;
    public const int MaxSegmentSize = 16 * 1024 * 1024;
    public const uint MaxSegments = 0xFFFF_FFFE;
    public const byte SlotEmpty = 0;
    public const byte SlotUsed = 1;

    public static ReadOnlySpan<byte> Magic => [0x89, (byte)'V', (byte)'G', (byte)'O', (byte)'B', (byte)'J', 0x0D, 0x0A];

    private static ReadOnlySpan<byte> DataKeyLabel => "vigie/dek/v1"u8;

    // A quarantined object's data key is wrapped under its own label (since 2026-12-07): the archive reader cannot open it.
    private static ReadOnlySpan<byte> QuarantineDataKeyLabel => "vigie/dek-quarantine/v1"u8;

    public static byte[] BuildPrefix(int segmentSize, ReadOnlySpan<byte> noncePrefix)
    {
        var prefix = new byte[PrefixSize];
        Magic.CopyTo(prefix);
        prefix[8] = Version;
        prefix[9] = AlgorithmAes256Gcm;
        BinaryPrimitives.WriteUInt16BigEndian(prefix.AsSpan(10), HeaderSize);
        BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(12), (uint)segmentSize);
        noncePrefix.CopyTo(prefix.AsSpan(16, NoncePrefixSize));
        prefix[23] = SlotCount;
        BinaryPrimitives.WriteUInt16BigEndian(prefix.AsSpan(24), SlotSize);
        return prefix;
    }

    /// <summary>
    /// Associated data that binds a wrapped data key to this object's prefix, to the slot generation and to its purpose:
    /// an archive object's key (spools too) and a quarantined object's key never open in each other's place.
    /// </summary>
    public static byte[] DataKeyContext(ReadOnlySpan<byte> prefix, uint generation, KeyPurpose purpose = KeyPurpose.Archive)
    {
        var label = purpose == KeyPurpose.Quarantine ? QuarantineDataKeyLabel : DataKeyLabel;
        var context = new byte[label.Length + PrefixSize + 4];
        label.CopyTo(context);
        prefix.CopyTo(context.AsSpan(label.Length));
        BinaryPrimitives.WriteUInt32BigEndian(context.AsSpan(label.Length + PrefixSize), generation);
        return context;
    }

    public static void WriteSlot(Span<byte> slot, uint generation, Guid keyId, ReadOnlySpan<byte> wrapped)
    {
        if (wrapped.Length > MaxWrappedKeySize)
        {
            throw new InvalidOperationException($"The key-encryption key store produced a {wrapped.Length}-byte wrapped key; slots hold {MaxWrappedKeySize}.");
        }

        slot[..SlotSize].Clear();
        slot[0] = SlotUsed;
        BinaryPrimitives.WriteUInt16BigEndian(slot[2..], (ushort)wrapped.Length);
        BinaryPrimitives.WriteUInt32BigEndian(slot[4..], generation);
        keyId.TryWriteBytes(slot.Slice(8, 16), bigEndian: true, out _);
        wrapped.CopyTo(slot[SlotHeaderSize..]);
    }

    public static int SlotOffset(int slot) => PrefixSize + slot * SlotSize;

    public static void SegmentNonce(Span<byte> nonce, ReadOnlySpan<byte> noncePrefix, uint segment, bool last)
    {
        noncePrefix.CopyTo(nonce);
        BinaryPrimitives.WriteUInt32BigEndian(nonce[NoncePrefixSize..], segment);
        nonce[NonceSize - 1] = last ? (byte)1 : (byte)0;
    }

    public static void TrailerNonce(Span<byte> nonce, ReadOnlySpan<byte> noncePrefix)
    {
        noncePrefix.CopyTo(nonce);
        BinaryPrimitives.WriteUInt32BigEndian(nonce[NoncePrefixSize..], 0xFFFF_FFFF);
        nonce[NonceSize - 1] = 2;
    }

    public static void EncodeTrailer(Span<byte> plain, long length, uint segments, ReadOnlySpan<byte> sha256)
    {
        plain[..TrailerPlainSize].Clear();
        BinaryPrimitives.WriteInt64BigEndian(plain, length);
        BinaryPrimitives.WriteUInt32BigEndian(plain[8..], segments);
        sha256.CopyTo(plain[16..]);
    }

    /// <summary>Parses the fixed header. Never trusts a field before checking it against the constants above.</summary>
    public static ObjectHeader ParseHeader(ReadOnlySpan<byte> header, string location)
    {
        if (header.Length < Magic.Length || !header[..Magic.Length].SequenceEqual(Magic))
        {
            throw new ObjectFormatException(ObjectProblem.NotOurFormat, "the file does not start with the Vigie object magic", location, offset: 0);
        }

        if (header.Length < HeaderSize)
        {
            throw new ObjectFormatException(ObjectProblem.Truncated, $"the header needs {HeaderSize} bytes, the file has {header.Length}", location);
        }

        if (header[8] != Version || header[9] != AlgorithmAes256Gcm)
        {
            throw new ObjectFormatException(ObjectProblem.UnsupportedVersion, $"format version {header[8]}, algorithm {header[9]}", location, offset: 8);
        }

        var headerLength = BinaryPrimitives.ReadUInt16BigEndian(header[10..]);
        var segmentSize = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
        var slotCount = header[23];
        var slotSize = BinaryPrimitives.ReadUInt16BigEndian(header[24..]);
        if (headerLength != HeaderSize || slotCount != SlotCount || slotSize != SlotSize || header.Slice(26, 6).IndexOfAnyExcept((byte)0) >= 0)
        {
            throw new ObjectFormatException(ObjectProblem.InvalidHeader, "header length, slot layout or reserved bytes are not those of version 1", location, offset: 10);
        }

        if (segmentSize is < MinSegmentSize or > MaxSegmentSize)
        {
            throw new ObjectFormatException(ObjectProblem.InvalidHeader, $"segment size {segmentSize} is out of range", location, offset: 12);
        }

        var slots = new KeySlot[SlotCount];
        for (var i = 0; i < SlotCount; i++)
        {
            var slot = header.Slice(SlotOffset(i), SlotSize);
            var wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(slot[2..]);
            if (slot[0] != SlotUsed || wrappedLength == 0 || wrappedLength > MaxWrappedKeySize)
            {
                slots[i] = KeySlot.Empty;
                continue;
            }

            slots[i] = new KeySlot(
                Used: true,
                Generation: BinaryPrimitives.ReadUInt32BigEndian(slot[4..]),
                KeyId: new Guid(slot.Slice(8, 16), bigEndian: true),
                Wrapped: slot.Slice(SlotHeaderSize, wrappedLength).ToArray());
        }

        return new ObjectHeader(header[..PrefixSize].ToArray(), (int)segmentSize, slots);
    }

    /// <summary>
    /// The offset of the first header byte outside every field that is not zero (a used slot's reserved byte and the
    /// padding after its wrapped key; all of an empty slot), or -1. Nothing authenticates them, so before 2026-12-06
    /// scrub passed them altered: a place to hide bytes in an archived object.
    /// </summary>
    public static int FirstStrayHeaderByte(ReadOnlySpan<byte> header)
    {
        for (var i = 0; i < SlotCount; i++)
        {
            var start = SlotOffset(i);
            var slot = header.Slice(start, SlotSize);
            var wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(slot[2..]);
            var used = slot[0] == SlotUsed && wrappedLength is > 0 and <= MaxWrappedKeySize;
            var stray = used ? slot[1] != 0 ? 1 : slot[(SlotHeaderSize + wrappedLength)..].IndexOfAnyExcept((byte)0) is var p and >= 0 ? SlotHeaderSize + wrappedLength + p : -1
                : slot.IndexOfAnyExcept((byte)0);
            if (stray >= 0)
            {
                return start + stray;
            }
        }

        return -1;
    }

    /// <summary>The segment count and plaintext length implied by a file length, or null when no layout fits.</summary>
    public static (uint Segments, long Length)? LayoutFor(long fileLength, int segmentSize)
    {
        var data = fileLength - HeaderSize - TrailerSize;
        if (data < TagSize)
        {
            return null;
        }

        var full = (long)segmentSize + TagSize;
        var segments = (data + full - 1) / full;
        var last = data - (segments - 1) * full;
        if (last < TagSize || last > full || (last == TagSize && segments > 1) || segments > MaxSegments)
        {
            return null;
        }

        return ((uint)segments, data - segments * TagSize);
    }

    /// <summary>The file length of <paramref name="length"/> plaintext bytes in segments of <paramref name="segmentSize"/>: <see cref="LayoutFor"/> the other way.</summary>
    public static long FileLengthFor(long length, int segmentSize)
    {
        var segments = Math.Max(1, (length + segmentSize - 1) / segmentSize);
        return HeaderSize + length + segments * TagSize + TrailerSize;
    }

    public static long SegmentOffset(uint segment, int segmentSize) => HeaderSize + (long)segment * (segmentSize + TagSize);

    public static byte[] NewDataKey() => RandomNumberGenerator.GetBytes(DataKeySize);
}

/// <summary>What an object's data key is wrapped for: part of what the key-encryption key authenticates.</summary>
internal enum KeyPurpose
{
    /// <summary>An archive object, a spool, a landed object.</summary>
    Archive,

    /// <summary>A quarantined object (since 2026-12-07; before, quarantined objects were wrapped as archive objects).</summary>
    Quarantine,
}

internal readonly record struct KeySlot(bool Used, uint Generation, Guid KeyId, byte[] Wrapped)
{
    public static KeySlot Empty => new(false, 0, Guid.Empty, []);
}

internal sealed class ObjectHeader(byte[] prefix, int segmentSize, KeySlot[] slots)
{
    public byte[] Prefix { get; } = prefix;

    public int SegmentSize { get; } = segmentSize;

    public KeySlot[] Slots { get; } = slots;

    public ReadOnlySpan<byte> NoncePrefix => Prefix.AsSpan(16, ObjectFormat.NoncePrefixSize);

    /// <summary>Used slots, newest generation first.</summary>
    public IEnumerable<int> SlotsNewestFirst() =>
        Enumerable.Range(0, Slots.Length).Where(i => Slots[i].Used).OrderByDescending(i => Slots[i].Generation);
}
