using Vigie.Dicom.Network;

namespace Vigie.Gateway.Forwarding;

internal static class Destinations
{
    public static DicomClientOptions ClientOptions(DicomDestination destination, string callingAE) => new()
    {
        Host = destination.Host,
        Port = destination.Port,
        CalledAE = destination.AETitle,
        CallingAE = callingAE,
        UseTls = destination.UseTls,
        ServerCaPath = destination.ServerCaPath,
        ServerName = destination.ServerName,
        ClientCertificatePath = destination.ClientCertificatePath,
        ClientKeyPath = destination.ClientKeyPath,
        ConnectTimeout = destination.ConnectTimeout,
        Association = new DicomAssociationOptions
        {
            ReadTimeout = destination.ResponseTimeout,
            ArtimTimeout = destination.ArtimTimeout,
            MaxSendPduLength = destination.MaxSendPduLength,
        },
    };
}
