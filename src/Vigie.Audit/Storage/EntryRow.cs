using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Vigie.Audit.Merkle;

namespace Vigie.Audit.Storage;

/// <summary>
/// One stored entry, column for column. The canonical bytes that the Merkle leaf covers are rebuilt from these
/// columns (never kept as a separate blob), so a change to any column changes the leaf hash.
/// </summary>
internal sealed class EntryRow
{
    /// <summary>Format marker at the start of the canonical bytes; a new layout gets a new marker.</summary>
    public static ReadOnlySpan<byte> Magic => "VAE1"u8;

    public long Seq { get; set; }
    public long TimeMs { get; set; }
    public string EventId { get; set; } = "";
    public string EventTypes { get; set; } = "";
    public string Action { get; set; } = "";
    public long Outcome { get; set; }
    public string UserId { get; set; } = "";
    public string Participants { get; set; } = "";
    public string? Purpose { get; set; }
    public string? PatientRef { get; set; }
    public string SourceId { get; set; } = "";
    public string? SealKeyId { get; set; }
    public byte[]? Sealed { get; set; }
    public byte[] PrevHash { get; set; } = [];
    public byte[] LeafHash { get; set; } = [];

    private byte[]? _prepared;

    /// <summary>Writes 0x00 (the RFC 9162 leaf prefix) followed by the canonical entry bytes.</summary>
    public void WritePrefixedCanonical(ArrayBufferWriter<byte> buffer)
    {
        buffer.ResetWrittenCount();
        buffer.GetSpan(1)[0] = 0x00;
        buffer.Advance(1);
        WriteCanonical(buffer);
    }

    public void WriteCanonical(IBufferWriter<byte> w)
    {
        var span = w.GetSpan(4);
        Magic.CopyTo(span);
        w.Advance(4);
        WriteInt64(w, Seq);
        WriteInt64(w, TimeMs);
        WriteText(w, EventId);
        WriteText(w, EventTypes);
        WriteText(w, Action);
        WriteInt64(w, Outcome);
        WriteText(w, UserId);
        WriteText(w, Participants);
        WriteText(w, Purpose);
        WriteText(w, PatientRef);
        WriteText(w, SourceId);
        WriteText(w, SealKeyId);
        WriteBytes(w, Sealed);
        WriteBytes(w, PrevHash);
    }

    public byte[] CanonicalBytes()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        WriteCanonical(buffer);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Recomputes the leaf hash from the columns, using <paramref name="scratch"/> to avoid allocations.</summary>
    public void ComputeLeafHash(ArrayBufferWriter<byte> scratch, Span<byte> destination)
    {
        if (_prepared is { } prepared && PrevHash.Length == MerkleHash.Size)
        {
            BinaryPrimitives.WriteInt64BigEndian(prepared.AsSpan(PrefixedSeqOffset), Seq);
            PrevHash.CopyTo(prepared.AsSpan(prepared.Length - MerkleHash.Size));
            MerkleHash.LeafPrefixed(prepared, destination);
            return;
        }

        WritePrefixedCanonical(scratch);
        MerkleHash.LeafPrefixed(scratch.WrittenSpan, destination);
    }

    /// <summary>
    /// The prefixed canonical bytes <see cref="PrepareCanonical"/> built, once <see cref="ComputeLeafHash"/> has filled
    /// in the sequence number and previous leaf: the insert binds the text columns from their UTF-8 in there.
    /// </summary>
    public byte[]? Prepared => _prepared;

    /// <summary>
    /// Builds the prefixed canonical bytes ahead of the append, with blanks where the sequence number and the previous
    /// leaf go (they are known only under the append lock, and both sit at fixed places: the sequence number after
    /// the marker, the previous leaf last). The append then fills them in and hashes: the costly encoding of every
    /// text column runs on whichever core built the row, not on the one thread that chains the leaves.
    /// </summary>
    public void PrepareCanonical()
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        Seq = 0;
        PrevHash = new byte[MerkleHash.Size];
        WritePrefixedCanonical(buffer);
        _prepared = buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The same canonical bytes from raw column values (text as its stored UTF-8), prefixed with 0x00: the verifier
    /// reads columns as bytes to skip decoding and re-encoding every string.
    /// </summary>
    public static void WritePrefixedCanonical(ArrayBufferWriter<byte> w, long seq, long timeMs, byte[]?[] text, long outcome, byte[]? sealedBytes, byte[]? prevHash)
    {
        w.ResetWrittenCount();
        w.GetSpan(1)[0] = 0x00;
        w.Advance(1);
        Magic.CopyTo(w.GetSpan(4));
        w.Advance(4);
        WriteInt64(w, seq);
        WriteInt64(w, timeMs);
        WriteBytes(w, text[0]); // event_id
        WriteBytes(w, text[1]); // event_types
        WriteBytes(w, text[2]); // action
        WriteInt64(w, outcome);
        for (var i = 3; i < text.Length; i++)
        {
            WriteBytes(w, text[i]); // user_id, participants, purpose, patient_ref, source_id, seal_key_id
        }

        WriteBytes(w, sealedBytes);
        WriteBytes(w, prevHash);
    }

    /// <summary>Offset of the sequence number in the prefixed canonical bytes (after 0x00 and the marker).</summary>
    public const int PrefixedSeqOffset = 5;

    private static void WriteInt64(IBufferWriter<byte> w, long value)
    {
        BinaryPrimitives.WriteInt64BigEndian(w.GetSpan(8), value);
        w.Advance(8);
    }

    // Null and empty differ: a presence byte, then a 32-bit big-endian length, then the bytes.
    private static void WriteText(IBufferWriter<byte> w, string? value)
    {
        if (value is null)
        {
            w.GetSpan(1)[0] = 0;
            w.Advance(1);
            return;
        }

        var length = Encoding.UTF8.GetByteCount(value);
        var span = w.GetSpan(5 + length);
        span[0] = 1;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        Encoding.UTF8.GetBytes(value, span[5..]);
        w.Advance(5 + length);
    }

    private static void WriteBytes(IBufferWriter<byte> w, byte[]? value)
    {
        if (value is null)
        {
            w.GetSpan(1)[0] = 0;
            w.Advance(1);
            return;
        }

        var span = w.GetSpan(5 + value.Length);
        span[0] = 1;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], value.Length);
        value.CopyTo(span[5..]);
        w.Advance(5 + value.Length);
    }
}
