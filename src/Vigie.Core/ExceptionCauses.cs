namespace Vigie.Core;

public static class ExceptionCauses
{
    /// <summary>
    /// An error's message with the causes it leaves out: .NET's "Authentication failed, see inner exception" hid that a
    /// collector spoke only TLS 1.0, Npgsql's "Failed to connect to host:port" that the connection was refused.
    /// </summary>
    public static string Describe(Exception e)
    {
        var message = e.Message.TrimEnd('.', ' ');
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            var cause = inner.Message.TrimEnd('.', ' ');
            if (cause.Length > 0 && !message.Contains(cause, StringComparison.Ordinal))
            {
                message += ": " + cause;
            }
        }

        return message;
    }
}
