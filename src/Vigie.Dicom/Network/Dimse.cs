using System.Buffers.Binary;
using Vigie.Dicom.IO;

namespace Vigie.Dicom.Network;

/// <summary>Command Field values (PS3.7 E.1).</summary>
public enum DimseCommand : ushort
{
    CStoreRequest = 0x0001,
    CStoreResponse = 0x8001,
    CGetRequest = 0x0010,
    CGetResponse = 0x8010,
    CFindRequest = 0x0020,
    CFindResponse = 0x8020,
    CMoveRequest = 0x0021,
    CMoveResponse = 0x8021,
    CEchoRequest = 0x0030,
    CEchoResponse = 0x8030,
    NEventReportRequest = 0x0100,
    NEventReportResponse = 0x8100,
    NGetRequest = 0x0110,
    NGetResponse = 0x8110,
    NSetRequest = 0x0120,
    NSetResponse = 0x8120,
    NActionRequest = 0x0130,
    NActionResponse = 0x8130,
    NCreateRequest = 0x0140,
    NCreateResponse = 0x8140,
    NDeleteRequest = 0x0150,
    NDeleteResponse = 0x8150,
    CCancelRequest = 0x0FFF,
}

/// <summary>DIMSE status codes used by Vigie (PS3.7 Annex C and the service classes of PS3.4); see docs/dimse-statuses.md.</summary>
public static class DimseStatus
{
    public const ushort Success = 0x0000;
    public const ushort Pending = 0xFF00;
    public const ushort PendingWithWarnings = 0xFF01;
    public const ushort Cancel = 0xFE00;

    /// <summary>Warning: sub-operations complete, one or more failures (C-GET, C-MOVE).</summary>
    public const ushort SubOperationsWarning = 0xB000;

    /// <summary>Warning: coercion of data elements (C-STORE).</summary>
    public const ushort CoercionOfDataElements = 0xB000;

    public const ushort SopClassNotSupported = 0x0122;

    /// <summary>Refused: not authorized. Vigie's answer to an object its inspection refused, with the rule in Error Comment.</summary>
    public const ushort NotAuthorized = 0x0124;

    /// <summary>No such object instance (N-services; a storage commitment Failure Reason).</summary>
    public const ushort NoSuchObjectInstance = 0x0112;

    public const ushort InvalidArgumentValue = 0x0115;

    public const ushort InvalidObjectInstance = 0x0117;

    /// <summary>Class-instance conflict: the SOP class given is not the instance's.</summary>
    public const ushort ClassInstanceConflict = 0x0119;

    public const ushort NoSuchActionType = 0x0123;

    /// <summary>Resource limitation (a storage commitment Failure Reason).</summary>
    public const ushort ResourceLimitation = 0x0213;

    public const ushort DuplicateInvocation = 0x0210;
    public const ushort UnrecognizedOperation = 0x0211;
    public const ushort MistypedArgument = 0x0212;

    /// <summary>Refused: out of resources (a limit was reached, storage unavailable).</summary>
    public const ushort OutOfResources = 0xA700;

    /// <summary>Refused: out of resources, unable to calculate number of matches / perform sub-operations.</summary>
    public const ushort OutOfResourcesSubOperations = 0xA702;

    /// <summary>Refused: move destination unknown.</summary>
    public const ushort MoveDestinationUnknown = 0xA801;

    /// <summary>Error: data set does not match SOP class.</summary>
    public const ushort DataSetDoesNotMatchSopClass = 0xA900;

    /// <summary>Error: cannot understand (the data set could not be parsed).</summary>
    public const ushort CannotUnderstand = 0xC000;

    /// <summary>Failed: unable to process (processing failure).</summary>
    public const ushort ProcessingFailure = 0x0110;

    /// <summary>Identifier does not match SOP class (C-FIND, C-GET, C-MOVE).</summary>
    public const ushort IdentifierDoesNotMatchSopClass = 0xA900;

    public static bool IsPending(ushort status) => status is Pending or PendingWithWarnings;

    public static bool IsSuccessOrWarning(ushort status) => status == Success || (status & 0xF000) == 0xB000 || status == 0x0107 || status == 0x0116;
}

/// <summary>Priority (0000,0700).</summary>
public enum DimsePriority : ushort
{
    Medium = 0x0000,
    High = 0x0001,
    Low = 0x0002,
}

/// <summary>A DIMSE command set (group 0000, always implicit VR little endian) with helpers for its fields.</summary>
public sealed class DimseMessage
{
    public const ushort NoDataSet = 0x0101;

    public DimseMessage(DicomDataset command, byte presentationContextId)
    {
        Command = command;
        PresentationContextId = presentationContextId;
    }

    public DicomDataset Command { get; }

    public byte PresentationContextId { get; }

    public DimseCommand Field => (DimseCommand)UInt16(DicomTags.CommandField);

    public ushort MessageId => UInt16(DicomTags.MessageID);

    public ushort MessageIdBeingRespondedTo => UInt16(DicomTags.MessageIDBeingRespondedTo);

    public ushort Status => UInt16(DicomTags.Status);

    public bool HasDataSet => UInt16(DicomTags.CommandDataSetType) != NoDataSet;

    public string? AffectedSopClassUid => Uid(DicomTags.AffectedSOPClassUID);

    public string? AffectedSopInstanceUid => Uid(DicomTags.AffectedSOPInstanceUID);

    /// <summary>The SOP class an N-ACTION (or N-GET, N-SET, N-DELETE) addresses.</summary>
    public string? RequestedSopClassUid => Uid(DicomTags.RequestedSOPClassUID);

    public string? RequestedSopInstanceUid => Uid(DicomTags.RequestedSOPInstanceUID);

    public ushort ActionTypeId => UInt16(DicomTags.ActionTypeID);

    public ushort EventTypeId => UInt16(DicomTags.EventTypeID);

    public string? MoveDestination => Command.GetString(DicomTags.MoveDestination)?.Trim();

    public string? ErrorComment => Command.GetString(DicomTags.ErrorComment);

    public bool IsRequest => ((ushort)Field & 0x8000) == 0;

    public static DimseMessage EchoRequest(ushort messageId, byte contextId) =>
        Create(contextId, DimseCommand.CEchoRequest, DicomUids.Verification, messageId, respondingTo: null, dataSet: false);

    public static DimseMessage StoreRequest(ushort messageId, byte contextId, string sopClassUid, string sopInstanceUid,
        DimsePriority priority = DimsePriority.Medium, string? moveOriginatorAE = null, ushort? moveOriginatorMessageId = null)
    {
        var message = Create(contextId, DimseCommand.CStoreRequest, sopClassUid, messageId, respondingTo: null, dataSet: true);
        message.Command.SetUInt16(DicomTags.Priority, (ushort)priority);
        message.Command.SetString(DicomTags.AffectedSOPInstanceUID, DicomVR.UI, sopInstanceUid);
        if (moveOriginatorAE is not null)
        {
            message.Command.SetString(DicomTags.MoveOriginatorApplicationEntityTitle, DicomVR.AE, moveOriginatorAE);
            message.Command.SetUInt16(DicomTags.MoveOriginatorMessageID, moveOriginatorMessageId ?? 0);
        }

        return message;
    }

    public static DimseMessage FindRequest(ushort messageId, byte contextId, string sopClassUid, DimsePriority priority = DimsePriority.Medium)
    {
        var message = Create(contextId, DimseCommand.CFindRequest, sopClassUid, messageId, respondingTo: null, dataSet: true);
        message.Command.SetUInt16(DicomTags.Priority, (ushort)priority);
        return message;
    }

    /// <summary>A C-GET-RQ: the identifier follows; the objects come back as C-STORE sub-operations on the same association.</summary>
    public static DimseMessage GetRequest(ushort messageId, byte contextId, string sopClassUid, DimsePriority priority = DimsePriority.Medium)
    {
        var message = Create(contextId, DimseCommand.CGetRequest, sopClassUid, messageId, respondingTo: null, dataSet: true);
        message.Command.SetUInt16(DicomTags.Priority, (ushort)priority);
        return message;
    }

    /// <summary>An N-ACTION-RQ on <paramref name="sopInstanceUid"/>: the object is named as Requested (PS3.7 10.1.4.1).</summary>
    public static DimseMessage ActionRequest(ushort messageId, byte contextId, string sopClassUid, string sopInstanceUid, ushort actionTypeId, bool dataSet)
    {
        var message = Create(contextId, DimseCommand.NActionRequest, null, messageId, respondingTo: null, dataSet);
        message.Command.SetString(DicomTags.RequestedSOPClassUID, DicomVR.UI, sopClassUid);
        message.Command.SetString(DicomTags.RequestedSOPInstanceUID, DicomVR.UI, sopInstanceUid);
        message.Command.SetUInt16(DicomTags.ActionTypeID, actionTypeId);
        return message;
    }

    /// <summary>An N-EVENT-REPORT-RQ about <paramref name="sopInstanceUid"/> carrying its Event Information.</summary>
    public static DimseMessage EventReportRequest(ushort messageId, byte contextId, string sopClassUid, string sopInstanceUid, ushort eventTypeId)
    {
        var message = Create(contextId, DimseCommand.NEventReportRequest, sopClassUid, messageId, respondingTo: null, dataSet: true);
        message.Command.SetString(DicomTags.AffectedSOPInstanceUID, DicomVR.UI, sopInstanceUid);
        message.Command.SetUInt16(DicomTags.EventTypeID, eventTypeId);
        return message;
    }

    public static DimseMessage CancelRequest(ushort respondingTo, byte contextId)
    {
        var command = new DicomDataset();
        command.SetUInt16(DicomTags.CommandField, (ushort)DimseCommand.CCancelRequest);
        command.SetUInt16(DicomTags.MessageIDBeingRespondedTo, respondingTo);
        command.SetUInt16(DicomTags.CommandDataSetType, NoDataSet);
        return new DimseMessage(command, contextId);
    }

    /// <summary>The response to <paramref name="request"/> with a status; copies the affected SOP class and instance.</summary>
    public static DimseMessage Response(DimseMessage request, ushort status, bool dataSet = false, string? errorComment = null)
    {
        var field = (DimseCommand)((ushort)request.Field | 0x8000);
        // An N-ACTION names its object as Requested; the response names the same one as Affected (PS3.7 10.1.4.1).
        var action = request.Field == DimseCommand.NActionRequest;
        var message = Create(request.PresentationContextId, field, action ? request.RequestedSopClassUid : request.AffectedSopClassUid, null, request.MessageId, dataSet);
        message.Command.SetUInt16(DicomTags.Status, status);
        if ((action ? request.RequestedSopInstanceUid : request.AffectedSopInstanceUid) is { } instance)
        {
            message.Command.SetString(DicomTags.AffectedSOPInstanceUID, DicomVR.UI, instance);
        }

        if (action)
        {
            message.Command.SetUInt16(DicomTags.ActionTypeID, request.ActionTypeId);
        }
        else if (request.Field == DimseCommand.NEventReportRequest)
        {
            message.Command.SetUInt16(DicomTags.EventTypeID, request.EventTypeId);
        }

        if (errorComment is not null)
        {
            // LO: at most 64 characters.
            message.Command.SetString(DicomTags.ErrorComment, DicomVR.LO, FitErrorComment(errorComment));
        }

        return message;
    }

    /// <summary>Sets the sub-operation counters of a C-GET or C-MOVE response.</summary>
    public DimseMessage WithSubOperations(int remaining, int completed, int failed, int warning)
    {
        if (remaining >= 0)
        {
            Command.SetUInt16(DicomTags.NumberOfRemainingSuboperations, (ushort)Math.Min(remaining, ushort.MaxValue));
        }

        Command.SetUInt16(DicomTags.NumberOfCompletedSuboperations, (ushort)Math.Min(completed, ushort.MaxValue));
        Command.SetUInt16(DicomTags.NumberOfFailedSuboperations, (ushort)Math.Min(failed, ushort.MaxValue));
        Command.SetUInt16(DicomTags.NumberOfWarningSuboperations, (ushort)Math.Min(warning, ushort.MaxValue));
        return this;
    }

    /// <summary>The encoded command set, with its group length, in implicit VR little endian (PS3.7 6.3.1).</summary>
    public byte[] Encode()
    {
        Command.Remove(DicomTags.CommandGroupLength);
        var length = DicomWriter.MeasureDataset(Command, TransferSyntax.ImplicitVRLittleEndian);
        Command.SetUInt32(DicomTags.CommandGroupLength, DicomVR.UL, (uint)length);
        return DicomWriter.Encode(Command, TransferSyntax.ImplicitVRLittleEndian);
    }

    public override string ToString() => $"{Field} id={(IsRequest ? MessageId : MessageIdBeingRespondedTo)} pc={PresentationContextId}";

    private static DimseMessage Create(byte contextId, DimseCommand field, string? sopClassUid, ushort? messageId, ushort? respondingTo, bool dataSet)
    {
        var command = new DicomDataset();
        if (sopClassUid is not null)
        {
            command.SetString(DicomTags.AffectedSOPClassUID, DicomVR.UI, sopClassUid);
        }

        command.SetUInt16(DicomTags.CommandField, (ushort)field);
        if (messageId is { } id)
        {
            command.SetUInt16(DicomTags.MessageID, id);
        }

        if (respondingTo is { } responding)
        {
            command.SetUInt16(DicomTags.MessageIDBeingRespondedTo, responding);
        }

        command.SetUInt16(DicomTags.CommandDataSetType, dataSet ? (ushort)0x0000 : NoDataSet);
        return new DimseMessage(command, contextId);
    }

    private ushort UInt16(DicomTag tag) =>
        Command[tag] is DicomValueElement { Length: >= 2 } value ? BinaryPrimitives.ReadUInt16LittleEndian(value.Span) : (ushort)0;

    private string? Uid(DicomTag tag) => Command.GetString(tag) is { } text ? DicomText.TrimUid(text) : null;

    /// <summary>
    /// An Error Comment within LO's 64 characters: cut at a word, with "..." to say so, rather than mid-word (a UID
    /// or a keyword cut short reads as another one).
    /// </summary>
    internal static string FitErrorComment(string comment)
    {
        const int Max = 64;
        if (comment.Length <= Max)
        {
            return comment;
        }

        var cut = comment.LastIndexOf(' ', Max - 3);
        return comment[..(cut > Max / 2 ? cut : Max - 3)].TrimEnd(' ', ',', ';', ':', '(') + "...";
    }
}
