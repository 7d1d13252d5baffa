using System.Globalization;
using System.Text;

namespace Vigie.Audit.Export;

/// <summary>RFC 5424 messages carrying an ATNA XML body (or a signed tree head), framed with RFC 6587 octet counting (also the RFC 5425 framing).</summary>
internal static class SyslogMessage
{
    /// <summary>authpriv (10) × 8 + notice (5), as IHE ITI-20 uses.</summary>
    public const int Priority = 85;

    /// <summary>MSGID of IHE ITI-20 for the DICOM audit message schema.</summary>
    public const string MessageId = "IHE+RFC-3881";

    /// <summary>MSGID of Vigie's signed tree head messages (a JSON body): the copy of each head kept outside the database.</summary>
    public const string TreeHeadMessageId = "VIGIE-STH";

    public static byte[] Frame(DateTimeOffset time, string hostName, string appName, ReadOnlySpan<byte> xmlBody, string messageId = MessageId)
    {
        var header = string.Create(CultureInfo.InvariantCulture,
            $"<{Priority}>1 {time.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss.fff'Z'} {Field(hostName, 255)} {Field(appName, 48)} {Environment.ProcessId} {messageId} - ");
        var headerBytes = Encoding.ASCII.GetBytes(header);
        ReadOnlySpan<byte> bom = [0xEF, 0xBB, 0xBF];
        var length = headerBytes.Length + bom.Length + xmlBody.Length;
        var prefix = Encoding.ASCII.GetBytes(length.ToString(CultureInfo.InvariantCulture) + " ");
        var frame = new byte[prefix.Length + length];
        prefix.CopyTo(frame, 0);
        headerBytes.CopyTo(frame, prefix.Length);
        bom.CopyTo(frame.AsSpan(prefix.Length + headerBytes.Length));
        xmlBody.CopyTo(frame.AsSpan(prefix.Length + headerBytes.Length + bom.Length));
        return frame;
    }

    // Header fields are printable US-ASCII without spaces, or the nil value.
    private static string Field(string value, int max)
    {
        var chars = value.Where(c => c is > ' ' and < (char)127).Take(max).ToArray();
        return chars.Length == 0 ? "-" : new string(chars);
    }
}
