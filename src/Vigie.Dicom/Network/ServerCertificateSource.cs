using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Vigie.Dicom.Network;

/// <summary>
/// The TLS server certificate, read again when its files change: a hospital's PKI renews certificates every year or
/// so, and the renewed one is then used from the next handshake, without a restart that would cut the modalities off.
/// A renewed file that cannot be used (a key that does not match yet, a half-copied file, a certificate out of its
/// validity) leaves the current one in service and is reported by <see cref="ReloadError"/> until a good one arrives.
/// </summary>
public sealed class ServerCertificateSource
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(2);

    /// <summary>A renewal that could not be used is tried again this often even if its files look unchanged.</summary>
    private static readonly TimeSpan RetryFailedEvery = TimeSpan.FromSeconds(30);

    private readonly DicomTlsOptions _options;
    private readonly TimeProvider _time;
    private readonly SslCertificateTrust? _trust;
    private readonly Lock _lock = new();
    private Loaded _current;
    private FilesStamp _stamp;
    private long _nextCheck;
    private long _retryFailedAt = long.MaxValue;

    /// <param name="authorities">The client authorities, named in the CertificateRequest; read once by the caller, which checks clients against the same.</param>
    public ServerCertificateSource(DicomTlsOptions options, X509Certificate2Collection? authorities = null, TimeProvider? time = null)
    {
        _options = options;
        _time = time ?? TimeProvider.System;
        // The authorities go in the CertificateRequest, so that a client holding several certificates (one per
        // hospital, a vendor's) offers the one Vigie trusts; without them, the client chose blind or sent none.
        _trust = authorities is null ? null : SslCertificateTrust.CreateForX509Collection(authorities, sendTrustInHandshake: true);
        _stamp = Stamp();
        _current = Load();
        _nextCheck = NextCheck(CheckEvery);
    }

    /// <summary>The certificate to present now, reloaded first if its files changed since the last look.</summary>
    public X509Certificate2 Current => Refresh().Certificate;

    /// <summary>
    /// The certificate with the intermediate authorities its file holds, for the handshake: a certificate issued by an
    /// intermediate was sent alone, and clients that trust only the root refused it.
    /// </summary>
    public SslStreamCertificateContext CurrentContext => Refresh().Context;

    private Loaded Load()
    {
        var certificate = DicomTls.LoadCertificate(_options.CertificatePath!, _options.KeyPath, _options.CertificatePassword);
        var intermediates = DicomTls.LoadIntermediates(_options.CertificatePath!, _options.KeyPath, _options.CertificatePassword, certificate);
        return new Loaded(certificate, SslStreamCertificateContext.Create(certificate, intermediates, offline: true, _trust));
    }

    /// <summary>
    /// A renewal is taken only while valid: an expired pair restored from an old backup replaced the one in service
    /// until 2026-12-06, and every modality's handshake then failed.
    /// </summary>
    private Loaded LoadRenewal()
    {
        var renewed = Load();
        var now = _time.GetUtcNow().UtcDateTime;
        if (renewed.Certificate.NotAfter.ToUniversalTime() < now)
        {
            throw new InvalidOperationException($"the certificate in {_options.CertificatePath} expired on {renewed.Certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC");
        }

        // In date but unusable was taken too (second review): one not for servers, or from another authority, which
        // the modalities that trust the current one refuse. Another authority is a migration, made at a restart.
        if (DicomTls.UnusableServerCertificate(renewed.Certificate, now) is { } problem)
        {
            throw new InvalidOperationException($"the certificate in {_options.CertificatePath} {problem}");
        }

        var current = Volatile.Read(ref _current).Certificate;
        if (!renewed.Certificate.IssuerName.RawData.AsSpan().SequenceEqual(current.IssuerName.RawData))
        {
            throw new InvalidOperationException($"the certificate in {_options.CertificatePath} is issued by {renewed.Certificate.Issuer}, not {current.Issuer} "
                + "as the one in service: a certificate from another authority is taken at the next restart of vigie serve");
        }

        return renewed;
    }

    private Loaded Refresh()
    {
        if (_time.GetTimestamp() < Volatile.Read(ref _nextCheck))
        {
            return Volatile.Read(ref _current);
        }

        lock (_lock)
        {
            var now = _time.GetTimestamp();
            Volatile.Write(ref _nextCheck, NextCheck(CheckEvery));
            var stamp = Stamp();
            // Both files' times and sizes: a pair copied with its times kept (cp -p, rsync -t) moved neither file's
            // time past the newest one seen, and was never read (before 2026-12-06). A failed renewal is also tried
            // again now and then, whatever its files look like.
            if (stamp != _stamp || now >= _retryFailedAt)
            {
                _stamp = stamp;
                try
                {
                    // The previous certificate is not disposed: a handshake in flight may still hold it.
                    Volatile.Write(ref _current, LoadRenewal());
                    ReloadError = null;
                    _retryFailedAt = long.MaxValue;
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
                {
                    ReloadError = e.Message;
                    _retryFailedAt = NextCheck(RetryFailedEvery);
                }
            }

            return _current;
        }
    }

    /// <summary>Why the last change of the files could not be used, while the previous certificate stays in service.</summary>
    public string? ReloadError { get; private set; }

    private long NextCheck(TimeSpan after) => _time.GetTimestamp() + (long)(after.TotalSeconds * _time.TimestampFrequency);

    private FilesStamp Stamp()
    {
        var certificate = new FileInfo(_options.CertificatePath!);
        var key = _options.KeyPath is { } keyPath ? new FileInfo(keyPath) : null;
        return new FilesStamp(certificate.Exists ? certificate.LastWriteTimeUtc : default, certificate.Exists ? certificate.Length : -1,
            key is { Exists: true } ? key.LastWriteTimeUtc : default, key is { Exists: true } ? key.Length : -1);
    }

    private readonly record struct FilesStamp(DateTime CertificateWritten, long CertificateLength, DateTime KeyWritten, long KeyLength);

    private sealed record Loaded(X509Certificate2 Certificate, SslStreamCertificateContext Context);
}
