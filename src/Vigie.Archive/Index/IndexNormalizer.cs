using System.Globalization;
using System.Text;

namespace Vigie.Archive.Index;

/// <summary>
/// How values are normalised before they are hashed, so that a query and a stored value that DICOM would match
/// hash alike. Exposed so that other modules (the audit trail) hash identifiers exactly as the index does.
/// </summary>
public static class IndexNormalizer
{
    /// <summary>UIDs: no padding (trailing NUL or spaces).</summary>
    public static string Uid(string value) => value.Trim().TrimEnd('\0').Trim();

    /// <summary>LO/SH/CS identifiers (Patient ID, accession number): leading and trailing spaces are not significant; case is.</summary>
    public static string Identifier(string value) => value.Trim().TrimEnd('\0').Trim();

    /// <summary>Dates: YYYYMMDD (the old YYYY.MM.DD form is accepted).</summary>
    public static string Date(string value) => Identifier(value).Replace(".", "", StringComparison.Ordinal);

    /// <summary>
    /// Person names for hashing: the alphabetic group only, upper case, accents removed, empty trailing components and
    /// padding dropped. "Dupont^Jean^^^" and "DUPONT^JEAN" normalise alike.
    /// </summary>
    public static string PersonName(string value)
    {
        var alphabetic = value.Split('=')[0];
        var decomposed = alphabetic.Normalize(NormalizationForm.FormD);
        var builder = new StringBuilder(decomposed.Length);
        foreach (var c in decomposed)
        {
            if (CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark && c != '\0')
            {
                builder.Append(char.ToUpperInvariant(c));
            }
        }

        return builder.ToString().Normalize(NormalizationForm.FormC).Trim().TrimEnd('^', ' ').Trim();
    }
}
