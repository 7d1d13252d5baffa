using System.Text;

namespace Vigie.Dicom;

/// <summary>String value rules of PS3.5 6.2: decoding, padding, splitting on the value delimiter.</summary>
public static class DicomText
{
    /// <summary>Decodes a string value as a whole, trailing padding removed, leading spaces removed where insignificant.</summary>
    public static string Decode(ReadOnlySpan<byte> bytes, DicomVR vr, DicomCharacterSet characterSet)
    {
        var text = DicomVRInfo.UsesSpecificCharacterSet(vr)
            ? characterSet.Decode(bytes, vr)
            : DicomCharacterSet.Default.Decode(bytes, vr);
        return text.TrimEnd(' ', '\0');
    }

    /// <summary>Splits a decoded string into its values (only multi-valued VRs), trimming each as its VR says.</summary>
    public static string[] SplitValues(string text, DicomVR vr, bool trimLeading = true)
    {
        if (text.Length == 0)
        {
            return [];
        }

        var values = DicomVRInfo.IsMultiValuedString(vr) ? text.Split('\\') : [text];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = Trim(values[i], vr, trimLeading);
        }

        return values;
    }

    /// <summary>Removes insignificant padding: trailing spaces/NULs always, leading spaces for AE, AS, CS, DA, DS, DT, IS, TM, UI.</summary>
    public static string Trim(string value, DicomVR vr, bool trimLeading = true)
    {
        value = value.TrimEnd(' ', '\0');
        if (trimLeading && vr is DicomVR.AE or DicomVR.AS or DicomVR.CS or DicomVR.DA or DicomVR.DS or DicomVR.DT or DicomVR.IS
                or DicomVR.TM or DicomVR.UI)
        {
            value = value.TrimStart(' ', '\0');
        }

        return value;
    }

    /// <summary>UIDs as found in meta headers and UI elements: padding NULs and spaces removed.</summary>
    public static string TrimUid(string uid) => uid.Trim(' ', '\0');

    /// <summary>Encodes a string value and pads it to even length with the VR's padding byte.</summary>
    public static byte[] Encode(string value, DicomVR vr, DicomCharacterSet characterSet)
    {
        var bytes = DicomVRInfo.UsesSpecificCharacterSet(vr)
            ? characterSet.Encode(value, vr)
            : Encoding.ASCII.GetBytes(value);
        if ((bytes.Length & 1) == 0)
        {
            return bytes;
        }

        var padded = new byte[bytes.Length + 1];
        bytes.CopyTo(padded, 0);
        padded[^1] = DicomVRInfo.PaddingByte(vr);
        return padded;
    }
}
