namespace Vigie.Audit.Model;

/// <summary>Validation of the text an entry stores: bounded, no control characters (PostgreSQL refuses NUL, and '|' and newline separate codes).</summary>
internal static class AuditText
{
    public static void Check(string? value, string field, int maxLength, bool forbidPipe, bool required)
    {
        if (value is null || value.Length == 0)
        {
            if (required)
            {
                throw new AuditRecordException(field, "is required");
            }

            return;
        }

        if (value.Length > maxLength)
        {
            throw new AuditRecordException(field, $"is {value.Length} characters long, more than {maxLength}");
        }

        foreach (var c in value)
        {
            if (char.IsControl(c) || (forbidPipe && c == '|'))
            {
                throw new AuditRecordException(field, $"holds a forbidden character (U+{(int)c:X4})");
            }
        }
    }
}

/// <summary>An audit record that cannot be stored as given; the message names the field and never echoes its value.</summary>
public sealed class AuditRecordException(string field, string reason) : ArgumentException($"Audit record field {field} {reason}.")
{
    public string Field { get; } = field;
}
