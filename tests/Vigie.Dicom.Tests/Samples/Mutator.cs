using System.Buffers.Binary;

namespace Vigie.Dicom.Tests.Samples;

/// <summary>
/// The mutations the fuzz tests share: each input gets 1 to <see cref="MaxRounds"/> of bit flips, random bytes, a
/// boundary value written over a length field, truncation, a chunk duplicated elsewhere and a chunk deleted, plus the
/// caller's own mutation for its format (<see cref="Special"/>), each kind equally likely.
/// </summary>
internal sealed class Mutator
{
    /// <summary>Values written over length fields.</summary>
    public required uint[] InterestingLengths { get; init; }

    /// <summary>Widths of the length fields, in bytes (2 or 4); one is picked per mutation.</summary>
    public required int[] LengthWidths { get; init; }

    /// <summary>Big-endian length fields (the network's upper layer); otherwise little-endian (DICOM data sets).</summary>
    public bool BigEndian { get; init; }

    public int MaxRounds { get; init; } = 4;

    /// <summary>Longest chunk duplicated.</summary>
    public int MaxDuplicate { get; init; } = 64;

    /// <summary>Longest chunk deleted.</summary>
    public int MaxDelete { get; init; } = 32;

    /// <summary>A mutation of the caller's format, given the data, a position in it and the random source.</summary>
    public Action<List<byte>, int, Random>? Special { get; init; }

    public byte[] Mutate(byte[] seed, Random random)
    {
        var data = new List<byte>(seed);
        var rounds = 1 + random.Next(MaxRounds);
        var kinds = Special is null ? 6 : 7;
        for (var r = 0; r < rounds && data.Count > 0; r++)
        {
            var at = random.Next(data.Count);
            switch (random.Next(kinds))
            {
                case 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    data[at] = (byte)random.Next(256);
                    break;
                case 2:
                    OverwriteLength(data, at, random);
                    break;
                case 3:
                    data.RemoveRange(at, data.Count - at);
                    break;
                case 4:
                {
                    var count = Math.Min(1 + random.Next(MaxDuplicate), data.Count - at);
                    data.InsertRange(random.Next(data.Count), data.GetRange(at, count));
                    break;
                }

                case 5:
                    data.RemoveRange(at, Math.Min(1 + random.Next(MaxDelete), data.Count - at));
                    break;
                default:
                    Special!(data, at, random);
                    break;
            }
        }

        return [.. data];
    }

    private void OverwriteLength(List<byte> data, int at, Random random)
    {
        var value = InterestingLengths[random.Next(InterestingLengths.Length)];
        var width = LengthWidths[random.Next(LengthWidths.Length)];
        Span<byte> bytes = stackalloc byte[4];
        if (width == 2)
        {
            if (BigEndian)
            {
                BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)value);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(bytes, (ushort)value);
            }
        }
        else if (BigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        }

        for (var b = 0; b < width && at + b < data.Count; b++)
        {
            data[at + b] = bytes[b];
        }
    }
}
