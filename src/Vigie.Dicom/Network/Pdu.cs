namespace Vigie.Dicom.Network;

/// <summary>Upper layer PDU types (PS3.8 9.3).</summary>
public enum PduType : byte
{
    AssociateRequest = 0x01,
    AssociateAccept = 0x02,
    AssociateReject = 0x03,
    DataTransfer = 0x04,
    ReleaseRequest = 0x05,
    ReleaseResponse = 0x06,
    Abort = 0x07,
}

/// <summary>A-ASSOCIATE-RJ result (PS3.8 9.3.4).</summary>
public enum RejectResult : byte
{
    Permanent = 1,
    Transient = 2,
}

/// <summary>A-ASSOCIATE-RJ source.</summary>
public enum RejectSource : byte
{
    ServiceUser = 1,
    ServiceProviderAcse = 2,
    ServiceProviderPresentation = 3,
}

/// <summary>A-ASSOCIATE-RJ reasons (PS3.8 Table 9-21); the same number means different things per source.</summary>
public static class RejectReasons
{
    /// <summary>Source 1 (service user).</summary>
    public const byte NoReasonGiven = 1;

    public const byte ApplicationContextNotSupported = 2;

    public const byte CallingAENotRecognized = 3;

    public const byte CalledAENotRecognized = 7;

    /// <summary>Source 2 (ACSE).</summary>
    public const byte ProtocolVersionNotSupported = 2;

    /// <summary>Source 3 (presentation).</summary>
    public const byte TemporaryCongestion = 1;

    public const byte LocalLimitExceeded = 2;

    /// <summary>The reason in the words of PS3.8 Table 9-21, for logs and operators.</summary>
    public static string Describe(RejectSource source, byte reason) => (source, reason) switch
    {
        (RejectSource.ServiceUser, NoReasonGiven) => "no reason given",
        (RejectSource.ServiceUser, ApplicationContextNotSupported) => "application context name not supported",
        (RejectSource.ServiceUser, CallingAENotRecognized) => "calling AE title not recognized",
        (RejectSource.ServiceUser, CalledAENotRecognized) => "called AE title not recognized",
        (RejectSource.ServiceProviderAcse, ProtocolVersionNotSupported) => "protocol version not supported",
        (RejectSource.ServiceProviderPresentation, TemporaryCongestion) => "temporary congestion",
        (RejectSource.ServiceProviderPresentation, LocalLimitExceeded) => "local limit exceeded",
        _ => $"reason {reason} from {source}",
    };
}

/// <summary>A-ABORT source (PS3.8 9.3.8).</summary>
public enum AbortSource : byte
{
    ServiceUser = 0,
    ServiceProvider = 2,
}

/// <summary>A-ABORT reason when the provider aborts.</summary>
public enum AbortReason : byte
{
    NotSpecified = 0,
    UnrecognizedPdu = 1,
    UnexpectedPdu = 2,
    UnrecognizedPduParameter = 4,
    UnexpectedPduParameter = 5,
    InvalidPduParameterValue = 6,
}

/// <summary>Result of one presentation context in an A-ASSOCIATE-AC (PS3.8 9.3.3.2).</summary>
public enum PresentationContextResult : byte
{
    Acceptance = 0,
    UserRejection = 1,
    NoReason = 2,
    AbstractSyntaxNotSupported = 3,
    TransferSyntaxesNotSupported = 4,
}

/// <summary>Kinds of user identity in the User Identity Negotiation sub-item (PS3.7 D.3.3.7).</summary>
public enum UserIdentityType : byte
{
    Username = 1,
    UsernameAndPasscode = 2,
    Kerberos = 3,
    Saml = 4,
    Jwt = 5,
}

/// <summary>A presentation context as proposed by the requestor and answered by the acceptor.</summary>
public sealed class PresentationContext
{
    public PresentationContext(byte id, string abstractSyntax, IReadOnlyList<string> transferSyntaxes)
    {
        Id = id;
        AbstractSyntax = abstractSyntax;
        TransferSyntaxes = transferSyntaxes;
    }

    /// <summary>Odd number 1-255.</summary>
    public byte Id { get; }

    public string AbstractSyntax { get; }

    /// <summary>Proposed transfer syntaxes, in the requestor's order of preference.</summary>
    public IReadOnlyList<string> TransferSyntaxes { get; }

    public PresentationContextResult Result { get; set; } = PresentationContextResult.NoReason;

    /// <summary>The transfer syntax chosen by the acceptor.</summary>
    public string? AcceptedTransferSyntax { get; set; }

    /// <summary>SCU/SCP role selection (PS3.7 D.3.3.4), when negotiated.</summary>
    public bool? ScuRole { get; set; }

    public bool? ScpRole { get; set; }

    public bool IsAccepted => Result == PresentationContextResult.Acceptance && AcceptedTransferSyntax is not null;
}

/// <summary>User identity sent by a requestor (username, passcode, token...).</summary>
public sealed record UserIdentity(UserIdentityType Type, bool PositiveResponseRequested, byte[] PrimaryField, byte[] SecondaryField);

/// <summary>SCU/SCP role selection proposal for one SOP class.</summary>
public sealed record RoleSelection(string SopClassUid, bool ScuRole, bool ScpRole);

/// <summary>The A-ASSOCIATE-RQ parameters, and after negotiation the A-ASSOCIATE-AC ones.</summary>
public sealed class AssociationParameters
{
    public const string ApplicationContext = "1.2.840.10008.3.1.1.1";

    public string CalledAE { get; set; } = "ANY-SCP";

    public string CallingAE { get; set; } = "ANY-SCU";

    /// <summary>
    /// The called and calling AE title fields of a received A-ASSOCIATE-RQ, 32 bytes as they came: the A-ASSOCIATE-AC
    /// echoes them unchanged (PS3.8 9.3.3.2), padding and leading spaces included, where the titles above are trimmed.
    /// </summary>
    internal byte[]? ReceivedAETitleFields { get; set; }

    public string ApplicationContextName { get; set; } = ApplicationContext;

    public ushort ProtocolVersion { get; set; } = 1;

    public List<PresentationContext> PresentationContexts { get; } = [];

    /// <summary>Largest P-DATA-TF PDU (variable field) the sender of these parameters can receive; 0 means unlimited.</summary>
    public uint MaxPduLength { get; set; } = 16384;

    public string? ImplementationClassUid { get; set; } = DicomImplementation.ClassUid;

    public string? ImplementationVersionName { get; set; } = DicomImplementation.VersionName;

    /// <summary>Asynchronous operations window: invoked and performed; null when not negotiated (one at a time).</summary>
    public (ushort Invoked, ushort Performed)? AsyncOperations { get; set; }

    public List<RoleSelection> RoleSelections { get; } = [];

    public UserIdentity? UserIdentity { get; set; }

    /// <summary>The acceptor's User Identity server response, when the requestor asked for one.</summary>
    public byte[]? UserIdentityResponse { get; set; }

    /// <summary>SOP class extended negotiation sub-items, kept opaque (SOP class UID, application information).</summary>
    public List<(string SopClassUid, byte[] Information)> ExtendedNegotiations { get; } = [];

    public PresentationContext? FindContext(byte id) => PresentationContexts.Find(pc => pc.Id == id);
}
