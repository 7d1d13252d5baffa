using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Vigie.Dicom.Network;

/// <summary>
/// The DICOM listener: accepts TCP (and TLS) connections, enforces the association limits, and runs each association
/// on its own thread (<see cref="AssociationThread"/>), so a misbehaving peer can only ever end its own association.
/// </summary>
public sealed class DicomServer : IAsyncDisposable
{
    private readonly DicomServerOptions _options;
    private readonly IDicomServiceProvider _provider;
    private readonly ServerCertificateSource? _certificate;
    private readonly Func<X509Certificate?, X509Chain?, SslPolicyErrors, string?>? _clientRefusal;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _running = new();
    private readonly ConcurrentDictionary<string, int> _perAE = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IPAddress, int> _pendingByAddress = new();

    // Connections that have not sent an association request yet, with the tick they were accepted at.
    private readonly ConcurrentDictionary<Socket, long> _unassociated = new();
    private long _lastEvictionLog;
    private long _lastEvictionTicks;
    private long _evictions;
    private readonly List<(TcpListener Listener, bool Tls)> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private int _active;
    private int _associations;
    private long _lastPendingRefusalLog;

    public DicomServer(DicomServerOptions options, IDicomServiceProvider provider)
    {
        _options = options;
        _provider = provider;
        if (options.TlsPort > 0)
        {
            if (options.Tls.CertificatePath is null)
            {
                throw new InvalidOperationException("Dicom:Server:TlsPort is set but Dicom:Server:Tls:CertificatePath is not.");
            }

            // Read once, at start, for both the check and the names the CertificateRequest gives: read apart, a bundle
            // changed on disk was named from the next certificate renewal yet not trusted (before 2026-12-06).
            var authorities = options.Tls.ClientCaPath is { } bundle ? DicomTls.LoadAuthorities(bundle) : null;
            _certificate = new ServerCertificateSource(options.Tls, authorities);
            if (authorities is not null)
            {
                var require = options.Tls.RequireClientCertificate;
                _clientRefusal = (certificate, chain, errors) => DicomTls.Refusal(authorities, require, TlsPeer.Client, certificate, chain, errors);
            }
            else if (options.Tls.RequireClientCertificate)
            {
                throw new InvalidOperationException("Dicom:Server:Tls:RequireClientCertificate needs Dicom:Server:Tls:ClientCaPath.");
            }
        }
    }

    /// <summary>The plain port actually bound (useful with port 0 in tests).</summary>
    public int Port { get; private set; }

    public int TlsPort { get; private set; }

    /// <summary>Associations under way (an A-ASSOCIATE-RQ accepted for counting).</summary>
    public int ActiveAssociations => Volatile.Read(ref _associations);

    /// <summary>Open connections, associated or not yet.</summary>
    public int OpenConnections => Volatile.Read(ref _active);

    /// <summary>The TLS server certificate in service (renewed files are picked up at the next handshake), when TLS is on.</summary>
    public ServerCertificateSource? ServerCertificate => _certificate;

    public DicomServerOptions Options => _options;

    /// <summary>Binds the ports and accepts on them.</summary>
    public void Start()
    {
        Bind();
        Accept();
    }

    /// <summary>
    /// Binds the ports without accepting: a host binds every listener (DICOM and HTTP) before any serves, so a start
    /// that fails on a port in use has served nobody (before 2026-12-07 DICOM accepted while HTTP failed to bind).
    /// Connections arriving meanwhile wait in the backlog, and are closed unanswered if the start fails.
    /// </summary>
    public void Bind()
    {
        if (!IPAddress.TryParse(_options.BindAddress, out var address))
        {
            throw new InvalidOperationException($"Dicom:Server:BindAddress '{_options.BindAddress}' is not an IP address (0.0.0.0 for every interface).");
        }

        if (_options.Port >= 0 && (_options.Port > 0 || _options.TlsPort == 0))
        {
            Port = Listen(address, _options.Port, tls: false);
        }

        if (_certificate is not null)
        {
            TlsPort = Listen(address, _options.TlsPort, tls: true);
        }
    }

    /// <summary>Stops accepting, aborts running associations after <paramref name="grace"/>, and waits for them.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        foreach (var (listener, _) in _listeners)
        {
            listener.Stop();
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        var all = Task.WhenAll(_running.Keys);
        if (await Task.WhenAny(all, Task.Delay(grace)).ConfigureAwait(false) != all)
        {
            await _stopping.CancelAsync().ConfigureAwait(false);
        }

        await all.ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        _stopping.Dispose();

    }

    private int Listen(IPAddress address, int port, bool tls)
    {
        var listener = new TcpListener(address, port);
        listener.Server.NoDelay = true;
        try
        {
            listener.Start(backlog: 128);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            // The socket error alone does not say which of the node's ports it was.
            throw new IOException($"cannot listen for DICOM{(tls ? " over TLS" : "")} on {address}:{port}: {e.Message}", e);
        }

        _listeners.Add((listener, tls));
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Accepts associations on the ports <see cref="Bind"/> opened.</summary>
    public void Accept()
    {
        if (_acceptLoops.Count > 0)
        {
            return;
        }

        foreach (var (listener, tls) in _listeners)
        {
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener, tls)));
        }
    }

    private async Task AcceptLoopAsync(TcpListener listener, bool tls)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (SocketException e) when (!_stopping.IsCancellationRequested && e.SocketErrorCode is not (SocketError.OperationAborted or SocketError.Interrupted))
            {
                // A peer gone before it was accepted costs nothing. Out of descriptors or buffers (EMFILE, ENFILE,
                // ENOBUFS), the connection waits in the backlog: keep listening, a little later, and say so. Returning
                // here left a node that answered nobody while the process, and its health, looked fine.
                if (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
                {
                    continue;
                }

                RecordAcceptFailure(e);
                try
                {
                    await Task.Delay(AcceptRetryDelay, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or SocketException or InvalidOperationException)
            {
                // InvalidOperationException: StopAsync stopped the listener before this loop reached Accept. OperationAborted:
                // it stopped the listener under a pending Accept (every clean stop logged "cannot accept... out of file descriptors").
                return;
            }

            Volatile.Write(ref _acceptFailure, null);

            // Past twice the association limit, connections are refused without reading a byte (connection floods),
            // unless one that has sent nothing for a while gives way.
            if (Volatile.Read(ref _active) >= 2 * _options.MaxAssociations && !EvictOldestUnassociated())
            {
                socket.Close(0);
                continue;
            }

            var address = (socket.RemoteEndPoint as IPEndPoint)?.Address;
            if (address is not null && _pendingByAddress.AddOrUpdate(address, 1, (_, n) => n + 1) > _options.MaxPendingConnectionsPerAddress)
            {
                LeavePending(address);
                socket.Close(0);
                LogPendingRefusal(address);
                continue;
            }

            socket.NoDelay = true;
            LimitUnacknowledgedSends(socket, _options.Association.ReadTimeout);
            Task task;
            try
            {
                task = AssociationThread.Run(owner => RunConnectionAsync(socket, tls, owner, address), "DICOM association");
            }
            catch (OutOfMemoryException)
            {
                // No thread could be started: refuse this connection, keep listening.
                LeavePending(address);
                socket.Close(0);
                continue;
            }

            _running.TryAdd(task, 0);
            _ = task.ContinueWith(t => _running.TryRemove(t, out _), TaskScheduler.Default);
        }
    }

    /// <summary>
    /// A requestor that stops reading while its answers already sit in the kernel's send buffer (a C-FIND's matches fit
    /// there whole) leaves Vigie no send to time out: it waited for the next message, and the idle timer cut the
    /// connection after 5 minutes, blaming the peer for not sending. TCP_USER_TIMEOUT (RFC 5482) has the kernel end a
    /// connection whose sent data stays unacknowledged (the window closed included) past the read timeout.
    /// </summary>
    internal static void LimitUnacknowledgedSends(Socket socket, TimeSpan readTimeout)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        const int IpProtoTcp = 6;
        const int TcpUserTimeout = 18;
        try
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, BitConverter.GetBytes((int)Math.Clamp(readTimeout.TotalMilliseconds, 1, int.MaxValue)));
        }
        catch (SocketException)
        {
            // An older kernel: the send timeouts still bound sends that are under way.
        }
    }

    /// <summary>A modality sends its association request within milliseconds of connecting; one silent this long is not about to.</summary>
    private const long EvictableAfterMs = 1000;

    /// <summary>
    /// At the connection limit, closes the connection that has waited longest without an association request, so the
    /// new one gets its place. Silent sockets from many addresses (each under the per-address limit) held every place
    /// for the 30 s of their timers, and every modality was reset meanwhile; an attacker only had to open them again.
    /// </summary>
    private bool EvictOldestUnassociated()
    {
        var now = Environment.TickCount64;
        Socket? oldest = null;
        var since = long.MaxValue;
        foreach (var (socket, accepted) in _unassociated)
        {
            if (accepted < since && now - accepted >= EvictableAfterMs)
            {
                (oldest, since) = (socket, accepted);
            }
        }

        if (oldest is null || !_unassociated.TryRemove(oldest, out _))
        {
            return false;
        }

        var address = (oldest.RemoteEndPoint as IPEndPoint)?.Address;
        try
        {
            // Ends its reads (a blocked receive or a TLS handshake) at once; its own task closes it and gives its place back.
            oldest.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        Interlocked.Increment(ref _evictions);
        Interlocked.Exchange(ref _lastEvictionTicks, now);
        if (address is not null && DueOnceAMinute(ref _lastEvictionLog))
        {
            _provider.ConnectionRefused(address, $"closed after {(now - since) / 1000} s without an association request, to make room at the connection limit "
                + $"({2 * _options.MaxAssociations}): a connection flood?");
        }

        return true;
    }

    /// <summary>Connections closed at the connection limit for sending nothing, in all and within the last two minutes.</summary>
    public (long Total, bool Recent) Evictions
    {
        get
        {
            var total = Interlocked.Read(ref _evictions);
            return (total, total > 0 && Environment.TickCount64 - Interlocked.Read(ref _lastEvictionTicks) < 120_000);
        }
    }

    private void LeavePending(IPAddress? address)
    {
        if (address is not null && _pendingByAddress.AddOrUpdate(address, 0, (_, n) => Math.Max(0, n - 1)) == 0)
        {
            _pendingByAddress.TryRemove(new KeyValuePair<IPAddress, int>(address, 0));
        }
    }

    /// <summary>Refused without a byte read, so not audited one by one; said once a minute, by address.</summary>
    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(250);

    private AcceptFailure? _acceptFailure;
    private long _lastAcceptFailureLog;

    /// <summary>Set while accepting connections fails (out of file descriptors, say); cleared by the next accepted connection.</summary>
    public AcceptFailure? AcceptFailing => Volatile.Read(ref _acceptFailure);

    private void RecordAcceptFailure(SocketException e)
    {
        var failing = Volatile.Read(ref _acceptFailure);
        Volatile.Write(ref _acceptFailure, new AcceptFailure(failing?.Since ?? DateTimeOffset.UtcNow, e.SocketErrorCode, e.Message));
        if (DueOnceAMinute(ref _lastAcceptFailureLog))
        {
            _provider.AcceptFailed(e.SocketErrorCode, e.Message);
        }
    }

    /// <summary>True for one caller a minute at most: the provider's logs about a flood stay a line a minute.</summary>
    private static bool DueOnceAMinute(ref long last)
    {
        var now = Environment.TickCount64;
        var seen = Interlocked.Read(ref last);
        return now - seen >= 60_000 && Interlocked.CompareExchange(ref last, now, seen) == seen;
    }

    private void LogPendingRefusal(IPAddress address)
    {
        if (DueOnceAMinute(ref _lastPendingRefusalLog))
        {
            _provider.ConnectionRefused(address, $"more than {_options.MaxPendingConnectionsPerAddress} connections from this address without an association request");
        }
    }

    private async Task RunConnectionAsync(Socket socket, bool tls, AssociationThread owner, IPAddress? address)
    {
        var pending = 1;
        _unassociated[socket] = Environment.TickCount64;
        bool CountAssociation(string callingAE)
        {
            _unassociated.TryRemove(socket, out _);
            if (Interlocked.Exchange(ref pending, 0) == 1)
            {
                LeavePending(address);
            }

            return TryCountAE(callingAE);
        }

        Interlocked.Increment(ref _active);
        DicomNetworkTelemetry.ActiveAssociations.Add(1);
        var remote = socket.RemoteEndPoint as IPEndPoint;
        var connection = new DicomConnectionInfo(remote, socket.LocalEndPoint as IPEndPoint, tls, null);
        ServerAssociation? runner = null;
        DicomAssociation? association = null;
        var end = AssociationEnd.ConnectionLost;
        var detail = "connection closed";
        string? refusal = null;
        try
        {
            Stream stream = new NetworkStream(socket, ownsSocket: true);
            if (tls)
            {
                using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                handshake.CancelAfter(_options.Association.ArtimTimeout);
                if (await FirstByteAsync(socket, handshake.Token).ConfigureAwait(false) is { } silent)
                {
                    // Closed or silent before a ClientHello (a port scan, a load balancer's check): a connection that
                    // sent nothing, audited once a minute per address like the plain port's; each was a handshake
                    // failure of its own until 2026-12-07.
                    connection = connection with { SentNothing = true };
                    throw new IOException(silent);
                }

                // Per connection, so that a refusal says why (no certificate, untrusted, expired, not for clients).
                var validation = _clientRefusal is null ? null : new RemoteCertificateValidationCallback((_, certificate, chain, errors) =>
                    (refusal = _clientRefusal(certificate, chain, errors)) is null);
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false, validation);
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = _certificate!.CurrentContext,
                    // Asked for whenever there is an authority to check it against, required or not: a certificate
                    // never asked for is never checked (before 2026-12-06 an optional one was not asked for, so any
                    // certificate, self-signed too, went on as anonymous). The validation lets "none" through when optional.
                    ClientCertificateRequired = _clientRefusal is not null,
                    EnabledSslProtocols = DicomTls.Protocols,
                    CipherSuitesPolicy = DicomTls.CipherSuites(),
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                }, handshake.Token).ConfigureAwait(false);
                connection = connection with { ClientCertificateSubject = ssl.RemoteCertificate?.Subject };
                stream = ssl;
            }

            association = new DicomAssociation(stream, isRequestor: false, _options.Association, remote, socket);
            association.UseBlockingIo(owner, socket);
            // A blocked read does not see the stopping token: ending the receive side wakes it, and the abort can still be sent.
            using var wake = _stopping.Token.Register(static s => ShutdownReceive((Socket)s!), socket);
            runner = new ServerAssociation(association, _provider, _options, connection, CountAssociation, _stopping.Token);
            (end, detail) = await runner.RunAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException or SocketException)
        {
            end = AssociationEnd.ConnectionLost;
            detail = !tls || connection.SentNothing ? e.Message
                : association is null ? "TLS handshake failed: " + (refusal ?? HandshakeFailure(e))
                : e.Message;
        }
        finally
        {
            // However the association ended, its place under the per-AE limit is given back.
            if (runner?.CountedAE is { } countedAE)
            {
                _perAE.AddOrUpdate(countedAE, 0, (_, n) => Math.Max(0, n - 1));
                Interlocked.Decrement(ref _associations);
            }

            _unassociated.TryRemove(socket, out _);
            if (Interlocked.Exchange(ref pending, 0) == 1)
            {
                LeavePending(address);
            }

            if (association is not null)
            {
                await association.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }

            Interlocked.Decrement(ref _active);
            DicomNetworkTelemetry.ActiveAssociations.Add(-1);
            DicomNetworkTelemetry.Associations.Add(1, new KeyValuePair<string, object?>("outcome", end.ToString()));
            try
            {
                await _provider.AssociationEndedAsync(association, connection, end, detail).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The audit hook must never take the listener down; its own failures are its to report.
            }
        }
    }

    /// <summary>Null once the peer has sent a byte (kept for the handshake); otherwise how it ended without one.</summary>
    private async Task<string?> FirstByteAsync(Socket socket, CancellationToken cancellationToken)
    {
        var first = new byte[1];
        try
        {
            return await socket.ReceiveAsync(first, SocketFlags.Peek, cancellationToken).ConfigureAwait(false) > 0
                ? null
                : "closed before a TLS ClientHello";
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            return $"no TLS ClientHello within the ARTIM timeout ({_options.Association.ArtimTimeout})";
        }
        catch (SocketException e)
        {
            return $"{e.SocketErrorCode} before a TLS ClientHello";
        }
    }

    /// <summary>
    /// Why a handshake failed, from the TLS library's own errors (the outer message only said "Authentication failed,
    /// see inner exception" before 2026-12-07): a version or cipher the node does not take, the peer's alert.
    /// </summary>
    private string HandshakeFailure(Exception e)
    {
        if (e is OperationCanceledException)
        {
            return _stopping.IsCancellationRequested ? "the node is stopping" : $"not finished within the ARTIM timeout ({_options.Association.ArtimTimeout})";
        }

        var inner = e;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        var cause = inner.Message;
        string? reason = null;
        if (cause.Contains("unsupported protocol", StringComparison.OrdinalIgnoreCase) || cause.Contains("wrong version number", StringComparison.OrdinalIgnoreCase)
            || cause.Contains("no protocols available", StringComparison.OrdinalIgnoreCase) || cause.Contains("version too low", StringComparison.OrdinalIgnoreCase))
        {
            reason = "the client offers no TLS version this node takes (TLS 1.2 or 1.3)";
        }
        else if (cause.Contains("no shared cipher", StringComparison.OrdinalIgnoreCase) || cause.Contains("no suitable", StringComparison.OrdinalIgnoreCase))
        {
            reason = "no cipher suite in common (this node takes ECDHE with AEAD suites only, BCP 195)";
        }
        else if (cause.Contains("alert", StringComparison.OrdinalIgnoreCase))
        {
            reason = "the client ended the handshake with an alert (it may not trust this node's certificate)";
        }
        else if (cause.Contains("http request", StringComparison.OrdinalIgnoreCase) || cause.Contains("packet length too long", StringComparison.OrdinalIgnoreCase))
        {
            reason = "what the client sent is not TLS (plain DICOM on the TLS port?)";
        }

        return reason is null ? DicomTls.Printable(cause) : $"{reason} [{DicomTls.Printable(cause)}]";
    }

    private static void ShutdownReceive(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }
    }

    /// <summary>Counts an association against the limits; false when one is reached.</summary>
    private bool TryCountAE(string callingAE)
    {
        // Associations, not connections: sockets that never asked for one do not take a modality's place.
        if (Interlocked.Increment(ref _associations) > _options.MaxAssociations)
        {
            Interlocked.Decrement(ref _associations);
            return false;
        }

        var count = _perAE.AddOrUpdate(callingAE, 1, (_, n) => n + 1);
        if (count > _options.MaxAssociationsPerCallingAE)
        {
            _perAE.AddOrUpdate(callingAE, 0, (_, n) => Math.Max(0, n - 1));
            Interlocked.Decrement(ref _associations);
            return false;
        }

        return true;
    }
}

/// <summary>Accepting connections fails since <paramref name="Since"/>: the last error.</summary>
public sealed record AcceptFailure(DateTimeOffset Since, SocketError Error, string Message);
