using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;

namespace Vigie.Bench.Archive;

/// <summary>The primitives under one 64 KiB segment: the floor for the spool writer and the reader (MB/s = 65 536 / mean).</summary>
[ShortRunJob]
[MinColumn]
public class ArchiveCryptoBenchmarks
{
    private readonly byte[] _plain = RandomNumberGenerator.GetBytes(64 * 1024);
    private readonly byte[] _cipher = new byte[64 * 1024];
    private readonly byte[] _tag = new byte[16];
    private readonly byte[] _nonce = new byte[12];
    private readonly byte[] _aad = new byte[32];
    private readonly byte[] _hash = new byte[32];
    private AesGcm _gcm = null!;

    [GlobalSetup]
    public void Setup() => _gcm = new AesGcm(RandomNumberGenerator.GetBytes(32), 16);

    [GlobalCleanup]
    public void Cleanup() => _gcm.Dispose();

    [Benchmark]
    public void AesGcmSeal64KiB() => _gcm.Encrypt(_nonce, _plain, _cipher, _tag, _aad);

    [Benchmark]
    public int Sha256Of64KiB() => SHA256.HashData(_plain, _hash);
}
