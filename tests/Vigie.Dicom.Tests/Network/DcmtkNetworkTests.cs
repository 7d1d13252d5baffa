using System.Net.Sockets;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Dicom.Tests.Network;

/// <summary>The upper layer and DIMSE against dcmtk's own tools, with an in-memory application behind.</summary>
public sealed class DcmtkNetworkTests : IAsyncLifetime
{
    private readonly MemoryServiceProvider _provider = new();
    private DicomServer _server = null!;

    public ValueTask InitializeAsync()
    {
        _server = _provider.StartServer(TimeSpan.FromSeconds(3));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    private string Port => _server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task Echoscu_gets_success()
    {
        var echoscu = Peers.Require("echoscu", "dcmtk");
        var result = await Peers.RunAsync(echoscu, ["-aet", "ECHOSCU", "-aec", "VIGIE", "127.0.0.1", Port], TimeSpan.FromSeconds(30),
            cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(result.ExitCode == 0, result.ToString());
        // Recorded once the release answer is sent, which is what lets echoscu exit: waited for, not assumed.
        await Eventually.WaitForAsync(() => Task.FromResult(_provider.Ended.ToList()), ended => ended.Any(e => e.End == AssociationEnd.Released),
            TestContext.Current.CancellationToken, TimeSpan.FromSeconds(10));
        Assert.Contains(_provider.Ended, e => e.End == AssociationEnd.Released);
    }

    [Fact]
    public async Task Storescu_sends_files_that_arrive_byte_for_byte()
    {
        var ct = TestContext.Current.CancellationToken;
        var storescu = Peers.Require("storescu", "dcmtk");
        var files = Peers.CtCorpusFiles().Take(10).ToList();
        var result = await Peers.RunAsync(storescu, ["-aet", "STORESCU", "-aec", "VIGIE", "-pdu", "131072", "127.0.0.1", Port, .. files], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(10, _provider.Stored.Count);
        foreach (var path in files)
        {
            var source = await File.ReadAllBytesAsync(path, ct);
            var file = await DicomReader.ReadFileAsync(path, null, ct);
            var uid = file.Dataset.GetString(DicomTags.SOPInstanceUID)!;
            Assert.True(source.AsSpan((int)file.DatasetOffset).SequenceEqual(_provider.Stored[uid].Data), path);
        }
    }

    [Fact]
    public async Task Findscu_receives_pending_matches()
    {
        var ct = TestContext.Current.CancellationToken;
        var files = Peers.CtCorpusFiles().Take(3).ToList();
        await StoreWithOurClientAsync(files, ct);
        var findscu = Peers.Require("findscu", "dcmtk");
        var result = await Peers.RunAsync(findscu, ["-aet", "FINDSCU", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID=SYN0001",
            "-k", "SOPInstanceUID", "127.0.0.1", Port], TimeSpan.FromSeconds(30), cancellationToken: ct);
        Assert.True(result.ExitCode == 0, result.ToString());
        var output = result.StandardOutput + result.StandardError;
        Assert.Equal(3, output.Split("(Pending)").Length - 1);
        Assert.Equal(3, output.Split("(0008,0018) UI [").Length - 1);
    }

    [Fact]
    public async Task Unknown_calling_AE_is_rejected_with_its_reason()
    {
        var echoscu = Peers.Require("echoscu", "dcmtk");
        var result = await Peers.RunAsync(echoscu, ["-aet", "INTRUDER", "-aec", "VIGIE", "127.0.0.1", Port], TimeSpan.FromSeconds(30),
            cancellationToken: TestContext.Current.CancellationToken);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Calling AE Title Not Recognized", result.StandardError + result.StandardOutput, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Wrong_called_AE_is_rejected()
    {
        var echoscu = Peers.Require("echoscu", "dcmtk");
        var result = await Peers.RunAsync(echoscu, ["-aet", "ECHOSCU", "-aec", "SOMEONE", "127.0.0.1", Port], TimeSpan.FromSeconds(30),
            cancellationToken: TestContext.Current.CancellationToken);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Called AE Title Not Recognized", result.StandardError + result.StandardOutput, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Garbage_bytes_get_an_abort_and_do_not_disturb_a_parallel_store()
    {
        var ct = TestContext.Current.CancellationToken;
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", _server.Port, ct);
        var stream = client.GetStream();
        await stream.WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(), ct);
        var reply = new byte[10];
        var read = await stream.ReadAtLeastAsync(reply, 10, throwOnEndOfStream: false, ct);
        Assert.Equal(10, read);
        Assert.Equal((byte)PduType.Abort, reply[0]);
        await StoreWithOurClientAsync(Peers.CtCorpusFiles().Take(2).ToList(), ct);
        Assert.Equal(2, _provider.Stored.Count);
    }

    private async Task StoreWithOurClientAsync(IReadOnlyList<string> files, CancellationToken ct)
    {
        await using var client = await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = _server.Port, CallingAE = "TESTSCU", CalledAE = "VIGIE" },
            DicomClient.Propose([DicomUids.CTImageStorage, DicomUids.Verification], DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian), ct);
        Assert.Equal(DimseStatus.Success, (await client.EchoAsync(ct)).Status);
        foreach (var file in files)
        {
            Assert.Equal(DimseStatus.Success, (await client.StoreFileAsync(file, ct)).Status);
        }

        await client.ReleaseAsync(ct);
    }
}
