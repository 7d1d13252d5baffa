using System.Collections.Frozen;

namespace Vigie.Dicom;

/// <summary>How a dataset is encoded: VR explicit or implicit, byte order, deflate, encapsulated pixel data.</summary>
public sealed class TransferSyntax : IEquatable<TransferSyntax>
{
    private static readonly FrozenDictionary<string, TransferSyntax> Known = BuildKnown();

    private TransferSyntax(string uid, string name, bool isExplicitVR, bool isLittleEndian, bool isDeflated, bool isEncapsulated,
        bool isKnown, bool isRetired)
    {
        Uid = uid;
        Name = name;
        IsExplicitVR = isExplicitVR;
        IsLittleEndian = isLittleEndian;
        IsDeflated = isDeflated;
        IsEncapsulated = isEncapsulated;
        IsKnown = isKnown;
        IsRetired = isRetired;
    }

    public string Uid { get; }

    public string Name { get; }

    public bool IsExplicitVR { get; }

    public bool IsLittleEndian { get; }

    /// <summary>The dataset after the meta group is a raw deflate stream (RFC 1951).</summary>
    public bool IsDeflated { get; }

    /// <summary>Pixel data is a sequence of fragments (compressed syntaxes and encapsulated uncompressed).</summary>
    public bool IsEncapsulated { get; }

    /// <summary>False for a UID the registry does not list as a transfer syntax.</summary>
    public bool IsKnown { get; }

    public bool IsRetired { get; }

    public static TransferSyntax ImplicitVRLittleEndian { get; } = Known[DicomUids.ImplicitVRLittleEndian];

    public static TransferSyntax ExplicitVRLittleEndian { get; } = Known[DicomUids.ExplicitVRLittleEndian];

    public static TransferSyntax ExplicitVRBigEndian { get; } = Known[DicomUids.ExplicitVRBigEndian];

    public static TransferSyntax DeflatedExplicitVRLittleEndian { get; } = Known[DicomUids.DeflatedExplicitVRLittleEndian];

    public static IEnumerable<TransferSyntax> All => Known.Values;

    /// <summary>
    /// The syntax for a UID. An unregistered UID is assumed to be explicit VR little endian with encapsulated pixel
    /// data (what private compressed syntaxes are in practice), and flagged <see cref="IsKnown"/> = false.
    /// </summary>
    public static TransferSyntax Lookup(string uid)
    {
        var clean = DicomText.TrimUid(uid);
        return Known.TryGetValue(clean, out var syntax)
            ? syntax
            : new TransferSyntax(clean, "Unknown transfer syntax", true, true, false, true, false, false);
    }

    public static bool TryLookup(string uid, out TransferSyntax syntax)
    {
        syntax = Lookup(uid);
        return syntax.IsKnown;
    }

    public bool Equals(TransferSyntax? other) => other is not null && Uid == other.Uid;

    public override bool Equals(object? obj) => Equals(obj as TransferSyntax);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Uid);

    public override string ToString() => $"{Name} ({Uid})";

    private static FrozenDictionary<string, TransferSyntax> BuildKnown()
    {
        var result = new Dictionary<string, TransferSyntax>(StringComparer.Ordinal);
        foreach (var entry in DicomDictionary.Uids.Where(u => u.Type == "Transfer Syntax"))
        {
            var uid = entry.Uid;
            var isImplicit = uid is DicomUids.ImplicitVRLittleEndian or "1.2.840.10008.1.20"; // Papyrus 3 implicit
            var isBigEndian = uid == DicomUids.ExplicitVRBigEndian;
            // JPIP (HTJ2K) Referenced Deflate; Deflated Image Frame Compression (1.2.840.10008.1.2.8.1) deflates frames, not the data set.
            var isDeflated = uid is DicomUids.DeflatedExplicitVRLittleEndian or "1.2.840.10008.1.2.4.95" or "1.2.840.10008.1.2.4.205";
            var isNative = isImplicit || isBigEndian || isDeflated
                || uid is DicomUids.ExplicitVRLittleEndian or "1.2.840.10008.1.2.4.94" or "1.2.840.10008.1.2.4.204"; // JPIP Referenced carries no pixel data
            result[uid] = new TransferSyntax(uid, entry.Name, !isImplicit, !isBigEndian, isDeflated, !isNative, true, entry.IsRetired);
        }

        return result.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
