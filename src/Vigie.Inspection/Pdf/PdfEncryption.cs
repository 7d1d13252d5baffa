using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vigie.Inspection.Pdf;

/// <summary>
/// The standard security handler (ISO 32000-2 7.6.4) opened with the empty user password. Hospitals send reports
/// protected by an owner password only (no printing, no changes): they open without a password, so they can be read
/// and inspected like any other. A document that needs a password to open stays opaque.
/// RC4 and MD5 are what those files use; they decrypt here, they protect nothing.
/// </summary>
internal sealed class PdfEncryption
{
    private static readonly byte[] Padding =
    [
        0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
        0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
    ];

    private readonly byte[] _fileKey;
    private readonly int _revision;
    private readonly PdfDictionary _dictionary;
    private readonly CryptMethod _strings;
    private readonly CryptMethod _streams;

    private PdfEncryption(byte[] fileKey, int revision, PdfDictionary dictionary, CryptMethod strings, CryptMethod streams, int? dictionaryNumber, bool metadataEncrypted, int permissions)
    {
        _fileKey = fileKey;
        _revision = revision;
        _dictionary = dictionary;
        _strings = strings;
        _streams = streams;
        DictionaryNumber = dictionaryNumber;
        MetadataEncrypted = metadataEncrypted;
        Permissions = permissions;
    }

    private enum CryptMethod
    {
        None,
        Rc4,
        Aes,
    }

    /// <summary>The object holding the encryption dictionary: its strings are the handler's own, never encrypted.</summary>
    public int? DictionaryNumber { get; }

    public bool MetadataEncrypted { get; }

    /// <summary>The /P flags (ISO 32000-2 table 22).</summary>
    public int Permissions { get; }

    /// <summary>What the owner password forbids, in words ("printing, changes").</summary>
    public string Restrictions
    {
        get
        {
            var denied = new List<string>();
            if ((Permissions & (1 << 2)) == 0)
            {
                denied.Add("printing");
            }

            if ((Permissions & (1 << 3)) == 0)
            {
                denied.Add("changes");
            }

            if ((Permissions & (1 << 4)) == 0)
            {
                denied.Add("copying");
            }

            if ((Permissions & (1 << 5)) == 0)
            {
                denied.Add("annotations");
            }

            return denied.Count == 0 ? "no use" : string.Join(", ", denied);
        }
    }

    /// <summary>The document's encryption dictionary, if it declares one (the latest revision's).</summary>
    public static (PdfDictionary Dictionary, int? Number, PdfDictionary Trailer)? Declared(PdfDocument document)
    {
        // The trailer startxref leads to decides, as for a reader: an /Encrypt in a trailer nothing reaches made a plain
        // document "decrypted" into garbage, its script lost (until 2026-12-07). A broken file falls back to the last one.
        var trailer = document.StartTrailer is { } reached
            ? reached.Has("Encrypt") ? reached : null
            : document.Trailers.LastOrDefault(t => t.Has("Encrypt"))
              ?? document.Objects.LastOrDefault(o => o.Dictionary?.GetName("Type") == "XRef" && o.Dictionary.Has("Encrypt"))?.Dictionary;
        if (trailer is null)
        {
            return null;
        }

        var value = trailer.Get("Encrypt");
        var number = value is PdfReference reference ? reference.Number : (int?)null;
        return document.Resolve(value) is PdfDictionary dictionary ? (dictionary, number, trailer) : (new PdfDictionary([]), number, trailer);
    }

    /// <summary>
    /// Opens the handler that <see cref="Declared"/> found with the empty user password; null with the reason when the
    /// document stays closed (it needs a password, or its dictionary is not one Vigie knows or is inconsistent).
    /// </summary>
    public static PdfEncryption? TryOpen(PdfDocument document, (PdfDictionary Dictionary, int? Number, PdfDictionary Trailer) declared, out string reason)
    {
        try
        {
            return Open(document, declared, out reason);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            reason = "its encryption dictionary is inconsistent";
            return null;
        }
    }

    private static PdfEncryption? Open(PdfDocument document, (PdfDictionary Dictionary, int? Number, PdfDictionary Trailer) declared, out string reason)
    {
        reason = "";
        var (dictionary, number, trailer) = declared;
        var filter = dictionary.GetName("Filter");
        if (filter != "Standard")
        {
            reason = filter is null ? "its encryption dictionary is missing or unreadable" : $"it uses the /{filter} security handler (certificates), which Vigie cannot open";
            return null;
        }

        var version = (int)Number(dictionary, "V", 0);
        var revision = (int)Number(dictionary, "R", 0);
        var permissions = unchecked((int)Number(dictionary, "P", -1));
        var metadataEncrypted = dictionary.Get("EncryptMetadata") is not PdfBoolean { Value: false };
        var owner = (document.Resolve(dictionary.Get("O")) as PdfString)?.Bytes ?? [];
        var user = (document.Resolve(dictionary.Get("U")) as PdfString)?.Bytes ?? [];
        var id = document.Resolve(trailer.Get("ID")) is PdfArray { Items.Count: > 0 } ids && document.Resolve(ids.Items[0]) is PdfString first ? first.Bytes : [];

        CryptMethod strings, streams;
        int keyLength;
        switch (version)
        {
            case 1 or 2 or 3:
                strings = streams = CryptMethod.Rc4;
                keyLength = version == 1 ? 5 : KeyBytes(Number(dictionary, "Length", 40));
                break;
            case 4 or 5:
                if (!CryptFilter(document, dictionary, "StrF", out strings, out var stringKey) || !CryptFilter(document, dictionary, "StmF", out streams, out var streamKey))
                {
                    reason = "it names a crypt filter Vigie does not know";
                    return null;
                }

                keyLength = version == 5 ? 32 : Math.Max(stringKey, streamKey) is var k && k > 0 ? k : 16;
                break;
            default:
                reason = $"its encryption version /V {version} is not one Vigie knows";
                return null;
        }

        if (keyLength is < 5 or > 32 || (version < 5 || revision < 5) && keyLength > 16)
        {
            reason = $"its key length ({keyLength} bytes) is not valid";
            return null;
        }

        if (revision is < 2 or > 6)
        {
            reason = $"its revision /R {revision} is not one Vigie knows";
            return null;
        }

        byte[]? key = revision switch
        {
            2 or 3 or 4 when owner.Length >= 32 && user.Length >= 16 => LegacyKey(revision, keyLength, owner, permissions, id, user, metadataEncrypted),
            5 or 6 when user.Length >= 48 => ModernKey(revision, user, (document.Resolve(dictionary.Get("UE")) as PdfString)?.Bytes ?? []),
            _ => null,
        };
        if (key is null)
        {
            reason = "it needs a password to open";
            return null;
        }

        return new PdfEncryption(key, revision, dictionary, strings, streams, number, metadataEncrypted, permissions);
    }

    public byte[] DecryptString(int number, int generation, byte[] data)
    {
        switch (_strings)
        {
            case CryptMethod.None:
                return data;
            case CryptMethod.Rc4:
                var copy = data.ToArray();
                new Rc4(ObjectKey(number, generation, false)).Apply(copy);
                return copy;
            case CryptMethod.Aes:
                if (data.Length < 32 || data.Length % 16 != 0)
                {
                    return data.Length == 16 ? [] : data;
                }

                using (var aes = Aes.Create())
                {
                    aes.Key = ObjectKey(number, generation, true);
                    var plain = aes.DecryptCbc(data.AsSpan(16), data.AsSpan(0, 16), PaddingMode.None);
                    return plain.AsSpan(0, plain.Length - PadLength(plain)).ToArray();
                }

            default:
                throw new InvalidOperationException();
        }
    }

    /// <summary>
    /// A stream's raw bytes as decrypted bytes. Cross-reference streams are never encrypted, metadata only when
    /// /EncryptMetadata says so, and a stream whose first filter is /Crypt names its own filter.
    /// </summary>
    public Stream DecryptStream(PdfIndirectObject indirect, Stream raw, PdfDocument document)
    {
        var dictionary = indirect.Dictionary;
        var method = _streams;
        if (dictionary?.GetName("Type") == "XRef" || !MetadataEncrypted && dictionary?.GetName("Type") == "Metadata")
        {
            method = CryptMethod.None;
        }
        else if (dictionary is not null && PdfFilters.FilterNames(dictionary, document) is [PdfFilters.Crypt, ..])
        {
            var parameters = document.Resolve(dictionary.Get("DecodeParms")) switch
            {
                PdfDictionary d => d,
                PdfArray { Items.Count: > 0 } a => document.Resolve(a.Items[0]) as PdfDictionary,
                _ => null,
            };
            var name = parameters?.GetName("Name") ?? "Identity";
            method = name == "Identity" ? CryptMethod.None : Method(document, _dictionary, name, out _) ?? _streams;
        }

        return method switch
        {
            CryptMethod.None => raw,
            CryptMethod.Rc4 => new Rc4Stream(raw, new Rc4(ObjectKey(indirect.Number, indirect.Generation, false))),
            CryptMethod.Aes => new AesCbcStream(raw, ObjectKey(indirect.Number, indirect.Generation, true)),
            _ => throw new InvalidOperationException(),
        };
    }

    /// <summary>Replaces every string of an object (not packed in an object stream) by its decrypted bytes.</summary>
    public void DecryptStrings(PdfIndirectObject indirect)
    {
        if (indirect.ContainerNumber is not null || indirect.Number == DictionaryNumber || indirect.Dictionary?.GetName("Type") == "XRef")
        {
            return;
        }

        indirect.Value = Decrypt(indirect.Value, indirect, 0);
    }

    private PdfObject Decrypt(PdfObject value, PdfIndirectObject owner, int depth)
    {
        switch (value)
        {
            case PdfString s:
                return new PdfString(DecryptString(owner.Number, owner.Generation, s.Bytes), s.IsHex);
            case PdfDictionary d when depth < PdfParser.MaxDepth:
                for (var i = 0; i < d.Entries.Count; i++)
                {
                    d.Entries[i] = new(d.Entries[i].Key, Decrypt(d.Entries[i].Value, owner, depth + 1));
                }

                return d;
            case PdfArray a when depth < PdfParser.MaxDepth:
                for (var i = 0; i < a.Items.Count; i++)
                {
                    a.Items[i] = Decrypt(a.Items[i], owner, depth + 1);
                }

                return a;
            default:
                return value;
        }
    }

    /// <summary>Algorithm 1: the file key salted with the object's number and generation.</summary>
    private byte[] ObjectKey(int number, int generation, bool aes)
    {
        if (_revision >= 5)
        {
            return _fileKey;
        }

        Span<byte> input = stackalloc byte[_fileKey.Length + 9];
        _fileKey.CopyTo(input);
        var at = _fileKey.Length;
        input[at++] = (byte)number;
        input[at++] = (byte)(number >> 8);
        input[at++] = (byte)(number >> 16);
        input[at++] = (byte)generation;
        input[at++] = (byte)(generation >> 8);
        if (aes)
        {
            "sAlT"u8.CopyTo(input[at..]);
            at += 4;
        }

#pragma warning disable CA5351 // The PDF format fixes MD5 here; nothing relies on it for security.
        var hash = MD5.HashData(input[..at]);
#pragma warning restore CA5351
        return hash[..Math.Min(_fileKey.Length + 5, 16)];
    }

    /// <summary>Algorithms 2 and 6 (R2-R4): the key from the empty password, kept only if it reproduces /U.</summary>
    private static byte[]? LegacyKey(int revision, int keyLength, byte[] owner, int permissions, byte[] id, byte[] user, bool metadataEncrypted)
    {
#pragma warning disable CA5351 // The PDF format fixes MD5 here; nothing relies on it for security.
        var input = new List<byte>(Padding);
        input.AddRange(owner.AsSpan(0, 32));
        Span<byte> p = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(p, permissions);
        input.AddRange(p);
        input.AddRange(id);
        if (revision >= 4 && !metadataEncrypted)
        {
            input.AddRange([0xFF, 0xFF, 0xFF, 0xFF]);
        }

        var hash = MD5.HashData([.. input]);
        var length = revision == 2 ? 5 : keyLength;
        if (revision >= 3)
        {
            for (var i = 0; i < 50; i++)
            {
                hash = MD5.HashData(hash.AsSpan(0, length));
            }
        }

        var key = hash[..length];
        byte[] expected;
        if (revision == 2)
        {
            expected = Padding.ToArray();
            new Rc4(key).Apply(expected);
            return user.AsSpan(0, 32).SequenceEqual(expected) ? key : null;
        }

        expected = MD5.HashData([.. Padding, .. id]);
#pragma warning restore CA5351
        var round = new byte[key.Length];
        for (var i = 0; i < 20; i++)
        {
            for (var j = 0; j < key.Length; j++)
            {
                round[j] = (byte)(key[j] ^ i);
            }

            new Rc4(round).Apply(expected);
        }

        return user.AsSpan(0, 16).SequenceEqual(expected) ? key : null;
    }

    /// <summary>Algorithms 2.A and 11 (R5, R6): check /U with the empty password, then unwrap /UE.</summary>
    private static byte[]? ModernKey(int revision, byte[] user, byte[] userKey)
    {
        if (userKey.Length < 32 || !Hash(revision, user.AsSpan(32, 8)).AsSpan().SequenceEqual(user.AsSpan(0, 32)))
        {
            return null;
        }

        using var aes = Aes.Create();
        aes.Key = Hash(revision, user.AsSpan(40, 8));
        return aes.DecryptCbc(userKey.AsSpan(0, 32), new byte[16], PaddingMode.None);
    }

    /// <summary>Algorithm 2.B for the empty user password (R6); R5 is the plain SHA-256 of the salt.</summary>
    private static byte[] Hash(int revision, ReadOnlySpan<byte> salt)
    {
        var k = SHA256.HashData(salt);
        if (revision == 5)
        {
            return k;
        }

        using var aes = Aes.Create();
        for (var round = 0; ; round++)
        {
            var k1 = new byte[64 * k.Length];
            for (var i = 0; i < 64; i++)
            {
                k.CopyTo(k1, i * k.Length);
            }

            aes.Key = k[..16];
            var e = aes.EncryptCbc(k1, k.AsSpan(16, 16), PaddingMode.None);
            var sum = 0;
            for (var i = 0; i < 16; i++)
            {
                sum += e[i];
            }

            k = (sum % 3) switch
            {
                0 => SHA256.HashData(e),
                1 => SHA384.HashData(e),
                _ => SHA512.HashData(e),
            };
            if (round >= 63 && e[^1] <= round - 31)
            {
                return k[..32];
            }
        }
    }

    private static bool CryptFilter(PdfDocument document, PdfDictionary dictionary, string key, out CryptMethod method, out int keyLength)
    {
        var name = dictionary.GetName(key) ?? "Identity";
        keyLength = 0;
        if (name == "Identity")
        {
            method = CryptMethod.None;
            return true;
        }

        var known = Method(document, dictionary, name, out keyLength);
        method = known ?? CryptMethod.None;
        return known is not null;
    }

    private static CryptMethod? Method(PdfDocument document, PdfDictionary dictionary, string name, out int keyLength)
    {
        keyLength = 0;
        if (document.Resolve(dictionary.Get("CF")) is not PdfDictionary filters || document.Resolve(filters.Get(name)) is not PdfDictionary filter)
        {
            return null;
        }

        keyLength = filter.Get("Length") is PdfNumber n ? KeyBytes(n.AsLong) : 0;
        switch (filter.GetName("CFM") ?? "None")
        {
            case "None":
                return CryptMethod.None;
            case "V2":
                return CryptMethod.Rc4;
            case "AESV2":
                keyLength = 16;
                return CryptMethod.Aes;
            case "AESV3":
                keyLength = 32;
                return CryptMethod.Aes;
            default:
                return null;
        }
    }

    /// <summary>/Length is in bits, though some writers put bytes in a crypt filter.</summary>
    private static int KeyBytes(long length) => (int)(length <= 32 ? length : length / 8);

    private static long Number(PdfDictionary dictionary, string key, long fallback) => dictionary.Get(key) is PdfNumber n ? n.AsLong : fallback;

    private static int PadLength(ReadOnlySpan<byte> plain)
    {
        if (plain.Length == 0)
        {
            return 0;
        }

        var pad = plain[^1];
        if (pad is 0 or > 16 || pad > plain.Length)
        {
            return 0;
        }

        foreach (var b in plain[^pad..])
        {
            if (b != pad)
            {
                return 0;
            }
        }

        return pad;
    }

    internal sealed class Rc4
    {
        private readonly byte[] _state = new byte[256];
        private int _i;
        private int _j;

        public Rc4(ReadOnlySpan<byte> key)
        {
            for (var i = 0; i < 256; i++)
            {
                _state[i] = (byte)i;
            }

            for (int i = 0, j = 0; i < 256; i++)
            {
                j = (j + _state[i] + key[i % key.Length]) & 0xFF;
                (_state[i], _state[j]) = (_state[j], _state[i]);
            }
        }

        public void Apply(Span<byte> data)
        {
            for (var n = 0; n < data.Length; n++)
            {
                _i = (_i + 1) & 0xFF;
                _j = (_j + _state[_i]) & 0xFF;
                (_state[_i], _state[_j]) = (_state[_j], _state[_i]);
                data[n] ^= _state[(_state[_i] + _state[_j]) & 0xFF];
            }
        }
    }

    private sealed class Rc4Stream(Stream inner, Rc4 cipher) : Vigie.Dicom.IO.ForwardOnlyStream
    {
        public override int Read(Span<byte> buffer)
        {
            var read = inner.Read(buffer);
            cipher.Apply(buffer[..read]);
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

    /// <summary>
    /// AES-CBC with the IV in the first 16 bytes, decrypted a chunk at a time. The last block is held back until the
    /// end, where its padding is removed if it is valid (writers that pad badly are read, not refused).
    /// </summary>
    private sealed class AesCbcStream(Stream inner, byte[] key) : Vigie.Dicom.IO.ForwardOnlyStream
    {
        private const int Chunk = 16 * 1024;

        private readonly Aes _aes = CreateAes(key);
        private readonly byte[] _iv = new byte[16];
        private readonly byte[] _cipher = new byte[Chunk + 16];
        private readonly byte[] _plain = new byte[Chunk + 32];
        private int _cipherLength;
        private int _outPosition;
        private int _outEnd;
        private int _heldAt = -1;
        private bool _started;
        private bool _ended;

        public override int Read(Span<byte> buffer)
        {
            while (_outPosition >= _outEnd)
            {
                if (_ended || !Fill())
                {
                    return 0;
                }
            }

            var count = Math.Min(buffer.Length, _outEnd - _outPosition);
            _plain.AsSpan(_outPosition, count).CopyTo(buffer);
            _outPosition += count;
            return count;
        }

        private bool Fill()
        {
            if (!_started)
            {
                _started = true;
                if (inner.ReadAtLeast(_iv, 16, throwOnEndOfStream: false) < 16)
                {
                    _ended = true;
                    return false;
                }
            }

            if (_heldAt > 0)
            {
                _plain.AsSpan(_heldAt, 16).CopyTo(_plain);
                _heldAt = 0;
            }

            var read = inner.ReadAtLeast(_cipher.AsSpan(_cipherLength, Chunk), 16, throwOnEndOfStream: false);
            _cipherLength += read;
            var full = _cipherLength - _cipherLength % 16;
            if (full == 0 || read == 0 && _cipherLength < 16)
            {
                _ended = true;
                if (_heldAt == 0)
                {
                    _outPosition = 0;
                    _outEnd = 16 - PadLength(_plain.AsSpan(0, 16));
                }

                return _heldAt == 0;
            }

            _aes.DecryptCbc(_cipher.AsSpan(0, full), _iv, _plain.AsSpan(16, full), PaddingMode.None);
            _cipher.AsSpan(full - 16, 16).CopyTo(_iv);
            _cipher.AsSpan(full, _cipherLength - full).CopyTo(_cipher);
            _cipherLength -= full;
            _outPosition = _heldAt == 0 ? 0 : 16;
            _outEnd = full;
            _heldAt = full;
            return true;
        }

        private static Aes CreateAes(byte[] key)
        {
            var aes = Aes.Create();
            aes.Key = key;
            return aes;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _aes.Dispose();
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
