namespace Vigie.Dicom.IO;

/// <summary>
/// Implicit VR leaves "US or SS" and "OB or OW" elements to context (PS3.5 A.1, PS3.3 C.7.6.3.1.4, C.11.1.1.1).
/// Resolved the way other toolkits do, so values compare equal across them.
/// </summary>
internal static class AmbiguousVR
{
    public static void Resolve(DicomDataset dataset)
    {
        foreach (var element in dataset)
        {
            if (element is not DicomValueElement value || DicomDictionary.Find(element.Tag) is not { IsAmbiguous: true } entry)
            {
                continue;
            }

            if (entry.VR == DicomVR.OB)
            {
                // Native pixel data, waveform, overlay and curve data are always OW in implicit VR.
                value.VR = DicomVR.OW;
            }
            else if (element.Tag == DicomTags.LUTData)
            {
                value.VR = FirstDescriptorValue(dataset) == 1 ? DicomVR.US : DicomVR.OW;
            }
            else if (entry.AlternativeVRs.Contains(DicomVR.SS))
            {
                value.VR = PixelRepresentation(dataset) == 1 ? DicomVR.SS : DicomVR.US;
            }
        }
    }

    private static long PixelRepresentation(DicomDataset dataset)
    {
        for (var d = dataset; d is not null; d = d.Parent)
        {
            if (d.TryGetInt64(DicomTags.PixelRepresentation, out var value))
            {
                return value;
            }
        }

        return 0;
    }

    private static long FirstDescriptorValue(DicomDataset dataset) =>
        dataset.TryGet(DicomTags.LUTDescriptor, out var e) && e is DicomValueElement v && v.Length >= 2
            ? v.Span[0] | (v.Span[1] << 8)
            : 0;
}
