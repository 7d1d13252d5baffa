using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Network;

/// <summary>The peer ended the association (A-ABORT) or broke the protocol (then Vigie aborted it).</summary>
public sealed class DicomAssociationAbortedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// An A-ASSOCIATE-RQ longer than <see cref="DicomAssociationOptions.MaxAssociatePduLength"/>: read and dropped, to be
/// answered with an A-ASSOCIATE-RJ. <see cref="FixedPart"/> holds its first bytes (up to the 68-byte fixed part).
/// </summary>
internal sealed class AssociateRequestTooLongException(uint length, uint limit, byte[] fixedPart)
    : Exception($"A-ASSOCIATE-RQ of {length} bytes is over the limit of {limit} (Dicom:Server:Association:MaxAssociatePduLength)")
{
    public byte[] FixedPart { get; } = fixedPart;
}

/// <summary>A read deadline passed: ARTIM, idle or slow-sender.</summary>
public sealed class DicomTimeoutException(string message) : Exception(message)
{
    /// <summary>Waiting between messages, not a byte of the next one came: the association was idle, nothing was lost.</summary>
    public bool BetweenMessages { get; init; }
}

/// <summary>How callers of the network layer tell a lost association from an application error.</summary>
public static class DicomFailures
{
    /// <summary>The association is gone or unusable: the connection broke, the peer aborted or stopped answering, or it broke the protocol.</summary>
    public static bool IsAssociationLost(Exception e) => e is IOException or DicomAssociationAbortedException or DicomTimeoutException or PduException;
}

/// <summary>
/// One association over a connected stream, for either role: reads PDUs with limits and deadlines, reassembles
/// command and data PDVs, fragments outgoing messages to the peer's maximum PDU length, and releases or aborts.
/// Reading is single-threaded (one receive loop); sending is serialised by a lock so concurrent operations do not
/// interleave their PDUs.
/// </summary>
public sealed class DicomAssociation : IAsyncDisposable
{
    private const int MaxBlockingWrite = 64 * 1024;

    // An asynchronous send has no socket timeout: each slice of this size must go within the read timeout, the same
    // progress bound a blocking send has (4 KiB/s at the default 60 s).
    private const int MaxBoundedWrite = 256 * 1024;

    private readonly Stream _stream;
    private readonly DicomAssociationOptions _options;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private byte[] _pdu;
    private int _pduLength;
    private int _pdvOffset;
    private bool _inDataSet;
    private byte _dataContext;
    private bool _dataComplete;
    private bool _closed;
    private AssociationThread? _owner;
    private Socket? _socket;

    // The connection under the stream, blocking or not: what a timeout or an abort shuts.
    private readonly Socket? _connection;
    private string? _timedOut;
    private int _receiveTimeoutMs;

    public DicomAssociation(Stream stream, bool isRequestor, DicomAssociationOptions options, EndPoint? remoteEndPoint, Socket? connection = null)
    {
        _stream = stream;
        _connection = connection;
        _options = options;
        IsRequestor = isRequestor;
        RemoteEndPoint = remoteEndPoint;
        _pdu = ArrayPool<byte>.Shared.Rent((int)Math.Min(options.MaxPduLength, 16 * 1024 * 1024) + PduCodec.HeaderLength);
    }

    public bool IsRequestor { get; }

    public EndPoint? RemoteEndPoint { get; }

    /// <summary>Negotiated parameters (for the acceptor, the request with its answers).</summary>
    public AssociationParameters Parameters { get; internal set; } = new();

    /// <summary>At least one byte came from the peer (a connection that sent nothing at all is a scan or a flood, not a peer).</summary>
    public bool ByteReceived { get; private set; }

    /// <summary>For the acceptor: an A-ASSOCIATE-RQ was read (until then <see cref="Parameters"/> holds defaults, not the peer's).</summary>
    public bool RequestReceived { get; internal set; }

    /// <summary>The peer's Maximum Length: the largest PDU Vigie may send it (0 = unlimited).</summary>
    public uint PeerMaxPduLength { get; internal set; }

    public string CallingAE => Parameters.CallingAE;

    public string CalledAE => Parameters.CalledAE;

    /// <summary>Set when the association has ended (released, aborted or lost).</summary>
    public bool IsClosed => _closed;

    /// <summary>Identity established for this association (verified user name), if any.</summary>
    public string? UserName { get; set; }

    /// <summary>Free-form state the service provider keeps for the association (audit correlation, rights...).</summary>
    public object? State { get; set; }

    public PresentationContext? AcceptedContext(byte id) => Parameters.FindContext(id) is { IsAccepted: true } pc ? pc : null;

    /// <summary>The accepted presentation context for an abstract syntax (and transfer syntax, when given).</summary>
    public PresentationContext? FindAcceptedContext(string abstractSyntax, string? transferSyntax = null) =>
        Parameters.PresentationContexts.Find(pc => pc.IsAccepted && pc.AbstractSyntax == abstractSyntax
            && (transferSyntax is null || pc.AcceptedTransferSyntax == transferSyntax));

    /// <summary>
    /// The accepted context of <paramref name="abstractSyntax"/> on which the association-requestor took the SCP role by
    /// role selection (PS3.7 D.3.3.4), so that the acceptor may send it requests there (a storage commitment report); or null.
    /// </summary>
    public PresentationContext? FindContextWhereRequestorIsScp(string abstractSyntax) =>
        Parameters.PresentationContexts.Find(pc => pc.IsAccepted && pc.AbstractSyntax == abstractSyntax && pc.ScpRole == true);

    /// <summary>
    /// Blocking socket I/O from here on: reads run on <paramref name="owner"/> (coming back to it when needed), and
    /// small writes, from whatever thread answers, are plain sends bounded by the read timeout, so the socket stays out
    /// of the runtime's asynchronous mode (until a large send) and an arriving PDU wakes only the owner thread.
    /// </summary>
    internal void UseBlockingIo(AssociationThread owner, Socket socket)
    {
        _owner = owner;
        _socket = socket;
        socket.SendTimeout = TimeoutMs(_options.ReadTimeout);
    }

    /// <summary>Reads one whole PDU into the receive buffer. The header may take <paramref name="headerTimeout"/>, the body <see cref="DicomAssociationOptions.ReadTimeout"/>.</summary>
    internal async ValueTask<PduType> ReadPduAsync(TimeSpan headerTimeout, CancellationToken cancellationToken, bool betweenMessages = false)
    {
        ShrinkReceiveBuffer();
        await ReadExactlyAsync(_pdu.AsMemory(0, PduCodec.HeaderLength), headerTimeout, "waiting for a PDU", allowCleanEnd: true, cancellationToken, betweenMessages)
            .ConfigureAwait(false);
        var type = _pdu[0];
        var length = BinaryPrimitives.ReadUInt32BigEndian(_pdu.AsSpan(2));
        if (type is < 1 or > 7)
        {
            throw new PduException(AbortReason.UnrecognizedPdu, $"unknown PDU type 0x{type:X2}");
        }

        var limit = (PduType)type switch
        {
            PduType.AssociateRequest or PduType.AssociateAccept => (uint)_options.MaxAssociatePduLength,
            PduType.DataTransfer => _options.MaxPduLength,
            _ => 4u,
        };
        if (length > limit && length <= DicomServerOptionsValidation.MaxReceivePduLength && (PduType)type == PduType.AssociateRequest && !IsRequestor
            && !RequestReceived)
        {
            // Legal (PS3.8 9.3.2 bounds it only by its 32-bit length) but over the limit: read and dropped, so that the
            // acceptor can answer an A-ASSOCIATE-RJ the peer will read, not an abort that calls the request malformed.
            // Past 16 MiB no peer proposes that much: aborted at once, not waited for until the read timeout.
            throw await DrainOversizedRequestAsync(length, limit, cancellationToken).ConfigureAwait(false);
        }

        if (length > limit || ((PduType)type is PduType.AssociateReject or PduType.ReleaseRequest or PduType.ReleaseResponse or PduType.Abort && length != 4))
        {
            throw new PduException(AbortReason.InvalidPduParameterValue, $"{(PduType)type} PDU of {length} bytes (limit {limit})");
        }

        var what = $"reading a {(PduType)type} PDU";
        var started = Environment.TickCount64;
        var first = (int)Math.Min(length, _pdu.Length - PduCodec.HeaderLength);
        await ReadExactlyAsync(_pdu.AsMemory(PduCodec.HeaderLength, first), _options.ReadTimeout, what, allowCleanEnd: false, cancellationToken).ConfigureAwait(false);
        if (first < length)
        {
            // Only an A-ASSOCIATE PDU outgrows the receive buffer; it grows once the buffer's worth has arrived, so a
            // peer that only announces a large request holds no more memory than any other connection.
            var bigger = ArrayPool<byte>.Shared.Rent((int)length + PduCodec.HeaderLength);
            _pdu.AsSpan(0, PduCodec.HeaderLength + first).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_pdu);
            _pdu = bigger;
            await ReadExactlyAsync(_pdu.AsMemory(PduCodec.HeaderLength + first, (int)length - first), Remaining(_options.ReadTimeout, started), what,
                allowCleanEnd: false, cancellationToken).ConfigureAwait(false);
        }

        _pduLength = (int)length;
        // Only P-DATA-TF bodies hold PDVs; any other PDU is consumed whole by its reader.
        _pdvOffset = (PduType)type == PduType.DataTransfer ? PduCodec.HeaderLength : PduCodec.HeaderLength + _pduLength;
        return (PduType)type;
    }

    private const int MaxPdusBeforeReleaseResponse = 256;

    /// <summary>
    /// Reads an A-ASSOCIATE-RQ over the limit through the receive buffer without keeping it (within the read timeout),
    /// all but its fixed part, which names the AE titles for the audit.
    /// </summary>
    private async ValueTask<AssociateRequestTooLongException> DrainOversizedRequestAsync(uint length, uint limit, CancellationToken cancellationToken)
    {
        var started = Environment.TickCount64;
        byte[]? fixedPart = null;
        long remaining = length;
        while (remaining > 0)
        {
            var chunk = (int)Math.Min(remaining, _pdu.Length - PduCodec.HeaderLength);
            await ReadExactlyAsync(_pdu.AsMemory(PduCodec.HeaderLength, chunk), Remaining(_options.ReadTimeout, started),
                "reading an A-ASSOCIATE-RQ over the limit", allowCleanEnd: false, cancellationToken).ConfigureAwait(false);
            fixedPart ??= _pdu.AsSpan(PduCodec.HeaderLength, Math.Min(chunk, PduCodec.AssociateFixedLength)).ToArray();
            remaining -= chunk;
        }

        return new AssociateRequestTooLongException(length, limit, fixedPart ?? []);
    }

    /// <summary>What is left of <paramref name="timeout"/> since <paramref name="started"/>, at least a millisecond.</summary>
    private static TimeSpan Remaining(TimeSpan timeout, long started) =>
        TimeSpan.FromMilliseconds(Math.Max(1, timeout.TotalMilliseconds - (Environment.TickCount64 - started)));

    /// <summary>
    /// Gives back a receive buffer grown for a large A-ASSOCIATE PDU once it has been decoded: the data phase needs
    /// only the negotiated maximum.
    /// </summary>
    private void ShrinkReceiveBuffer()
    {
        var size = (int)Math.Min(_options.MaxPduLength, 16 * 1024 * 1024) + PduCodec.HeaderLength;
        if (_pdu.Length > 2 * size)
        {
            ArrayPool<byte>.Shared.Return(_pdu);
            _pdu = ArrayPool<byte>.Shared.Rent(size);
        }
    }

    /// <summary>The timers and limits this association runs under.</summary>
    internal DicomAssociationOptions Options => _options;

    /// <summary>The body of the PDU just read.</summary>
    internal ReadOnlySpan<byte> PduBody => _pdu.AsSpan(PduCodec.HeaderLength, _pduLength);

    /// <summary>True once the peer sent A-RELEASE-RQ; answer with <see cref="AcceptReleaseAsync"/>.</summary>
    public bool ReleaseRequested { get; private set; }

    /// <summary>Receives the next DIMSE command. Returns null when the peer asked to release (see <see cref="ReleaseRequested"/>).</summary>
    public ValueTask<DimseMessage?> ReceiveCommandAsync(CancellationToken cancellationToken) => ReceiveCommandAsync(_options.IdleTimeout, cancellationToken);

    /// <summary>
    /// As <see cref="ReceiveCommandAsync(CancellationToken)"/>, waiting at most <paramref name="firstPduTimeout"/> for the
    /// command to start: the read timeout for a response the peer owes, the idle timeout for its next request.
    /// </summary>
    public async ValueTask<DimseMessage?> ReceiveCommandAsync(TimeSpan firstPduTimeout, CancellationToken cancellationToken)
    {
        if (_inDataSet)
        {
            await DiscardDataSetAsync(cancellationToken).ConfigureAwait(false);
        }

        byte[]? command = null;
        var commandLength = 0;
        byte contextId = 0;
        try
        {
            while (true)
            {
                var pdv = await NextPdvAsync(waitingForMessage: command is null, cancellationToken, firstPduTimeout).ConfigureAwait(false);
                if (pdv is null)
                {
                    return null;
                }

                var (id, control, offset, length) = pdv.Value;
                if ((control & 1) == 0)
                {
                    throw new PduException(AbortReason.UnexpectedPduParameter, "a data fragment arrived where a command was expected");
                }

                if (command is null)
                {
                    contextId = id;
                    if (AcceptedContext(id) is null)
                    {
                        throw new PduException(AbortReason.InvalidPduParameterValue, $"command on presentation context {id}, which was not accepted");
                    }

                    command = ArrayPool<byte>.Shared.Rent(Math.Min(_options.MaxCommandLength, 4096));
                }
                else if (id != contextId)
                {
                    throw new PduException(AbortReason.UnexpectedPduParameter, "command fragments on different presentation contexts");
                }

                if (commandLength + length > _options.MaxCommandLength)
                {
                    throw new PduException(AbortReason.InvalidPduParameterValue, $"command set longer than {_options.MaxCommandLength} bytes");
                }

                if (commandLength + length > command.Length)
                {
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(_options.MaxCommandLength, Math.Max(command.Length * 2, commandLength + length)));
                    command.AsSpan(0, commandLength).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(command);
                    command = bigger;
                }

                _pdu.AsSpan(offset, length).CopyTo(command.AsSpan(commandLength));
                commandLength += length;
                if ((control & 2) != 0)
                {
                    break;
                }
            }

            DicomDataset dataset;
            try
            {
                dataset = await DicomReader.ReadDatasetAsync(command.AsMemory(0, commandLength), TransferSyntax.ImplicitVRLittleEndian,
                    new DicomReadOptions { MaxDepth = 2, MaxElements = 256 }, cancellationToken).ConfigureAwait(false);
            }
            catch (DicomParseException e)
            {
                throw new PduException(AbortReason.InvalidPduParameterValue, "unreadable command set: " + e.Message);
            }

            var message = new DimseMessage(dataset, contextId);
            if (message.HasDataSet)
            {
                _inDataSet = true;
                _dataComplete = false;
                _dataContext = contextId;
            }

            return message;
        }
        finally
        {
            if (command is not null)
            {
                ArrayPool<byte>.Shared.Return(command);
            }
        }
    }

    /// <summary>
    /// The next fragment of the data set that follows the last command, straight from the receive buffer (valid until
    /// the next call); empty when the data set is complete.
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>> ReadDataFragmentAsync(CancellationToken cancellationToken)
    {
        if (!_inDataSet || _dataComplete)
        {
            _inDataSet = false;
            return ReadOnlyMemory<byte>.Empty;
        }

        while (true)
        {
            var pdv = await NextPdvAsync(waitingForMessage: false, cancellationToken).ConfigureAwait(false)
                ?? throw new PduException(AbortReason.UnexpectedPdu, "A-RELEASE-RQ in the middle of a data set");
            var (id, control, offset, length) = pdv;
            if ((control & 1) != 0 || id != _dataContext)
            {
                throw new PduException(AbortReason.UnexpectedPduParameter, "expected a data fragment of the current message");
            }

            if ((control & 2) != 0)
            {
                _dataComplete = true;
            }

            // Only the fragment flagged last ends the data set (PS3.8 E.2): an empty one before it is skipped, not taken
            // for the end (which stored a truncated object and answered it).
            if (length > 0 || _dataComplete)
            {
                return _pdu.AsMemory(offset, length);
            }
        }
    }

    /// <summary>Reads a whole (small) data set: an identifier or a response.</summary>
    public async ValueTask<byte[]> ReadDataSetAsync(int maxLength, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        while (true)
        {
            var fragment = await ReadDataFragmentAsync(cancellationToken).ConfigureAwait(false);
            if (fragment.IsEmpty && (_dataComplete || !_inDataSet))
            {
                _inDataSet = false;
                return buffer.ToArray();
            }

            if (buffer.Length + fragment.Length > maxLength)
            {
                throw new PduException(AbortReason.InvalidPduParameterValue, $"data set longer than {maxLength} bytes");
            }

            buffer.Write(fragment.Span);
        }
    }

    /// <summary>Sends a message: its command, then its data set (in memory).</summary>
    public async ValueTask SendAsync(DimseMessage message, ReadOnlyMemory<byte> dataSet, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await SendFragmentsAsync(message.PresentationContextId, message.Encode(), command: true, cancellationToken).ConfigureAwait(false);
            if (message.HasDataSet)
            {
                await SendFragmentsAsync(message.PresentationContextId, dataSet, command: false, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Sends a message whose data set is read from a stream (a stored object), in PDU-sized fragments.</summary>
    public async ValueTask SendAsync(DimseMessage message, Stream dataSet, CancellationToken cancellationToken)
    {
        var chunk = ChunkSize();
        var buffer = ArrayPool<byte>.Shared.Rent(chunk + 12);
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await SendFragmentsAsync(message.PresentationContextId, message.Encode(), command: true, cancellationToken).ConfigureAwait(false);
            // Read one chunk ahead so the last fragment can be flagged as last.
            var filled = await dataSet.ReadAtLeastAsync(buffer.AsMemory(12, chunk), chunk, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            var next = ArrayPool<byte>.Shared.Rent(chunk + 12);
            try
            {
                while (true)
                {
                    var nextFilled = filled < chunk ? 0
                        : await dataSet.ReadAtLeastAsync(next.AsMemory(12, chunk), chunk, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                    var last = nextFilled == 0;
                    PduCodec.WriteDataHeader(buffer, message.PresentationContextId, command: false, last, filled);
                    await WriteStreamAsync(buffer.AsMemory(0, 12 + filled), cancellationToken, mayBlock: false).ConfigureAwait(false);
                    if (last)
                    {
                        break;
                    }

                    (buffer, next) = (next, buffer);
                    filled = nextFilled;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(next);
            }

            await FlushStreamAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes a raw PDU (association negotiation, release, abort).</summary>
    internal async ValueTask WritePduAsync(ReadOnlyMemory<byte> pdu, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await WriteStreamAsync(pdu, cancellationToken).ConfigureAwait(false);
            await FlushStreamAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Requestor side: A-RELEASE-RQ, then wait (ARTIM) for A-RELEASE-RP.</summary>
    public async ValueTask ReleaseAsync(CancellationToken cancellationToken)
    {
        if (_closed)
        {
            return;
        }

        await WritePduAsync(PduCodec.EncodeReleaseRequest(), cancellationToken).ConfigureAwait(false);
        for (var skipped = 0; ; skipped++)
        {
            // Data still in flight is passed over, a bounded amount: a peer that keeps sending would hold the release.
            if (skipped > MaxPdusBeforeReleaseResponse)
            {
                throw new PduException(AbortReason.UnexpectedPdu, $"{skipped} PDUs and still no A-RELEASE-RP");
            }

            var type = await ReadPduAsync(_options.ArtimTimeout, cancellationToken).ConfigureAwait(false);
            if (type == PduType.ReleaseResponse)
            {
                break;
            }

            if (type == PduType.ReleaseRequest)
            {
                // Release collision (PS3.8 7.2.2): the requestor answers and stops.
                await WritePduAsync(PduCodec.EncodeReleaseResponse(), cancellationToken).ConfigureAwait(false);
                break;
            }

            if (type == PduType.Abort)
            {
                break;
            }
        }

        _closed = true;
    }

    /// <summary>Acceptor side: answers A-RELEASE-RQ with A-RELEASE-RP.</summary>
    public async ValueTask AcceptReleaseAsync(CancellationToken cancellationToken)
    {
        await WritePduAsync(PduCodec.EncodeReleaseResponse(), cancellationToken).ConfigureAwait(false);
        _closed = true;
    }

    /// <summary>
    /// Sends A-ABORT (best effort) and shuts the connection (PS3.8 7.3.1), which also wakes a receive loop blocked on a
    /// peer that has stopped answering; that loop then reports <paramref name="timedOut"/>, when given. Never throws.
    /// </summary>
    public async ValueTask AbortAsync(AbortSource source, AbortReason reason, string? timedOut = null)
    {
        if (_closed)
        {
            return;
        }

        _closed = true;
        _timedOut ??= timedOut;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            if (_socket is not null)
            {
                _socket.SendTimeout = 2000;
            }

            await WriteStreamAsync(PduCodec.EncodeAbort(source, reason), timeout.Token).ConfigureAwait(false);
            await FlushStreamAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or SocketException
            or DicomTimeoutException or NotSupportedException)
        {
            // The peer may already be gone; the abort is best effort (NotSupportedException: a TLS write still pending).
        }

        Shutdown(reset: false);
    }

    internal void MarkClosed() => _closed = true;

    public async ValueTask DisposeAsync()
    {
        _closed = true;
        try
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
        }

        var pdu = Interlocked.Exchange(ref _pdu, []);
        if (pdu.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(pdu);
        }

        _writeLock.Dispose();
    }

    private int ChunkSize()
    {
        long peer = PeerMaxPduLength == 0 ? 1024 * 1024 : PeerMaxPduLength;
        if (_options.MaxSendPduLength > 0)
        {
            peer = Math.Min(peer, _options.MaxSendPduLength);
        }

        // A PDV header takes 6 bytes of the PDU's variable field; keep fragments even-sized. Computed in long: a peer
        // maximum under 6 once wrapped round in uint into a negative fragment length (associations refuse those now).
        return (int)Math.Max(2, Math.Min(peer, 4 * 1024 * 1024) - 6) & ~1;
    }

    private async ValueTask SendFragmentsAsync(byte contextId, ReadOnlyMemory<byte> data, bool command, CancellationToken cancellationToken)
    {
        var chunk = ChunkSize();
        var header = new byte[12];
        var offset = 0;
        do
        {
            var length = Math.Min(chunk, data.Length - offset);
            var last = offset + length == data.Length;
            PduCodec.WriteDataHeader(header, contextId, command, last, length);
            await WriteStreamAsync(header, cancellationToken).ConfigureAwait(false);
            await WriteStreamAsync(data.Slice(offset, length), cancellationToken).ConfigureAwait(false);
            offset += length;
        }
        while (offset < data.Length);

        await FlushStreamAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the rest of the current data set and drops it, fragment by fragment: nothing is kept, whatever its length.</summary>
    public async ValueTask DiscardDataSetAsync(CancellationToken cancellationToken)
    {
        // Also used after a handler that did not read its whole data set, so that the next command is found.
        while (_inDataSet && !_dataComplete)
        {
            await ReadDataFragmentAsync(cancellationToken).ConfigureAwait(false);
        }

        _inDataSet = false;
    }

    /// <summary>The next PDV: (context, control header, offset in the buffer, length); null on A-RELEASE-RQ (answered).</summary>
    private async ValueTask<(byte Id, byte Control, int Offset, int Length)?> NextPdvAsync(bool waitingForMessage, CancellationToken cancellationToken,
        TimeSpan? messageTimeout = null)
    {
        while (_pdvOffset >= PduCodec.HeaderLength + _pduLength)
        {
            var type = await ReadPduAsync(waitingForMessage ? messageTimeout ?? _options.IdleTimeout : _options.ReadTimeout, cancellationToken, waitingForMessage)
                .ConfigureAwait(false);
            switch (type)
            {
                case PduType.DataTransfer:
                    if (_pduLength < 6)
                    {
                        throw new PduException(AbortReason.InvalidPduParameterValue, "P-DATA-TF PDU without a PDV");
                    }

                    break;
                case PduType.ReleaseRequest when waitingForMessage:
                    // Answered by AcceptReleaseAsync, once every outstanding operation has sent its response.
                    ReleaseRequested = true;
                    return null;
                case PduType.Abort:
                {
                    var (source, reason) = PduCodec.DecodeAbort(PduBody);
                    _closed = true;
                    throw new DicomAssociationAbortedException($"the peer aborted the association (source {source}, reason {reason})");
                }

                default:
                    throw new PduException(AbortReason.UnexpectedPdu, $"unexpected {type} PDU in the data phase");
            }
        }

        var end = PduCodec.HeaderLength + _pduLength;
        if (end - _pdvOffset < 6)
        {
            throw new PduException(AbortReason.InvalidPduParameterValue, "truncated PDV header");
        }

        var pdvLength = BinaryPrimitives.ReadUInt32BigEndian(_pdu.AsSpan(_pdvOffset));
        if (pdvLength < 2 || pdvLength > end - _pdvOffset - 4)
        {
            throw new PduException(AbortReason.InvalidPduParameterValue, $"PDV length {pdvLength} does not fit its PDU");
        }

        var id = _pdu[_pdvOffset + 4];
        var control = _pdu[_pdvOffset + 5];
        if ((control & 0xFC) != 0)
        {
            throw new PduException(AbortReason.InvalidPduParameterValue, $"reserved bits set in PDV control header 0x{control:X2}");
        }

        var offset = _pdvOffset + 6;
        _pdvOffset += 4 + (int)pdvLength;
        return (id, control, offset, (int)pdvLength - 2);
    }

    private async ValueTask ReadExactlyAsync(Memory<byte> destination, TimeSpan timeout, string what, bool allowCleanEnd, CancellationToken cancellationToken,
        bool betweenMessages = false)
    {
        if (_owner is not null)
        {
            if (!_owner.IsCurrent)
            {
                await _owner.SwitchTo();
            }

            ReadExactlyBlocking(destination.Span, timeout, what, allowCleanEnd, cancellationToken, betweenMessages);
            return;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        var filled = 0;
        try
        {
            while (filled < destination.Length)
            {
                var read = await _stream.ReadAsync(destination[filled..], deadline.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    _closed = true;
                    throw TimedOutOr(PeerClosed(filled, destination.Length, what, allowCleanEnd));
                }

                filled += read;
                ByteReceived = true;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw NoCompleteData(timeout, what, filled, destination.Length, betweenMessages);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException && _timedOut is not null)
        {
            throw TimedOutOr(e);
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            _closed = true;
            throw SendsUnacknowledged();
        }
        catch (IOException e)
        {
            _closed = true;
            throw ConnectionLost(what, e);
        }
    }

    private DicomTimeoutException SendsUnacknowledged() =>
        new(_timedOut ??= $"the peer acknowledged nothing Vigie sent for {_options.ReadTimeout}: it stopped reading, and the connection was reset");

    private void ReadExactlyBlocking(Span<byte> destination, TimeSpan timeout, string what, bool allowCleanEnd, CancellationToken cancellationToken,
        bool betweenMessages)
    {
        var deadline = Environment.TickCount64 + TimeoutMs(timeout);
        SetReceiveTimeout(TimeoutMs(timeout));
        var filled = 0;
        try
        {
            while (filled < destination.Length)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var remaining = deadline - Environment.TickCount64;
                if (remaining <= 0)
                {
                    throw NoCompleteData(timeout, what, filled, destination.Length, betweenMessages);
                }

                // The socket's own timeout bounds each wait; it is lowered only when the deadline is a second nearer,
                // which saves a system call per read at the price of at most a second past the deadline.
                if (remaining < _receiveTimeoutMs - 1000)
                {
                    SetReceiveTimeout((int)remaining);
                }

                var read = _stream.Read(destination[filled..]);
                if (read == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    _closed = true;
                    throw TimedOutOr(PeerClosed(filled, destination.Length, what, allowCleanEnd));
                }

                filled += read;
                ByteReceived = true;
            }
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut } && Environment.TickCount64 < deadline - 1000)
        {
            // Not this read's timeout: the kernel ended the connection (TCP_USER_TIMEOUT), what Vigie sent unread.
            _closed = true;
            throw SendsUnacknowledged();
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock })
        {
            throw NoCompleteData(timeout, what, filled, destination.Length, betweenMessages);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("the node is stopping", e, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException && _timedOut is not null)
        {
            throw TimedOutOr(e);
        }
        catch (IOException e)
        {
            _closed = true;
            throw ConnectionLost(what, e);
        }
    }

    private static DicomAssociationAbortedException PeerClosed(int filled, int length, string what, bool allowCleanEnd) =>
        filled == 0 && allowCleanEnd
            ? new DicomAssociationAbortedException($"the peer closed the connection while {what}")
            : new DicomAssociationAbortedException($"the peer closed the connection in the middle of a PDU ({filled} of {length} bytes) while {what}");

    private static DicomTimeoutException NoCompleteData(TimeSpan timeout, string what, int filled, int length, bool betweenMessages = false) =>
        new($"no complete data within {timeout.TotalSeconds:0.#} s while {what} ({filled} of {length} bytes)") { BetweenMessages = betweenMessages && filled == 0 };

    private static DicomAssociationAbortedException ConnectionLost(string what, IOException e) => new($"connection lost while {what}: {e.Message}", e);

    private void SetReceiveTimeout(int milliseconds)
    {
        if (milliseconds != _receiveTimeoutMs)
        {
            _socket!.ReceiveTimeout = milliseconds;
            _receiveTimeoutMs = milliseconds;
        }
    }

    private static int TimeoutMs(TimeSpan timeout) => (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);

    /// <summary>
    /// Small writes (answers, commands, identifiers) are plain sends, which a socket buffer takes at once unless the peer
    /// has stopped reading; then the send timeout ends the association. Stored objects sent back (C-GET) and anything
    /// large go asynchronously, so a slow reader never holds a pool thread; the socket then stays in asynchronous mode
    /// for the rest of the association, which only costs its reads their wake-up saving. Either way, a peer that reads
    /// nothing for the read timeout has its connection cut (<see cref="Sever"/>).
    /// </summary>
    private ValueTask WriteStreamAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken, bool mayBlock = true)
    {
        if (_socket is null || !mayBlock || data.Length > MaxBlockingWrite)
        {
            return WriteBoundedAsync(data, cancellationToken);
        }

        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            _stream.Write(data.Span);
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock })
        {
            throw Sever(data.Length);
        }

        return ValueTask.CompletedTask;
    }

    private async ValueTask WriteBoundedAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            var slice = data[..Math.Min(data.Length, MaxBoundedWrite)];
            var pending = _stream.WriteAsync(slice, cancellationToken);
            if (!pending.IsCompletedSuccessfully)
            {
                var write = pending.AsTask();
                try
                {
                    await write.WaitAsync(_options.ReadTimeout, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // The write still waits on the full buffer; cutting the connection ends it, its fault is not news.
                    _ = write.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                        TaskScheduler.Default);
                    throw Sever(slice.Length);
                }
            }

            data = data[slice.Length..];
        }
    }

    /// <summary>
    /// The peer stopped reading: an A-ABORT could not get through the full buffer either, so the connection is reset.
    /// Ending the receive side wakes a read blocked on the owner thread, which then reports this reason, not a bare loss.
    /// </summary>
    private DicomTimeoutException Sever(int length)
    {
        _timedOut ??= $"the peer read nothing for {_options.ReadTimeout} while Vigie was sending ({length} bytes pending)";
        _closed = true;
        Shutdown(reset: true);
        return new DicomTimeoutException(_timedOut);
    }

    /// <summary>Ends both directions; a reset also drops what the peer never read, instead of leaving it queued in the kernel.</summary>
    private void Shutdown(bool reset)
    {
        if ((_socket ?? _connection) is not { } socket)
        {
            return;
        }

        try
        {
            if (reset)
            {
                socket.LingerState = new LingerOption(true, 0);
            }

            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }
    }

    /// <summary>Once Vigie has cut the connection for a timeout, what the reads see next is reported as that timeout.</summary>
    private Exception TimedOutOr(Exception other) => _timedOut is not null ? new DicomTimeoutException(_timedOut) : other;

    private ValueTask FlushStreamAsync(CancellationToken cancellationToken)
    {
        if (_socket is null)
        {
            return new ValueTask(_stream.FlushAsync(cancellationToken));
        }

        _stream.Flush();
        return ValueTask.CompletedTask;
    }
}
