using System.Diagnostics;
using Vigie.Dicom;
using Vigie.Dicom.Network;

namespace Vigie.Gateway.Forwarding;

/// <summary>What a C-ECHO to a configured destination found: whether it answered, and if not, why, in the operators' words.</summary>
public sealed record EchoOutcome(string AETitle, string Host, int Port, bool Tls, string CallingAE, bool Answered, string Detail, TimeSpan Elapsed);

/// <summary>
/// Calls a destination exactly as forwarding, C-MOVE and storage commitment reports do (its address, timeouts, TLS
/// files, Vigie's calling AE title) and asks for a C-ECHO: the check a PACS administrator runs before going live.
/// </summary>
public static class DestinationEcho
{
    /// <summary>The calling AE title Vigie uses towards <paramref name="destination"/>: the forwarder's for the PACS, the node's otherwise.</summary>
    public static string CallingAE(DicomDestination destination, GatewayOptions gateway, string nodeAETitle) =>
        destination.Forward ? gateway.Forwarding.CallingAEOr(nodeAETitle) : nodeAETitle;

    public static async Task<EchoOutcome> EchoAsync(DicomDestination destination, string callingAE, CancellationToken cancellationToken)
    {
        var elapsed = Stopwatch.StartNew();
        EchoOutcome Outcome(bool answered, string detail) =>
            new(destination.AETitle, destination.Host, destination.Port, destination.UseTls, callingAE, answered, detail, elapsed.Elapsed);

        try
        {
            await using var client = await DicomClient.ConnectAsync(Destinations.ClientOptions(destination, callingAE),
                DicomClient.Propose([DicomUids.Verification], DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian), cancellationToken).ConfigureAwait(false);
            if (client.Association.FindAcceptedContext(DicomUids.Verification) is null)
            {
                await ReleaseAsync(client, cancellationToken).ConfigureAwait(false);
                // Reachable, and Vigie's AE title accepted, but no C-ECHO: not an answer (before 2026-12-06 counted as one, exit 0).
                return Outcome(false, "association accepted (address and AE titles right), but Verification refused: no C-ECHO");
            }

            var result = await client.EchoAsync(cancellationToken).ConfigureAwait(false);
            await ReleaseAsync(client, cancellationToken).ConfigureAwait(false);
            return result.Status == DimseStatus.Success
                ? Outcome(true, "C-ECHO answered")
                : Outcome(false, $"C-ECHO answered with status 0x{result.Status:X4}");
        }
        catch (Exception e) when (PeerFailures.IsTransient(e))
        {
            return Outcome(false, e switch
            {
                System.Security.Authentication.AuthenticationException => $"TLS: {e.Message}",
                PduException => $"protocol error (is it a DICOM port?): {e.Message}",
                _ => e.Message,
            });
        }
    }

    private static async Task ReleaseAsync(DicomClient client, CancellationToken cancellationToken)
    {
        try
        {
            await client.ReleaseAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (PeerFailures.IsTransient(e))
        {
            // Answered already: a release the peer fumbles does not change that.
        }
    }
}
