namespace Vigie.Dicom;

/// <summary>A DICOM Part 10 file (or a headerless dataset) as read: preamble, file meta information and dataset.</summary>
public sealed class DicomFile
{
    public DicomFile(DicomDataset meta, DicomDataset dataset, TransferSyntax transferSyntax)
    {
        Meta = meta;
        Dataset = dataset;
        TransferSyntax = transferSyntax;
    }

    /// <summary>The 128-byte preamble, null when the file had none.</summary>
    public byte[]? Preamble { get; set; }

    /// <summary>File meta information (group 0002); empty for a headerless dataset.</summary>
    public DicomDataset Meta { get; }

    public DicomDataset Dataset { get; }

    /// <summary>The transfer syntax the dataset was read with.</summary>
    public TransferSyntax TransferSyntax { get; set; }

    /// <summary>Offset of the first dataset byte in the source.</summary>
    public long DatasetOffset { get; init; }

    /// <summary>Offset just past the last byte read; for a complete read, the source length.</summary>
    public long EndOffset { get; init; }

    /// <summary>With <see cref="DicomReadOptions.ReportTrailingData"/>, where bytes that are not part of the dataset begin.</summary>
    public long? TrailingDataOffset { get; init; }

    /// <summary>
    /// In a deflated file, where the inflated data set stops being elements, as an offset in the inflated bytes (the
    /// file's own offsets say nothing there); with <see cref="DicomReadOptions.ReportTrailingData"/> only.
    /// </summary>
    public long? InflatedTrailingDataOffset { get; init; }

    /// <summary>True when the read stopped early at <see cref="DicomReadOptions.StopAtTag"/>.</summary>
    public bool IsPartial { get; init; }

    /// <summary>Bytes of data set values the read loaded into memory; the rest stayed in the source as references.</summary>
    internal long LoadedBytes { get; init; }

    /// <summary>The file carried "DICM" and file meta information.</summary>
    public bool HasMetaInformation { get; init; }

    public IReadOnlyList<DicomWarning> Warnings { get; init; } = [];
}
