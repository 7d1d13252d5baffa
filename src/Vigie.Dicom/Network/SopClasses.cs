using System.Collections.Frozen;

namespace Vigie.Dicom.Network;

/// <summary>SOP classes the node serves, from the UID registry.</summary>
public static class SopClasses
{
    /// <summary>Every storage SOP class of the registry (retired ones included: old modalities still send them).</summary>
    public static FrozenSet<string> Storage { get; } = DicomDictionary.Uids
        .Where(u => u.Type == "SOP Class" && u.Name.Contains("Storage", StringComparison.Ordinal)
            && !u.Name.Contains("Storage Commitment", StringComparison.Ordinal)
            && u.Uid != DicomUids.MediaStorageDirectoryStorage)
        .Select(u => u.Uid)
        .ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> Find { get; } = new[]
    {
        DicomUids.PatientRootQueryRetrieveInformationModelFind,
        DicomUids.StudyRootQueryRetrieveInformationModelFind,
    }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> Get { get; } = new[]
    {
        DicomUids.PatientRootQueryRetrieveInformationModelGet,
        DicomUids.StudyRootQueryRetrieveInformationModelGet,
    }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> Move { get; } = new[]
    {
        DicomUids.PatientRootQueryRetrieveInformationModelMove,
        DicomUids.StudyRootQueryRetrieveInformationModelMove,
    }.ToFrozenSet(StringComparer.Ordinal);

    public static bool IsStorage(string uid) => Storage.Contains(uid);

    /// <summary>
    /// Whether the SOP class of a presentation context defines a DIMSE-C operation (PS3.4): C-ECHO on Verification only,
    /// C-FIND, C-GET and C-MOVE on their own Q/R models, and C-STORE on any other class (storage classes: the node accepts
    /// no other, and checks its own list again). Other commands are judged where they are served.
    /// </summary>
    public static bool Defines(string abstractSyntax, DimseCommand command) => command switch
    {
        DimseCommand.CEchoRequest => abstractSyntax == DicomUids.Verification,
        DimseCommand.CFindRequest => Find.Contains(abstractSyntax),
        DimseCommand.CGetRequest => Get.Contains(abstractSyntax),
        DimseCommand.CMoveRequest => Move.Contains(abstractSyntax),
        DimseCommand.CStoreRequest => abstractSyntax != DicomUids.Verification && abstractSyntax != DicomUids.StorageCommitmentPushModel
            && !Find.Contains(abstractSyntax) && !Get.Contains(abstractSyntax) && !Move.Contains(abstractSyntax),
        _ => true,
    };
}

/// <summary>Answers presentation contexts: which abstract syntaxes are allowed, and which transfer syntax to pick.</summary>
public static class PresentationContextNegotiator
{
    /// <summary>Transfer syntaxes Vigie can read and store for storage classes: every registered one, kept as received.</summary>
    public static bool CanStore(string transferSyntax) => TransferSyntax.TryLookup(transferSyntax, out var syntax)
        && syntax.Uid is not ("1.2.840.10008.1.2.6.1" or "1.2.840.10008.1.2.6.2"); // MIME and XML encodings are not DICOM streams

    /// <summary>What the node can send an object in: as stored, or converted to another uncompressed little-endian syntax; never big endian or deflated, which it only reads.</summary>
    public static bool CanSend(string transferSyntax) => CanStore(transferSyntax)
        && transferSyntax is not (DicomUids.ExplicitVRBigEndian or DicomUids.DeflatedExplicitVRLittleEndian);

    /// <summary>Explicit, then implicit little endian (every stored object can go in either), then the rest in the proposed order.</summary>
    private static int SendPreference(string transferSyntax) => transferSyntax switch
    {
        DicomUids.ExplicitVRLittleEndian => 0,
        DicomUids.ImplicitVRLittleEndian => 1,
        _ => 2,
    };

    /// <summary>Query/retrieve and verification use the uncompressed syntaxes only.</summary>
    public static bool IsUncompressed(string transferSyntax) => transferSyntax is DicomUids.ImplicitVRLittleEndian or DicomUids.ExplicitVRLittleEndian;

    /// <summary>
    /// Fills each context's result: rejected with <see cref="PresentationContextResult.AbstractSyntaxNotSupported"/> or
    /// <see cref="PresentationContextResult.UserRejection"/> (not permitted to this caller), else the first proposed transfer
    /// syntax the node handles (the requestor's preference order).
    /// </summary>
    /// <param name="sentOn">
    /// Storage SOP classes the node will send on, not receive (C-GET results, the requestor taking the SCP role): for
    /// those the syntax is the one it can send best, uncompressed first, never one it can only read (big endian,
    /// deflate). Taking the requestor's first there (JPEG, as `getscu +xy` lists it) failed every image of an
    /// uncompressed study, which dcmtk's own server sends uncompressed from the same proposal.
    /// </param>
    /// <param name="bothWays">
    /// Storage SOP classes the requestor both sends and receives on (both roles): the first uncompressed little-endian
    /// syntax it proposes, in which Vigie can send every object and the requestor store anything it can read, else its
    /// first one Vigie stores (deflate, big endian, a compressed one: its C-GET then gets only objects stored so). Before
    /// 2026-12-06 these were answered as <paramref name="sentOn"/>, which refused a deflated or big-endian context.
    /// </param>
    /// <param name="isStorage">Which abstract syntaxes are storage classes (the registry's by default; a node may take more).</param>
    public static void Answer(AssociationParameters request, Func<string, bool> isSupported, Func<string, bool> isPermitted, Func<string, bool>? sentOn = null,
        Func<string, bool>? bothWays = null, Func<string, bool>? isStorage = null)
    {
        isStorage ??= SopClasses.IsStorage;
        foreach (var context in request.PresentationContexts)
        {
            if (!isSupported(context.AbstractSyntax))
            {
                context.Result = PresentationContextResult.AbstractSyntaxNotSupported;
                continue;
            }

            if (!isPermitted(context.AbstractSyntax))
            {
                context.Result = PresentationContextResult.UserRejection;
                continue;
            }

            var storage = isStorage(context.AbstractSyntax);
            var chosen = !storage ? context.TransferSyntaxes.FirstOrDefault(IsUncompressed)
                : sentOn?.Invoke(context.AbstractSyntax) == true ? context.TransferSyntaxes.Where(CanSend).OrderBy(SendPreference).FirstOrDefault()
                : bothWays?.Invoke(context.AbstractSyntax) == true ? context.TransferSyntaxes.FirstOrDefault(IsUncompressed) ?? context.TransferSyntaxes.FirstOrDefault(CanStore)
                : context.TransferSyntaxes.FirstOrDefault(CanStore);
            if (chosen is null)
            {
                context.Result = PresentationContextResult.TransferSyntaxesNotSupported;
                continue;
            }

            context.Result = PresentationContextResult.Acceptance;
            context.AcceptedTransferSyntax = chosen;
        }
    }
}
