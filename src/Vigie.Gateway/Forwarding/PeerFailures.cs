using Vigie.Dicom.Network;

namespace Vigie.Gateway.Forwarding;

/// <summary>How the outbound senders (forwarder, storage commitment reporter) judge a failure and space their retries.</summary>
internal static class PeerFailures
{
    /// <summary>
    /// The peer is down, unreachable, refusing for now, dropped the association, or its TLS certificate is not
    /// trusted: worth trying again later, with the reason shown where the operators look (/health, `forward status`).
    /// </summary>
    public static bool IsTransient(Exception e) => DicomFailures.IsAssociationLost(e)
        || e is System.Net.Sockets.SocketException or DicomAssociationRejectedException or TimeoutException or System.Security.Authentication.AuthenticationException;

    /// <summary>
    /// Only a setting can end it, on either side: Vigie's client certificate refused, the peer's certificate not
    /// trusted or the handshake refused, or a permanent association rejection (an AE title not recognised...).
    /// </summary>
    public static bool NeedsSetting(Exception e) => e is DicomClientCertificateRefusedException or System.Security.Authentication.AuthenticationException
        || e is DicomAssociationRejectedException { Result: RejectResult.Permanent };

    /// <summary>Exponential back-off: the initial delay after the first failure, doubling up to the maximum.</summary>
    public static TimeSpan RetryDelay(int attempts, ForwardingOptions settings)
    {
        var exponent = Math.Min(Math.Max(0, attempts - 1), 20);
        return TimeSpan.FromTicks(Math.Min(settings.MaxRetryDelay.Ticks, settings.InitialRetryDelay.Ticks * (1L << exponent)));
    }
}
