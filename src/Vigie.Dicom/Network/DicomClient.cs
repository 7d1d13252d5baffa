using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Network;

/// <summary>Where and how to open an association as requestor.</summary>
public sealed record DicomClientOptions
{
    public required string Host { get; init; }

    public required int Port { get; init; }

    public string CallingAE { get; init; } = "VIGIE";

    public required string CalledAE { get; init; }

    /// <summary>How long the TCP connection and the TLS handshake may take together before <see cref="DicomTimeoutException"/>.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    public DicomAssociationOptions Association { get; init; } = new();

    /// <summary>Open the association over TLS.</summary>
    public bool UseTls { get; init; }

    /// <summary>PEM bundle of authorities trusted for the server certificate; null uses the system store.</summary>
    public string? ServerCaPath { get; init; }

    /// <summary>Name expected in the server certificate; defaults to <see cref="Host"/>.</summary>
    public string? ServerName { get; init; }

    public string? ClientCertificatePath { get; init; }

    public string? ClientKeyPath { get; init; }

    public UserIdentity? UserIdentity { get; init; }

    /// <summary>Asynchronous operations window to propose (invoked, performed); null for one operation at a time.</summary>
    public (ushort Invoked, ushort Performed)? AsyncOperations { get; init; }
}

/// <summary>The association was refused.</summary>
public sealed class DicomAssociationRejectedException(RejectResult result, RejectSource source, byte reason)
    : Exception($"association rejected, {(result == RejectResult.Permanent ? "permanent" : "transient")}: {RejectReasons.Describe(source, reason)}")
{
    public RejectResult Result { get; } = result;

    public RejectSource RejectSource { get; } = source;

    public byte Reason { get; } = reason;
}

/// <summary>A requestor (SCU) association: C-ECHO, C-STORE, C-FIND, then release.</summary>
public sealed class DicomClient : IAsyncDisposable
{
    private int _messageId;

    private DicomClient(DicomAssociation association)
    {
        Association = association;
    }

    public DicomAssociation Association { get; }

    /// <summary>Presentation contexts for each abstract syntax with the same transfer syntaxes, numbered 1, 3, 5...</summary>
    public static IReadOnlyList<PresentationContext> Propose(IEnumerable<string> abstractSyntaxes, params string[] transferSyntaxes)
    {
        var result = new List<PresentationContext>();
        byte id = 1;
        foreach (var syntax in abstractSyntaxes.Distinct(StringComparer.Ordinal))
        {
            if (result.Count == 128)
            {
                throw new ArgumentException("At most 128 presentation contexts can be proposed.", nameof(abstractSyntaxes));
            }

            result.Add(new PresentationContext(id, syntax, transferSyntaxes));
            id += 2;
        }

        return result;
    }

    public static async Task<DicomClient> ConnectAsync(DicomClientOptions options, IEnumerable<PresentationContext> contexts, CancellationToken cancellationToken,
        IEnumerable<RoleSelection>? roles = null)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream stream;
        var connected = false;
        string? refusal = null;
        EndPoint? remote = null;
        SslStream? tls = null;
        X509Certificate2? clientCertificate = null;
        var certificateRequested = false;
        // One deadline for the connection and the TLS handshake: a peer behind a firewall that drops the attempt, or
        // that accepts and never answers the handshake, must fail the call, not hold the forwarder for ever.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(options.Host, options.Port, deadline.Token).ConfigureAwait(false);
            connected = true;
            // Read now: a node that refuses Vigie's client certificate resets the connection right after the TLS 1.3
            // handshake, and the address read later failed with "Transport endpoint is not connected" (before 2026-12-07).
            remote = socket.RemoteEndPoint;
            stream = new NetworkStream(socket, ownsSocket: true);
            if (options.UseTls)
            {
                var anchors = options.ServerCaPath is null ? null : DicomTls.LoadAuthorities(options.ServerCaPath);
                var ssl = tls = new SslStream(stream, false, anchors is null ? null : (_, certificate, chain, errors) =>
                    (refusal = DicomTls.Refusal(anchors, requireCertificate: true, TlsPeer.Server, certificate, chain, errors)) is null);
                if (options.ClientCertificatePath is not null)
                {
                    clientCertificate = DicomTls.LoadCertificate(options.ClientCertificatePath, options.ClientKeyPath, null);
                }

                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = options.ServerName ?? options.Host,
                    // On Linux this is called once before the handshake, and again (with the server's certificate) only when
                    // the server sent a CertificateRequest and no certificate was chosen before: how Vigie knows the node
                    // asked for one it does not have.
                    LocalCertificateSelectionCallback = (_, _, _, serverCertificate, _) =>
                    {
                        certificateRequested |= serverCertificate is not null;
                        return clientCertificate!;
                    },
                    EnabledSslProtocols = DicomTls.Protocols,
                    CipherSuitesPolicy = DicomTls.CipherSuites(),
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                }, deadline.Token).ConfigureAwait(false);
                // A certificate was sent only if the server asked for one.
                certificateRequested |= ssl.LocalCertificate is not null;
                stream = ssl;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new DicomTimeoutException(connected
                ? $"{options.Host}:{options.Port} did not finish the TLS handshake within {options.ConnectTimeout}"
                : $"{options.Host}:{options.Port} did not accept the connection within {options.ConnectTimeout}");
        }
        catch (AuthenticationException e) when (refusal is not null)
        {
            // Why the node's certificate was refused (untrusted, expired, not for servers, another name), not only that it was.
            socket.Dispose();
            throw new AuthenticationException($"TLS handshake with {options.Host}:{options.Port} failed: {refusal}", e);
        }
        catch (AuthenticationException e) when (ClientCertificateRefusal(options, DicomTls.ReceivedAlert(e), certificateRequested, clientCertificate) is { } refused)
        {
            // TLS 1.2: the server refuses the client's certificate within the handshake.
            socket.Dispose();
            throw new DicomClientCertificateRefusedException(refused, e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var association = new DicomAssociation(stream, isRequestor: true, options.Association, remote, socket);
        try
        {
            var request = new AssociationParameters
            {
                CalledAE = options.CalledAE,
                CallingAE = options.CallingAE,
                MaxPduLength = options.Association.MaxPduLength,
                UserIdentity = options.UserIdentity,
                AsyncOperations = options.AsyncOperations,
            };
            request.PresentationContexts.AddRange(contexts);
            if (roles is not null)
            {
                request.RoleSelections.AddRange(roles);
            }

            await association.WritePduAsync(PduCodec.EncodeAssociateRequest(request), cancellationToken).ConfigureAwait(false);
            var type = await association.ReadPduAsync(options.Association.ArtimTimeout, cancellationToken).ConfigureAwait(false);
            switch (type)
            {
                case PduType.AssociateAccept:
                {
                    var accepted = PduCodec.DecodeAssociateAccept(association.PduBody, request);
                    accepted.CallingAE = request.CallingAE;
                    accepted.CalledAE = request.CalledAE;
                    association.Parameters = accepted;
                    association.PeerMaxPduLength = accepted.MaxPduLength;
                    return new DicomClient(association);
                }

                case PduType.AssociateReject:
                {
                    var (result, source, reason) = PduCodec.DecodeReject(association.PduBody);
                    association.MarkClosed();
                    throw new DicomAssociationRejectedException(result, source, reason);
                }

                case PduType.Abort:
                    association.MarkClosed();
                    throw new DicomAssociationAbortedException("the peer aborted the association request");
                default:
                    throw new PduException(AbortReason.UnexpectedPdu, $"{type} PDU instead of A-ASSOCIATE-AC/RJ");
            }
        }
        catch (PduException e)
        {
            await association.AbortAsync(AbortSource.ServiceProvider, e.Reason).ConfigureAwait(false);
            await association.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        catch (Exception e) when (tls is not null && !association.ByteReceived && e is IOException or SocketException or DicomAssociationAbortedException)
        {
            // TLS 1.3: the client's side of the handshake ends before the server checks the client certificate, so its
            // refusal is an alert met by the first write or read, which reported a network fault until 2026-12-07.
            var alert = DicomTls.ReceivedAlert(e) ?? await AlertAfterFailedWriteAsync(tls, cancellationToken).ConfigureAwait(false);
            await association.DisposeAsync().ConfigureAwait(false);
            if (ClientCertificateRefusal(options, alert, certificateRequested, clientCertificate, afterHandshake: true) is { } refused)
            {
                throw new DicomClientCertificateRefusedException(refused, e);
            }

            throw;
        }
        catch
        {
            await association.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// The alert behind a write the server reset: it is still in the receive buffer, and a read decrypts it (bounded, as
    /// the peer may have sent nothing at all).
    /// </summary>
    private static async Task<(byte Code, string Name)?> AlertAfterFailedWriteAsync(SslStream tls, CancellationToken cancellationToken)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            _ = await tls.ReadAsync(new byte[16], bounded.Token).ConfigureAwait(false);
            return null;
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            return DicomTls.ReceivedAlert(e);
        }
    }

    /// <summary>
    /// Why the node refused Vigie's client certificate, in the operator's words, or null when the failure says nothing
    /// of it. An alert about a certificate (certificate_required, bad_certificate, unknown_ca, certificate_expired,
    /// access_denied...) is enough; handshake_failure and decrypt_error, or no alert at all (an alert .NET did not pass
    /// on) right after the handshake, only when the node had asked for a client certificate.
    /// </summary>
    private static string? ClientCertificateRefusal(DicomClientOptions options, (byte Code, string Name)? alert, bool requested, X509Certificate2? certificate,
        bool afterHandshake = false)
    {
        if (alert is { Code: 40 or 51 } ? !requested : alert is null && !(afterHandshake && requested))
        {
            return null;
        }

        var how = alert is { } a ? $"TLS alert {a.Code} {a.Name}" : "it closed the connection right after the TLS handshake in which it asked for one";
        var node = $"{options.CalledAE} ({options.Host}:{options.Port})";
        if (certificate is null)
        {
            return $"{node} refused Vigie's TLS client certificate ({how}): none is configured for it; set its ClientCertificatePath and ClientKeyPath "
                + "(a certificate for clientAuth from an authority the node trusts)";
        }

        var about = $"'{DicomTls.Printable(certificate.Subject)}' issued by '{DicomTls.Printable(certificate.Issuer)}'";
        var why = alert?.Code switch
        {
            45 => "the node finds it expired",
            44 => "the node finds it revoked",
            43 => "the node does not take it for a client (its key usage or extended key usage)",
            42 or 46 or 48 or null => "not trusted by the node: have it trust that authority, or give Vigie a certificate from one it trusts",
            _ => "not accepted by the node",
        };
        return $"{node} refused Vigie's TLS client certificate {about} ({how}): {why}";
    }

    public async Task<DimseResult> EchoAsync(CancellationToken cancellationToken)
    {
        var context = Association.FindAcceptedContext(DicomUids.Verification)
            ?? throw new InvalidOperationException("Verification was not accepted.");
        return await RequestAsync(DimseMessage.EchoRequest(NextId(), context.Id), ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends one object whose data set (no meta group) is <paramref name="dataSet"/>, encoded in <paramref name="transferSyntaxUid"/>.</summary>
    public async Task<DimseResult> StoreAsync(string sopClassUid, string sopInstanceUid, string transferSyntaxUid, Stream dataSet,
        CancellationToken cancellationToken, string? moveOriginatorAE = null, ushort? moveOriginatorMessageId = null)
    {
        var context = Association.FindAcceptedContext(sopClassUid, transferSyntaxUid)
            ?? throw new InvalidOperationException($"No accepted presentation context for {sopClassUid} in {transferSyntaxUid}.");
        var request = DimseMessage.StoreRequest(NextId(), context.Id, sopClassUid, sopInstanceUid, DimsePriority.Medium, moveOriginatorAE, moveOriginatorMessageId);
        await Association.SendAsync(request, dataSet, cancellationToken).ConfigureAwait(false);
        var response = await ReceiveResponseAsync(request.MessageId, cancellationToken).ConfigureAwait(false);
        return new DimseResult(response.Status, response.ErrorComment)
        {
            AffectedSopClassUid = response.AffectedSopClassUid,
            AffectedSopInstanceUid = response.AffectedSopInstanceUid,
        };
    }

    /// <summary>Sends a Part 10 file: its data set bytes go as they are, under the transfer syntax its meta group names.</summary>
    public async Task<DimseResult> StoreFileAsync(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
        var file = await DicomReader.ReadFileAsync(stream, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, cancellationToken).ConfigureAwait(false);
        var sopClass = file.Meta.GetString(DicomTags.MediaStorageSOPClassUID) ?? file.Dataset.GetString(DicomTags.SOPClassUID)
            ?? throw new InvalidDataException("The file names no SOP class.");
        var sopInstance = file.Meta.GetString(DicomTags.MediaStorageSOPInstanceUID) ?? file.Dataset.GetString(DicomTags.SOPInstanceUID)
            ?? throw new InvalidDataException("The file names no SOP instance.");
        stream.Position = file.DatasetOffset;
        return await StoreAsync(DicomText.TrimUid(sopClass), DicomText.TrimUid(sopInstance), file.TransferSyntax.Uid, stream, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>C-FIND: each pending response's identifier, until the final response.</summary>
    public async IAsyncEnumerable<DicomDataset> FindAsync(string informationModel, DicomDataset identifier, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var context = Association.FindAcceptedContext(informationModel)
            ?? throw new InvalidOperationException($"{informationModel} was not accepted.");
        var syntax = TransferSyntax.Lookup(context.AcceptedTransferSyntax!);
        var request = DimseMessage.FindRequest(NextId(), context.Id, informationModel);
        await Association.SendAsync(request, DicomWriter.Encode(identifier, syntax), cancellationToken).ConfigureAwait(false);
        while (true)
        {
            var response = await ReceiveResponseAsync(request.MessageId, cancellationToken).ConfigureAwait(false);
            if (!DimseStatus.IsPending(response.Status))
            {
                if (response.HasDataSet)
                {
                    await Association.ReadDataSetAsync(16 * 1024 * 1024, cancellationToken).ConfigureAwait(false);
                }

                if (response.Status != DimseStatus.Success)
                {
                    throw new DicomStatusException(response.Status, response.ErrorComment);
                }

                yield break;
            }

            var bytes = await Association.ReadDataSetAsync(16 * 1024 * 1024, cancellationToken).ConfigureAwait(false);
            yield return await DicomReader.ReadDatasetAsync(bytes, syntax, null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>N-ACTION on <paramref name="sopInstanceUid"/> with its encoded Action Information (none when empty); returns the peer's status.</summary>
    public async Task<DimseResult> ActionAsync(string sopClassUid, string sopInstanceUid, ushort actionTypeId, ReadOnlyMemory<byte> information,
        CancellationToken cancellationToken)
    {
        var context = Association.FindAcceptedContext(sopClassUid)
            ?? throw new InvalidOperationException($"{sopClassUid} was not accepted.");
        return await RequestAsync(DimseMessage.ActionRequest(NextId(), context.Id, sopClassUid, sopInstanceUid, actionTypeId, !information.IsEmpty), information,
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// N-EVENT-REPORT about <paramref name="sopInstanceUid"/> (a storage commitment result, sent on an association the
    /// SCP opened back to the SCU): returns the peer's status.
    /// </summary>
    public async Task<DimseResult> EventReportAsync(string sopClassUid, string sopInstanceUid, ushort eventTypeId, DicomDataset information,
        CancellationToken cancellationToken)
    {
        var context = Association.FindAcceptedContext(sopClassUid)
            ?? throw new InvalidOperationException($"{sopClassUid} was not accepted.");
        return await RequestAsync(DimseMessage.EventReportRequest(NextId(), context.Id, sopClassUid, sopInstanceUid, eventTypeId),
            DicomWriter.Encode(information, TransferSyntax.Lookup(context.AcceptedTransferSyntax!)), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask ReleaseAsync(CancellationToken cancellationToken) => await Association.ReleaseAsync(cancellationToken).ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        if (!Association.IsClosed)
        {
            await Association.AbortAsync(AbortSource.ServiceUser, AbortReason.NotSpecified).ConfigureAwait(false);
        }

        await Association.DisposeAsync().ConfigureAwait(false);
    }

    private ushort NextId() => (ushort)Interlocked.Increment(ref _messageId);

    /// <summary>Sends a request whose answer is one response (C-ECHO, N-ACTION, N-EVENT-REPORT) and returns its status; a reply data set is dropped.</summary>
    private async Task<DimseResult> RequestAsync(DimseMessage request, ReadOnlyMemory<byte> dataSet, CancellationToken cancellationToken)
    {
        await Association.SendAsync(request, dataSet, cancellationToken).ConfigureAwait(false);
        var response = await ReceiveResponseAsync(request.MessageId, cancellationToken).ConfigureAwait(false);
        if (response.HasDataSet)
        {
            await Association.ReadDataSetAsync(1024 * 1024, cancellationToken).ConfigureAwait(false);
        }

        return new DimseResult(response.Status, response.ErrorComment);
    }

    /// <summary>Most messages a peer may send that answer nothing Vigie asked, while a response is awaited.</summary>
    internal const int MaxUnrelatedMessages = 64;

    /// <summary>
    /// The response to <paramref name="messageId"/>. The peer owes it: it must start within the read timeout (not the
    /// idle timeout, which is for a peer with nothing to say), and other messages meanwhile are dropped, a bounded few.
    /// </summary>
    private async Task<DimseMessage> ReceiveResponseAsync(ushort messageId, CancellationToken cancellationToken)
    {
        for (var unrelated = 0; ; unrelated++)
        {
            if (unrelated > MaxUnrelatedMessages)
            {
                throw new PduException(AbortReason.UnexpectedPduParameter,
                    $"the peer sent {unrelated} messages that answer nothing, instead of the response to message {messageId}");
            }

            var message = await Association.ReceiveCommandAsync(Association.Options.ReadTimeout, cancellationToken).ConfigureAwait(false)
                ?? throw new DicomAssociationAbortedException("the peer asked to release while a response was awaited");
            if (!message.IsRequest && message.MessageIdBeingRespondedTo == messageId)
            {
                return message;
            }
        }
    }
}

/// <summary>The node refused Vigie's TLS client certificate (none configured, or one it does not accept); the message says which and why.</summary>
public sealed class DicomClientCertificateRefusedException(string message, Exception inner) : AuthenticationException(message, inner);

/// <summary>A DIMSE operation ended with a failure status.</summary>
public sealed class DicomStatusException(ushort status, string? comment)
    : Exception($"DIMSE status 0x{status:X4}{(comment is null ? "" : ": " + comment)}")
{
    public ushort Status { get; } = status;

    /// <summary>The Error Comment (at most 64 characters on the wire).</summary>
    public string? Comment { get; } = comment;
}
