namespace Vigie.Dicom.Network;

/// <summary>Per-association limits and timers (configuration section "Dicom:Network").</summary>
public sealed class DicomAssociationOptions
{
    /// <summary>Largest P-DATA-TF PDU Vigie accepts (advertised as Maximum Length); a bigger one aborts the association.</summary>
    public uint MaxPduLength { get; set; } = 256 * 1024;

    /// <summary>
    /// Largest P-DATA-TF PDU Vigie sends, whatever the peer advertises (0: as advertised, 1 MiB when it advertises no
    /// limit). For peers that advertise more than they can take.
    /// </summary>
    public uint MaxSendPduLength { get; set; }

    /// <summary>
    /// Largest A-ASSOCIATE-RQ/AC accepted. 1 MiB holds the largest legal request Vigie reads (128 presentation contexts of 64
    /// transfer syntaxes with 64-byte UIDs, about 570 KB, with role, extended negotiation and user identity items); a
    /// longer request is answered with an A-ASSOCIATE-RJ. It was 64 KiB until 2026-12-07.
    /// </summary>
    public int MaxAssociatePduLength { get; set; } = 1024 * 1024;

    /// <summary>ARTIM: how long to wait for A-ASSOCIATE-RQ after connecting, for A-ASSOCIATE-AC/RJ, or for A-RELEASE-RP.</summary>
    public TimeSpan ArtimTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest silence between messages in the data phase before the association is aborted.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Once a PDU (or a message) has started, how long its remaining bytes may take: the slow-sender bound.</summary>
    public TimeSpan ReadTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Largest command set accepted.</summary>
    public int MaxCommandLength { get; set; } = 64 * 1024;

    /// <summary>Largest C-FIND/C-GET/C-MOVE identifier accepted (held in memory).</summary>
    public int MaxIdentifierLength { get; set; } = 1024 * 1024;

    /// <summary>Largest N-ACTION information accepted (held in memory): a storage commitment request lists every instance of a study.</summary>
    public int MaxActionInformationLength { get; set; } = 8 * 1024 * 1024;

    /// <summary>Operations Vigie performs at once on one association when the peer negotiates an asynchronous window.</summary>
    public ushort MaxOperationsPerformed { get; set; } = 8;
}
