using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Vigie.Dicom.Network;

/// <summary>
/// The TLS server certificate, read again when its files change: a hospital's PKI renews certificates every year or
/// so, and the renewed one is then used from the next handshake, without a restart that would cut the modalities off.
/// A renewed file that cannot be used (a key that does not match yet, a half-copied file) leaves the current one in
/// service and is reported by <see cref="ReloadError"/> until a good one arrives.
/// </summary>
public sealed class ServerCertificateSource
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(2);

    private readonly DicomTlsOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private Loaded _current;
    private DateTime _filesWritten;
    private long _nextCheck;

    public ServerCertificateSource(DicomTlsOptions options, TimeProvider? time = null)
    {
        _options = options;
        _time = time ?? TimeProvider.System;
        _filesWritten = FilesWritten();
        _current = Load();
        _nextCheck = NextCheck();
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
        // The authorities go in the CertificateRequest, so that a client holding several certificates (one per
        // hospital, a vendor's) offers the one Vigie trusts; without them, the client chose blind or sent none.
        var trust = _options.ClientCaPath is { } authorities
            ? SslCertificateTrust.CreateForX509Collection(DicomTls.LoadAuthorities(authorities), sendTrustInHandshake: true)
            : null;
        return new Loaded(certificate, SslStreamCertificateContext.Create(certificate, intermediates, offline: true, trust));
    }

    private Loaded Refresh()
    {
        if (_time.GetTimestamp() < Volatile.Read(ref _nextCheck))
        {
            return Volatile.Read(ref _current);
        }

        lock (_lock)
        {
            Volatile.Write(ref _nextCheck, NextCheck());
            var written = FilesWritten();
            if (written != _filesWritten)
            {
                // A failed load is tried again when the files change once more (the key copied after the certificate, say).
                _filesWritten = written;
                try
                {
                    // The previous certificate is not disposed: a handshake in flight may still hold it.
                    Volatile.Write(ref _current, Load());
                    ReloadError = null;
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
                {
                    ReloadError = e.Message;
                }
            }

            return _current;
        }
    }

    /// <summary>Why the last change of the files could not be used, while the previous certificate stays in service.</summary>
    public string? ReloadError { get; private set; }

    private long NextCheck() => _time.GetTimestamp() + (long)(CheckEvery.TotalSeconds * _time.TimestampFrequency);

    private DateTime FilesWritten()
    {
        var written = File.GetLastWriteTimeUtc(_options.CertificatePath!);
        if (_options.KeyPath is { } key && File.GetLastWriteTimeUtc(key) is var keyWritten && keyWritten > written)
        {
            written = keyWritten;
        }

        return written;
    }

    private sealed record Loaded(X509Certificate2 Certificate, SslStreamCertificateContext Context);
}
