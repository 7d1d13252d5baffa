using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

public sealed class AssociationLimitHealthTests
{
    /// <summary>
    /// Regression (review 23): with every association slot held, each new association was refused (transient, local
    /// limit exceeded) while /health said Healthy: an operator did not see the lock-out. The dicom-node check is now
    /// Degraded and says why, and Healthy again once a slot is free.
    /// </summary>
    [Fact]
    public async Task Regression_health_said_healthy_while_every_association_slot_was_held()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__DICOM__SERVER__MAXASSOCIATIONS"] = "2",
            ["VIGIE__DICOM__SERVER__MAXASSOCIATIONSPERCALLINGAE"] = "2",
        }, cancellationToken: ct);
        var options = new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = "MODALITY", CalledAE = "VIGIE" };
        var contexts = DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian);
        var first = await DicomClient.ConnectAsync(options, contexts, ct);
        await using (var second = await DicomClient.ConnectAsync(options, contexts, ct))
        {
            var full = await node.HealthCheckAsync("dicom-node", ct);
            Assert.Equal("Degraded", full.Status);
            Assert.Contains("every association slot is held", full.Description, StringComparison.Ordinal);
            await second.ReleaseAsync(ct);
        }

        var freed = await Eventually.WaitForAsync(() => node.HealthCheckAsync("dicom-node", ct), h => h.Status == "Healthy", ct, TimeSpan.FromSeconds(20));
        Assert.Equal("Healthy", freed.Status);
        await first.ReleaseAsync(ct);
        await first.DisposeAsync();
    }
}
