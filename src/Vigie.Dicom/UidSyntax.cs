namespace Vigie.Dicom;

/// <summary>The form of a UID (PS3.5 9.1): dot-separated numeric components, at most 64 characters.</summary>
public static class UidSyntax
{
    /// <summary>Digits and dots, no empty component, no leading zero in a component of more than one digit.</summary>
    public static bool IsWellFormed(string text)
    {
        if (text.Length is 0 or > 64)
        {
            return false;
        }

        foreach (var range in text.AsSpan().Split('.'))
        {
            var component = text.AsSpan(range);
            if (component.IsEmpty || component.IndexOfAnyExceptInRange('0', '9') >= 0 || (component.Length > 1 && component[0] == '0'))
            {
                return false;
            }
        }

        return true;
    }
}
