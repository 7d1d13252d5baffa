using System.Buffers.Binary;
using System.Text;

namespace Vigie.Dicom.Network;

/// <summary>A PDU that breaks the protocol: the association is aborted with <see cref="Reason"/>.</summary>
public sealed class PduException(AbortReason reason, string message) : Exception(message)
{
    public AbortReason Reason { get; } = reason;
}

/// <summary>Encodes and decodes the PDUs of PS3.8 Chapter 9. Decoding checks every item length against its container.</summary>
public static class PduCodec
{
    public const int HeaderLength = 6;
    private const int MaxUidLength = 64;

    /// <summary>Protocol version, reserved, called and calling AE titles, reserved: the A-ASSOCIATE fixed part (PS3.8 9.3.2).</summary>
    internal const int AssociateFixedLength = 68;

    // Counting limits keep what a hostile A-ASSOCIATE-RQ makes Vigie hold far below its byte length. A legal one has at
    // most 128 presentation contexts (odd one-byte IDs, checked as they come) and one role or extended negotiation
    // sub-item per SOP class.
    private const int MaxTransferSyntaxesPerContext = 64;
    private const int MaxRoleSelections = 256;
    private const int MaxExtendedNegotiations = 256;

    public static byte[] EncodeAssociateRequest(AssociationParameters parameters) => EncodeAssociate(PduType.AssociateRequest, parameters);

    public static byte[] EncodeAssociateAccept(AssociationParameters parameters) => EncodeAssociate(PduType.AssociateAccept, parameters);

    public static byte[] EncodeReject(RejectResult result, RejectSource source, byte reason) =>
        Pdu(PduType.AssociateReject, [0, (byte)result, (byte)source, reason]);

    public static byte[] EncodeAbort(AbortSource source, AbortReason reason) => Pdu(PduType.Abort, [0, 0, (byte)source, (byte)reason]);

    public static byte[] EncodeReleaseRequest() => Pdu(PduType.ReleaseRequest, [0, 0, 0, 0]);

    public static byte[] EncodeReleaseResponse() => Pdu(PduType.ReleaseResponse, [0, 0, 0, 0]);

    /// <summary>Writes a P-DATA-TF header for one PDV of <paramref name="dataLength"/> bytes into <paramref name="destination"/> (12 bytes).</summary>
    public static void WriteDataHeader(Span<byte> destination, byte contextId, bool command, bool last, int dataLength)
    {
        destination[0] = (byte)PduType.DataTransfer;
        destination[1] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[2..], (uint)(dataLength + 6));
        BinaryPrimitives.WriteUInt32BigEndian(destination[6..], (uint)(dataLength + 2));
        destination[10] = contextId;
        destination[11] = (byte)((command ? 1 : 0) | (last ? 2 : 0));
    }

    public static AssociationParameters DecodeAssociateRequest(ReadOnlySpan<byte> body)
    {
        var parameters = DecodeFixed(body);
        var items = body[68..];
        var seenContext = new HashSet<byte>();
        while (!items.IsEmpty)
        {
            var type = NextItem(ref items, out var value, "A-ASSOCIATE-RQ");
            switch (type)
            {
                case 0x10:
                    parameters.ApplicationContextName = Uid(value, "application context");
                    break;
                case 0x20:
                {
                    if (value.Length < 4)
                    {
                        throw Invalid("presentation context item shorter than 4 bytes");
                    }

                    var id = value[0];
                    if ((id & 1) == 0 || !seenContext.Add(id))
                    {
                        throw Invalid($"presentation context id {id} is even or repeated");
                    }

                    string? abstractSyntax = null;
                    var transferSyntaxes = new List<string>();
                    var sub = value[4..];
                    while (!sub.IsEmpty)
                    {
                        var subType = NextItem(ref sub, out var subValue, "presentation context");
                        if (subType == 0x30)
                        {
                            abstractSyntax = Uid(subValue, "abstract syntax");
                        }
                        else if (subType == 0x40)
                        {
                            if (transferSyntaxes.Count == MaxTransferSyntaxesPerContext)
                            {
                                throw Invalid($"more than {MaxTransferSyntaxesPerContext} transfer syntaxes in one presentation context");
                            }

                            transferSyntaxes.Add(Uid(subValue, "transfer syntax"));
                        }
                        else
                        {
                            throw new PduException(AbortReason.UnrecognizedPduParameter, $"unknown presentation context sub-item 0x{subType:X2}");
                        }
                    }

                    if (abstractSyntax is null || transferSyntaxes.Count == 0)
                    {
                        throw Invalid($"presentation context {id} lacks an abstract syntax or a transfer syntax");
                    }

                    parameters.PresentationContexts.Add(new PresentationContext(id, abstractSyntax, transferSyntaxes));
                    break;
                }

                case 0x50:
                    DecodeUserInformation(value, parameters, request: true);
                    break;
                default:
                    throw new PduException(AbortReason.UnrecognizedPduParameter, $"unknown A-ASSOCIATE-RQ item 0x{type:X2}");
            }
        }

        if (parameters.PresentationContexts.Count == 0)
        {
            throw Invalid("no presentation context proposed");
        }

        return parameters;
    }

    /// <summary>Fills the acceptor's answer into the parameters the requestor proposed.</summary>
    public static AssociationParameters DecodeAssociateAccept(ReadOnlySpan<byte> body, AssociationParameters proposed)
    {
        var accepted = DecodeFixed(body);
        var items = body[68..];
        var answers = new Dictionary<byte, (PresentationContextResult Result, string? Syntax)>();
        while (!items.IsEmpty)
        {
            var type = NextItem(ref items, out var value, "A-ASSOCIATE-AC");
            switch (type)
            {
                case 0x10:
                    accepted.ApplicationContextName = Uid(value, "application context");
                    break;
                case 0x21:
                {
                    if (value.Length < 4)
                    {
                        throw Invalid("presentation context item shorter than 4 bytes");
                    }

                    string? syntax = null;
                    var sub = value[4..];
                    while (!sub.IsEmpty)
                    {
                        var subType = NextItem(ref sub, out var subValue, "presentation context");
                        if (subType == 0x40)
                        {
                            syntax = Uid(subValue, "transfer syntax");
                        }
                    }

                    answers[value[0]] = ((PresentationContextResult)value[2], syntax);
                    break;
                }

                case 0x50:
                    DecodeUserInformation(value, accepted, request: false);
                    break;
                default:
                    throw new PduException(AbortReason.UnrecognizedPduParameter, $"unknown A-ASSOCIATE-AC item 0x{type:X2}");
            }
        }

        foreach (var context in proposed.PresentationContexts)
        {
            context.Result = answers.TryGetValue(context.Id, out var answer) ? answer.Result : PresentationContextResult.NoReason;
            context.AcceptedTransferSyntax = context.Result == PresentationContextResult.Acceptance ? answer.Syntax : null;
            var role = accepted.RoleSelections.Find(r => r.SopClassUid == context.AbstractSyntax);
            if (role is not null)
            {
                context.ScuRole = role.ScuRole;
                context.ScpRole = role.ScpRole;
            }
        }

        accepted.PresentationContexts.AddRange(proposed.PresentationContexts);
        return accepted;
    }

    public static (RejectResult Result, RejectSource Source, byte Reason) DecodeReject(ReadOnlySpan<byte> body)
    {
        if (body.Length < 4)
        {
            throw Invalid("A-ASSOCIATE-RJ shorter than 4 bytes");
        }

        return ((RejectResult)body[1], (RejectSource)body[2], body[3]);
    }

    public static (AbortSource Source, AbortReason Reason) DecodeAbort(ReadOnlySpan<byte> body) =>
        body.Length < 4 ? (AbortSource.ServiceProvider, AbortReason.NotSpecified) : ((AbortSource)body[2], (AbortReason)body[3]);

    /// <summary>Normalises an AE title: at most 16 characters of the default repertoire, no backslash or control characters.</summary>
    public static bool TryParseAETitle(ReadOnlySpan<byte> bytes, out string title)
    {
        title = string.Empty;
        if (bytes.Length > 16)
        {
            return false;
        }

        foreach (var b in bytes)
        {
            if (!AETitles.IsAllowed((char)b))
            {
                return false;
            }
        }

        title = Encoding.ASCII.GetString(bytes).Trim();
        return true;
    }

    /// <summary>The AE titles of an A-ASSOCIATE-RQ's fixed part, for the audit of a request refused unread; false when it has none.</summary>
    internal static bool TryDecodeAETitles(ReadOnlySpan<byte> fixedPart, out string called, out string calling)
    {
        called = calling = string.Empty;
        return fixedPart.Length >= AssociateFixedLength && TryParseAETitle(fixedPart.Slice(4, 16), out called)
            && TryParseAETitle(fixedPart.Slice(20, 16), out calling);
    }

    private static AssociationParameters DecodeFixed(ReadOnlySpan<byte> body)
    {
        if (body.Length < 68)
        {
            throw Invalid($"A-ASSOCIATE PDU of {body.Length} bytes is shorter than its 68-byte fixed part");
        }

        if (!TryParseAETitle(body.Slice(4, 16), out var called) || !TryParseAETitle(body.Slice(20, 16), out var calling))
        {
            throw Invalid("AE title with characters outside the default repertoire");
        }

        return new AssociationParameters
        {
            ProtocolVersion = BinaryPrimitives.ReadUInt16BigEndian(body),
            CalledAE = called,
            CallingAE = calling,
            ReceivedAETitleFields = body.Slice(4, 32).ToArray(),
            ApplicationContextName = string.Empty,
            MaxPduLength = 0,
            ImplementationClassUid = null,
            ImplementationVersionName = null,
        };
    }

    private static void DecodeUserInformation(ReadOnlySpan<byte> value, AssociationParameters parameters, bool request)
    {
        while (!value.IsEmpty)
        {
            var type = NextItem(ref value, out var sub, "user information");
            switch (type)
            {
                case 0x51:
                    if (sub.Length != 4)
                    {
                        throw Invalid("maximum length sub-item is not 4 bytes");
                    }

                    parameters.MaxPduLength = BinaryPrimitives.ReadUInt32BigEndian(sub);
                    break;
                case 0x52:
                    parameters.ImplementationClassUid = Uid(sub, "implementation class UID");
                    break;
                case 0x53:
                    if (sub.Length != 4)
                    {
                        throw Invalid("asynchronous operations window sub-item is not 4 bytes");
                    }

                    parameters.AsyncOperations = (BinaryPrimitives.ReadUInt16BigEndian(sub), BinaryPrimitives.ReadUInt16BigEndian(sub[2..]));
                    break;
                case 0x54:
                {
                    if (sub.Length < 4)
                    {
                        throw Invalid("role selection sub-item too short");
                    }

                    var uidLength = BinaryPrimitives.ReadUInt16BigEndian(sub);
                    if (sub.Length != 2 + uidLength + 2)
                    {
                        throw Invalid("role selection sub-item length does not match its UID length");
                    }

                    if (parameters.RoleSelections.Count == MaxRoleSelections)
                    {
                        throw Invalid($"more than {MaxRoleSelections} role selection sub-items");
                    }

                    parameters.RoleSelections.Add(new RoleSelection(Uid(sub.Slice(2, uidLength), "role selection SOP class"), sub[2 + uidLength] == 1,
                        sub[3 + uidLength] == 1));
                    break;
                }

                case 0x55:
                    parameters.ImplementationVersionName = sub.Length <= 16 ? Encoding.ASCII.GetString(sub).Trim() : throw Invalid("implementation version name longer than 16 bytes");
                    break;
                case 0x56:
                {
                    if (sub.Length < 2 || BinaryPrimitives.ReadUInt16BigEndian(sub) is var n && 2 + n > sub.Length)
                    {
                        throw Invalid("extended negotiation sub-item too short");
                    }

                    if (parameters.ExtendedNegotiations.Count == MaxExtendedNegotiations)
                    {
                        throw Invalid($"more than {MaxExtendedNegotiations} extended negotiation sub-items");
                    }

                    var uidLength = BinaryPrimitives.ReadUInt16BigEndian(sub);
                    parameters.ExtendedNegotiations.Add((Uid(sub.Slice(2, uidLength), "extended negotiation SOP class"), sub[(2 + uidLength)..].ToArray()));
                    break;
                }

                case 0x58 when request:
                {
                    if (sub.Length < 4)
                    {
                        throw Invalid("user identity sub-item too short");
                    }

                    var primaryLength = BinaryPrimitives.ReadUInt16BigEndian(sub[2..]);
                    if (4 + primaryLength + 2 > sub.Length)
                    {
                        throw Invalid("user identity primary field runs past its sub-item");
                    }

                    var secondaryLength = BinaryPrimitives.ReadUInt16BigEndian(sub[(4 + primaryLength)..]);
                    if (4 + primaryLength + 2 + secondaryLength != sub.Length)
                    {
                        throw Invalid("user identity secondary field does not end its sub-item");
                    }

                    parameters.UserIdentity = new UserIdentity((UserIdentityType)sub[0], sub[1] == 1, sub.Slice(4, primaryLength).ToArray(),
                        sub.Slice(6 + primaryLength, secondaryLength).ToArray());
                    break;
                }

                case 0x59 when !request:
                    if (sub.Length < 2 || 2 + BinaryPrimitives.ReadUInt16BigEndian(sub) != sub.Length)
                    {
                        throw Invalid("user identity server response length mismatch");
                    }

                    parameters.UserIdentityResponse = sub[2..].ToArray();
                    break;
                default:
                    // Other sub-items (e.g. common extended negotiation) are optional for the acceptor: skipped.
                    break;
            }
        }
    }

    private static byte[] EncodeAssociate(PduType type, AssociationParameters p)
    {
        var body = new List<byte>(512);
        var fixedPart = new byte[68];
        BinaryPrimitives.WriteUInt16BigEndian(fixedPart, p.ProtocolVersion);
        if (type == PduType.AssociateAccept && p.ReceivedAETitleFields is { Length: 32 } received)
        {
            received.CopyTo(fixedPart.AsSpan(4, 32));
        }
        else
        {
            WriteAE(fixedPart.AsSpan(4, 16), p.CalledAE);
            WriteAE(fixedPart.AsSpan(20, 16), p.CallingAE);
        }
        body.AddRange(fixedPart);
        Item(body, 0x10, Encoding.ASCII.GetBytes(p.ApplicationContextName));
        foreach (var pc in p.PresentationContexts)
        {
            var value = new List<byte>();
            if (type == PduType.AssociateRequest)
            {
                value.AddRange([pc.Id, 0, 0, 0]);
                Item(value, 0x30, Encoding.ASCII.GetBytes(pc.AbstractSyntax));
                foreach (var ts in pc.TransferSyntaxes)
                {
                    Item(value, 0x40, Encoding.ASCII.GetBytes(ts));
                }

                Item(body, 0x20, [.. value]);
            }
            else
            {
                value.AddRange([pc.Id, 0, (byte)pc.Result, 0]);
                // PS3.8 9.3.3.2: the transfer syntax sub-item is present but not significant when rejected.
                Item(value, 0x40, Encoding.ASCII.GetBytes(pc.AcceptedTransferSyntax ?? pc.TransferSyntaxes[0]));
                Item(body, 0x21, [.. value]);
            }
        }

        var user = new List<byte>();
        var maxLength = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(maxLength, p.MaxPduLength);
        Item(user, 0x51, maxLength);
        if (p.ImplementationClassUid is { } implementation)
        {
            Item(user, 0x52, Encoding.ASCII.GetBytes(implementation));
        }

        if (p.AsyncOperations is { } window)
        {
            var bytes = new byte[4];
            BinaryPrimitives.WriteUInt16BigEndian(bytes, window.Invoked);
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), window.Performed);
            Item(user, 0x53, bytes);
        }

        foreach (var role in p.RoleSelections)
        {
            var uid = Encoding.ASCII.GetBytes(role.SopClassUid);
            var bytes = new byte[uid.Length + 4];
            BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)uid.Length);
            uid.CopyTo(bytes, 2);
            bytes[^2] = role.ScuRole ? (byte)1 : (byte)0;
            bytes[^1] = role.ScpRole ? (byte)1 : (byte)0;
            Item(user, 0x54, bytes);
        }

        if (p.ImplementationVersionName is { } version)
        {
            Item(user, 0x55, Encoding.ASCII.GetBytes(version));
        }

        if (type == PduType.AssociateRequest && p.UserIdentity is { } identity)
        {
            var bytes = new List<byte> { (byte)identity.Type, identity.PositiveResponseRequested ? (byte)1 : (byte)0 };
            bytes.AddRange(BigEndian16(identity.PrimaryField.Length));
            bytes.AddRange(identity.PrimaryField);
            bytes.AddRange(BigEndian16(identity.SecondaryField.Length));
            bytes.AddRange(identity.SecondaryField);
            Item(user, 0x58, [.. bytes]);
        }

        if (type == PduType.AssociateAccept && p.UserIdentityResponse is { } response)
        {
            Item(user, 0x59, [.. BigEndian16(response.Length), .. response]);
        }

        Item(body, 0x50, [.. user]);
        return Pdu(type, [.. body]);
    }

    private static byte[] BigEndian16(int value) => [(byte)(value >> 8), (byte)value];

    private static void WriteAE(Span<byte> destination, string title)
    {
        destination.Fill((byte)' ');
        Encoding.ASCII.GetBytes(title.AsSpan(0, Math.Min(16, title.Length)), destination);
    }

    private static void Item(List<byte> destination, byte type, byte[] value)
    {
        destination.Add(type);
        destination.Add(0);
        destination.AddRange(BigEndian16(value.Length));
        destination.AddRange(value);
    }

    private static byte[] Pdu(PduType type, byte[] body)
    {
        var pdu = new byte[HeaderLength + body.Length];
        pdu[0] = (byte)type;
        BinaryPrimitives.WriteUInt32BigEndian(pdu.AsSpan(2), (uint)body.Length);
        body.CopyTo(pdu, HeaderLength);
        return pdu;
    }

    /// <summary>Takes the next item (type, reserved, 16-bit length, value) off the front of <paramref name="items"/>.</summary>
    private static byte NextItem(ref ReadOnlySpan<byte> items, out ReadOnlySpan<byte> value, string where)
    {
        if (items.Length < 4)
        {
            throw Invalid($"truncated item header in {where}");
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(items[2..]);
        if (4 + length > items.Length)
        {
            throw Invalid($"item 0x{items[0]:X2} of {length} bytes runs past the end of {where}");
        }

        var type = items[0];
        value = items.Slice(4, length);
        items = items[(4 + length)..];
        return type;
    }

    private static string Uid(ReadOnlySpan<byte> value, string what)
    {
        if (value.Length is 0 or > MaxUidLength)
        {
            throw Invalid($"{what} UID of {value.Length} bytes");
        }

        foreach (var b in value)
        {
            if (!(b is >= (byte)'0' and <= (byte)'9' || b == (byte)'.' || b == 0))
            {
                throw Invalid($"{what} UID contains 0x{b:X2}");
            }
        }

        return DicomText.TrimUid(Encoding.ASCII.GetString(value));
    }

    private static PduException Invalid(string message) => new(AbortReason.InvalidPduParameterValue, message);
}
