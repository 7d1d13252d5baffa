using System.Numerics;
using System.Security.Cryptography;

namespace Vigie.Dicom;

/// <summary>Vigie's identity as a DICOM implementation, and UID generation.</summary>
public static class DicomImplementation
{
    /// <summary>Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID under the 2.25 arc (PS3.5 B.2).</summary>
    public const string ClassUid = "2.25.162349276597678079163811979811784479205";

    /// <summary>Implementation Version Name (at most 16 characters).</summary>
    public const string VersionName = "VIGIE_0_1";

    /// <summary>A new globally unique UID: 2.25 followed by a random UUID as a decimal integer.</summary>
    public static string NewUid()
    {
        Span<byte> bytes = stackalloc byte[16];
        RandomNumberGenerator.Fill(bytes);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x40); // version 4
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // RFC 4122 variant
        return "2.25." + new BigInteger(bytes, isUnsigned: true, isBigEndian: true).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
